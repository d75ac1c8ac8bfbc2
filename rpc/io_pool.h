// IoPool: a fixed set of worker threads with a bounded FIFO queue. gRPC
// reactors hand every piece of work that may touch the disk or block to the
// pool; the pool thread then calls Finish/StartWrite/StartRead. When the queue
// is full TrySchedule() refuses the task, and the caller answers
// RESOURCE_EXHAUSTED instead of letting memory grow without bound.
//
// Thread safety: all methods are safe to call concurrently, including from
// pool threads. Tasks run in FIFO order on any worker.
#ifndef CAIRN_RPC_IO_POOL_H_
#define CAIRN_RPC_IO_POOL_H_

#include <cstddef>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace cairn::rpc {

struct IoPoolOptions {
  // Worker threads; 0 means twice the number of cores.
  int threads = 0;
  // Most tasks waiting to run; 0 means 256 per worker thread.
  size_t max_queue = 0;
};

class IoPool {
 public:
  using Task = absl::AnyInvocable<void() &&>;

  // Starts the worker threads.
  explicit IoPool(const IoPoolOptions& options);
  // Runs every queued task, then joins the workers (see Shutdown()).
  ~IoPool();

  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  // Queues `task`. Returns false, without running or keeping it, when the
  // queue is full or the pool is shutting down.
  bool TrySchedule(Task task);

  // Like TrySchedule(), but says why a task was refused, naming `what`:
  // RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE when shutting down.
  absl::Status Schedule(const char* what, Task task);

  // Stops accepting tasks, runs the ones already queued and joins the
  // workers. Idempotent; not to be called concurrently with itself nor from a
  // pool thread.
  void Shutdown();

  int threads() const { return static_cast<int>(workers_.size()); }
  size_t max_queue() const { return max_queue_; }

  // Returns the number of tasks waiting (not running).
  size_t Queued();
  size_t QueuedForTest() { return Queued(); }

 private:
  void WorkerLoop();

  const size_t max_queue_;
  std::vector<std::thread> workers_;
  absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_IO_POOL_H_
