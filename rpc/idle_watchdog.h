// IdleWatchdog: cancels streaming calls whose client stalls. A reactor that is
// waiting for the client's next message (between StartRead and OnReadDone)
// for longer than `idle_timeout` has its call cancelled with TryCancel(), so
// the pending read completes with ok=false and the reactor releases what it
// holds (an upload's reserved quota, its temp file) the usual way. Time spent
// on the server's side (the I/O pool, the disk) never counts.
//
// Use per call:
//   watch_ = watchdog->Add(context);   // constructor
//   watch_->Waiting();  StartRead(...); // each read
//   watch_->Received();                 // top of OnReadDone
//   watch_->Done();                     // OnDone, before `delete this`
// After Done() returns the watchdog never touches the context again.
//
// Thread safety: all methods are thread-safe. One background thread checks
// the watched calls every quarter timeout (at most every second).
#ifndef CAIRN_RPC_IDLE_WATCHDOG_H_
#define CAIRN_RPC_IDLE_WATCHDOG_H_

#include <grpcpp/support/server_callback.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cairn::rpc {

class IdleWatchdog {
 public:
  // One watched call.
  class Watch {
   public:
    explicit Watch(grpc::CallbackServerContext* context) : context_(context) {}
    // Marks the call as waiting for the client from now on.
    void Waiting();
    // Marks the client's message as arrived.
    void Received() { waiting_since_ns_.store(kNotWaiting); }
    // Detaches the call; call from OnDone before the reactor is deleted.
    void Done();

   private:
    friend class IdleWatchdog;
    static constexpr int64_t kNotWaiting = INT64_MAX;

    // Cancels the call if it has waited since before `cutoff_ns`, counting
    // it in `*cancelled`; true if so.
    bool CancelIfStalled(int64_t cutoff_ns, std::atomic<int64_t>* cancelled);

    std::atomic<int64_t> waiting_since_ns_{kNotWaiting};
    absl::Mutex mu_;
    grpc::CallbackServerContext* context_ ABSL_GUARDED_BY(mu_);
  };

  // `idle_timeout` of zero disables the watchdog (Add returns inert watches
  // and no thread runs).
  explicit IdleWatchdog(absl::Duration idle_timeout);
  // Stops the thread. Calls still watched are left alone.
  ~IdleWatchdog();
  IdleWatchdog(const IdleWatchdog&) = delete;
  IdleWatchdog& operator=(const IdleWatchdog&) = delete;

  // Returns the watch for the call behind `context` (never null).
  std::shared_ptr<Watch> Add(grpc::CallbackServerContext* context);

  // Returns how many calls were cancelled for stalling.
  int64_t cancelled() const { return cancelled_.load(); }

 private:
  void Run();
  // Cancels stalled calls and forgets finished ones.
  void Sweep();

  const absl::Duration idle_timeout_;
  std::atomic<int64_t> cancelled_{0};
  absl::Mutex mu_;
  std::vector<std::weak_ptr<Watch>> watches_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_IDLE_WATCHDOG_H_
