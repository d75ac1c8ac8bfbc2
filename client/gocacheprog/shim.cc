#include "client/gocacheprog/shim.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <deque>
#include <functional>
#include <limits>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "cas/digest.h"
#include "cas/zstd_codec.h"
#include "client/gocacheprog/bundle.h"
#include "client/gocacheprog/codec.h"
#include "client/gocacheprog/manifest.h"

// Threads: the caller's thread reads requests, streams put bodies to disk and
// commits puts; a WorkQueue of `workers` threads answers gets; another
// WorkQueue of `upload_threads` uploads puts. Responses are written under
// `write_mu_` only. Lock order: none is held while taking another, and no lock
// is held across I/O except `write_mu_` around the single write of one
// response. Prefetch: one thread reads the manifest and feeds a third
// WorkQueue of `prefetch_threads`, at most the current depth at a time
// (`depth_mu_`, held only while reading the measurements, whose LinkEstimate
// mutex is a leaf). `flight_mu_` and `seen_mu_` are leaves (never held while
// taking another lock or doing I/O), except that `flight_mu_` may take a
// LinkEstimate's leaf mutex (the bundle's arrival estimate). Bundle: the
// prefetch thread starts part reads on the prefetch WorkQueue, at most the
// part depth at a time (`depth_mu_`); `bundle_pending_` (under `flight_mu_`)
// holds the ActionIDs whose place in `in_flight_` belongs to the bundle.

namespace cairn::client::gocacheprog {
namespace {

constexpr int kHashSize = 32;

// A bounded FIFO of tasks run by a fixed set of threads.
class WorkQueue {
 public:
  WorkQueue(int threads, size_t capacity) : capacity_(capacity) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] { Loop(); });
    }
  }
  ~WorkQueue() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      queue_.clear();
      not_empty_.SignalAll();
    }
    for (std::thread& t : threads_) {
      t.join();
    }
  }

  // Queues `task`. When full, waits for room if `block`, else returns false.
  bool Submit(std::function<void()> task, bool block) {
    absl::MutexLock lock(&mu_);
    if (!block && queue_.size() >= capacity_) {
      return false;
    }
    while (queue_.size() >= capacity_) {
      not_full_.Wait(&mu_);
    }
    queue_.push_back(std::move(task));
    not_empty_.Signal();
    return true;
  }

  // Waits until no task is queued or running, or `deadline`. Returns the
  // number of tasks still owed (0 = idle).
  size_t WaitIdle(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    while (!queue_.empty() || running_ > 0) {
      if (idle_.WaitWithDeadline(&mu_, deadline)) {
        break;  // Timed out.
      }
    }
    return queue_.size() + running_;
  }

 private:
  void Loop() {
    for (;;) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        while (!stop_ && queue_.empty()) {
          not_empty_.Wait(&mu_);
        }
        if (stop_) {
          return;
        }
        task = std::move(queue_.front());
        queue_.pop_front();
        ++running_;
        not_full_.Signal();
      }
      task();
      absl::MutexLock lock(&mu_);
      if (--running_ == 0 && queue_.empty()) {
        idle_.SignalAll();
      }
    }
  }

  const size_t capacity_;
  absl::Mutex mu_;
  absl::CondVar not_empty_;
  absl::CondVar not_full_;
  absl::CondVar idle_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Keeps a failing remote out of the request path for a cooldown period.
class Breaker {
 public:
  Breaker(absl::Duration cooldown, std::string name)
      : cooldown_(cooldown), name_(std::move(name)) {}

  // Returns true when the remote may be called now. After a cooldown one
  // caller gets through as a probe; the others keep skipping until it ends.
  bool Allow() {
    absl::MutexLock lock(&mu_);
    absl::Time now = absl::Now();
    if (now < open_until_) {
      return false;
    }
    if (open_until_ != absl::InfinitePast()) {
      open_until_ = now + cooldown_;  // Half-open: this call probes.
    }
    return true;
  }
  void Success() {
    absl::MutexLock lock(&mu_);
    open_until_ = absl::InfinitePast();
  }
  void Failure(const absl::Status& s) {
    bool warn = false;
    {
      absl::MutexLock lock(&mu_);
      open_until_ = absl::Now() + cooldown_;
      warn = !warned_;
      warned_ = true;
    }
    if (warn) {
      std::fprintf(stderr,
                   "cairn-gocacheprog: warning: remote cache %s is failing "
                   "(%s); using the local cache only, retrying every %s\n",
                   name_.c_str(), s.ToString().c_str(),
                   absl::FormatDuration(cooldown_).c_str());
    }
  }

 private:
  const absl::Duration cooldown_;
  const std::string name_;
  absl::Mutex mu_;
  absl::Time open_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool warned_ ABSL_GUARDED_BY(mu_) = false;
};

// Round trip and per-fetch throughput of the remote, as exponentially
// weighted averages of what the fetches measured.
class LinkEstimate {
 public:
  void AddRoundTrip(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    rtt_ = rtt_ == absl::ZeroDuration() ? d : rtt_ * 0.8 + d * 0.2;
    min_rtt_ = min_rtt_ == absl::ZeroDuration() ? d : std::min(min_rtt_, d);
  }
  // Returns the shortest round trip seen: the link's delay without the
  // queueing that many fetches in flight add.
  absl::Duration min_rtt() const {
    absl::MutexLock lock(&mu_);
    return min_rtt_;
  }
  void AddTransfer(int64_t bytes, absl::Duration d) {
    if (bytes < kMinSample || d <= absl::ZeroDuration()) {
      return;  // Small bodies measure the round trip, not the link.
    }
    const double bps = static_cast<double>(bytes) / absl::ToDoubleSeconds(d);
    absl::MutexLock lock(&mu_);
    bps_ = bps_ == 0 ? bps : bps_ * 0.8 + bps * 0.2;
    best_bps_ = std::max(best_bps_, bps);
  }
  // Returns the fastest single transfer seen (bytes/s): a lower bound on the
  // link's rate that sharing the link with other fetches does not lower.
  double best_bytes_per_second() const {
    absl::MutexLock lock(&mu_);
    return best_bps_;
  }
  // Returns the expected time to fetch a body of `size` bytes once its
  // entry is known: one more round trip plus the bytes at the measured rate
  // (unknown rate: the round trip alone).
  absl::Duration BodyTime(int64_t size) const {
    absl::MutexLock lock(&mu_);
    absl::Duration t = rtt_;
    if (bps_ > 0) {
      t += absl::Seconds(static_cast<double>(size) / bps_);
    }
    return t;
  }
  absl::Duration rtt() const {
    absl::MutexLock lock(&mu_);
    return rtt_;
  }
  double bytes_per_second() const {
    absl::MutexLock lock(&mu_);
    return bps_;
  }

 private:
  static constexpr int64_t kMinSample = 64 * 1024;
  mutable absl::Mutex mu_;
  absl::Duration rtt_ ABSL_GUARDED_BY(mu_);
  absl::Duration min_rtt_ ABSL_GUARDED_BY(mu_);
  double bps_ ABSL_GUARDED_BY(mu_) = 0;
  double best_bps_ ABSL_GUARDED_BY(mu_) = 0;
};

// Classifies a remote error as the get path does: an absent or bad entry is
// an answer; anything else trips the breaker. Returns true for a failure.
bool RemoteFailed(const absl::Status& s) {
  return s.code() != absl::StatusCode::kNotFound &&
         s.code() != absl::StatusCode::kDataLoss;
}

std::string ShortHex(absl::string_view id) {
  return cas::HexEncode(id.substr(0, 8));
}

// The largest bundle index read: every part and record at its limit.
constexpr int64_t kMaxBundleIndexBytes =
    static_cast<int64_t>(kBundleMagic.size()) + 8 + 49 * kMaxBundleParts +
    124 * static_cast<int64_t>(kMaxManifestIds);
// A get waits for its body's part when it is expected within the longer of
// this and twice the get's own expected fetch time.
constexpr absl::Duration kBundleWaitFloor = absl::Milliseconds(100);
// How often a get waiting for a part checks the part's progress.
constexpr absl::Duration kBundleRecheck = absl::Milliseconds(20);
// Bundle bytes to receive before its rate is trusted.
constexpr int64_t kBundleRateSample = 256 * 1024;
constexpr int kMaxPartsInFlight = 8;
// Pieces bodies are cut from, and bytes read from a local file at a time.
constexpr size_t kBundlePiece = 256 * 1024;
constexpr size_t kReadChunk = 1 << 20;
// Compression level of parts: written once, read by every machine.
constexpr int kPartZstdLevel = 3;

// Where the body of an ActionID the bundle is fetching lies.
struct Pending {
  uint32_t part = kNoPart;  // kNoPart: an empty body, stored at once.
  int64_t end = 0;          // Offset just past the body in the content.
  int64_t size = 0;
};

struct PartProgress {
  bool started = false;
  bool done = false;
  int64_t received = 0;  // Content bytes cut into bodies so far.
};

// Reads `size` bytes of the file at `path` into `sink`, a chunk at a time.
// INTERNAL when it cannot be read or has another length.
absl::Status ReadFileTo(
    const std::string& path, int64_t size,
    absl::FunctionRef<absl::Status(absl::string_view)> sink) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("open ", path));
  }
  absl::Cleanup close_fd = [fd] { close(fd); };
  std::string buf(kReadChunk, '\0');
  int64_t total = 0;
  for (;;) {
    const ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return absl::InternalError(absl::StrCat("read ", path));
    }
    if (n == 0) {
      break;
    }
    total += n;
    if (total > size) {
      break;
    }
    if (absl::Status s = sink(absl::string_view(buf.data(), n)); !s.ok()) {
      return s;
    }
  }
  if (total != size) {
    return absl::InternalError(
        absl::StrCat(path, " is not ", size, " bytes long"));
  }
  return absl::OkStatus();
}

}  // namespace

int PrefetchDepth(absl::Duration rtt, double bytes_per_second,
                  int64_t mean_body_bytes, int min_depth, int max_depth) {
  int depth = min_depth;
  if (rtt > absl::ZeroDuration() && bytes_per_second > 0 &&
      mean_body_bytes > 0) {
    const double in_flight =
        2 * absl::ToDoubleSeconds(rtt) * bytes_per_second / mean_body_bytes;
    depth = static_cast<int>(std::min<double>(1 + std::ceil(in_flight),
                                              std::numeric_limits<int>::max()));
  }
  return std::max(1, std::min(std::max(depth, min_depth), max_depth));
}

std::string ShimStats::Summary() const {
  return absl::StrFormat(
      "cairn-gocacheprog: stats: gets=%d local_hits=%d remote_hits=%d "
      "misses=%d puts=%d errors=%d uploads=%d upload_failures=%d "
      "uploads_dropped=%d bytes_down=%d bytes_up=%d remote_wait=%.3fs "
      "prefetched=%d prefetch_hits=%d prefetch_bytes=%d manifests_stored=%d "
      "over_budget=%d bodies_skipped=%d rtt=%.1fms link=%.1fMB/s "
      "prefetch_depth=%d bundle_parts=%d bundle_bytes=%d bundle_entries=%d "
      "bundle_hits=%d bundle_claims=%d bundles_stored=%d",
      gets.load(), local_hits.load(), remote_hits.load(), misses.load(),
      puts.load(), errors.load(), uploads.load(), upload_failures.load(),
      uploads_dropped.load(), bytes_down.load(), bytes_up.load(),
      remote_wait_ns.load() / 1e9, prefetched.load(), prefetch_hits.load(),
      prefetch_bytes.load(), manifests_stored.load(), budget_misses.load(),
      budget_skips.load(), rtt_us.load() / 1e3, link_bytes_per_s.load() / 1e6,
      prefetch_depth.load(), bundle_parts.load(), bundle_bytes.load(),
      bundle_entries.load(), bundle_hits.load(), bundle_claims.load(),
      bundles_stored.load());
}

class Shim::Impl {
 public:
  Impl(LocalStore* local, Remote* remote, ShimOptions options, ShimStats* stats)
      : local_(local),
        remote_(remote),
        options_(std::move(options)),
        stats_(stats),
        breaker_(options_.breaker_cooldown, options_.remote_name),
        prefetch_enabled_(remote_ != nullptr && options_.prefetch &&
                          !options_.prefetch_scope.empty()),
        uploads_(options_.upload_threads, options_.max_pending_uploads),
        prefetch_pool_(prefetch_enabled_ ? options_.prefetch_threads : 0,
                       2 * static_cast<size_t>(options_.prefetch_threads)),
        fetch_pool_(remote_ != nullptr ? options_.workers : 0,
                    static_cast<size_t>(options_.max_pending_requests)),
        pool_(options_.workers, options_.max_pending_requests) {}
  ~Impl() { StopPrefetch(absl::InfiniteFuture()); }

  absl::Status Run(int in_fd, int out_fd);

 private:
  void Respond(const Response& r);
  void Log(const Request& req, absl::string_view outcome, absl::Time start);
  // Handles one parsed request other than "close".
  absl::Status Dispatch(LineReader& reader, const Request& req);
  // Waits for pending answers, then returns `s` naming the input line.
  absl::Status Fail(const LineReader& reader, const absl::Status& s);
  absl::Status ReadPut(LineReader& reader, const Request& req);
  void HandleGet(const Request& req);
  // Answers `req` when the local tier has its entry; returns false (nothing
  // answered) otherwise. Called on the reading thread: a local hit costs a
  // few small file operations, less than handing it to a worker.
  bool AnswerLocalHit(const Request& req);
  // Fills `r` from `hit`, answers, counts and logs a hit.
  void RespondHit(const Request& req, const LocalHit& hit, bool local,
                  absl::Time start);
  // Fetches `action_id` from the remote into the local store, skipping a
  // body not expected to arrive by `deadline`. Returns true when stored.
  bool GetRemote(const std::string& action_id, absl::Time deadline);
  // Starts a fetch of `action_id` for a get on fetch_pool_ unless one (a
  // get's or the prefetch's) is in flight. Returns true when it started one.
  bool StartFetch(const std::string& action_id, absl::Time deadline);
  // Waits until no fetch of `action_id` is in flight, or `deadline`.
  // Returns true when none is.
  bool WaitFlight(const std::string& action_id, absl::Time deadline);
  void FinishPut(const Request& req, std::shared_ptr<BodyWriter> body,
                 absl::Status body_status);
  void QueueUpload(const std::string& action_id, const Entry& entry,
                   const std::string& path);
  void Upload(const std::string& action_id, const Entry& entry,
              const std::string& path);
  void Close(const Request& req);
  // Stores this run's manifest unless it equals the fetched one (or the
  // fetched bundle's list), then its bundle (StoreBundle).
  void StoreManifest(absl::Time deadline);
  // Stores a bundle of `ids` unless the fetched one is close enough.
  void StoreBundle(const std::vector<std::string>& ids, absl::Time deadline);
  // Counts a failed store of a manifest, bundle part or index against the
  // breaker, except a refusal (read-only cache, rejected blob), which says
  // nothing about the remote's health; returns whether it counted.
  bool StoreFailed(const absl::Status& s);
  // Compresses the bodies of one planned part from the local files at
  // `paths` (by OutputID) into a local body; fills in `part`'s hash and
  // blob size and returns the body's path.
  absl::StatusOr<std::string> WritePart(
      const std::vector<PartBody>& bodies,
      const absl::flat_hash_map<std::string, std::string>& paths,
      BundlePart* part);

  // Stops the prefetch and waits, until `deadline`, for its thread and tasks
  // to stop using the remote (each call ends by its own deadline; the
  // destructor waits for them). When it returns true they have stopped and
  // fetched_manifest_ holds the manifest if the prefetch read one.
  bool StopPrefetch(absl::Time deadline);
  // Prefetch thread: reads the bundle index or else the manifest.
  void Prefetch();
  // Queues one PrefetchOne task per ActionID, the depth at a time.
  void PrefetchIds(std::vector<std::string> ids);
  void PrefetchOne(const std::string& action_id);
  // Takes the bundle's ActionIDs as in flight and reads its parts; then
  // prefetches its bodiless entries one by one.
  void PrefetchBundle(BundleIndex index);
  // Stores the bundle's empty bodies' entries.
  void StoreEmptyEntries();
  // Reads part `p` of bundle_, storing its bodies and their entries.
  void FetchPart(uint32_t p);
  // Stores the entries of a body cut from a part (`ok`: the body is in the
  // local store) and ends their flights.
  void FinishPartBody(const PartBody& body, bool ok);
  // Returns true when a record of `body` still waits for it.
  bool BodyWanted(const PartBody& body);
  // Returns true when a record of part `p` still waits for its body.
  bool PartWanted(uint32_t p);
  // Gives the ActionIDs of `records` that the bundle still holds back to
  // the normal path.
  void ReleaseRecords(absl::Span<const size_t> records);
  // Returns true when the bundle's body for `action_id` (one in
  // bundle_pending_) is expected soon enough for a get to wait for it.
  bool BundleArrivesSoon(const std::string& action_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(flight_mu_);
  // As AcquirePrefetchSlot, for part reads.
  bool AcquirePartSlot();
  void ReleasePartSlot();
  // Waits until fewer prefetch fetches than the current depth are in flight
  // and takes a place; false (nothing taken) once the prefetch stops.
  bool AcquirePrefetchSlot();
  void ReleasePrefetchSlot();
  // Returns PrefetchDepth() of the prefetch's measurements so far.
  int CurrentPrefetchDepth();
  // PrefetchDepth() for `count` transfers of `bytes` in all since the
  // prefetch started, over the prefetch link's round trip and the faster
  // of its best single transfer and that overall rate.
  int DepthFor(int64_t count, int64_t bytes, int min_depth, int max_depth);
  // Ends a fetch started by StartFetch or PrefetchOne.
  void EndFlight(const std::string& action_id);
  // Returns where a stored entry came from, once: the per-entry prefetch,
  // a bundle part, or neither.
  enum class Source { kNone, kPrefetch, kBundle };
  Source TakePrefetched(const std::string& action_id);
  // Manifest bookkeeping: a get asked for `action_id` (request order), and
  // it was answered with a hit or put.
  void RecordAsked(const std::string& action_id);
  void RecordResolved(const std::string& action_id);

  LocalStore* const local_;
  Remote* const remote_;
  const ShimOptions options_;
  ShimStats* const stats_;
  Breaker breaker_;
  LinkEstimate link_;
  std::atomic<bool> upload_denied_{false};
  const bool prefetch_enabled_;
  std::atomic<bool> prefetch_stop_{false};
  std::atomic<int64_t> prefetch_reserved_{0};
  std::thread prefetcher_;
  absl::Notification prefetcher_done_;
  // The prefetch's own link measurements (gets keep theirs in link_).
  LinkEstimate prefetch_link_;
  absl::Time prefetch_start_;  // Set before the first prefetch task.
  absl::Mutex depth_mu_;
  absl::CondVar depth_cv_;
  int prefetch_active_ ABSL_GUARDED_BY(depth_mu_) = 0;

  absl::Mutex flight_mu_;
  absl::CondVar flight_done_;
  absl::flat_hash_set<std::string> in_flight_ ABSL_GUARDED_BY(flight_mu_);
  absl::flat_hash_set<std::string> prefetched_ ABSL_GUARDED_BY(flight_mu_);
  absl::flat_hash_set<std::string> bundled_ ABSL_GUARDED_BY(flight_mu_);
  absl::flat_hash_map<std::string, Pending> bundle_pending_
      ABSL_GUARDED_BY(flight_mu_);
  std::vector<PartProgress> part_progress_ ABSL_GUARDED_BY(flight_mu_);
  int64_t bundle_received_ ABSL_GUARDED_BY(flight_mu_) = 0;
  int parts_active_ ABSL_GUARDED_BY(flight_mu_) = 0;
  absl::Time bundle_start_ ABSL_GUARDED_BY(flight_mu_);
  // The bundle read, set by the prefetch thread before any part task.
  BundleIndex bundle_;
  std::vector<std::vector<PartBody>> bundle_bodies_;
  int parts_in_flight_ ABSL_GUARDED_BY(depth_mu_) = 0;

  absl::Mutex seen_mu_;
  std::vector<std::string> asked_ ABSL_GUARDED_BY(seen_mu_);
  absl::flat_hash_set<std::string> asked_set_ ABSL_GUARDED_BY(seen_mu_);
  absl::flat_hash_set<std::string> resolved_ ABSL_GUARDED_BY(seen_mu_);
  std::string fetched_manifest_ ABSL_GUARDED_BY(seen_mu_);
  // The ActionIDs of the bundle read, if one was.
  bool bundle_read_ ABSL_GUARDED_BY(seen_mu_) = false;
  absl::flat_hash_set<std::string> bundle_ids_ ABSL_GUARDED_BY(seen_mu_);
  int out_fd_ = -1;
  absl::Mutex write_mu_;
  bool write_failed_ ABSL_GUARDED_BY(write_mu_) = false;
  // Declared last: destroyed first, so no task outlives the members above.
  WorkQueue uploads_;
  WorkQueue prefetch_pool_;
  WorkQueue fetch_pool_;
  WorkQueue pool_;
};

void Shim::Impl::Respond(const Response& r) {
  const std::string line = EncodeResponse(r);
  absl::MutexLock lock(&write_mu_);
  absl::string_view rest = line;
  while (!rest.empty() && !write_failed_) {
    ssize_t n = write(out_fd_, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      write_failed_ = true;  // The go command is gone; nothing to tell.
      break;
    }
    rest.remove_prefix(n);
  }
}

void Shim::Impl::Log(const Request& req, absl::string_view outcome,
                     absl::Time start) {
  if (!options_.verbose) {
    return;
  }
  std::string line =
      absl::StrFormat("cairn-gocacheprog: %s id=%d action=%s %s %.3fms\n",
                      req.command, req.id, ShortHex(req.action_id), outcome,
                      absl::ToDoubleMilliseconds(absl::Now() - start));
  std::fputs(line.c_str(), stderr);
}

absl::Status Shim::Impl::Run(int in_fd, int out_fd) {
  out_fd_ = out_fd;
  Response hello;
  hello.known_commands = {"get", "put", "close"};
  Respond(hello);
  if (prefetch_enabled_) {
    prefetcher_ = std::thread([this] {
      Prefetch();
      prefetcher_done_.Notify();
    });
  } else {
    prefetcher_done_.Notify();
  }
  // Nothing is prefetched after Run returns; calls in flight end by their
  // deadlines, and the destructor waits for them.
  absl::Cleanup stop_prefetch = [this] { prefetch_stop_.store(true); };
  LineReader reader(in_fd);
  std::string line;
  for (;;) {
    absl::StatusOr<bool> more = reader.ReadLine(&line);
    if (!more.ok()) {
      return Fail(reader, more.status());
    }
    if (!*more) {  // End of input without "close": the go command is gone.
      pool_.WaitIdle(absl::InfiniteFuture());
      uploads_.WaitIdle(absl::Now() + options_.flush_timeout);
      return absl::OkStatus();
    }
    if (absl::StripAsciiWhitespace(line).empty()) {
      continue;  // The go command follows each request with a blank line.
    }
    absl::StatusOr<Request> req = ParseRequest(line);
    if (!req.ok()) {
      return Fail(reader, req.status());
    }
    if (req->command == "close") {
      Close(*req);
      return absl::OkStatus();
    }
    if (absl::Status s = Dispatch(reader, *req); !s.ok()) {
      return Fail(reader, s);
    }
  }
}

absl::Status Shim::Impl::Dispatch(LineReader& reader, const Request& req) {
  if (req.command == "put") {
    return ReadPut(reader, req);
  }
  if (req.command == "get") {
    if (req.action_id.size() == kHashSize) {
      RecordAsked(req.action_id);
    }
    if (!AnswerLocalHit(req)) {
      pool_.Submit([this, req] { HandleGet(req); }, /*block=*/true);
    }
    return absl::OkStatus();
  }
  Response r;
  r.id = req.id;
  r.err = absl::StrCat("unknown command \"", req.command, "\"");
  Respond(r);
  return absl::OkStatus();
}

absl::Status Shim::Impl::Fail(const LineReader& reader, const absl::Status& s) {
  pool_.WaitIdle(absl::InfiniteFuture());  // Answer what was understood.
  return absl::Status(
      s.code(), absl::StrCat(s.code() == absl::StatusCode::kInvalidArgument
                                 ? "malformed input on line "
                                 : "reading requests at line ",
                             reader.line_number(), ": ", s.message()));
}

absl::Status Shim::Impl::ReadPut(LineReader& reader, const Request& req) {
  absl::StatusOr<std::unique_ptr<BodyWriter>> writer = local_->NewBody();
  std::shared_ptr<BodyWriter> body =
      writer.ok() ? std::shared_ptr<BodyWriter>(*std::move(writer)) : nullptr;
  absl::Status body_status = writer.status();
  if (req.body_size > 0) {
    absl::StatusOr<int64_t> n =
        reader.ReadBase64Body([&](absl::string_view chunk) {
          return body != nullptr ? body->Append(chunk) : absl::OkStatus();
        });
    if (!n.ok() && n.status().code() == absl::StatusCode::kInvalidArgument) {
      return n.status();  // Malformed input: the stream is lost.
    }
    if (body_status.ok()) {
      body_status = n.status();
    }
  }
  // Committed here, in request order (a rename and a small file): a get
  // read after this put always sees it.
  FinishPut(req, std::move(body), body_status);
  return absl::OkStatus();
}

void Shim::Impl::FinishPut(const Request& req, std::shared_ptr<BodyWriter> body,
                           absl::Status body_status) {
  const absl::Time start = absl::Now();
  stats_->puts.fetch_add(1);
  Response r;
  r.id = req.id;
  absl::StatusOr<std::string> path = absl::InternalError("no body");
  if (!body_status.ok()) {
    path = body_status;
  } else if (req.action_id.size() != kHashSize ||
             req.output_id.size() != kHashSize) {
    path = absl::InvalidArgumentError(
        "ActionID and OutputID must be 32 bytes each");
  } else {
    path = body->Commit(req.output_id, req.body_size);
  }
  Entry entry{req.output_id, req.body_size, absl::Now()};
  if (path.ok()) {
    absl::Status s = local_->PutEntry(req.action_id, entry);
    if (!s.ok()) {
      path = s;
    }
  }
  if (!path.ok()) {
    stats_->errors.fetch_add(1);
    r.err = absl::StrCat("cairn-gocacheprog: put ", ShortHex(req.action_id),
                         ": ", path.status().message());
    Respond(r);
    Log(req, absl::StrCat("error: ", path.status().message()), start);
    return;
  }
  r.disk_path = *path;
  Respond(r);
  Log(req, "stored", start);
  // In the manifest when a get asked for it (RecordAsked), or when empty:
  // cmd/go puts an empty "stdout" record per compiled package unasked and
  // reads it back in every warm build; the non-empty puts it makes unasked
  // ("srcfiles" lists) a plain build never reads.
  if (req.body_size == 0) {
    RecordAsked(req.action_id);
  }
  RecordResolved(req.action_id);
  QueueUpload(req.action_id, entry, *path);
}

bool Shim::Impl::AnswerLocalHit(const Request& req) {
  if (req.action_id.size() != kHashSize) {
    return false;
  }
  const absl::Time start = absl::Now();
  std::optional<LocalHit> hit = local_->Get(req.action_id);
  if (!hit.has_value()) {
    return false;
  }
  stats_->gets.fetch_add(1);
  RespondHit(req, *hit, /*local=*/true, start);
  return true;
}

void Shim::Impl::RespondHit(const Request& req, const LocalHit& hit, bool local,
                            absl::Time start) {
  absl::string_view outcome = "local-hit";
  const Source source =
      local ? TakePrefetched(req.action_id) : Source::kNone;
  if (source == Source::kPrefetch) {
    stats_->prefetch_hits.fetch_add(1);
    outcome = "prefetch-hit";
  } else if (source == Source::kBundle) {
    stats_->bundle_hits.fetch_add(1);
    outcome = "bundle-hit";
  } else if (local) {
    stats_->local_hits.fetch_add(1);
  } else {
    stats_->remote_hits.fetch_add(1);
    outcome = "remote-hit";
  }
  RecordResolved(req.action_id);
  Response r;
  r.id = req.id;
  r.output_id = hit.entry.output_id;
  r.size = hit.entry.size;
  r.time = hit.entry.time;
  r.disk_path = hit.disk_path;
  Respond(r);
  Log(req, outcome, start);
}

void Shim::Impl::HandleGet(const Request& req) {
  const absl::Time start = absl::Now();
  stats_->gets.fetch_add(1);
  Response r;
  r.id = req.id;
  if (req.action_id.size() != kHashSize) {
    stats_->errors.fetch_add(1);
    r.err = "cairn-gocacheprog: get: ActionID must be 32 bytes";
    Respond(r);
    return;
  }
  std::optional<LocalHit> hit = local_->Get(req.action_id);
  bool local = hit.has_value();
  if (!local && remote_ != nullptr) {
    // The budget bounds the wait: a slow or hanging remote costs at most
    // that (a fetch still running then ends by its call deadline and skips
    // the body). A prefetch of this id in flight is waited for first.
    const absl::Time deadline = options_.get_budget > absl::ZeroDuration()
                                    ? start + options_.get_budget
                                    : absl::InfiniteFuture();
    bool mine = false;
    bool done = true;
    // A second round only after waiting for someone else's fetch (e.g. the
    // prefetch) that did not store the entry.
    for (int round = 0; round < 2 && done && !mine && !hit.has_value();
         ++round) {
      mine = StartFetch(req.action_id, deadline);
      done = WaitFlight(req.action_id, deadline);
      hit = local_->Get(req.action_id);
    }
    stats_->remote_wait_ns.fetch_add(
        absl::ToInt64Nanoseconds(absl::Now() - start));
    local = hit.has_value() && !mine;
    if (!done && !hit.has_value()) {
      stats_->budget_misses.fetch_add(1);
    }
  }
  if (hit.has_value()) {
    RespondHit(req, *hit, local, start);
    return;
  }
  stats_->misses.fetch_add(1);
  r.miss = true;
  Respond(r);
  Log(req, "miss", start);
}

bool Shim::Impl::StartFetch(const std::string& action_id, absl::Time deadline) {
  {
    absl::MutexLock lock(&flight_mu_);
    if (in_flight_.contains(action_id)) {
      auto it = bundle_pending_.find(action_id);
      if (it == bundle_pending_.end() || BundleArrivesSoon(action_id)) {
        return false;
      }
      // Its part is far behind: the flight becomes this get's own.
      bundle_pending_.erase(it);
      stats_->bundle_claims.fetch_add(1);
    } else {
      in_flight_.insert(action_id);
    }
  }
  bool queued = fetch_pool_.Submit(
      [this, action_id, deadline] {
        GetRemote(action_id, deadline);
        EndFlight(action_id);
      },
      /*block=*/false);
  if (!queued) {
    EndFlight(action_id);  // Too many fetches still running: a miss.
  }
  return queued;
}

bool Shim::Impl::WaitFlight(const std::string& action_id, absl::Time deadline) {
  absl::MutexLock lock(&flight_mu_);
  while (in_flight_.contains(action_id)) {
    absl::Time until = deadline;
    if (bundle_pending_.contains(action_id)) {
      if (!BundleArrivesSoon(action_id)) {
        return true;  // Not worth waiting for: the caller fetches it.
      }
      until = std::min(deadline, absl::Now() + kBundleRecheck);
    }
    if (flight_done_.WaitWithDeadline(&flight_mu_, until) &&
        absl::Now() >= deadline) {
      return !in_flight_.contains(action_id);
    }
  }
  return true;
}

bool Shim::Impl::GetRemote(const std::string& action_id, absl::Time deadline) {
  if (remote_ == nullptr || !breaker_.Allow()) {
    return false;
  }
  absl::StatusOr<std::unique_ptr<BodyWriter>> body = local_->NewBody();
  if (!body.ok()) {
    return false;
  }
  const absl::Time start = absl::Now();
  absl::Time found = start;
  auto admit = [&](int64_t size) {
    found = absl::Now();
    link_.AddRoundTrip(found - start);
    stats_->rtt_us.store(absl::ToInt64Microseconds(link_.rtt()));
    if (found + link_.BodyTime(size) <= deadline) {
      return true;
    }
    stats_->budget_skips.fetch_add(1);
    return false;
  };
  absl::StatusOr<Entry> entry = remote_->Get(
      action_id, admit,
      [&](absl::string_view chunk) { return (*body)->Append(chunk); });
  if (!entry.ok()) {
    if (RemoteFailed(entry.status())) {
      breaker_.Failure(entry.status());
    } else {
      breaker_.Success();  // The remote answered; the entry is just absent.
    }
    return false;
  }
  breaker_.Success();
  link_.AddTransfer(entry->size, absl::Now() - found);
  stats_->link_bytes_per_s.store(
      static_cast<int64_t>(link_.bytes_per_second()));
  absl::StatusOr<std::string> path =
      (*body)->Commit(entry->output_id, entry->size);
  if (!path.ok() || !local_->PutEntry(action_id, *entry).ok()) {
    return false;  // A remote entry whose body does not match: a miss.
  }
  stats_->bytes_down.fetch_add(entry->size);
  return true;
}

void Shim::Impl::QueueUpload(const std::string& action_id, const Entry& entry,
                             const std::string& path) {
  if (remote_ == nullptr || options_.read_only || upload_denied_.load()) {
    return;
  }
  bool queued = uploads_.Submit(
      [this, action_id, entry, path] { Upload(action_id, entry, path); },
      /*block=*/false);
  if (!queued) {
    stats_->uploads_dropped.fetch_add(1);
  }
}

void Shim::Impl::Upload(const std::string& action_id, const Entry& entry,
                        const std::string& path) {
  if (upload_denied_.load() || !breaker_.Allow()) {
    stats_->upload_failures.fetch_add(1);
    return;
  }
  absl::Status s = remote_->Put(action_id, entry, path);
  if (s.ok()) {
    breaker_.Success();
    stats_->uploads.fetch_add(1);
    stats_->bytes_up.fetch_add(entry.size);
    return;
  }
  stats_->upload_failures.fetch_add(1);
  if (options_.verbose) {
    std::fprintf(stderr, "cairn-gocacheprog: upload action=%s failed: %s\n",
                 ShortHex(action_id).c_str(), s.ToString().c_str());
  }
  if (s.code() == absl::StatusCode::kPermissionDenied &&
      !upload_denied_.exchange(true)) {
    std::fprintf(stderr,
                 "cairn-gocacheprog: warning: remote cache refuses uploads "
                 "(%s); continuing read-only\n",
                 s.ToString().c_str());
  } else if (s.code() != absl::StatusCode::kInvalidArgument) {
    breaker_.Failure(s);
  }
}

void Shim::Impl::Close(const Request& req) {
  pool_.WaitIdle(absl::InfiniteFuture());
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + options_.flush_timeout;
  // Nothing more will be asked for. A remote that hangs keeps neither the
  // prefetch nor the uploads past the deadline (the go command waits for
  // this answer before it exits).
  const bool prefetch_stopped = StopPrefetch(deadline);
  size_t owed = uploads_.WaitIdle(deadline);
  if (owed == 0 && prefetch_stopped &&
      uploads_.Submit([this, deadline] { StoreManifest(deadline); },
                      /*block=*/false)) {
    owed = uploads_.WaitIdle(deadline);
  }
  stats_->remote_wait_ns.fetch_add(
      absl::ToInt64Nanoseconds(absl::Now() - start));
  if (owed > 0) {
    std::fprintf(stderr,
                 "cairn-gocacheprog: warning: %zu uploads not finished within "
                 "--flush_timeout=%s; they are skipped\n",
                 owed, absl::FormatDuration(options_.flush_timeout).c_str());
  }
  Response r;
  r.id = req.id;
  Respond(r);
  Log(req, "closed", start);
}

void Shim::Impl::StoreManifest(absl::Time deadline) {
  if (!prefetch_enabled_ || options_.read_only || upload_denied_.load() ||
      absl::Now() >= deadline) {
    return;
  }
  std::vector<std::string> ids;
  bool same = false;
  {
    absl::MutexLock lock(&seen_mu_);
    ids.reserve(asked_.size());
    for (const std::string& id : asked_) {
      if (resolved_.contains(id)) {
        ids.push_back(id);
      }
    }
    if (ids.empty()) {
      return;
    }
    // The same build again (in any order): the stored manifest (or, when a
    // bundle was read instead, the bundle) already lists exactly these ids.
    // A manifest listing more (e.g. the puts of a cold build that a warm
    // build never asks for) is replaced, so the next run downloads only
    // what it will ask for, in this run's order.
    absl::flat_hash_set<std::string> old_set;
    if (bundle_read_) {
      old_set = bundle_ids_;
    } else if (absl::StatusOr<std::vector<std::string>> old =
                   DecodeManifest(fetched_manifest_);
               old.ok()) {
      old_set.insert(old->begin(), old->end());
    }
    same = old_set.size() == ids.size();
    for (const std::string& id : ids) {
      same = same && old_set.contains(id);
    }
  }
  if (!same && breaker_.Allow()) {
    const std::string blob = EncodeManifest(ids);
    absl::Status s = remote_->PutManifest(options_.prefetch_scope, blob);
    if (s.ok()) {
      breaker_.Success();
      stats_->manifests_stored.fetch_add(1);
      stats_->bytes_up.fetch_add(static_cast<int64_t>(blob.size()));
    } else if (StoreFailed(s)) {
      return;
    }
  }
  if (options_.bundle) {
    StoreBundle(ids, deadline);
  }
}

void Shim::Impl::StoreBundle(const std::vector<std::string>& ids,
                             absl::Time deadline) {
  {
    absl::MutexLock lock(&seen_mu_);
    if (bundle_read_) {
      // Close enough to what the next run will ask for: keep it (an
      // unchanged list never rebuilds; CI runs with small changes do not
      // upload a bundle each time).
      int64_t fresh = 0;
      for (const std::string& id : ids) {
        fresh += bundle_ids_.contains(id) ? 0 : 1;
      }
      const int64_t unused =
          static_cast<int64_t>(bundle_ids_.size()) -
          (static_cast<int64_t>(ids.size()) - fresh);
      const double f = options_.bundle_rebuild_fraction;
      if (fresh <= f * static_cast<double>(ids.size()) &&
          unused <= f * static_cast<double>(bundle_ids_.size())) {
        return;
      }
    }
  }
  std::vector<BundleEntry> entries;
  absl::flat_hash_map<std::string, std::string> paths;  // By OutputID.
  entries.reserve(ids.size());
  for (const std::string& id : ids) {
    std::optional<LocalHit> hit = local_->Get(id);
    if (hit.has_value()) {
      entries.push_back(BundleEntry{id, hit->entry.output_id, hit->entry.size,
                                    hit->entry.time});
      paths.try_emplace(hit->entry.output_id, hit->disk_path);
    }
  }
  BundleIndex index = PlanBundle(entries, options_.bundle_max_bytes,
                                 options_.bundle_part_bytes);
  const std::vector<std::vector<PartBody>> bodies = BodiesByPart(index);
  int64_t sent = 0;
  for (size_t p = 0; p < index.parts.size(); ++p) {
    if (absl::Now() >= deadline || !breaker_.Allow()) {
      return;  // An index must never name a part the remote lacks.
    }
    absl::StatusOr<std::string> path = WritePart(bodies[p], paths,
                                                 &index.parts[p]);
    if (!path.ok()) {
      return;
    }
    absl::Status s = remote_->UploadFile(PartDigest(index.parts[p]), *path);
    if (!s.ok()) {
      StoreFailed(s);
      return;
    }
    sent += index.parts[p].blob_size;
  }
  if (absl::Now() >= deadline || !breaker_.Allow()) {
    return;
  }
  const std::string blob = EncodeBundleIndex(index);
  absl::Status s = remote_->PutBundleIndex(options_.prefetch_scope, blob);
  if (!s.ok()) {
    StoreFailed(s);
    return;
  }
  breaker_.Success();
  stats_->bundles_stored.fetch_add(1);
  stats_->bytes_up.fetch_add(sent + static_cast<int64_t>(blob.size()));
}

bool Shim::Impl::StoreFailed(const absl::Status& s) {
  if (s.code() == absl::StatusCode::kPermissionDenied ||
      s.code() == absl::StatusCode::kInvalidArgument) {
    return false;
  }
  breaker_.Failure(s);
  return true;
}

absl::StatusOr<std::string> Shim::Impl::WritePart(
    const std::vector<PartBody>& bodies,
    const absl::flat_hash_map<std::string, std::string>& paths,
    BundlePart* part) {
  absl::StatusOr<std::unique_ptr<BodyWriter>> w = local_->NewBody();
  if (!w.ok()) {
    return w.status();
  }
  // With a remote that compresses on the wire the part is plain: the
  // transport compresses it, and a server that recompresses at rest keeps
  // it at its own (higher) level; else the part is one zstd frame.
  const bool plain = remote_->CompressesBlobs();
  cas::ZstdCompressor zstd(kPartZstdLevel);
  cas::Sha256Hasher hash;
  std::string out;
  int64_t blob = 0;
  auto emit = [&](absl::string_view bytes) -> absl::Status {
    hash.Update(bytes);
    blob += static_cast<int64_t>(bytes.size());
    return (*w)->Append(bytes);
  };
  for (const PartBody& b : bodies) {
    auto it = paths.find(b.output_id);
    if (it == paths.end()) {
      return absl::InternalError("bundle body without a local file");
    }
    absl::Status s = ReadFileTo(it->second, b.size, [&](absl::string_view d) {
      if (plain) {
        return emit(d);
      }
      out.clear();
      absl::Status c = zstd.Compress(d, /*last=*/false, &out);
      return c.ok() ? emit(out) : c;
    });
    if (!s.ok()) {
      return s;
    }
  }
  if (!plain) {
    out.clear();
    if (absl::Status s = zstd.Compress("", /*last=*/true, &out); !s.ok()) {
      return s;
    }
    if (absl::Status s = emit(out); !s.ok()) {
      return s;
    }
  }
  part->hash = hash.FinishRaw();
  part->blob_size = blob;
  part->encoding = plain ? PartEncoding::kPlain : PartEncoding::kZstd;
  return (*w)->Commit(part->hash, blob);
}

void Shim::Impl::RecordAsked(const std::string& action_id) {
  absl::MutexLock lock(&seen_mu_);
  if (asked_.size() < kMaxManifestIds && asked_set_.insert(action_id).second) {
    asked_.push_back(action_id);
  }
}

void Shim::Impl::RecordResolved(const std::string& action_id) {
  absl::MutexLock lock(&seen_mu_);
  resolved_.insert(action_id);
}

void Shim::Impl::EndFlight(const std::string& action_id) {
  absl::MutexLock lock(&flight_mu_);
  in_flight_.erase(action_id);
  flight_done_.SignalAll();
}

Shim::Impl::Source Shim::Impl::TakePrefetched(const std::string& action_id) {
  absl::MutexLock lock(&flight_mu_);
  if (prefetched_.erase(action_id) > 0) {
    return Source::kPrefetch;
  }
  return bundled_.erase(action_id) > 0 ? Source::kBundle : Source::kNone;
}

bool Shim::Impl::StopPrefetch(absl::Time deadline) {
  prefetch_stop_.store(true);
  {
    absl::MutexLock lock(&depth_mu_);
    depth_cv_.SignalAll();
  }
  if (!prefetcher_done_.WaitForNotificationWithDeadline(deadline)) {
    return false;
  }
  if (prefetcher_.joinable()) {
    prefetcher_.join();
  }
  return prefetch_pool_.WaitIdle(deadline) == 0;
}

void Shim::Impl::Prefetch() {
  if (!breaker_.Allow()) {
    return;
  }
  if (options_.bundle) {
    absl::StatusOr<std::string> blob =
        remote_->GetBundleIndex(options_.prefetch_scope, kMaxBundleIndexBytes);
    if (!blob.ok() && RemoteFailed(blob.status())) {
      breaker_.Failure(blob.status());
      return;
    }
    breaker_.Success();
    if (blob.ok()) {
      absl::StatusOr<BundleIndex> index = DecodeBundleIndex(*blob);
      if (index.ok()) {
        PrefetchBundle(*std::move(index));
        return;
      }
      // Not ours to fix: the manifest still serves, and the next close
      // replaces the bundle.
    }
  }
  const int64_t max_bytes =
      static_cast<int64_t>(kManifestMagic.size() + 32 * kMaxManifestIds);
  absl::StatusOr<std::string> blob =
      remote_->GetManifest(options_.prefetch_scope, max_bytes);
  if (!blob.ok()) {
    if (RemoteFailed(blob.status())) {
      breaker_.Failure(blob.status());
    } else {
      breaker_.Success();
    }
    return;
  }
  breaker_.Success();
  absl::StatusOr<std::vector<std::string>> ids = DecodeManifest(*blob);
  if (!ids.ok()) {
    return;  // Not ours to fix: the next close replaces it.
  }
  {
    absl::MutexLock lock(&seen_mu_);
    fetched_manifest_ = *std::move(blob);
  }
  prefetch_start_ = absl::Now();
  PrefetchIds(*std::move(ids));
}

void Shim::Impl::PrefetchIds(std::vector<std::string> ids) {
  for (std::string& id : ids) {
    if (prefetch_stop_.load() || !AcquirePrefetchSlot()) {
      return;
    }
    prefetch_pool_.Submit(
        [this, id = std::move(id)] {
          PrefetchOne(id);
          ReleasePrefetchSlot();
        },
        /*block=*/true);
  }
}

void Shim::Impl::PrefetchBundle(BundleIndex index) {
  bundle_ = std::move(index);
  bundle_bodies_ = BodiesByPart(bundle_);
  {
    absl::MutexLock lock(&seen_mu_);
    bundle_read_ = true;
    for (const BundleRecord& r : bundle_.records) {
      bundle_ids_.insert(r.action_id);
    }
  }
  // Entries the local tier lacks: those with a body here (or an empty one)
  // become the bundle's flights; the others are prefetched one by one.
  std::vector<bool> absent(bundle_.records.size());
  for (size_t i = 0; i < bundle_.records.size(); ++i) {
    absent[i] = !local_->Get(bundle_.records[i].action_id).has_value();
  }
  std::vector<std::string> one_by_one;
  {
    absl::MutexLock lock(&flight_mu_);
    part_progress_.resize(bundle_.parts.size());
    bundle_start_ = absl::Now();
    for (size_t i = 0; i < bundle_.records.size(); ++i) {
      const BundleRecord& r = bundle_.records[i];
      if (!absent[i] || in_flight_.contains(r.action_id)) {
        continue;
      }
      if (r.part == kNoPart && r.size > 0) {
        one_by_one.push_back(r.action_id);
        continue;
      }
      in_flight_.insert(r.action_id);
      bundle_pending_[r.action_id] =
          Pending{r.part, r.part == kNoPart ? 0 : r.offset + r.size, r.size};
    }
  }
  prefetch_start_ = absl::Now();
  prefetch_pool_.Submit([this] { StoreEmptyEntries(); }, /*block=*/true);
  uint32_t p = 0;
  for (; p < bundle_.parts.size(); ++p) {
    const int64_t n = bundle_.parts[p].content_size;
    if (!PartWanted(p)) {
      continue;  // Every entry it holds is local already (a warm --dir).
    }
    if (prefetch_stop_.load() || !AcquirePartSlot()) {
      break;
    }
    if (prefetch_reserved_.fetch_add(n) + n > options_.prefetch_max_bytes) {
      ReleasePartSlot();
      break;
    }
    prefetch_pool_.Submit(
        [this, p] {
          FetchPart(p);
          ReleasePartSlot();
        },
        /*block=*/true);
  }
  for (; p < bundle_.parts.size(); ++p) {  // Not read: back to normal.
    for (const PartBody& b : bundle_bodies_[p]) {
      ReleaseRecords(b.records);
    }
  }
  PrefetchIds(std::move(one_by_one));
}

void Shim::Impl::StoreEmptyEntries() {
  const std::string empty = cas::Digest::Empty().hash();
  bool have_body = false;
  for (size_t i = 0; i < bundle_.records.size(); ++i) {
    const BundleRecord& r = bundle_.records[i];
    if (r.part != kNoPart || r.size != 0) {
      continue;
    }
    {
      absl::MutexLock lock(&flight_mu_);
      if (bundle_pending_.erase(r.action_id) == 0) {
        continue;
      }
    }
    absl::Cleanup end = [&] { EndFlight(r.action_id); };
    if (prefetch_stop_.load() || cas::HexEncode(r.output_id) != empty) {
      continue;  // Not an empty body: the normal path answers.
    }
    if (!have_body) {
      absl::StatusOr<std::unique_ptr<BodyWriter>> w = local_->NewBody();
      have_body = w.ok() && (*w)->Commit(r.output_id, 0).ok();
      if (!have_body) {
        continue;
      }
    }
    if (local_->PutEntry(r.action_id, Entry{r.output_id, 0, r.time}).ok()) {
      stats_->bundle_entries.fetch_add(1);
      absl::MutexLock lock(&flight_mu_);
      bundled_.insert(r.action_id);
    }
  }
}

void Shim::Impl::FetchPart(uint32_t p) {
  const BundlePart& part = bundle_.parts[p];
  const std::vector<PartBody>& bodies = bundle_bodies_[p];
  {
    absl::MutexLock lock(&flight_mu_);
    part_progress_[p].started = true;
    ++parts_active_;
  }
  // Whatever ends this read, entries it did not store go back to normal.
  absl::Cleanup end = [&] {
    for (const PartBody& b : bodies) {
      ReleaseRecords(b.records);
    }
    absl::MutexLock lock(&flight_mu_);
    part_progress_[p].done = true;
    --parts_active_;
    flight_done_.SignalAll();
  };
  if (prefetch_stop_.load() || !breaker_.Allow()) {
    return;
  }
  size_t next = 0;         // The body being cut.
  int64_t in_body = 0;     // Its bytes so far.
  int64_t produced = 0;    // Content bytes so far.
  bool skip = false;       // The current body is not wanted.
  bool have = false;       // The local store has it already: read past it.
  bool local_fault = false;
  std::unique_ptr<BodyWriter> writer;
  auto cut = [&](absl::string_view piece) -> absl::Status {
    const int64_t before = produced;
    while (!piece.empty()) {
      if (next == bodies.size()) {
        return absl::InvalidArgumentError("part longer than its bodies");
      }
      const PartBody& b = bodies[next];
      if (in_body == 0) {
        writer.reset();
        skip = !BodyWanted(b);
        struct stat st;
        have = !skip &&
               stat(local_->BodyPath(b.output_id).c_str(), &st) == 0 &&
               st.st_size == b.size;
        if (!skip && !have) {
          absl::StatusOr<std::unique_ptr<BodyWriter>> w = local_->NewBody();
          if (!w.ok()) {
            local_fault = true;
            return w.status();
          }
          writer = *std::move(w);
        }
      }
      const size_t n = static_cast<size_t>(
          std::min<int64_t>(static_cast<int64_t>(piece.size()),
                            b.size - in_body));
      if (writer != nullptr && !writer->Append(piece.substr(0, n)).ok()) {
        writer.reset();  // The body is lost; its entries fall back.
      }
      in_body += static_cast<int64_t>(n);
      produced += static_cast<int64_t>(n);
      piece.remove_prefix(n);
      if (in_body == b.size) {
        bool ok = have;
        if (writer != nullptr) {
          ok = writer->Commit(b.output_id, b.size).ok();
          writer.reset();
        }
        if (!skip) {
          FinishPartBody(b, ok);
        }
        ++next;
        in_body = 0;
      }
    }
    absl::MutexLock lock(&flight_mu_);
    part_progress_[p].received = produced;
    bundle_received_ += produced - before;
    return absl::OkStatus();
  };
  cas::ZstdDecompressor zstd;
  const absl::Time start = absl::Now();
  absl::Time first = absl::InfinitePast();
  // A plain part travels compressed when the remote speaks zstd (a
  // zstd-encoded one is frames already).
  absl::Status s = remote_->ReadBlob(
      PartDigest(part), part.encoding == PartEncoding::kPlain,
      [&](absl::string_view chunk) -> absl::Status {
        if (prefetch_stop_.load()) {
          return absl::CancelledError("prefetch stopped");
        }
        if (first == absl::InfinitePast()) {
          first = absl::Now();
          prefetch_link_.AddRoundTrip(first - start);
        }
        stats_->bundle_bytes.fetch_add(static_cast<int64_t>(chunk.size()));
        if (part.encoding == PartEncoding::kPlain) {
          return cut(chunk);
        }
        return zstd.DecompressTo(chunk, part.content_size - produced,
                                 kBundlePiece, cut);
      });
  const bool whole =
      produced == part.content_size &&
      (part.encoding == PartEncoding::kPlain || zstd.AtFrameEnd());
  if (s.ok() && !whole) {
    s = absl::DataLossError(absl::StrCat("bundle part ",
                                         PartDigest(part).ToString(),
                                         " ended early"));
  }
  if (!s.ok()) {
    if (!local_fault && RemoteFailed(s) &&
        s.code() != absl::StatusCode::kInvalidArgument &&
        s.code() != absl::StatusCode::kCancelled) {
      breaker_.Failure(s);
    }
    if (options_.verbose) {
      std::fprintf(stderr, "cairn-gocacheprog: bundle part %u: %s\n", p,
                   s.ToString().c_str());
    }
    return;
  }
  breaker_.Success();
  if (first != absl::InfinitePast()) {
    prefetch_link_.AddTransfer(part.blob_size, absl::Now() - first);
  }
  stats_->bundle_parts.fetch_add(1);
}

bool Shim::Impl::BodyWanted(const PartBody& body) {
  absl::MutexLock lock(&flight_mu_);
  for (size_t r : body.records) {
    if (bundle_pending_.contains(bundle_.records[r].action_id)) {
      return true;
    }
  }
  return false;
}

bool Shim::Impl::PartWanted(uint32_t p) {
  for (const PartBody& b : bundle_bodies_[p]) {
    if (BodyWanted(b)) {
      return true;
    }
  }
  return false;
}

void Shim::Impl::FinishPartBody(const PartBody& body, bool ok) {
  if (ok) {
    stats_->bytes_down.fetch_add(body.size);
  }
  for (size_t i : body.records) {
    const BundleRecord& r = bundle_.records[i];
    {
      absl::MutexLock lock(&flight_mu_);
      if (bundle_pending_.erase(r.action_id) == 0) {
        continue;  // A get took it over, or it was here already.
      }
    }
    // The entry is written before the flight ends: a waiting get then
    // finds it.
    if (ok && local_->PutEntry(r.action_id, Entry{r.output_id, r.size, r.time})
                  .ok()) {
      stats_->bundle_entries.fetch_add(1);
      absl::MutexLock lock(&flight_mu_);
      bundled_.insert(r.action_id);
    }
    EndFlight(r.action_id);
  }
}

void Shim::Impl::ReleaseRecords(absl::Span<const size_t> records) {
  absl::MutexLock lock(&flight_mu_);
  bool any = false;
  for (size_t i : records) {
    const std::string& id = bundle_.records[i].action_id;
    if (bundle_pending_.erase(id) > 0) {
      in_flight_.erase(id);
      any = true;
    }
  }
  if (any) {
    flight_done_.SignalAll();
  }
}

bool Shim::Impl::BundleArrivesSoon(const std::string& action_id) {
  auto it = bundle_pending_.find(action_id);
  if (it == bundle_pending_.end() || it->second.part == kNoPart) {
    return true;
  }
  const Pending& want = it->second;
  const double secs = absl::ToDoubleSeconds(absl::Now() - bundle_start_);
  if (bundle_received_ < kBundleRateSample || secs <= 0) {
    return true;  // Nothing measured yet: wait, within the get's budget.
  }
  const double rate = static_cast<double>(bundle_received_) / secs;
  const PartProgress& progress = part_progress_[want.part];
  double bytes = 0;
  if (progress.started) {
    // Parts in flight share the rate.
    bytes = static_cast<double>(want.end - progress.received) *
            std::max(1, parts_active_);
  } else {
    bytes = static_cast<double>(want.end);
    for (uint32_t q = 0; q < want.part; ++q) {
      if (!part_progress_[q].done) {
        bytes += static_cast<double>(bundle_.parts[q].content_size -
                                     part_progress_[q].received);
      }
    }
  }
  const absl::Duration own = link_.BodyTime(want.size) + link_.rtt();
  return absl::Seconds(bytes / rate) <= std::max(kBundleWaitFloor, 2 * own);
}

bool Shim::Impl::AcquirePartSlot() {
  absl::MutexLock lock(&depth_mu_);
  for (;;) {
    if (prefetch_stop_.load()) {
      return false;
    }
    const int depth = DepthFor(
        stats_->bundle_parts.load(), stats_->bundle_bytes.load(),
        std::min(options_.bundle_min_parts, kMaxPartsInFlight),
        kMaxPartsInFlight);
    if (parts_in_flight_ < depth) {
      break;
    }
    depth_cv_.Wait(&depth_mu_);
  }
  ++parts_in_flight_;
  return true;
}

void Shim::Impl::ReleasePartSlot() {
  absl::MutexLock lock(&depth_mu_);
  --parts_in_flight_;
  depth_cv_.SignalAll();
}

bool Shim::Impl::AcquirePrefetchSlot() {
  absl::MutexLock lock(&depth_mu_);
  while (!prefetch_stop_.load() && prefetch_active_ >= CurrentPrefetchDepth()) {
    depth_cv_.Wait(&depth_mu_);
  }
  if (prefetch_stop_.load()) {
    return false;
  }
  ++prefetch_active_;
  return true;
}

void Shim::Impl::ReleasePrefetchSlot() {
  absl::MutexLock lock(&depth_mu_);
  --prefetch_active_;
  depth_cv_.SignalAll();
}

int Shim::Impl::DepthFor(int64_t count, int64_t bytes, int min_depth,
                         int max_depth) {
  double rate = prefetch_link_.best_bytes_per_second();
  const double secs = absl::ToDoubleSeconds(absl::Now() - prefetch_start_);
  if (secs > 0) {
    rate = std::max(rate, static_cast<double>(bytes) / secs);
  }
  return PrefetchDepth(prefetch_link_.min_rtt(), rate,
                       count > 0 ? bytes / count : 0, min_depth, max_depth);
}

int Shim::Impl::CurrentPrefetchDepth() {
  const int depth = DepthFor(
      stats_->prefetched.load(), stats_->prefetch_bytes.load(),
      std::min(options_.prefetch_min_depth, options_.prefetch_threads),
      options_.prefetch_threads);
  stats_->prefetch_depth.store(depth);
  return depth;
}

void Shim::Impl::PrefetchOne(const std::string& action_id) {
  {
    absl::MutexLock lock(&flight_mu_);
    if (prefetch_stop_.load() || in_flight_.contains(action_id)) {
      return;  // A get is already fetching it, or we are done.
    }
    in_flight_.insert(action_id);
  }
  absl::Cleanup end = [&] { EndFlight(action_id); };
  if (local_->Get(action_id).has_value() || !breaker_.Allow()) {
    return;
  }
  absl::StatusOr<std::unique_ptr<BodyWriter>> body = local_->NewBody();
  if (!body.ok()) {
    return;
  }
  bool capped = false;
  const absl::Time start = absl::Now();
  absl::Time found = start;
  auto admit = [&](int64_t) {
    found = absl::Now();
    prefetch_link_.AddRoundTrip(found - start);
    return true;
  };
  absl::StatusOr<Entry> entry =
      remote_->Get(action_id, admit, [&](absl::string_view chunk) {
        const int64_t n = static_cast<int64_t>(chunk.size());
        if (prefetch_reserved_.fetch_add(n) + n > options_.prefetch_max_bytes) {
          capped = true;
          return absl::ResourceExhaustedError("prefetch byte cap reached");
        }
        return (*body)->Append(chunk);
      });
  if (!entry.ok()) {
    if (capped) {
      prefetch_stop_.store(true);
    } else if (RemoteFailed(entry.status())) {
      breaker_.Failure(entry.status());
    }
    return;
  }
  breaker_.Success();
  prefetch_link_.AddTransfer(entry->size, absl::Now() - found);
  absl::StatusOr<std::string> path =
      (*body)->Commit(entry->output_id, entry->size);
  if (!path.ok() || !local_->PutEntry(action_id, *entry).ok()) {
    return;
  }
  stats_->prefetched.fetch_add(1);
  stats_->prefetch_bytes.fetch_add(entry->size);
  stats_->bytes_down.fetch_add(entry->size);
  absl::MutexLock lock(&flight_mu_);
  prefetched_.insert(action_id);
}

Shim::Shim(LocalStore* local, Remote* remote, ShimOptions options)
    : impl_(
          std::make_unique<Impl>(local, remote, std::move(options), &stats_)) {}

Shim::~Shim() = default;

absl::Status Shim::Run(int in_fd, int out_fd) {
  return impl_->Run(in_fd, out_fd);
}

}  // namespace cairn::client::gocacheprog
