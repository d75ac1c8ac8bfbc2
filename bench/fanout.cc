// fanout: a thousand clients at once against one REAPI server (issue 17).
//
// Scenarios (--scenario, comma-separated, run one after another):
//   same_blob       --readers ByteStream Reads of one --blob_mib blob;
//   distinct_blobs  --readers Reads, reader i of its own --distinct_kib blob;
//   small_calls     --readers callers alternating GetActionResult (a hit)
//                   and BatchReadBlobs (8 small blobs).
// In the read scenarios a --slow_fraction of the readers trickle: after each
// message they sleep at least --slow_delay_ms and as long as keeps them under
// --slow_kib_per_s; the others read as fast as they can. Every client loops
// (a finished read starts again) until --duration has passed, then every
// call still open is cancelled: such calls count as "cut", not as errors.
// Streams are spread over --channels connections.
//
// --loader says how the read scenarios' readers run: "threads" (the
// default) gives each its own thread with blocking stubs; "callback" runs
// them as gRPC callback reactors on gRPC's own threads, with one pacer
// thread timing the slow readers' pauses: the same calls and pacing, far
// fewer client threads (and less of the machine's CPU) when the clients
// share it with the server. small_calls always runs threads.
//
// --loader_idle runs this process under SCHED_IDLE (set before its first
// thread starts; every thread inherits it), so it gets only the CPU the
// server leaves: the nearest a shared host comes to readers on other hosts
// while the server keeps every core. The probe's child process (below)
// always resets itself to SCHED_OTHER, nice 0. Each row says how the
// loader's and the probe's threads were scheduled mid-run (loader_sched,
// probe_sched).
//
// During each scenario one probe thread times GetActionResult and
// BatchReadBlobs (one call every --probe_ms); the same probe runs for
// --idle_seconds before the clients start, so the row shows idle p99 and
// p99 under load. With --server_pid the row also has the server's peak RSS
// (VmHWM, reset before the scenario by writing 5 to /proc/PID/clear_refs)
// and its RSS before the clients start.
//
// Setup (untimed) uploads the blobs and action results. The machine running
// this is usually the server's too: client threads compete with the server
// for the CPU, which the figures include.
#include <grpcpp/grpcpp.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/proc_stats.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cas/digest.h"
#include "client/reapi_client.h"
#include "google/bytestream/bytestream.grpc.pb.h"

ABSL_FLAG(std::string, target, "grpc://127.0.0.1:9092",
          "Server: grpc://127.0.0.1:PORT (loopback only).");
ABSL_FLAG(std::string, scenario, "same_blob,distinct_blobs,small_calls",
          "Comma-separated scenarios.");
ABSL_FLAG(int, readers, 1000, "Concurrent clients per scenario.");
ABSL_FLAG(double, slow_fraction, 0.9, "Share of readers that trickle.");
ABSL_FLAG(int, slow_delay_ms, 20, "Least pause of a slow reader per message.");
ABSL_FLAG(int, slow_kib_per_s, 64, "Most a slow reader reads per second.");
ABSL_FLAG(double, duration, 30, "Seconds each scenario runs.");
ABSL_FLAG(int, channels, 8, "Connections the clients share.");
ABSL_FLAG(int, blob_mib, 64, "Size of the same_blob blob, MiB.");
ABSL_FLAG(int, distinct_kib, 1024, "Size of each distinct_blobs blob, KiB.");
ABSL_FLAG(int, probe_ms, 20, "Pause between probe calls.");
ABSL_FLAG(double, idle_seconds, 4, "Probe time before the clients start.");
ABSL_FLAG(bool, probe_process, true,
          "Run the probe in a child process of its own (as a build client "
          "on another host would be); false: a thread among the clients.");
ABSL_FLAG(bool, probe_session, false,
          "Start the probe process in a session of its own (setsid): with "
          "the kernel's autogroup scheduling a session is one scheduling "
          "group, so the probe gets a group's share of the CPU rather than "
          "one thread's among the readers' (see fanout.sh FANOUT_SESSIONS).");
ABSL_FLAG(std::string, probe_cpus, "",
          "Comma-separated CPUs the probe process runs on (sched_setaffinity; "
          "e.g. the server's when fanout.sh FANOUT_PIN=1 pins the readers to "
          "other CPUs): empty leaves it where this process runs.");
ABSL_FLAG(int, client_nice, 0,
          "Nice value the reader/caller threads run at (the probe and the "
          "server keep theirs): > 0 stands in for clients on other hosts, "
          "whose CPU is not the server's. With --loader callback every "
          "thread of this process runs at it (gRPC's threads run the "
          "readers there).");
ABSL_FLAG(bool, loader_idle, false,
          "Run this process (every thread: set before the first starts) "
          "under SCHED_IDLE: it gets only the CPU the server and the probe "
          "leave, the nearest a shared host comes to readers on other "
          "hosts while the server keeps every core (fanout.sh "
          "FANOUT_LOADER_IDLE=1). The probe's child process runs at "
          "SCHED_OTHER, nice 0, in any case.");
ABSL_FLAG(std::string, probe_log, "",
          "Append the probe's GetActionResult latencies, in the order taken "
          "(\"scenario phase index us start_us\", one every --probe_ms plus "
          "the call; start_us is the call's CLOCK_MONOTONIC start), to this "
          "file: shows when in the run the slow ones came, and lines them "
          "up with `perf sched record -k CLOCK_MONOTONIC` traces.");
ABSL_FLAG(std::string, loader, "threads",
          "How the read scenarios' readers run: threads (one thread each, "
          "blocking stubs) or callback (gRPC callback reactors on gRPC's "
          "threads plus one pacer thread for the slow readers' pauses; same "
          "calls and pacing, far fewer threads). small_calls always runs "
          "threads.");
ABSL_FLAG(bool, probe_child, false, "Internal: be that child process.");
ABSL_FLAG(int, server_pid, 0, "Server process to read RSS from.");
ABSL_FLAG(std::string, label, "server", "Server name in the table and CSV.");
ABSL_FLAG(std::string, csv, "", "Append rows to this CSV file.");
ABSL_FLAG(uint64_t, seed, 1, "Names the blobs (same seed, same blobs).");

namespace cairn::bench {
namespace {

namespace reapi = ::build::bazel::remote::execution::v2;
namespace bs = ::google::bytestream;
using cas::Digest;

constexpr int64_t kKiB = 1024;
constexpr int64_t kMiB = 1024 * 1024;

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// `len` pseudo-random bytes named by `seed`.
std::string Bytes(uint64_t seed, int64_t len) {
  std::string out(static_cast<size_t>(len), '\0');
  for (int64_t i = 0; i < len; i += 8) {
    uint64_t v = SplitMix64(seed ^ static_cast<uint64_t>(i));
    std::memcpy(out.data() + i, &v,
                static_cast<size_t>(std::min<int64_t>(8, len - i)));
  }
  return out;
}

reapi::Digest ToProto(const Digest& d) {
  reapi::Digest out;
  out.set_hash(d.hash());
  out.set_size_bytes(d.size_bytes());
  return out;
}

// Latencies in microseconds, from any thread, each with the call's start
// (CLOCK_MONOTONIC, us: the clock perf's `-k CLOCK_MONOTONIC` and the
// server's traces use, so a slow call can be lined up with them).
class Latencies {
 public:
  struct Sample {
    int64_t us = 0;
    int64_t start_us = 0;
  };
  void Add(int64_t us, int64_t start_us = 0) {
    absl::MutexLock lock(&mu_);
    samples_.push_back(Sample{us, start_us});
  }
  // Returns the q-quantile in ms (0 when empty).
  double QuantileMs(double q) {
    std::vector<int64_t> us;
    {
      absl::MutexLock lock(&mu_);
      for (const Sample& s : samples_) {
        us.push_back(s.us);
      }
    }
    if (us.empty()) {
      return 0;
    }
    std::sort(us.begin(), us.end());
    size_t i = std::min(us.size() - 1, static_cast<size_t>(q * us.size()));
    return us[i] / 1000.0;
  }
  size_t Count() {
    absl::MutexLock lock(&mu_);
    return samples_.size();
  }
  // Returns the samples in the order taken.
  std::vector<Sample> Samples() {
    absl::MutexLock lock(&mu_);
    return samples_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Sample> samples_ ABSL_GUARDED_BY(mu_);
};

// The connections, and the contexts of calls in flight (cancelled at the
// end of a scenario).
class Clients {
 public:
  // `channels` connections for the clients, one more for the probe.
  Clients(const std::string& address, int channels) : channels_(channels) {
    for (int i = 0; i <= channels; ++i) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(64 * kMiB);
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("cairn.fanout.channel", i);  // One connection each.
      auto ch = grpc::CreateCustomChannel(
          address, grpc::InsecureChannelCredentials(), args);
      bytestream_.push_back(bs::ByteStream::NewStub(ch));
      cas_.push_back(reapi::ContentAddressableStorage::NewStub(ch));
      ac_.push_back(reapi::ActionCache::NewStub(ch));
    }
  }
  // Client i's stubs; i == kProbe names the probe's connection.
  static constexpr int kProbe = -1;
  bs::ByteStream::Stub& ByteStream(int i) { return *bytestream_[Pick(i)]; }
  reapi::ContentAddressableStorage::Stub& Cas(int i) { return *cas_[Pick(i)]; }
  reapi::ActionCache::Stub& Ac(int i) { return *ac_[Pick(i)]; }

  // Registers a call's context; false once Stop() has run.
  bool Register(grpc::ClientContext* ctx) {
    absl::MutexLock lock(&mu_);
    if (stopped_) {
      return false;
    }
    live_.push_back(ctx);
    return true;
  }
  void Unregister(grpc::ClientContext* ctx) {
    absl::MutexLock lock(&mu_);
    live_.erase(std::find(live_.begin(), live_.end(), ctx));
  }
  void Start() {
    absl::MutexLock lock(&mu_);
    stopped_ = false;
  }
  // Cancels every call in flight and refuses new ones.
  void Stop() {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    for (grpc::ClientContext* ctx : live_) {
      ctx->TryCancel();
    }
  }
  bool Stopped() {
    absl::MutexLock lock(&mu_);
    return stopped_;
  }

 private:
  size_t Pick(int i) const {
    return static_cast<size_t>(i == kProbe ? channels_ : i % channels_);
  }

  const int channels_;
  std::vector<std::unique_ptr<bs::ByteStream::Stub>> bytestream_;
  std::vector<std::unique_ptr<reapi::ContentAddressableStorage::Stub>> cas_;
  std::vector<std::unique_ptr<reapi::ActionCache::Stub>> ac_;
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<grpc::ClientContext*> live_ ABSL_GUARDED_BY(mu_);
};

// What the clients of one class did.
struct ClassStats {
  std::atomic<int64_t> bytes{0};
  std::atomic<int64_t> completed{0};  // Whole blobs read / calls answered.
  std::atomic<int64_t> cut{0};        // Cancelled at the scenario's end.
  std::atomic<int64_t> errors{0};
  absl::Mutex mu;
  std::string first_error ABSL_GUARDED_BY(mu);

  void Error(const std::string& what) {
    errors.fetch_add(1);
    absl::MutexLock lock(&mu);
    if (first_error.empty()) {
      first_error = what;
    }
  }
};

// The small things the probe and small_calls read.
struct SmallSet {
  std::vector<Digest> blobs;
  std::vector<Digest> actions;
};

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One GetActionResult (hit expected) then one BatchReadBlobs of 8 blobs;
// adds their latencies and returns the first error, if any.
absl::Status SmallCall(Clients& c, int i, const SmallSet& set, uint64_t pick,
                       Latencies* ac_lat, Latencies* batch_lat) {
  {
    reapi::GetActionResultRequest req;
    *req.mutable_action_digest() =
        ToProto(set.actions[pick % set.actions.size()]);
    reapi::ActionResult resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(60));
    if (!c.Register(&ctx)) {
      return absl::CancelledError("stopped");
    }
    int64_t t0 = NowUs();
    grpc::Status s = c.Ac(i).GetActionResult(&ctx, req, &resp);
    c.Unregister(&ctx);
    if (!s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                          absl::StrCat("GetActionResult: ", s.error_message()));
    }
    ac_lat->Add(NowUs() - t0, t0);
  }
  reapi::BatchReadBlobsRequest req;
  for (int k = 0; k < 8; ++k) {
    *req.add_digests() = ToProto(set.blobs[(pick + k * 7) % set.blobs.size()]);
  }
  reapi::BatchReadBlobsResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  if (!c.Register(&ctx)) {
    return absl::CancelledError("stopped");
  }
  int64_t t0 = NowUs();
  grpc::Status s = c.Cas(i).BatchReadBlobs(&ctx, req, &resp);
  c.Unregister(&ctx);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat("BatchReadBlobs: ", s.error_message()));
  }
  for (const auto& r : resp.responses()) {
    if (r.status().code() != 0) {
      return absl::InternalError(
          absl::StrCat("BatchReadBlobs item: ", r.status().message()));
    }
  }
  batch_lat->Add(NowUs() - t0, t0);
  return absl::OkStatus();
}

// Reads `d` once through ByteStream; slow readers pace themselves. Returns
// OK for a whole read, CANCELLED when stopped.
// When a slow reader that started its read at `start` (NowUs()) and has
// `got` bytes asks for its next message: after --slow_delay_ms, and not
// before --slow_kib_per_s allows.
int64_t SlowResumeUs(int64_t start, int64_t got) {
  const double rate = absl::GetFlag(FLAGS_slow_kib_per_s) * kKiB / 1e6;  // B/us
  return std::max<int64_t>(
      NowUs() + absl::GetFlag(FLAGS_slow_delay_ms) * 1000,
      start + static_cast<int64_t>(static_cast<double>(got) / rate));
}

// A finished Read of `d` that got `got` bytes, as a status: the call's own
// error, DATA_LOSS when it ended short, else OK.
absl::Status ReadOutcome(const grpc::Status& s, int64_t got, const Digest& d) {
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat("Read: ", s.error_message()));
  }
  if (got != d.size_bytes()) {
    return absl::DataLossError(
        absl::StrCat("Read: ", got, " of ", d.size_bytes(), " bytes"));
  }
  return absl::OkStatus();
}

absl::Status ReadOnce(Clients& c, int i, const Digest& d, bool slow,
                      ClassStats& stats) {
  bs::ReadRequest req;
  req.set_resource_name(absl::StrCat("blobs/", d.hash(), "/", d.size_bytes()));
  grpc::ClientContext ctx;
  if (!c.Register(&ctx)) {
    return absl::CancelledError("stopped");
  }
  auto reader = c.ByteStream(i).Read(&ctx, req);
  bs::ReadResponse resp;
  int64_t got = 0;
  const int64_t start = NowUs();
  while (reader->Read(&resp)) {
    got += static_cast<int64_t>(resp.data().size());
    stats.bytes.fetch_add(static_cast<int64_t>(resp.data().size()));
    if (slow) {
      const int64_t until = SlowResumeUs(start, got);
      while (NowUs() < until && !c.Stopped()) {
        absl::SleepFor(
            absl::Microseconds(std::min<int64_t>(50000, until - NowUs())));
      }
    }
  }
  grpc::Status s = reader->Finish();
  c.Unregister(&ctx);
  return ReadOutcome(s, got, d);
}

// Accounts one finished call of a client into `stats`: completed, cut (by
// the end of the run) or an error. Returns true on an error, after which
// the client waits 100 ms before its next call (no hot loop on errors).
bool Account(Clients& c, const absl::Status& s, ClassStats& stats) {
  if (s.ok()) {
    stats.completed.fetch_add(1);
  } else if (c.Stopped() && absl::IsCancelled(s)) {
    stats.cut.fetch_add(1);
  } else {
    stats.Error(s.ToString());
    return true;
  }
  return false;
}

// Runs one client until stopped, accounting into `stats`.
void RunClient(Clients& c, int i, absl::string_view scenario,
               const std::vector<Digest>& blobs, const SmallSet& set, bool slow,
               ClassStats& stats, Latencies* ac_lat, Latencies* batch_lat) {
  if (int nice = absl::GetFlag(FLAGS_client_nice); nice != 0) {
    // Linux: a thread's own nice value (this thread only).
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice);
  }
  uint64_t pick = SplitMix64(static_cast<uint64_t>(i));
  while (!c.Stopped()) {
    absl::Status s;
    if (scenario == "small_calls") {
      s = SmallCall(c, i, set, pick++, ac_lat, batch_lat);
    } else {
      s = ReadOnce(c, i, blobs[static_cast<size_t>(i) % blobs.size()], slow,
                   stats);
    }
    if (Account(c, s, stats)) {
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
}

// ------------------------------------------------- callback loader ---

// Runs functions at their due time (NowUs() clock) from one thread, or at
// once after Stop(): the slow readers' pauses under --loader callback.
class Pacer {
 public:
  Pacer() : thread_([this] { Run(); }) {}
  ~Pacer() {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    thread_.join();
  }
  void At(int64_t due_us, std::function<void()> f) {
    absl::MutexLock lock(&mu_);
    due_.push(Entry{due_us, seq_++, std::move(f)});
  }
  // From now on everything runs at once, due or not.
  void Stop() {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }

 private:
  struct Entry {
    int64_t due_us;
    uint64_t seq;  // FIFO among equal times.
    std::function<void()> f;
    bool operator>(const Entry& o) const {
      return due_us != o.due_us ? due_us > o.due_us : seq > o.seq;
    }
  };

  void Run() {
    std::vector<std::function<void()>> ready;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (done_ && due_.empty()) {
          return;
        }
        const int64_t now = NowUs();
        while (!due_.empty() &&
               (stopped_ || done_ || due_.top().due_us <= now)) {
          // top() is const: the entry is copied out, then popped.
          ready.push_back(due_.top().f);
          due_.pop();
        }
      }
      for (std::function<void()>& f : ready) {
        f();
      }
      ready.clear();
      // 1 ms ticks: the pauses are >= --slow_delay_ms (20 ms).
      absl::SleepFor(absl::Milliseconds(1));
    }
  }

  absl::Mutex mu_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> due_
      ABSL_GUARDED_BY(mu_);
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// What the reactors of one scenario share; counts the readers still
// looping.
struct CallbackLoad {
  CallbackLoad(Clients& c, Pacer& pacer, int64_t readers)
      : c(c), pacer(pacer), live(readers) {}
  Clients& c;
  Pacer& pacer;
  absl::Mutex mu;
  int64_t live ABSL_GUARDED_BY(mu);

  void Ended() {
    absl::MutexLock lock(&mu);
    --live;
  }
  // Waits until every reader's loop has ended (after Clients::Stop()).
  void AwaitEnd() {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](int64_t* n) { return *n == 0; }, &live));
  }
};

// One ByteStream Read as a callback reactor: the body of ReadOnce() and
// RunClient()'s loop without a thread. Each read is a new ReadCall; OnDone
// accounts it as RunClient() does and starts the reader's next.
class ReadCall : public grpc::ClientReadReactor<bs::ReadResponse> {
 public:
  // Starts reader i's next read, or ends its loop once stopped.
  static void Start(CallbackLoad& load, int i, const Digest& d, bool slow,
                    ClassStats& stats) {
    auto* call = new ReadCall(load, i, d, slow, stats);
    if (!load.c.Register(&call->ctx_)) {
      delete call;
      load.Ended();
      return;
    }
    call->start_ = NowUs();
    load.c.ByteStream(i).async()->Read(&call->ctx_, &call->req_, call);
    // Held until a read comes back not ok: the pacer may StartRead from
    // its thread meanwhile, so OnDone must wait for that.
    call->AddHold();
    call->StartRead(&call->resp_);
    call->StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      RemoveHold();
      return;
    }
    const auto n = static_cast<int64_t>(resp_.data().size());
    got_ += n;
    stats_.bytes.fetch_add(n);
    if (!slow_) {
      StartRead(&resp_);
      return;
    }
    load_.pacer.At(SlowResumeUs(start_, got_), [this] { StartRead(&resp_); });
  }

  void OnDone(const grpc::Status& s) override {
    load_.c.Unregister(&ctx_);
    const bool error = Account(load_.c, ReadOutcome(s, got_, d_), stats_);
    CallbackLoad& load = load_;
    const int i = i_;
    const Digest d = d_;
    const bool slow = slow_;
    ClassStats& stats = stats_;
    delete this;
    if (load.c.Stopped()) {
      load.Ended();
    } else if (error) {  // Waits 100 ms, as RunClient().
      load.pacer.At(NowUs() + 100000, [&load, i, d, slow, &stats] {
        Start(load, i, d, slow, stats);
      });
    } else {
      Start(load, i, d, slow, stats);
    }
  }

 private:
  ReadCall(CallbackLoad& load, int i, const Digest& d, bool slow,
           ClassStats& stats)
      : load_(load), i_(i), d_(d), slow_(slow), stats_(stats) {
    req_.set_resource_name(
        absl::StrCat("blobs/", d.hash(), "/", d.size_bytes()));
  }

  CallbackLoad& load_;
  const int i_;
  const Digest d_;
  const bool slow_;
  ClassStats& stats_;
  grpc::ClientContext ctx_;
  bs::ReadRequest req_;
  bs::ReadResponse resp_;
  int64_t start_ = 0;
  int64_t got_ = 0;
};

// Probes until `stop` is set: one GetActionResult + BatchReadBlobs pair
// every --probe_ms, on a connection of its own (so the clients' HTTP/2
// connection windows do not hold it up: what is measured is the server).
void Probe(Clients& c, const SmallSet& set, std::atomic<bool>& stop,
           Latencies* ac, Latencies* batch, ClassStats& stats) {
  uint64_t pick = 12345;
  while (!stop.load()) {
    absl::Status s = SmallCall(c, Clients::kProbe, set, pick++, ac, batch);
    if (!s.ok() && !stop.load()) {
      stats.Error(s.ToString());
    }
    absl::SleepFor(absl::Milliseconds(absl::GetFlag(FLAGS_probe_ms)));
  }
}

// Pins this process (its threads started from now on) to the CPUs in
// `list` ("1" or "0,1"); an empty list changes nothing. Returns false, having
// said why, when the list is malformed or the kernel refuses.
bool PinToCpus(absl::string_view list) {
  if (list.empty()) {
    return true;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  for (absl::string_view cpu : absl::StrSplit(list, ',')) {
    int n = -1;
    if (!absl::SimpleAtoi(cpu, &n) || n < 0 || n >= CPU_SETSIZE) {
      std::fprintf(stderr, "fanout: bad CPU \"%s\" in --probe_cpus\n",
                   std::string(cpu).c_str());
      return false;
    }
    CPU_SET(n, &set);
  }
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    std::perror("fanout: sched_setaffinity");
    return false;
  }
  return true;
}

// Puts this thread at SCHED_OTHER, nice 0, whatever it inherited
// (--loader_idle, `chrt --idle`, `nice`): threads it starts afterwards
// inherit that. Says so when the kernel refuses (lowering nice needs root
// or RLIMIT_NICE) and goes on as it is.
void ScheduleNormally() {
  sched_param param{};
  if (sched_getscheduler(0) != SCHED_OTHER &&
      sched_setscheduler(0, SCHED_OTHER, &param) != 0) {
    std::perror("fanout: probe: sched_setscheduler(SCHED_OTHER)");
  }
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  if (errno == 0 && nice != 0 &&
      setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 0) != 0) {
    std::fprintf(stderr, "fanout: probe stays at nice %d: %s\n", nice,
                 std::strerror(errno));
  }
}

// Lowers this thread before it starts any other, so that every thread of
// the loader inherits it: SCHED_IDLE with --loader_idle, and with --loader
// callback the --client_nice value (the threads loader lowers each reader
// thread itself, RunClient). Returns false, having said why, when the
// kernel refuses.
bool LowerLoader() {
  if (absl::GetFlag(FLAGS_loader_idle)) {
    sched_param param{};
    if (sched_setscheduler(0, SCHED_IDLE, &param) != 0) {
      std::perror("fanout: sched_setscheduler(SCHED_IDLE)");
      return false;
    }
  }
  const int nice = absl::GetFlag(FLAGS_client_nice);
  if (absl::GetFlag(FLAGS_loader) == "callback" && nice != 0 &&
      setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice) != 0) {
    std::perror("fanout: setpriority(--client_nice)");
    return false;
  }
  return true;
}

// Probes between "start" and "stop" lines on stdin, then prints the
// samples ("ac US", "batch US"), "errors N [first error]" and "end";
// returns at EOF. The body of the --probe_child process, which stands for
// a build client on another host: it runs at SCHED_OTHER, nice 0, whatever
// the loader that started it runs at.
int ProbeChildMain(const SmallSet& set, const std::string& address) {
  ScheduleNormally();  // Before any thread starts: they inherit it.
  if (!PinToCpus(absl::GetFlag(FLAGS_probe_cpus))) {
    return 2;
  }
  Clients c(address, 1);  // After pinning: its threads inherit the CPUs.
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line != "start") {
      continue;
    }
    Latencies ac, batch;
    ClassStats stats;
    std::atomic<bool> stop{false};
    std::thread probe(Probe, std::ref(c), std::cref(set), std::ref(stop), &ac,
                      &batch, std::ref(stats));
    std::getline(std::cin, line);  // "stop", or EOF.
    stop = true;
    probe.join();
    for (const Latencies::Sample& s : ac.Samples()) {
      std::printf("ac %lld %lld\n", static_cast<long long>(s.us),
                  static_cast<long long>(s.start_us));
    }
    for (const Latencies::Sample& s : batch.Samples()) {
      std::printf("batch %lld %lld\n", static_cast<long long>(s.us),
                  static_cast<long long>(s.start_us));
    }
    absl::MutexLock lock(&stats.mu);
    std::printf("errors %lld %s\nend\n",
                static_cast<long long>(stats.errors.load()),
                stats.first_error.c_str());
    std::fflush(stdout);
  }
  return 0;
}

// The probe of one phase (idle or load): a thread among the clients, or,
// with --probe_process, the child process above (its own gRPC threads and
// connection, as a build client on another host would have: in-process, its
// call's answer waited on gRPC threads busy with the readers' messages).
class ProbeRun {
 public:
  ProbeRun(Clients& c, const SmallSet& set, FILE* to_child, FILE* from_child)
      : to_child_(to_child), from_child_(from_child) {
    if (to_child_ != nullptr) {
      std::fputs("start\n", to_child_);
      std::fflush(to_child_);
    } else {
      thread_ = std::thread(Probe, std::ref(c), std::cref(set),
                            std::ref(stop_), &ac_, &batch_, std::ref(stats_));
    }
  }
  // Stops the probe and adds what it measured.
  void Finish(Latencies* ac, Latencies* batch, ClassStats& stats) {
    if (to_child_ == nullptr) {
      stop_ = true;
      thread_.join();
      Merge(ac, batch, stats);
      return;
    }
    std::fputs("stop\n", to_child_);
    std::fflush(to_child_);
    char* line = nullptr;
    size_t cap = 0;
    bool ended = false;
    while (getline(&line, &cap, from_child_) > 0) {
      long long v = 0;
      long long start = 0;
      char what[16] = {0};
      if (std::sscanf(line, "%15s %lld %lld", what, &v, &start) < 2) {
        ended = std::strncmp(line, "end", 3) == 0;
        if (ended) {
          break;
        }
        continue;
      }
      if (std::strcmp(what, "ac") == 0) {
        ac->Add(v, start);
      } else if (std::strcmp(what, "batch") == 0) {
        batch->Add(v, start);
      } else if (std::strcmp(what, "errors") == 0 && v > 0) {
        stats.errors.fetch_add(v - 1);
        stats.Error(absl::StrCat("probe: ", line));
      }
    }
    std::free(line);
    if (!ended) {
      stats.Error("probe process ended early");
    }
  }

 private:
  void Merge(Latencies* ac, Latencies* batch, ClassStats& stats) {
    for (const Latencies::Sample& s : ac_.Samples()) {
      ac->Add(s.us, s.start_us);
    }
    for (const Latencies::Sample& s : batch_.Samples()) {
      batch->Add(s.us, s.start_us);
    }
    absl::MutexLock lock(&stats_.mu);
    if (stats_.errors > 0) {
      stats.errors.fetch_add(stats_.errors - 1);
      stats.Error(stats_.first_error);
    }
  }

  FILE* const to_child_;
  FILE* const from_child_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  Latencies ac_, batch_;
  ClassStats stats_;
};

// Starts `argv0 --probe_child` with pipes to its stdin and stdout; nulls
// (probe in-process) when spawning fails.
void SpawnProbe(const char* argv0, FILE** to_child, FILE** from_child,
                pid_t* pid) {
  *to_child = *from_child = nullptr;
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0) {
    std::perror("fanout: pipe");
    return;
  }
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  if (absl::GetFlag(FLAGS_probe_session)) {
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  for (int fd : {in[0], in[1], out[0], out[1]}) {
    posix_spawn_file_actions_addclose(&actions, fd);
  }
  std::vector<std::string> args = {
      "/proc/self/exe", "--probe_child",
      "--target=" + absl::GetFlag(FLAGS_target),
      absl::StrCat("--seed=", absl::GetFlag(FLAGS_seed)),
      absl::StrCat("--probe_ms=", absl::GetFlag(FLAGS_probe_ms)),
      "--probe_cpus=" + absl::GetFlag(FLAGS_probe_cpus)};
  std::vector<char*> argv;
  for (std::string& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  int rc = posix_spawn(pid, "/proc/self/exe", &actions, &attr, argv.data(),
                       environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(in[0]);
  close(out[1]);
  if (rc != 0) {
    std::fprintf(stderr, "fanout: spawning the probe (%s): %s\n", argv0,
                 std::strerror(rc));
    close(in[1]);
    close(out[0]);
    return;
  }
  *to_child = fdopen(in[1], "w");
  *from_child = fdopen(out[0], "r");
  // A probe that dies must not kill this process on its next "start" or
  // "stop" line: the write fails instead, and ProbeRun::Finish() reports
  // the probe as ended early.
  signal(SIGPIPE, SIG_IGN);
}

// ------------------------------------------------------------- setup ---

absl::Status Upload(client::ReapiClient& client, const std::string& data) {
  return client.UploadBlob(Digest::OfData(data),
                           client::StringChunkSource(data));
}

// The small blobs and action results of `seed`: blob i's bytes, and the
// digests of both.
std::string SmallBlob(uint64_t seed, int i) {
  return Bytes(seed * 1000003 + static_cast<uint64_t>(i), 200 + (i * 37) % 3000);
}
reapi::ActionResult SmallResult(const SmallSet& set, int i) {
  reapi::ActionResult r;
  auto* f = r.add_output_files();
  f->set_path(absl::StrCat("out/obj_", i, ".o"));
  *f->mutable_digest() = ToProto(set.blobs[static_cast<size_t>(i)]);
  *r.mutable_stdout_digest() = ToProto(set.blobs[static_cast<size_t>(i + 1) % 64]);
  return r;
}
SmallSet SmallSetOf(uint64_t seed) {
  SmallSet set;
  for (int i = 0; i < 64; ++i) {
    set.blobs.push_back(Digest::OfData(SmallBlob(seed, i)));
    set.actions.push_back(
        Digest::OfData(absl::StrCat("fanout action ", seed, "/", i)));
  }
  return set;
}

absl::StatusOr<SmallSet> SetUpSmall(client::ReapiClient& client,
                                    uint64_t seed) {
  SmallSet set = SmallSetOf(seed);
  for (int i = 0; i < 64; ++i) {
    if (absl::Status s = Upload(client, SmallBlob(seed, i)); !s.ok()) {
      return s;
    }
  }
  for (int i = 0; i < 64; ++i) {
    if (absl::Status s = client.UpdateActionResult(
            set.actions[static_cast<size_t>(i)], SmallResult(set, i));
        !s.ok()) {
      return s;
    }
  }
  return set;
}

// Uploads the blobs a scenario reads (4 threads for many blobs).
absl::StatusOr<std::vector<Digest>> SetUpBlobs(client::ReapiClient& client,
                                               absl::string_view scenario,
                                               uint64_t seed, int readers) {
  if (scenario == "same_blob") {
    std::string data = Bytes(seed, absl::GetFlag(FLAGS_blob_mib) * kMiB);
    if (absl::Status s = Upload(client, data); !s.ok()) {
      return s;
    }
    return std::vector<Digest>{Digest::OfData(data)};
  }
  if (scenario != "distinct_blobs") {
    return std::vector<Digest>{};
  }
  const int64_t size = absl::GetFlag(FLAGS_distinct_kib) * kKiB;
  std::vector<Digest> blobs(static_cast<size_t>(readers));
  std::atomic<int> next{0};
  absl::Mutex mu;
  absl::Status first;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < readers; i = next++) {
        std::string data =
            Bytes(seed * 7919 + 17 + static_cast<uint64_t>(i), size);
        blobs[static_cast<size_t>(i)] = Digest::OfData(data);
        absl::Status s = Upload(client, data);
        if (!s.ok()) {
          absl::MutexLock lock(&mu);
          first.Update(s);
        }
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  if (!first.ok()) {
    return first;
  }
  return blobs;
}

// ---------------------------------------------------------------- run ---

const std::vector<std::string> kColumns = {"server",
                                           "scenario",
                                           "clients",
                                           "slow",
                                           "rss_before_mib",
                                           "peak_rss_mib",
                                           "fast_mib_s",
                                           "slow_mib_s",
                                           "fast_done",
                                           "slow_done",
                                           "calls_s",
                                           "calls_ac_p99_ms",
                                           "calls_batch_p99_ms",
                                           "idle_ac_p99_ms",
                                           "load_ac_p99_ms",
                                           "ac_p99_ratio",
                                           "idle_batch_p99_ms",
                                           "load_batch_p99_ms",
                                           "cut",
                                           "errors",
                                           "loader",
                                           "loader_threads",
                                           "loader_cpus",
                                           "loader_sched",
                                           "probe_sched"};

// Prints `cells` and appends them to `csv` (with a header when new).
void PrintRow(const std::vector<std::string>& cells, const std::string& csv) {
  std::printf("%s\n", absl::StrJoin(cells, " | ").c_str());
  std::fflush(stdout);
  if (csv.empty()) {
    return;
  }
  bool fresh = !std::ifstream(csv).good();
  std::ofstream out(csv, std::ios::app);
  if (fresh) {
    out << absl::StrJoin(kColumns, ",") << "\n";
  }
  out << absl::StrJoin(cells, ",") << "\n";
}

// Appends `samples` in the order taken to --probe_log, when set.
void LogProbe(absl::string_view scenario, const char* phase,
              Latencies& samples) {
  const std::string path = absl::GetFlag(FLAGS_probe_log);
  if (path.empty()) {
    return;
  }
  std::ofstream out(path, std::ios::app);
  int64_t i = 0;
  for (const Latencies::Sample& s : samples.Samples()) {
    out << scenario << ' ' << phase << ' ' << i++ << ' ' << s.us << ' '
        << s.start_us << '\n';
  }
}

// This process's CPU time (user + system, every thread; not the probe's
// child process).
double SelfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

// This process's threads now.
int SelfThreads() {
  int n = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/self/task", ec), end;
       !ec && it != end; it.increment(ec)) {
    ++n;
  }
  return n;
}

std::string F(double v, int digits = 1) {
  return absl::StrFormat("%.*f", digits, v);
}

int RunScenario(Clients& c, client::ReapiClient& client,
                absl::string_view scenario, const SmallSet& set,
                FILE* to_probe, FILE* from_probe, pid_t probe_pid) {
  const int readers = absl::GetFlag(FLAGS_readers);
  const int pid = absl::GetFlag(FLAGS_server_pid);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  absl::StatusOr<std::vector<Digest>> blobs =
      SetUpBlobs(client, scenario, seed, readers);
  if (!blobs.ok()) {
    std::fprintf(stderr, "fanout: setup of %s: %s\n",
                 std::string(scenario).c_str(),
                 blobs.status().ToString().c_str());
    return 1;
  }
  // Idle probe.
  ClassStats probe_stats;
  Latencies idle_ac, idle_batch, load_ac, load_batch;
  c.Start();
  {
    ProbeRun probe(c, set, to_probe, from_probe);
    absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_idle_seconds)));
    probe.Finish(&idle_ac, &idle_batch, probe_stats);
  }
  double rss_before = pid > 0 ? ProcStatusMib(pid, "VmRSS:") : 0;
  if (pid > 0) {
    ResetPeakRss(pid);
  }
  const int slow_count =
      scenario == "small_calls"
          ? 0
          : static_cast<int>(readers * absl::GetFlag(FLAGS_slow_fraction));
  ClassStats slow, fast;
  Latencies calls_ac, calls_batch;  // small_calls clients' own latencies.
  const bool callback =
      scenario != "small_calls" && absl::GetFlag(FLAGS_loader) == "callback";
  std::vector<std::thread> threads;
  std::optional<Pacer> pacer;
  std::optional<CallbackLoad> load;
  if (callback) {
    pacer.emplace();
    load.emplace(c, *pacer, readers);
  }
  const double cpu0 = SelfCpuSeconds();
  const absl::Time start = absl::Now();
  for (int i = 0; i < readers; ++i) {
    bool is_slow = i % readers < slow_count;
    // Interleave slow and fast over the connections.
    if (callback) {
      const Digest& d = (*blobs)[static_cast<size_t>(i) % blobs->size()];
      ReadCall::Start(*load, i, d, is_slow, is_slow ? slow : fast);
      continue;
    }
    threads.emplace_back(RunClient, std::ref(c), i, std::string(scenario),
                         std::cref(*blobs), std::cref(set), is_slow,
                         std::ref(is_slow ? slow : fast), &calls_ac,
                         &calls_batch);
  }
  ProbeRun probe(c, set, to_probe, from_probe);
  absl::SleepFor(start + absl::Seconds(absl::GetFlag(FLAGS_duration) / 2) -
                 absl::Now());
  const int loader_threads = SelfThreads();
  const std::string loader_sched = ProcSchedClasses(getpid());
  const std::string probe_sched =
      probe_pid > 0 ? ProcSchedClasses(probe_pid) : "in-process";
  absl::SleepFor(start + absl::Seconds(absl::GetFlag(FLAGS_duration)) -
                 absl::Now());
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  const double loader_cpu = SelfCpuSeconds() - cpu0;
  double peak = pid > 0 ? ProcStatusMib(pid, "VmHWM:") : 0;
  probe.Finish(&load_ac, &load_batch, probe_stats);
  c.Stop();
  for (std::thread& t : threads) {
    t.join();
  }
  if (callback) {
    pacer->Stop();
    load->AwaitEnd();
    load.reset();
    pacer.reset();
  }
  peak = std::max(peak, pid > 0 ? ProcStatusMib(pid, "VmHWM:") : 0);
  LogProbe(scenario, "idle", idle_ac);
  LogProbe(scenario, "load", load_ac);
  double ratio = idle_ac.QuantileMs(0.99) > 0
                     ? load_ac.QuantileMs(0.99) / idle_ac.QuantileMs(0.99)
                     : 0;
  const int64_t errors = slow.errors + fast.errors + probe_stats.errors;
  PrintRow({absl::GetFlag(FLAGS_label),
            std::string(scenario),
            absl::StrCat(readers),
            absl::StrCat(slow_count),
            F(rss_before),
            F(peak),
            F(fast.bytes / secs / kMiB),
            F(slow.bytes / secs / kMiB),
            absl::StrCat(fast.completed.load()),
            absl::StrCat(slow.completed.load()),
            F(scenario == "small_calls" ? fast.completed / secs : 0),
            F(calls_ac.QuantileMs(0.99), 2),
            F(calls_batch.QuantileMs(0.99), 2),
            F(idle_ac.QuantileMs(0.99), 2),
            F(load_ac.QuantileMs(0.99), 2),
            F(ratio, 1),
            F(idle_batch.QuantileMs(0.99), 2),
            F(load_batch.QuantileMs(0.99), 2),
            absl::StrCat(fast.cut + slow.cut),
            absl::StrCat(errors),
            callback ? "callback" : "threads",
            absl::StrCat(loader_threads),
            F(loader_cpu / secs, 2),
            loader_sched,
            probe_sched},
           absl::GetFlag(FLAGS_csv));
  for (ClassStats* s : {&slow, &fast, &probe_stats}) {
    absl::MutexLock lock(&s->mu);
    if (!s->first_error.empty()) {
      std::fprintf(stderr, "fanout: %s first error: %s\n",
                   std::string(scenario).c_str(), s->first_error.c_str());
    }
  }
  return errors == 0 ? 0 : 1;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Many concurrent ByteStream readers and small callers against one "
      "REAPI server; see bench/README.md.");
  absl::ParseCommandLine(argc, argv);
  const std::string target = absl::GetFlag(FLAGS_target);
  if (!absl::StartsWith(target, "grpc://127.0.0.1:") &&
      !absl::StartsWith(target, "grpc://localhost:")) {
    std::fprintf(stderr,
                 "fanout: --target must be a loopback grpc:// address\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_probe_child)) {
    return ProbeChildMain(SmallSetOf(absl::GetFlag(FLAGS_seed)),
                          target.substr(std::strlen("grpc://")));
  }
  if (!LowerLoader()) {  // Before the first thread starts.
    return 2;
  }
  client::ReapiClientOptions options;
  options.target = target;
  options.timeout = absl::Seconds(120);
  absl::StatusOr<std::unique_ptr<client::ReapiClient>> client =
      client::NewReapiClient(options);
  if (!client.ok()) {
    std::fprintf(stderr, "fanout: %s\n", client.status().ToString().c_str());
    return 2;
  }
  absl::StatusOr<SmallSet> set =
      SetUpSmall(**client, absl::GetFlag(FLAGS_seed));
  if (!set.ok()) {
    std::fprintf(stderr, "fanout: setup: %s\n",
                 set.status().ToString().c_str());
    return 1;
  }
  FILE* to_probe = nullptr;
  FILE* from_probe = nullptr;
  pid_t probe_pid = 0;
  if (absl::GetFlag(FLAGS_probe_process)) {
    SpawnProbe(argv[0], &to_probe, &from_probe, &probe_pid);
  }
  Clients clients(target.substr(std::strlen("grpc://")),
                  std::max(1, absl::GetFlag(FLAGS_channels)));
  std::printf("%s\n", absl::StrJoin(kColumns, " | ").c_str());
  int status = 0;
  for (absl::string_view scenario :
       absl::StrSplit(absl::GetFlag(FLAGS_scenario), ',', absl::SkipEmpty())) {
    if (scenario != "same_blob" && scenario != "distinct_blobs" &&
        scenario != "small_calls") {
      std::fprintf(stderr, "fanout: unknown scenario %s\n",
                   std::string(scenario).c_str());
      return 2;
    }
    status |= RunScenario(clients, **client, scenario, *set, to_probe,
                          from_probe, probe_pid);
  }
  if (to_probe != nullptr) {
    std::fclose(to_probe);  // EOF: the child exits.
    std::fclose(from_probe);
    waitpid(probe_pid, nullptr, 0);
  }
  return status;
}

}  // namespace
}  // namespace cairn::bench

int main(int argc, char** argv) { return cairn::bench::Main(argc, argv); }
