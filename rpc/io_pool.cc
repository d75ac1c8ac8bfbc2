#include "rpc/io_pool.h"

#include <algorithm>
#include <string>
#include <utility>

namespace cairn::rpc {
namespace {

int ThreadCount(int requested) {
  if (requested > 0) {
    return requested;
  }
  return 2 * std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

IoPool::IoPool(const IoPoolOptions& options)
    : max_queue_(options.max_queue > 0
                     ? options.max_queue
                     : 256 *
                           static_cast<size_t>(ThreadCount(options.threads))) {
  const int n = ThreadCount(options.threads);
  workers_.reserve(n);
  for (int i = 0; i < n; ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

IoPool::~IoPool() { Shutdown(); }

bool IoPool::TrySchedule(Task task) {
  return Schedule("task", std::move(task)).ok();
}

absl::Status IoPool::Schedule(const char* what, Task task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    return absl::UnavailableError(std::string(what) +
                                  ": server is shutting down");
  }
  if (queue_.size() >= max_queue_) {
    return absl::ResourceExhaustedError(
        std::string(what) +
        ": server overloaded (I/O queue full), retry later");
  }
  queue_.push_back(std::move(task));
  return absl::OkStatus();
}

void IoPool::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && workers_.empty()) {
      return;
    }
    stopping_ = true;
  }
  for (std::thread& t : workers_) {
    if (t.joinable()) {
      t.join();
    }
  }
  absl::MutexLock lock(&mu_);
  workers_.clear();
}

size_t IoPool::Queued() {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void IoPool::WorkerLoop() {
  for (;;) {
    Task task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](IoPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return p->stopping_ || !p->queue_.empty();
          },
          this));
      if (queue_.empty()) {
        return;  // Stopping and drained.
      }
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    std::move(task)();
  }
}

}  // namespace cairn::rpc
