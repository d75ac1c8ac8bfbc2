// TSan builds only (linked by tools/sanitize.sh, never part of the product).
//
// Debian's Abseil is not built with ThreadSanitizer, so absl::Mutex,
// absl::CondVar and absl::Notification (which Cairn, gRPC and protobuf all use)
// synchronise in code TSan cannot see, and every access guarded by them would
// be reported as a race. This file interposes the exported lock, unlock and
// wait functions: each calls the real one (found with dlsym(RTLD_NEXT)) and
// tells TSan about the happens-before edge with __tsan_acquire/__tsan_release
// on the object's address. Races between accesses that no lock orders are
// still reported.
//
// Conditions need one more step: Abseil evaluates a Condition inside
// libabsl_synchronization while it holds the mutex internally (in Await,
// LockWhen and in the Unlock of another thread that checks waiters), between
// the release and acquire this file announces. So every Condition passed on
// is wrapped: each evaluation is bracketed by acquire and release on the
// mutex, which orders the condition's reads after the last writer's Unlock
// and before the next Lock.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);

namespace {

// Returns the next definition of `symbol` (the one in libabsl_*.so).
template <typename F>
F Real(const char* symbol) {
  void* f = dlsym(RTLD_NEXT, symbol);
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl_shim: %s not found: %s\n", symbol,
                 dlerror());
    std::abort();
  }
  return reinterpret_cast<F>(f);
}

void Acquire(const void* p) { __tsan_acquire(const_cast<void*>(p)); }
void Release(const void* p) { __tsan_release(const_cast<void*>(p)); }

#define CAIRN_MUTEX_SYM(name) "_ZN4absl7debian35Mutex" name

// A Condition evaluated as if under `mu` for TSan. Lives on the stack of the
// waiting call, which outlives every evaluation Abseil makes of it. Another
// thread may evaluate it (in its Unlock), so the object is published with a
// release on its address and every evaluation starts with the acquire. The
// wrapped Condition uses the void* form, whose constructor and call live in
// libabsl (not instrumented), so no access to it can race.
class TsanCondition {
 public:
  TsanCondition(const absl::Condition& cond, const absl::Mutex* mu)
      : cond_(&cond), mu_(mu), wrapped_(&TsanCondition::Eval, this) {
    Release(this);
  }
  const absl::Condition& get() const { return wrapped_; }

 private:
  static bool Eval(void* arg) {
    // Looked up like the rest.
    static auto real_eval = Real<bool (*)(const absl::Condition*)>(
        "_ZNK4absl7debian39Condition4EvalEv");
    Acquire(arg);
    const auto* self = static_cast<const TsanCondition*>(arg);
    Acquire(self->mu_);
    bool result = real_eval(self->cond_);
    Release(self->mu_);
    return result;
  }

  const absl::Condition* cond_;
  const absl::Mutex* mu_;
  absl::Condition wrapped_;
};

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static auto real = Real<void (*)(Mutex*)>(CAIRN_MUTEX_SYM("4LockEv"));
  real(this);
  Acquire(this);
}

void Mutex::ReaderLock() {
  static auto real = Real<void (*)(Mutex*)>(CAIRN_MUTEX_SYM("10ReaderLockEv"));
  real(this);
  Acquire(this);
}

bool Mutex::TryLock() {
  static auto real = Real<bool (*)(Mutex*)>(CAIRN_MUTEX_SYM("7TryLockEv"));
  bool locked = real(this);
  if (locked) {
    Acquire(this);
  }
  return locked;
}

bool Mutex::ReaderTryLock() {
  static auto real =
      Real<bool (*)(Mutex*)>(CAIRN_MUTEX_SYM("13ReaderTryLockEv"));
  bool locked = real(this);
  if (locked) {
    Acquire(this);
  }
  return locked;
}

void Mutex::Unlock() {
  static auto real = Real<void (*)(Mutex*)>(CAIRN_MUTEX_SYM("6UnlockEv"));
  Release(this);
  real(this);
}

void Mutex::ReaderUnlock() {
  static auto real =
      Real<void (*)(Mutex*)>(CAIRN_MUTEX_SYM("12ReaderUnlockEv"));
  Release(this);
  real(this);
}

void Mutex::LockWhen(const Condition& cond) {
  static auto real = Real<void (*)(Mutex*, const Condition&)>(
      CAIRN_MUTEX_SYM("8LockWhenERKNS0_9ConditionE"));
  real(this, TsanCondition(cond, this).get());
  Acquire(this);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static auto real = Real<void (*)(Mutex*, const Condition&)>(
      CAIRN_MUTEX_SYM("14ReaderLockWhenERKNS0_9ConditionE"));
  real(this, TsanCondition(cond, this).get());
  Acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      CAIRN_MUTEX_SYM("19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  bool result = real(this, TsanCondition(cond, this).get(), timeout);
  Acquire(this);  // Held on return either way.
  return result;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      CAIRN_MUTEX_SYM("20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  bool result = real(this, TsanCondition(cond, this).get(), deadline);
  Acquire(this);  // Held on return either way.
  return result;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond,
                                      absl::Duration timeout) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      CAIRN_MUTEX_SYM(
          "25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  bool result = real(this, TsanCondition(cond, this).get(), timeout);
  Acquire(this);
  return result;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond,
                                       absl::Time deadline) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      CAIRN_MUTEX_SYM("26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  bool result = real(this, TsanCondition(cond, this).get(), deadline);
  Acquire(this);
  return result;
}

void Mutex::Await(const Condition& cond) {
  static auto real = Real<void (*)(Mutex*, const Condition&)>(
      CAIRN_MUTEX_SYM("5AwaitERKNS0_9ConditionE"));
  Release(this);
  real(this, TsanCondition(cond, this).get());
  Acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      CAIRN_MUTEX_SYM("16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  Release(this);
  bool result = real(this, TsanCondition(cond, this).get(), timeout);
  Acquire(this);
  return result;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  static auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      CAIRN_MUTEX_SYM("17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  Release(this);
  bool result = real(this, TsanCondition(cond, this).get(), deadline);
  Acquire(this);
  return result;
}

void CondVar::Wait(Mutex* mu) {
  static auto real = Real<void (*)(CondVar*, Mutex*)>(
      "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  Release(mu);
  real(this, mu);
  Acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  static auto real = Real<bool (*)(CondVar*, Mutex*, absl::Duration)>(
      "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Release(mu);
  bool result = real(this, mu, timeout);
  Acquire(mu);
  return result;
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  static auto real = Real<bool (*)(CondVar*, Mutex*, absl::Time)>(
      "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  Release(mu);
  bool result = real(this, mu, deadline);
  Acquire(mu);
  return result;
}

void Notification::Notify() {
  static auto real = Real<void (*)(Notification*)>(
      "_ZN4absl7debian312Notification6NotifyEv");
  Release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  static auto real = Real<void (*)(const Notification*)>(
      "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(this);
  Acquire(this);
}

bool Notification::WaitForNotificationWithTimeout(
    absl::Duration timeout) const {
  static auto real = Real<bool (*)(const Notification*, absl::Duration)>(
      "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_"
      "8DurationE");
  bool result = real(this, timeout);
  if (result) {
    Acquire(this);
  }
  return result;
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  static auto real = Real<bool (*)(const Notification*, absl::Time)>(
      "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_"
      "4TimeE");
  bool result = real(this, deadline);
  if (result) {
    Acquire(this);
  }
  return result;
}

ABSL_NAMESPACE_END
}  // namespace absl
