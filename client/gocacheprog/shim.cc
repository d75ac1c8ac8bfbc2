#include "client/gocacheprog/shim.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <deque>
#include <functional>
#include <limits>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "cas/digest.h"
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
// taking another lock or doing I/O).

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
      "prefetch_depth=%d",
      gets.load(), local_hits.load(), remote_hits.load(), misses.load(),
      puts.load(), errors.load(), uploads.load(), upload_failures.load(),
      uploads_dropped.load(), bytes_down.load(), bytes_up.load(),
      remote_wait_ns.load() / 1e9, prefetched.load(), prefetch_hits.load(),
      prefetch_bytes.load(), manifests_stored.load(), budget_misses.load(),
      budget_skips.load(), rtt_us.load() / 1e3, link_bytes_per_s.load() / 1e6,
      prefetch_depth.load());
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
  // Stores this run's manifest unless it equals the fetched one.
  void StoreManifest(absl::Time deadline);

  // Stops the prefetch and waits, until `deadline`, for its thread and tasks
  // to stop using the remote (each call ends by its own deadline; the
  // destructor waits for them). When it returns true they have stopped and
  // fetched_manifest_ holds the manifest if the prefetch read one.
  bool StopPrefetch(absl::Time deadline);
  // Prefetch thread: reads the manifest, queues one task per ActionID.
  void Prefetch();
  void PrefetchOne(const std::string& action_id);
  // Waits until fewer prefetch fetches than the current depth are in flight
  // and takes a place; false (nothing taken) once the prefetch stops.
  bool AcquirePrefetchSlot();
  void ReleasePrefetchSlot();
  // Returns PrefetchDepth() of the prefetch's measurements so far.
  int CurrentPrefetchDepth();
  // Ends a fetch started by StartFetch or PrefetchOne.
  void EndFlight(const std::string& action_id);
  // Returns true (once) when `action_id` was stored by the prefetch.
  bool TakePrefetched(const std::string& action_id);
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

  absl::Mutex seen_mu_;
  std::vector<std::string> asked_ ABSL_GUARDED_BY(seen_mu_);
  absl::flat_hash_set<std::string> asked_set_ ABSL_GUARDED_BY(seen_mu_);
  absl::flat_hash_set<std::string> resolved_ ABSL_GUARDED_BY(seen_mu_);
  std::string fetched_manifest_ ABSL_GUARDED_BY(seen_mu_);
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
  // In the manifest only when a get asked for it (RecordAsked).
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
  if (local && TakePrefetched(req.action_id)) {
    stats_->prefetch_hits.fetch_add(1);
    outcome = "prefetch-hit";
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
      return false;
    }
    in_flight_.insert(action_id);
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
    if (flight_done_.WaitWithDeadline(&flight_mu_, deadline)) {
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
  std::string blob;
  {
    absl::MutexLock lock(&seen_mu_);
    std::vector<std::string> ids;
    ids.reserve(asked_.size());
    for (const std::string& id : asked_) {
      if (resolved_.contains(id)) {
        ids.push_back(id);
      }
    }
    if (ids.empty()) {
      return;
    }
    // The same build again (in any order): the stored manifest already
    // lists exactly these ids. A manifest listing more (e.g. the puts of a
    // cold build that a warm build never asks for) is replaced, so the next
    // run downloads only what it will ask for, in this run's order.
    bool same = false;
    if (absl::StatusOr<std::vector<std::string>> old =
            DecodeManifest(fetched_manifest_);
        old.ok()) {
      absl::flat_hash_set<std::string> old_set(old->begin(), old->end());
      same = old_set.size() == ids.size();
      for (const std::string& id : ids) {
        same = same && old_set.contains(id);
      }
    }
    if (same) {
      return;
    }
    blob = EncodeManifest(ids);
  }
  if (!breaker_.Allow()) {
    return;
  }
  absl::Status s = remote_->PutManifest(options_.prefetch_scope, blob);
  if (s.ok()) {
    breaker_.Success();
    stats_->manifests_stored.fetch_add(1);
    stats_->bytes_up.fetch_add(static_cast<int64_t>(blob.size()));
  } else if (s.code() != absl::StatusCode::kPermissionDenied &&
             s.code() != absl::StatusCode::kInvalidArgument) {
    breaker_.Failure(s);
  }
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

bool Shim::Impl::TakePrefetched(const std::string& action_id) {
  absl::MutexLock lock(&flight_mu_);
  return prefetched_.erase(action_id) > 0;
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
  for (std::string& id : *ids) {
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

int Shim::Impl::CurrentPrefetchDepth() {
  const int64_t count = stats_->prefetched.load();
  const int64_t bytes = stats_->prefetch_bytes.load();
  double rate = prefetch_link_.best_bytes_per_second();
  const double secs = absl::ToDoubleSeconds(absl::Now() - prefetch_start_);
  if (secs > 0) {
    rate = std::max(rate, static_cast<double>(bytes) / secs);
  }
  const int depth = PrefetchDepth(
      prefetch_link_.min_rtt(), rate, count > 0 ? bytes / count : 0,
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
