#include "rpc/io_pool.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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

// Adds `nice` to the calling thread's nice value (Linux: per thread). A
// refusal leaves it as it was: the pool works the same, only unweighted.
void LowerThisThread(int nice) {
  const id_t tid = static_cast<id_t>(gettid());
  errno = 0;
  const int current = getpriority(PRIO_PROCESS, tid);
  if (current == -1 && errno != 0) {
    return;
  }
  setpriority(PRIO_PROCESS, tid, std::min(19, current + nice));
}

}  // namespace

IoPool::IoPool(const IoPoolOptions& options)
    : max_queue_(options.max_queue > 0
                     ? options.max_queue
                     : kDefaultQueuePerThread *
                           static_cast<size_t>(ThreadCount(options.threads))) {
  const int n = ThreadCount(options.threads);
  max_stream_workers_ = std::max(1, n - 1);
  stream_nice_ = n >= 2 ? std::max(0, options.stream_nice) : 0;
  workers_.reserve(n);
  for (int i = 0; i < n; ++i) {
    Role role = Role::kAny;
    if (stream_nice_ > 0) {
      role = i == 0 ? Role::kCalls : Role::kLowered;
    }
    workers_.emplace_back([this, role] { WorkerLoop(role); });
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

bool IoPool::CallWorkerBusyForTest() {
  absl::MutexLock lock(&mu_);
  return call_worker_busy_;
}

bool IoPool::CallsOpenLocked(Role role) const {
  return role != Role::kLowered || call_worker_busy_ || stopping_;
}

bool IoPool::ReadyLocked(Role role) const {
  return (!calls_.empty() && CallsOpenLocked(role)) ||
         (role != Role::kCalls && !streams_.empty() &&
          running_streams_ < max_stream_workers_);
}

IoPool::Task IoPool::TakeLocked(Role role, bool* stream) {
  const bool stream_ready = role != Role::kCalls && !streams_.empty() &&
                            running_streams_ < max_stream_workers_;
  const bool calls_ready = !calls_.empty() && CallsOpenLocked(role);
  *stream = stream_ready && (!calls_ready || calls_in_row_ >= kCallBurst);
  std::deque<Task>& queue = *stream ? streams_ : calls_;
  Task task = std::move(queue.front());
  queue.pop_front();
  if (*stream) {
    ++running_streams_;
    calls_in_row_ = 0;
  } else if (role == Role::kCalls) {
    call_worker_busy_ = true;  // Leaves calls_in_row_ to stream workers.
  } else {
    calls_in_row_ = stream_ready ? calls_in_row_ + 1 : 0;
  }
  return task;
}

void IoPool::WorkerLoop(Role role) {
  pthread_setname_np(pthread_self(),
                     role == Role::kCalls ? "cairn-io-call" : "cairn-io");
  if (role == Role::kLowered) {
    LowerThisThread(stream_nice_);
  }
  struct Args {
    IoPool* pool;
    Role role;
  } args{this, role};
  for (;;) {
    Task task;
    bool stream = false;
    {
      absl::MutexLock lock(&mu_);
      // While stopping, stream tasks still run (within the worker limit)
      // until both queues are drained (the call worker: until no call is).
      mu_.Await(absl::Condition(
          +[](Args* a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(a->pool->mu_) {
            IoPool* p = a->pool;
            return p->ReadyLocked(a->role) ||
                   (p->stopping_ && p->calls_.empty() &&
                    (a->role == Role::kCalls || p->streams_.empty()));
          },
          &args));
      if (!ReadyLocked(role)) {
        return;  // Stopping and drained.
      }
      task = TakeLocked(role, &stream);
    }
    std::move(task)();
    if (stream || role == Role::kCalls) {
      absl::MutexLock lock(&mu_);
      if (stream) {
        --running_streams_;
      } else {
        call_worker_busy_ = false;
      }
    }
  }
}

}  // namespace cairn::rpc
