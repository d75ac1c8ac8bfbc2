// A watch's mutex guards only its context pointer, which Done() clears; the
// sweeper holds it across TryCancel so the context cannot go away meanwhile.
// gRPC may run the reactor's callbacks inline inside TryCancel; OnReadDone
// only touches the atomic, and a Done() on the sweeping thread for the watch
// being cancelled (t_cancelling) clears the pointer without re-locking.
#include "rpc/idle_watchdog.h"

#include <grpcpp/server_context.h>

#include <algorithm>

namespace cairn::rpc {
namespace {

thread_local IdleWatchdog::Watch* t_cancelling = nullptr;

int64_t NowNs() { return absl::GetCurrentTimeNanos(); }

}  // namespace

void IdleWatchdog::Watch::Waiting() { waiting_since_ns_.store(NowNs()); }

void IdleWatchdog::Watch::Done() {
  waiting_since_ns_.store(kNotWaiting);
  if (t_cancelling == this) {
    mu_.AssertHeld();
    context_ = nullptr;
    return;
  }
  absl::MutexLock lock(&mu_);
  context_ = nullptr;
}

bool IdleWatchdog::Watch::CancelIfStalled(int64_t cutoff_ns,
                                          std::atomic<int64_t>* cancelled) {
  if (waiting_since_ns_.load() >= cutoff_ns) {
    return false;
  }
  absl::MutexLock lock(&mu_);
  if (context_ == nullptr || waiting_since_ns_.load() >= cutoff_ns) {
    return false;
  }
  waiting_since_ns_.store(kNotWaiting);  // Cancel once.
  cancelled->fetch_add(1);  // Before the client can see the cancellation.
  t_cancelling = this;
  context_->TryCancel();
  t_cancelling = nullptr;
  return true;
}

IdleWatchdog::IdleWatchdog(absl::Duration idle_timeout)
    : idle_timeout_(idle_timeout) {
  if (idle_timeout_ > absl::ZeroDuration()) {
    thread_ = std::thread([this] { Run(); });
  }
}

IdleWatchdog::~IdleWatchdog() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

std::shared_ptr<IdleWatchdog::Watch> IdleWatchdog::Add(
    grpc::CallbackServerContext* context) {
  auto watch = std::make_shared<Watch>(context);
  if (thread_.joinable()) {
    absl::MutexLock lock(&mu_);
    watches_.push_back(watch);
  }
  return watch;
}

void IdleWatchdog::Run() {
  const absl::Duration period = std::min(idle_timeout_ / 4, absl::Seconds(1));
  absl::MutexLock lock(&mu_);
  while (!stop_) {  // Ends when the destructor sets stop_.
    mu_.AwaitWithTimeout(absl::Condition(&stop_), period);
    if (stop_) {
      break;
    }
    mu_.Unlock();
    Sweep();
    mu_.Lock();
  }
}

void IdleWatchdog::Sweep() {
  std::vector<std::shared_ptr<Watch>> live;
  {
    absl::MutexLock lock(&mu_);
    auto end = std::remove_if(watches_.begin(), watches_.end(),
                              [&live](const std::weak_ptr<Watch>& w) {
                                std::shared_ptr<Watch> watch = w.lock();
                                if (watch == nullptr) {
                                  return true;
                                }
                                live.push_back(std::move(watch));
                                return false;
                              });
    watches_.erase(end, watches_.end());
  }
  const int64_t cutoff = NowNs() - absl::ToInt64Nanoseconds(idle_timeout_);
  for (const std::shared_ptr<Watch>& watch : live) {
    watch->CancelIfStalled(cutoff, &cancelled_);
  }
}

}  // namespace cairn::rpc
