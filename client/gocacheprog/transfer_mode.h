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
//   - Then the chooser decides: zstd when the estimate is below
//     kZstdBelowBytesPerSecond, else plain. A fetch in flight when the
//     decision falls finishes as it began. A build whose bodies are all small
//     stays plain (latency-bound: the extra round trip would cost more).
//   - The decision is revised as bytes arrive. The probe falls at start-up,
//     when the machine is busiest (on the loaded 2-core machine it measured
//     loopback at 15.2 MB/s once and the build took 16.96 s compressed
//     against 6.00 s plain). From the decision on the chooser measures in
//     windows: a window begins when a mode is chosen, counts the body bytes
//     (uncompressed) of fetches made in that mode that began after it, and
//     closes once they reach kWindowBytes (kTrialBytes for a trial); its
//     rate is those bytes over the time from its beginning to the last
//     byte, so it is the rate the build got, link and CPU together. Then:
//       * plain at or above kZstdBelowBytesPerSecond stays plain;
//       * otherwise, once every `trial_gap` windows (1 at first), the other
//         mode runs one trial window, and the faster of the two measured
//         rates wins. A trial that loses multiplies the gap by kGapGrowth,
//         so on a slow link plain costs two trials in a gh build (8 MiB at
//         50 Mbit/s: about a second each); one that wins resets it.
//     Fetches begun before a window (the other mode's still in flight) are
//     not counted in it.
//   - The network's round trip comes first, before the first fetch: the
//     remote times kPingSamples storage-free calls one after another
//     (ReapiClient::Ping, a GetCapabilities that every server we know
//     answers from memory), and the round trip is the shortest. A lookup's
//     or a fetch's time does not measure it: through a node whose local tier
//     is cold each one waits for the bucket (several ms per GET on a
//     loopback Ceph RGW; lookups took 20-37 ms on the loaded 2-core bench),
//     and a rule that took the shortest of 16 lookups as the round trip sent
//     121-142 of 375 bodies zstd through such a node on loopback (2026-12-02,
//     zstd ~20% of that node's CPU). Then:
//       * every ping kFarRoundTrip or more: a far remote (the lan profile's
//         round trip is ~1 ms, cloud's 10 ms). Zstd from the first fetch on,
//         without the plain probe (on the 25 ms, 50 Mbit/s profile the probe
//         sent ~300 small gh bodies plain, 8 MB more on the wire than all
//         zstd, 141 MB; deciding from lookups instead still sent the 64-79
//         fetched before the 16th answer plain). Plain is tried only when
//         compressed bodies arrive at kFarTrialBytesPerSecond or more: below
//         that plain, about three times the wire bytes, can only win on a
//         link faster than the compressed fetches are using. While far, one
//         ping every kPingInterval: one below kFarRoundTrip (the start-up
//         pings met a busy machine, not a far link) goes back to the probe.
//       * a ping below kFarRoundTrip: near, for good (a far link cannot
//         answer faster than its delay); the probe decides.
//       * no answer to a ping: the probe decides.
//   - The probe's samples are bodies of kMinSampleBytes or more: large
//     enough that a server's own wait per fetch (a cold node's bucket GETs,
//     its queue on a busy machine) cannot pass for a slow link (1 MiB takes
//     26 ms at kZstdBelowBytesPerSecond; with 128 KiB samples the probe
//     measured a warm node on loopback at 32.7 MB/s on the loaded bench and
//     chose zstd), and a body fetched in a call of its own (not inline
//     with its entry) is timed from that call, not from the lookup before
//     it (which waits for the storage as much as the network).
//     Through a cold node on loopback (bench/nodes.sh, 2026-12-02, load
//     6-9) pings and 1 MiB samples brought the bodies sent zstd from
//     126-142 of 375 to 0-43 (probe 36-43 MB/s: still close).
//   - On a slow link close by the probe costs the difference for a few
//     large bodies (at 50 Mbit/s a few tenths of a second).
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
  static constexpr int64_t kMinSampleBytes = 1024 * 1024;
  // 40 MB/s (320 Mbit/s): compression paid at 200 Mbit/s (2x faster) and
  // not at 1 Gbit/s or on loopback (the probe measured 91-104 MB/s there on
  // the loaded machine, 4-16 MB/s through 50 and 200 Mbit/s links).
  static constexpr double kZstdBelowBytesPerSecond = 40e6;
  // Revision windows (see above): about 160 gh bodies, and a shorter trial
  // of the other mode.
  static constexpr int64_t kWindowBytes = int64_t{32} << 20;
  static constexpr int64_t kTrialBytes = int64_t{8} << 20;
  static constexpr int kGapGrowth = 4;
  // A far remote (see above).
  static constexpr absl::Duration kFarRoundTrip = absl::Milliseconds(8);
  static constexpr int kPingSamples = 3;
  static constexpr absl::Duration kPingInterval = absl::Seconds(1);
  static constexpr double kFarTrialBytesPerSecond = 100e6;

  explicit TransferChooser(ZstdPolicy policy) : policy_(policy) {}
  TransferChooser(const TransferChooser&) = delete;
  TransferChooser& operator=(const TransferChooser&) = delete;

  // Returns the mode of a fetch starting now.
  TransferMode Next();

  // Records a fetch made in `mode` that moved a body of `bytes` (0 for a
  // miss or a failure) in `elapsed`, request to last byte, ending now (the
  // request: the body's own call when it did not come inline).
  void Record(TransferMode mode, int64_t bytes, absl::Duration elapsed);
  // The same, with the fetch's start and end given.
  void Record(TransferMode mode, int64_t bytes, absl::Time start,
              absl::Time end);

  // Returns true when a network round trip should be measured now (the
  // caller then pings and reports with RecordPing or PingFailed): while the
  // start-up pings are unfinished, and while far, once per kPingInterval
  // (claimed by one caller). False with a fixed policy.
  bool ClaimPing(absl::Time now);

  // Records the round trip of one storage-free call, request at `start` to
  // answer at `end`.
  void RecordPing(absl::Time start, absl::Time end);

  // Records a ping that failed: the start-up pings end (the probe decides).
  void PingFailed();

  // Returns the shortest ping round trip (zero before any).
  absl::Duration RoundTrip() const;

  // Returns true once the probe has decided (always with a fixed policy).
  bool Decided() const;

  // Returns the probe's link rate estimate, bytes per second (0 before a
  // sample).
  double EstimatedRate() const;

  // Returns how often the mode changed after the probe's decision (trials
  // and their outcomes included).
  int64_t Changes() const;

 private:
  // Probe: counts a plain fetch; decides after kProbeSamples samples.
  void Probe(int64_t bytes, absl::Time start, absl::Time end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts a window of `mode` at `now`; `trial` marks a trial of it.
  void Begin(TransferMode mode, bool trial, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Chooses the mode after the window closed at `now` with `rate`.
  void Revise(double rate, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets the decision and its windows: the probe starts again.
  void RestartProbe() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ZstdPolicy policy_;
  mutable absl::Mutex mu_;
  bool decided_ ABSL_GUARDED_BY(mu_) = false;
  TransferMode mode_ ABSL_GUARDED_BY(mu_) = TransferMode::kPlain;
  int samples_ ABSL_GUARDED_BY(mu_) = 0;
  double best_rate_ ABSL_GUARDED_BY(mu_) = 0;
  // The probe's plain body bytes since the start of the earliest fetch;
  // after the decision, the current window's (see below).
  int64_t window_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time window_start_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // The estimate: max(best_rate_, aggregate rate), as of the last sample.
  double rate_ ABSL_GUARDED_BY(mu_) = 0;
  // Revision (after the decision). The window counts `window_bytes_` of
  // mode_ since window_start_; rates_[m] is the latest closed window's rate
  // of mode m (0: none yet; plain starts at the probe's estimate).
  bool trial_ ABSL_GUARDED_BY(mu_) = false;
  TransferMode incumbent_ ABSL_GUARDED_BY(mu_) = TransferMode::kPlain;
  double rates_[2] ABSL_GUARDED_BY(mu_) = {0, 0};
  int windows_since_trial_ ABSL_GUARDED_BY(mu_) = 0;
  int trial_gap_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t changes_ ABSL_GUARDED_BY(mu_) = 0;
  // Pings (see above): far_: decided by them; near_: one answered below
  // kFarRoundTrip; pings_done_: the start-up pings are over.
  bool far_ ABSL_GUARDED_BY(mu_) = false;
  bool near_ ABSL_GUARDED_BY(mu_) = false;
  bool pings_done_ ABSL_GUARDED_BY(mu_) = false;
  int pings_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration min_ping_ ABSL_GUARDED_BY(mu_) = absl::InfiniteDuration();
  absl::Time last_ping_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace cairn::client::gocacheprog

#endif  // CAIRN_CLIENT_GOCACHEPROG_TRANSFER_MODE_H_
