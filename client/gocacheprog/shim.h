// Shim: the GOCACHEPROG protocol loop.
//
// Run() announces {"ID":0,"KnownCommands":["get","put","close"]} at once,
// then reads requests from `in_fd`. Put bodies are streamed (base64 decoded
// on the fly) into the local store and committed by the reading thread, in
// request order; a get the local tier answers is answered by the reading
// thread at once (no hand-off), the others are handled on a bounded worker
// pool, so many are in flight at once and answered in any order. Every
// response is one whole line written under one lock.
//
//   get:   local tier, then the remote (through a circuit breaker); a remote
//          hit is stored locally first so its DiskPath is a local file.
//          Latency budget: a get waits for the remote at most `get_budget`
//          and then answers a miss (its fetch ends in the background by the
//          call deadline); a body whose expected fetch time (the measured
//          round trip plus its size at the measured per-fetch rate) would
//          end past the budget is not fetched at all.
//   put:   the body must hash to OutputID (else Err); stored locally and
//          answered at once; the upload is queued for background workers
//          (bounded queue; dropped, counted, when full). Never in read-only.
//   close: waits for the answers owed, then for queued uploads up to
//          `flush_timeout`, then (same deadline) stores the prefetch
//          manifest unless the fetched one lists exactly the ActionIDs of
//          this run (in any order), answers, and returns OK.
//
// Prefetch (when `prefetch` and `prefetch_scope` is set and there is a
// remote): Run() starts a background thread that fetches the manifest for the
// scope (manifest.h) and downloads its entries into the local store, at most
// `prefetch_max_bytes` in all, exactly as a remote hit would. Depth: it keeps
// PrefetchDepth() fetches in flight, recomputed as fetches end from the
// measured round trip, the link rate (the faster of the best single fetch
// and the prefetch's overall rate) and the mean body size, so the bytes in
// flight cover the link's bandwidth x delay; between `prefetch_min_depth`
// and `prefetch_threads`. A get for an ActionID being fetched (by the prefetch
// or by another get) waits for that fetch instead of asking the remote again; a
// get answered from a prefetched entry counts as a prefetch hit. Prefetch
// never answers anything itself: any failure leaves the normal path, and a
// failing remote trips the same breaker. The ActionIDs the go command asked
// for with a get and that a hit or a put resolved, plus empty puts, in
// request order, become the next manifest; a non-empty put no get asked for
// is left out (a cold gh build puts 1058 "srcfiles" lists no warm build asks
// for, and 1035 empty "stdout" records every warm build reads).
//
// Bundles (when also `bundle`; bundle.h): before the manifest, the
// prefetch thread reads the scope's bundle index. When there is one, it
// replaces the manifest: every ActionID the index gives a body for counts
// as in flight at once (unless the local tier has it: a part whose
// entries are all local is not read), its parts are read a few at a time
// (between `bundle_min_parts` and 8 in flight, PrefetchDepth() of the parts' round
// trip, rate and mean size), each streamed (through zstd for a zstd part)
// and cut into bodies
// that are stored (each checked against its OutputID by the BodyWriter) and
// answer their entries; a body that does not match, a part that is missing
// or ends early, or a remote error releases the entries concerned to the
// normal path (which refetches them one by one). Entries without a body in
// the bundle are prefetched one by one as the manifest's are. A get for an
// entry of a part still to come waits for it only while the part's measured
// progress says it arrives within max(100 ms, twice the get's own expected
// fetch time); otherwise, and after a failure, it fetches the entry itself.
// At close, after the manifest, the shim stores a new bundle of this run's
// list unless the bundle it read (if any) differs from it by at most
// `bundle_rebuild_fraction` (ActionIDs new to the list, or listed but not
// asked, as a fraction of the list's or the bundle's size): bodies in
// request order, at most `bundle_max_bytes` of them, in parts of about
// `bundle_part_bytes` (PlanBundle()), each written from the local files
// into a local temp body, uploaded (unless the remote has it), then the
// index; memory stays flat in the bundle's size. Parts are plain when the
// remote moves blobs zstd-compressed (Remote::CompressesBlobs(): they travel
// compressed both ways, and cairn-server recompresses them at rest at its
// --zstd_rest_level), else one zstd frame each (level 3).
//
// Fail-open: a remote error other than NOT_FOUND never reaches the go
// command. It is reported once on stderr, then the breaker keeps the remote
// out of the path for `breaker_cooldown` before one request probes it again.
//
// Malformed input (bad JSON, bad base64, a body line that is not a base64
// string, input ending inside a line) ends Run() with INVALID_ARGUMENT naming
// the line; the caller prints it and exits non-zero.
//
// Thread safety: one Run() per Shim. Stats may be read from any thread.
#ifndef CAIRN_CLIENT_GOCACHEPROG_SHIM_H_
#define CAIRN_CLIENT_GOCACHEPROG_SHIM_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/gocacheprog/local_store.h"
#include "client/gocacheprog/remote.h"

namespace cairn::client::gocacheprog {

struct ShimOptions {
  bool read_only = false;
  absl::Duration flush_timeout = absl::Seconds(30);
  absl::Duration breaker_cooldown = absl::Seconds(30);
  int workers = 16;
  int max_pending_requests = 256;
  int upload_threads = 4;
  int max_pending_uploads = 4096;
  // Logs one line per request (command, id, outcome, latency) to stderr.
  bool verbose = false;
  // Shown in the one-time warning about a failing remote.
  std::string remote_name;
  // Prefetch (see above). An empty scope turns it off.
  bool prefetch = true;
  std::string prefetch_scope;
  int prefetch_threads = 64;
  // 64: with compressed bodies PrefetchDepth() of the measured throughput
  // stayed at its minimum (the throughput it measures is what that depth
  // achieved); gh warm remote under 5 ms each way at 200 Mbit/s took
  // 14.72 s at 16 deep against 9.39 s at 64 (2026-12-02, one loaded run).
  int prefetch_min_depth = 64;
  int64_t prefetch_max_bytes = int64_t{2} << 30;
  // Latency budget of one get (see above); zero or less: none.
  absl::Duration get_budget = absl::Seconds(2);
  // Bundles (see above).
  bool bundle = true;
  int64_t bundle_max_bytes = int64_t{256} << 20;
  int64_t bundle_part_bytes = int64_t{8} << 20;
  double bundle_rebuild_fraction = 0.1;
  int bundle_min_parts = 3;
};

struct ShimStats {
  std::atomic<int64_t> gets{0};
  std::atomic<int64_t> local_hits{0};
  std::atomic<int64_t> remote_hits{0};
  std::atomic<int64_t> misses{0};
  std::atomic<int64_t> puts{0};
  std::atomic<int64_t> errors{0};
  std::atomic<int64_t> uploads{0};
  std::atomic<int64_t> upload_failures{0};
  std::atomic<int64_t> uploads_dropped{0};
  std::atomic<int64_t> bytes_down{0};
  std::atomic<int64_t> bytes_up{0};
  std::atomic<int64_t> remote_wait_ns{0};
  // Entries downloaded by the prefetch, gets answered from them, and bytes.
  std::atomic<int64_t> prefetched{0};
  std::atomic<int64_t> prefetch_hits{0};
  std::atomic<int64_t> prefetch_bytes{0};
  // Manifests stored at close (0 or 1).
  std::atomic<int64_t> manifests_stored{0};
  // Bundle parts read to the end, their bytes as stored (compressed),
  // entries stored from them, gets answered from those entries, gets that
  // fetched an entry themselves instead of waiting for its part, and
  // bundles stored at close (0 or 1).
  std::atomic<int64_t> bundle_parts{0};
  std::atomic<int64_t> bundle_bytes{0};
  std::atomic<int64_t> bundle_entries{0};
  std::atomic<int64_t> bundle_hits{0};
  std::atomic<int64_t> bundle_claims{0};
  std::atomic<int64_t> bundles_stored{0};
  // Gets answered "miss" when the budget ran out, and bodies not fetched
  // because they would have arrived after it.
  std::atomic<int64_t> budget_misses{0};
  std::atomic<int64_t> budget_skips{0};
  // Latest estimates: round trip (µs) and per-fetch rate (bytes/s).
  std::atomic<int64_t> rtt_us{0};
  std::atomic<int64_t> link_bytes_per_s{0};
  // Prefetch fetches allowed in flight (latest PrefetchDepth()).
  std::atomic<int64_t> prefetch_depth{0};

  // Returns the one-line summary printed with --stats.
  std::string Summary() const;
};

// Returns how many fetches to keep in flight so that the body bytes in
// flight cover what a link of `bytes_per_second` moves during the two round
// trips of `rtt` a fetch waits (entry, then body): 1 + ceil(2 x rtt x rate /
// mean body), within [min_depth, max_depth] (max wins). An unknown round
// trip, rate or mean size (zero or less) gives min_depth.
int PrefetchDepth(absl::Duration rtt, double bytes_per_second,
                  int64_t mean_body_bytes, int min_depth, int max_depth);

class Shim {
 public:
  // `local` is required; `remote` may be null (purely local cache). Neither
  // is owned; both must outlive the Shim.
  Shim(LocalStore* local, Remote* remote, ShimOptions options);
  ~Shim();
  Shim(const Shim&) = delete;
  Shim& operator=(const Shim&) = delete;

  // Speaks the protocol until "close" (answered) or end of input. Returns OK
  // then; INVALID_ARGUMENT for malformed input; INTERNAL for I/O errors.
  absl::Status Run(int in_fd, int out_fd);

  const ShimStats& stats() const { return stats_; }

 private:
  class Impl;
  ShimStats stats_;  // Before impl_: outlives the threads impl_ joins.
  std::unique_ptr<Impl> impl_;
};

}  // namespace cairn::client::gocacheprog

#endif  // CAIRN_CLIENT_GOCACHEPROG_SHIM_H_
