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
                     : kDefaultQueuePerThread *
                           static_cast<size_t>(ThreadCount(options.threads))) {
  const int n = ThreadCount(options.threads);
  max_stream_workers_ = std::max(1, n - 1);
  workers_.reserve(n);
  for (int i = 0; i < n; ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

IoPool::~IoPool() { Shutdown(); }

bool IoPool::TrySchedule(Task task, Lane lane) {
  return Schedule("task", std::move(task), lane).ok();
}

absl::Status IoPool::Schedule(const char* what, Task task, Lane lane) {
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    return absl::UnavailableError(std::string(what) +
                                  ": server is shutting down");
  }
  std::deque<Task>& queue = lane == Lane::kStream ? streams_ : calls_;
  if (queue.size() >= max_queue_) {
    return absl::ResourceExhaustedError(
        std::string(what) +
        ": server overloaded (I/O queue full), retry later");
  }
  queue.push_back(std::move(task));
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
  return calls_.size() + streams_.size();
}

bool IoPool::ReadyLocked() const {
  return !calls_.empty() ||
         (!streams_.empty() && running_streams_ < max_stream_workers_);
}

IoPool::Task IoPool::TakeLocked(bool* stream) {
  const bool stream_ready =
      !streams_.empty() && running_streams_ < max_stream_workers_;
  *stream = stream_ready && (calls_.empty() || calls_in_row_ >= kCallBurst);
  std::deque<Task>& queue = *stream ? streams_ : calls_;
  Task task = std::move(queue.front());
  queue.pop_front();
  if (*stream) {
    ++running_streams_;
    calls_in_row_ = 0;
  } else {
    calls_in_row_ = stream_ready ? calls_in_row_ + 1 : 0;
  }
  return task;
}

void IoPool::WorkerLoop() {
  for (;;) {
    Task task;
    bool stream = false;
    {
      absl::MutexLock lock(&mu_);
      // While stopping, stream tasks still run (within the worker limit)
      // until both queues are drained.
      mu_.Await(absl::Condition(
          +[](IoPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return p->ReadyLocked() ||
                   (p->stopping_ && p->calls_.empty() && p->streams_.empty());
          },
          this));
      if (!ReadyLocked()) {
        return;  // Stopping and drained.
      }
      task = TakeLocked(&stream);
    }
    std::move(task)();
    if (stream) {
      absl::MutexLock lock(&mu_);
      --running_streams_;
    }
  }
}

}  // namespace cairn::rpc
