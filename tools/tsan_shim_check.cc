// TSan builds only: checks tools/tsan_absl_shim.cc before tools/sanitize.sh
// trusts it with the test suite. Two threads update counters under an
// absl::Mutex (Lock/Unlock, and LockWhen with a Condition that the other
// thread's Unlock evaluates). Run without arguments, TSan must report nothing
// (the shim makes the mutex visible); run with "racy", the threads also bump
// an unguarded counter and TSan must report it (the shim hides no real race).
// sanitize.sh runs both and fails unless each behaves so.
#include <thread>

#include "absl/synchronization/mutex.h"

namespace {

struct Shared {
  absl::Mutex mu;
  int queued = 0;      // Guarded by mu.
  int guarded = 0;     // Guarded by mu.
  int unguarded = 0;   // Deliberately racy in "racy" mode.
};

bool HasQueued(Shared* s) { return s->queued > 0; }

}  // namespace

int main(int argc, char** argv) {
  const bool racy = argc > 1;
  constexpr int kRounds = 20000;
  Shared s;
  std::thread producer([&] {
    for (int i = 0; i < kRounds; ++i) {
      s.mu.Lock();
      ++s.queued;
      ++s.guarded;
      s.mu.Unlock();
      if (racy) {
        ++s.unguarded;
      }
    }
  });
  for (int i = 0; i < kRounds; ++i) {
    s.mu.LockWhen(absl::Condition(&HasQueued, &s));
    --s.queued;
    ++s.guarded;
    s.mu.Unlock();
    if (racy) {
      ++s.unguarded;
    }
  }
  producer.join();
  (void)argv;
  return s.guarded == 2 * kRounds ? 0 : 1;
}
