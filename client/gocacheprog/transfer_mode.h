// TransferChooser: decides whether fetched Go cache bodies travel
// zstd-compressed or plain, from the link's measured byte rate.
//
// Compression pays on a slow link and costs on a fast one: the server
// compresses each body as it is read, the shim decompresses it, and a
// compressed body cannot come inline with its ActionResult (one more round
// trip). Measured with `go build std` warm on the shared 2-core machine
// (load 9-14): from cairn-server on the same host 2.9-3.9 s compressed
// against 1.4-1.7 s plain; through toxiproxy at 1 Gbit/s 2.2-4.8 s against
// 2.2 s; at 200 Mbit/s 3.5-3.9 s against 7.4-7.7 s. The address says nothing
// (a far cache behind an SSH tunnel or a proxy is on 127.0.0.1 too), and
// comparing fetch times mode against mode is fooled on a shared link (a
// fetch waits behind everyone's bytes, not its own), so the chooser measures
// the link itself:
//
//   - Probe: fetches travel plain until kProbeSamples bodies of at least
//     kMinSampleBytes have arrived. Two lower bounds on the link's rate are
//     kept, and the estimate is the larger: the best single fetch's rate
//     (body bytes over the time from request to last byte: a fetch never
//     moves faster than the link), and the aggregate rate, all plain body
//     bytes that arrived over the time since the first of those fetches
//     started (fetches in flight share the link: with the prefetch's 16 at
//     once each one sees a sixteenth of it, so the best single fetch on a
//     loaded 2-core machine measured loopback at 7.7-76.7 MB/s, as slow as
//     a 200 Mbit/s link, and chose zstd in about half the warm gh builds,
//     11.7-17.5 s against 7.4-7.7 s plain). Smaller bodies measure the
//     round trip, not the link: they are not samples, but their bytes count
//     towards the aggregate.
//   - Then the chooser decides, once: zstd when the estimate is below
//     kZstdBelowBytesPerSecond, else plain. A fetch in flight when the
//     decision falls finishes as it began. A build whose bodies are all small
//     stays plain (latency-bound: the extra round trip would cost more).
//   - On a slow link the probe costs the difference for a few large bodies
//     (at 50 Mbit/s a few tenths of a second).
//
// Policy kAlways / kNever pins the mode (the --zstd flag).
//
// Thread safety: all methods may be called concurrently.
#ifndef CAIRN_CLIENT_GOCACHEPROG_TRANSFER_MODE_H_
#define CAIRN_CLIENT_GOCACHEPROG_TRANSFER_MODE_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cairn::client::gocacheprog {

enum class ZstdPolicy { kAuto, kAlways, kNever };

// Parses "auto", "always"/"true"/"1", "never"/"false"/"0". INVALID_ARGUMENT
// otherwise.
absl::StatusOr<ZstdPolicy> ParseZstdPolicy(absl::string_view text);

enum class TransferMode { kZstd, kPlain };

class TransferChooser {
 public:
  static constexpr int kProbeSamples = 4;
  static constexpr int64_t kMinSampleBytes = 128 * 1024;
  // 40 MB/s (320 Mbit/s): compression paid at 200 Mbit/s (2x faster) and
  // not at 1 Gbit/s or on loopback (the probe measured 91-104 MB/s there on
  // the loaded machine, 4-16 MB/s through 50 and 200 Mbit/s links).
  static constexpr double kZstdBelowBytesPerSecond = 40e6;

  explicit TransferChooser(ZstdPolicy policy) : policy_(policy) {}
  TransferChooser(const TransferChooser&) = delete;
  TransferChooser& operator=(const TransferChooser&) = delete;

  // Returns the mode of a fetch starting now.
  TransferMode Next();

  // Records a fetch made in `mode` that moved a body of `bytes` (0 for a
  // miss or a failure) in `elapsed`, request to last byte.
  void Record(TransferMode mode, int64_t bytes, absl::Duration elapsed);

  // Returns true once the probe has decided (always with a fixed policy).
  bool Decided() const;

  // Returns the link rate estimate, bytes per second (0 before a sample).
  double EstimatedRate() const;

 private:
  const ZstdPolicy policy_;
  mutable absl::Mutex mu_;
  bool decided_ ABSL_GUARDED_BY(mu_) = false;
  TransferMode mode_ ABSL_GUARDED_BY(mu_) = TransferMode::kPlain;
  int samples_ ABSL_GUARDED_BY(mu_) = 0;
  double best_rate_ ABSL_GUARDED_BY(mu_) = 0;
  // Plain body bytes that arrived, since the start of the earliest fetch.
  int64_t window_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time window_start_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // The estimate: max(best_rate_, aggregate rate), as of the last sample.
  double rate_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace cairn::client::gocacheprog

#endif  // CAIRN_CLIENT_GOCACHEPROG_TRANSFER_MODE_H_
