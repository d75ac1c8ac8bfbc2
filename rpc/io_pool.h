// IoPool: a fixed set of worker threads with two bounded FIFO queues. gRPC
// reactors hand every piece of work that may touch the disk or block to the
// pool; the pool thread then calls Finish/StartWrite/StartRead. When a queue
// is full TrySchedule() refuses the task, and the caller answers
// RESOURCE_EXHAUSTED instead of letting memory grow without bound.
//
// Fair sharing: tasks of streaming calls (ByteStream Read/Write, GetTree: one
// task per stream at a time) go to the kStream lane, everything else (unary
// calls) to kCall. Each lane has its own queue bound, so a thousand streams
// cannot fill the queue small calls need; at most threads - 1 workers run
// kStream tasks at once, so one worker is always free for calls however slow
// the streams' I/O is; and a worker takes at most kCallBurst calls in a row
// while streams wait, so calls cannot starve streams either. Within a lane
// tasks run in FIFO order.
//
// CPU priority (IoPoolOptions::stream_nice > 0, with two or more threads):
// bulk stream work yields the CPU to small calls. One worker (the "call
// worker") runs only calls, at the process's priority; the others run at
// that priority plus stream_nice (setpriority on their thread ids, which
// needs no privilege) and take streams, and calls only while the call worker
// is busy. So on a busy host the threads that answer small calls (gRPC's,
// and the call worker) run before the Reads' copying, while a lone stream
// still gets all idle CPU (nice only weighs threads that compete).
//
// Thread safety: all methods are safe to call concurrently, including from
// pool threads.
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
  // Most tasks waiting to run in each lane; 0 means 1024 per worker thread.
  // Every open ByteStream Read or Write waits here as one task between its
  // messages, so the stream lane's bound is also how many streams can wait
  // for I/O at once before new work answers RESOURCE_EXHAUSTED.
  size_t max_queue = 0;
  // Nice value added to every worker but one (see the file comment); 0
  // keeps all at the process's priority and lets any worker take calls.
  int stream_nice = 0;
};

// Which queue a task waits in (see the file comment).
enum class Lane { kCall, kStream };

class IoPool {
 public:
  using Task = absl::AnyInvocable<void() &&>;

  // Starts the worker threads.
  explicit IoPool(const IoPoolOptions& options);
  // Runs every queued task, then joins the workers (see Shutdown()).
  ~IoPool();

  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  // Calls taken in a row while stream tasks wait.
  static constexpr int kCallBurst = 4;
  // Queued tasks per worker thread when IoPoolOptions::max_queue is 0.
  static constexpr size_t kDefaultQueuePerThread = 1024;

  // Queues `task` in `lane`. Returns false, without running or keeping it,
  // when that lane's queue is full or the pool is shutting down.
  bool TrySchedule(Task task, Lane lane = Lane::kCall);

  // Like TrySchedule(), but says why a task was refused, naming `what`:
  // RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE when shutting down.
  absl::Status Schedule(const char* what, Task task, Lane lane = Lane::kCall);

  // Stops accepting tasks, runs the ones already queued and joins the
  // workers. Idempotent; not to be called concurrently with itself nor from a
  // pool thread.
  void Shutdown();

  int threads() const { return static_cast<int>(workers_.size()); }
  int stream_nice() const { return stream_nice_; }
  size_t max_queue() const { return max_queue_; }

  // Returns the number of tasks waiting (not running), in both lanes.
  size_t Queued();
  size_t QueuedForTest() { return Queued(); }
  // Returns whether the call worker is between taking a task and marking
  // itself free again (false without a call worker).
  bool CallWorkerBusyForTest();

 private:
  // What a worker may take: any task; calls only (the call worker); streams,
  // and calls while the call worker is busy (a lowered worker).
  enum class Role { kAny, kCalls, kLowered };

  void WorkerLoop(Role role);
  // Whether a worker in `role` may take a call now.
  bool CallsOpenLocked(Role role) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether a worker in `role` may take a task now.
  bool ReadyLocked(Role role) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the next task by the fairness rules; sets `*stream` when it is a
  // stream task. Requires ReadyLocked(role).
  Task TakeLocked(Role role, bool* stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_queue_;
  int max_stream_workers_ = 1;
  int stream_nice_ = 0;  // In effect: 0 with fewer than two threads.
  std::vector<std::thread> workers_;
  absl::Mutex mu_;
  std::deque<Task> calls_ ABSL_GUARDED_BY(mu_);
  std::deque<Task> streams_ ABSL_GUARDED_BY(mu_);
  int running_streams_ ABSL_GUARDED_BY(mu_) = 0;
  int calls_in_row_ ABSL_GUARDED_BY(mu_) = 0;
  bool call_worker_busy_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_IO_POOL_H_
