// reapi_load: a closed-loop load generator for REAPI v2 cache servers.
//
// For every (mix, concurrency) pair it prepares the server state (untimed),
// runs a few warm-up operations, then runs `--requests` operations spread over
// `--concurrency` worker threads (each one stream: one call in flight at a
// time), stopping early when `--duration` has passed. It prints one table row
// per pair and appends the same row to `--csv`:
//   ops/s, MB/s of blob payload, p50/p99/p999 latency, and, given
//   --server_pid, the server's CPU seconds (utime+stime from /proc/PID/stat)
//   and peak RSS (VmHWM from /proc/PID/status, reset before every row by
//   writing 5 to /proc/PID/clear_refs).
//
// Mixes: find_missing, batch_update, batch_read, ac_get_hit, ac_get_miss,
// ac_update, bs_write_16m, bs_read_16m, bs_write_1g, bs_read_1g.
// Small blobs are 64 B - 64 KiB, two thirds under 1 KiB (log-uniform within
// each band). Loopback targets only; every loop is bounded in count and time.
// Uses ReapiClient for AC, FindMissingBlobs and ByteStream, and the generated
// stubs for multi-blob BatchUpdateBlobs / BatchReadBlobs.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/proc_stats.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cas/digest.h"
#include "client/reapi_client.h"

ABSL_FLAG(std::string, target, "grpc://127.0.0.1:9092",
          "Server to load: grpc://127.0.0.1:PORT (loopback only).");
ABSL_FLAG(std::string, mix,
          "find_missing,batch_update,batch_read,ac_get_hit,ac_get_miss,"
          "ac_update",
          "Comma-separated workloads, run one after another.");
ABSL_FLAG(std::string, concurrency, "1,32",
          "Comma-separated stream counts (1..64); every mix runs at each.");
ABSL_FLAG(int64_t, requests, 2000, "Operations per row (upper bound).");
ABSL_FLAG(int64_t, large_requests, 8,
          "Operations per row for the 16 MiB rows (upper bound).");
ABSL_FLAG(int64_t, huge_requests, 2,
          "Operations per row for the 1 GiB rows (upper bound).");
ABSL_FLAG(double, duration, 10, "Seconds per row (upper bound).");
ABSL_FLAG(int64_t, warmup, 20, "Untimed operations before each row.");
ABSL_FLAG(int, batch_blobs, 16,
          "Blobs per BatchUpdateBlobs / BatchReadBlobs operation.");
ABSL_FLAG(int, find_missing_batch, 1000,
          "Digests per FindMissingBlobs operation (half present).");
ABSL_FLAG(int, pool_blobs, 4096,
          "Small blobs uploaded before the read mixes (the present set).");
ABSL_FLAG(int, pool_actions, 2000, "Action results stored for ac_get_hit.");
ABSL_FLAG(double, rpc_timeout, 600, "Deadline of every call, in seconds.");
ABSL_FLAG(int, server_pid, 0, "Server process to read CPU and RSS from.");
ABSL_FLAG(std::string, label, "server", "Server name in the table and CSV.");
ABSL_FLAG(std::string, csv, "", "Append rows to this CSV file.");
ABSL_FLAG(std::string, instance, "", "REAPI instance name.");
ABSL_FLAG(uint64_t, seed, 0, "Random seed (0: from the clock).");
ABSL_FLAG(std::string, perf_record, "",
          "With --server_pid: run `perf record -g` on the server during each "
          "timed row only, into PREFIX.<mix>.<concurrency>.data.");

namespace cairn::bench {
namespace {

namespace reapi = ::build::bazel::remote::execution::v2;
using cas::Digest;

constexpr int64_t kMiB = 1024 * 1024;
constexpr int kMaxConcurrency = 64;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Returns `len` pseudo-random bytes of the stream named `seed`, starting at
// `offset` (a multiple of 8); any chunking of one stream yields equal bytes.
std::string StreamBytes(uint64_t seed, int64_t offset, int64_t len) {
  std::string out(static_cast<size_t>(len), '\0');
  uint64_t block = static_cast<uint64_t>(offset) / 8;
  for (int64_t i = 0; i < len; i += 8, ++block) {
    uint64_t v = SplitMix64(seed ^ (block * 0xd1342543de82ef95ULL));
    std::memcpy(out.data() + i, &v, std::min<int64_t>(8, len - i));
  }
  return out;
}

// Small blob sizes: two thirds in [64 B, 1 KiB), the rest in [1, 64] KiB,
// log-uniform within each band.
int64_t SmallBlobSize(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  double lo = 6, hi = 10;  // log2 bounds
  if (u(rng) >= 2.0 / 3.0) {
    lo = 10;
    hi = 16;
  }
  return static_cast<int64_t>(std::exp2(lo + (hi - lo) * u(rng)));
}

reapi::Digest ToProto(const Digest& d) {
  reapi::Digest p;
  p.set_hash(d.hash());
  p.set_size_bytes(d.size_bytes());
  return p;
}

// ---------------------------------------------------------------- /proc ---

struct ProcSample {
  double cpu_seconds = 0;
  double peak_rss_mib = 0;
};

// Starts `perf record -g` on `pid` into `path`; returns its pid or -1.
pid_t StartPerf(int pid, const std::string& path) {
  std::vector<std::string> args = {
      "perf", "record", "-F", "999", "-g", "-p", std::to_string(pid),
      "-o",   path};
  std::vector<char*> argv;
  for (std::string& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  pid_t child = -1;
  if (posix_spawnp(&child, "perf", nullptr, nullptr, argv.data(), environ) !=
      0) {
    return -1;
  }
  absl::SleepFor(absl::Milliseconds(300));  // Let perf attach.
  return child;
}

// Stops a perf started by StartPerf, waiting at most 30 s.
void StopPerf(pid_t child) {
  if (child <= 0) {
    return;
  }
  kill(child, SIGINT);
  for (int i = 0; i < 300; ++i) {
    if (waitpid(child, nullptr, WNOHANG) == child) {
      return;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
}

// -------------------------------------------------------------- clients ---

// Everything a workload talks to; shared by all workers.
struct Conn {
  std::unique_ptr<client::ReapiClient> client;
  std::unique_ptr<reapi::ContentAddressableStorage::Stub> cas;
  std::string instance;
  absl::Duration timeout;

  void Prepare(grpc::ClientContext& ctx) const {
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
};

// A small blob with its bytes.
struct Blob {
  Digest digest;
  std::string data;
};

Blob MakeSmallBlob(uint64_t seed, std::mt19937_64& rng) {
  Blob b;
  b.data = StreamBytes(seed, 0, SmallBlobSize(rng));
  b.digest = Digest::OfData(b.data);
  return b;
}

// Uploads `blobs` in one BatchUpdateBlobs call; an error names the first
// failed blob.
absl::Status BatchUpload(const Conn& c, absl::Span<const Blob> blobs) {
  reapi::BatchUpdateBlobsRequest req;
  req.set_instance_name(c.instance);
  req.set_digest_function(reapi::DigestFunction::SHA256);
  for (const Blob& b : blobs) {
    auto* r = req.add_requests();
    *r->mutable_digest() = ToProto(b.digest);
    r->set_data(b.data);
  }
  grpc::ClientContext ctx;
  c.Prepare(ctx);
  reapi::BatchUpdateBlobsResponse resp;
  grpc::Status s = c.cas->BatchUpdateBlobs(&ctx, req, &resp);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat("BatchUpdateBlobs: ", s.error_message()));
  }
  for (const auto& r : resp.responses()) {
    if (r.status().code() != 0) {
      return absl::Status(
          static_cast<absl::StatusCode>(r.status().code()),
          absl::StrCat("BatchUpdateBlobs item: ", r.status().message()));
    }
  }
  return absl::OkStatus();
}

// Blobs and action results present on the server, shared by the read
// mixes; created on first use (untimed).
struct Pool {
  std::vector<Digest> blobs;
  std::vector<Digest> actions;
};

absl::Status FillBlobPool(const Conn& c, uint64_t nonce, int count,
                          Pool& pool) {
  std::mt19937_64 rng(nonce);
  std::vector<Blob> batch;
  int64_t batch_bytes = 0;
  for (int i = 0; i < count; ++i) {
    batch.push_back(MakeSmallBlob(SplitMix64(nonce + i), rng));
    batch_bytes += batch.back().data.size();
    if (batch_bytes > kMiB || i + 1 == count) {
      if (absl::Status s = BatchUpload(c, batch); !s.ok()) {
        return s;
      }
      for (Blob& b : batch) {
        pool.blobs.push_back(b.digest);
      }
      batch.clear();
      batch_bytes = 0;
    }
  }
  return absl::OkStatus();
}

// Returns an ActionResult naming three output files and stdout, all in the
// pool, as a compile action would.
reapi::ActionResult MakeActionResult(const Pool& pool, uint64_t pick) {
  reapi::ActionResult r;
  size_t n = pool.blobs.size();
  for (int k = 0; k < 3; ++k) {
    auto* f = r.add_output_files();
    f->set_path(absl::StrCat("bazel-out/k8-opt/bin/pkg/obj_", k, ".o"));
    *f->mutable_digest() = ToProto(pool.blobs[SplitMix64(pick + k) % n]);
  }
  *r.mutable_stdout_digest() = ToProto(pool.blobs[SplitMix64(pick + 7) % n]);
  r.set_exit_code(0);
  return r;
}

Digest ActionDigest(uint64_t nonce, uint64_t i) {
  return Digest::OfData(absl::StrCat("action/", nonce, "/", i));
}

absl::Status FillActionPool(const Conn& c, uint64_t nonce, int count,
                            Pool& pool) {
  for (int i = 0; i < count; ++i) {
    Digest a = ActionDigest(nonce, i);
    absl::Status s =
        c.client->UpdateActionResult(a, MakeActionResult(pool, nonce + i));
    if (!s.ok()) {
      return s;
    }
    pool.actions.push_back(a);
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------ workloads ---

// One operation's outcome: payload bytes moved, and the clock reading taken
// right before the first RPC (client-side preparation is not timed).
struct OpResult {
  absl::Status status;
  int64_t bytes = 0;
  int64_t start_ns = 0;
};

class Workload {
 public:
  virtual ~Workload() = default;
  // Prepares server state for up to `ops` operations (untimed).
  virtual absl::Status Setup(int64_t ops) { return absl::OkStatus(); }
  // Runs operation `i` (unique within the row) on one worker.
  virtual OpResult Run(int64_t i, std::mt19937_64& rng) = 0;
};

class FindMissing final : public Workload {
 public:
  FindMissing(const Conn& c, const Pool& p, int batch)
      : c_(c), pool_(p), batch_(batch) {}
  OpResult Run(int64_t i, std::mt19937_64& rng) override {
    std::vector<Digest> digests;
    int present = batch_ / 2;
    for (int k = 0; k < batch_; ++k) {
      if (k < present) {
        digests.push_back(pool_.blobs[rng() % pool_.blobs.size()]);
        continue;
      }
      uint64_t raw[4] = {rng(), rng(), rng(), rng()};
      absl::StatusOr<Digest> d = Digest::Create(
          cas::HexEncode(absl::string_view(reinterpret_cast<char*>(raw), 32)),
          SmallBlobSize(rng));
      digests.push_back(*d);
    }
    OpResult r;
    r.start_ns = NowNs();
    absl::StatusOr<std::vector<Digest>> missing =
        c_.client->FindMissingBlobs(digests);
    if (!missing.ok()) {
      r.status = missing.status();
    } else if (static_cast<int>(missing->size()) != batch_ - present) {
      r.status = absl::InternalError(
          absl::StrCat("FindMissingBlobs: ", missing->size(), " missing, want ",
                       batch_ - present));
    }
    return r;
  }

 private:
  const Conn& c_;
  const Pool& pool_;
  const int batch_;
};

class BatchUpdate final : public Workload {
 public:
  BatchUpdate(const Conn& c, uint64_t nonce, int batch)
      : c_(c), nonce_(nonce), batch_(batch) {}
  OpResult Run(int64_t i, std::mt19937_64& rng) override {
    std::vector<Blob> blobs;
    OpResult r;
    for (int k = 0; k < batch_; ++k) {
      blobs.push_back(MakeSmallBlob(SplitMix64(nonce_ ^ (i * 64 + k)), rng));
      r.bytes += blobs.back().data.size();
    }
    r.start_ns = NowNs();
    r.status = BatchUpload(c_, blobs);
    return r;
  }

 private:
  const Conn& c_;
  const uint64_t nonce_;
  const int batch_;
};

class BatchRead final : public Workload {
 public:
  BatchRead(const Conn& c, const Pool& p, int batch)
      : c_(c), pool_(p), batch_(batch) {}
  OpResult Run(int64_t i, std::mt19937_64& rng) override;

 private:
  const Conn& c_;
  const Pool& pool_;
  const int batch_;
};

OpResult BatchRead::Run(int64_t i, std::mt19937_64& rng) {
  reapi::BatchReadBlobsRequest req;
  req.set_instance_name(c_.instance);
  req.set_digest_function(reapi::DigestFunction::SHA256);
  for (int k = 0; k < batch_; ++k) {
    *req.add_digests() = ToProto(pool_.blobs[rng() % pool_.blobs.size()]);
  }
  OpResult r;
  grpc::ClientContext ctx;
  c_.Prepare(ctx);
  reapi::BatchReadBlobsResponse resp;
  r.start_ns = NowNs();
  grpc::Status s = c_.cas->BatchReadBlobs(&ctx, req, &resp);
  if (!s.ok()) {
    r.status = absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                            "BatchReadBlobs: " + s.error_message());
    return r;
  }
  for (const auto& item : resp.responses()) {
    if (item.status().code() != 0 || static_cast<int64_t>(item.data().size()) !=
                                         item.digest().size_bytes()) {
      r.status = absl::InternalError("BatchReadBlobs item: " +
                                     item.status().message());
      return r;
    }
    r.bytes += item.data().size();
  }
  if (resp.responses_size() != batch_) {
    r.status = absl::InternalError("BatchReadBlobs: short answer");
  }
  return r;
}

// ac_get_hit (hit = true) and ac_get_miss.
class AcGet final : public Workload {
 public:
  AcGet(const Conn& c, const Pool& p, uint64_t nonce, bool hit)
      : c_(c), pool_(p), nonce_(nonce), hit_(hit) {}
  OpResult Run(int64_t i, std::mt19937_64& rng) override {
    Digest action = hit_ ? pool_.actions[rng() % pool_.actions.size()]
                         : ActionDigest(nonce_ ^ 0x5a5a, i);
    OpResult r;
    r.start_ns = NowNs();
    absl::StatusOr<reapi::ActionResult> got =
        c_.client->GetActionResult(action, {});
    if (hit_) {
      r.status = got.status();
    } else if (got.ok() || !absl::IsNotFound(got.status())) {
      r.status =
          got.ok() ? absl::InternalError("unexpected AC hit") : got.status();
    }
    return r;
  }

 private:
  const Conn& c_;
  const Pool& pool_;
  const uint64_t nonce_;
  const bool hit_;
};

class AcUpdate final : public Workload {
 public:
  AcUpdate(const Conn& c, const Pool& p, uint64_t nonce)
      : c_(c), pool_(p), nonce_(nonce) {}
  OpResult Run(int64_t i, std::mt19937_64& rng) override {
    Digest action = ActionDigest(nonce_, i);
    reapi::ActionResult result = MakeActionResult(pool_, rng());
    OpResult r;
    r.start_ns = NowNs();
    r.status = c_.client->UpdateActionResult(action, result);
    return r;
  }

 private:
  const Conn& c_;
  const Pool& pool_;
  const uint64_t nonce_;
};

// Returns a ChunkSource producing the generated stream `seed`.
client::ChunkSource GeneratedSource(uint64_t seed, int64_t size) {
  return
      [seed, size](int64_t offset, int64_t max) -> absl::StatusOr<std::string> {
        return StreamBytes(seed, offset, std::min(max, size - offset));
      };
}

// Returns the digest of generated stream `seed` of `size` bytes.
Digest GeneratedDigest(uint64_t seed, int64_t size) {
  cas::Sha256Hasher h;
  for (int64_t off = 0; off < size; off += kMiB) {
    h.Update(StreamBytes(seed, off, std::min(kMiB, size - off)));
  }
  return h.FinishDigest();
}

// ByteStream Write of fresh blobs (digests computed in Setup, untimed).
class BsWrite final : public Workload {
 public:
  BsWrite(const Conn& c, uint64_t nonce, int64_t size)
      : c_(c), nonce_(nonce), size_(size) {}
  absl::Status Setup(int64_t ops) override {
    for (int64_t i = 0; i < ops; ++i) {
      digests_.push_back(GeneratedDigest(nonce_ + i, size_));
    }
    return absl::OkStatus();
  }
  OpResult Run(int64_t i, std::mt19937_64& rng) override {
    OpResult r;
    if (i >= static_cast<int64_t>(digests_.size())) {
      r.status = absl::OutOfRangeError("BsWrite: op beyond setup");
      return r;
    }
    r.start_ns = NowNs();
    r.status =
        c_.client->UploadBlob(digests_[i], GeneratedSource(nonce_ + i, size_));
    r.bytes = size_;
    return r;
  }

 private:
  const Conn& c_;
  const uint64_t nonce_;
  const int64_t size_;
  std::vector<Digest> digests_;
};

// ByteStream Read of `blobs` blobs uploaded in Setup; ReapiClient checks
// each one's SHA-256 as a real client would.
class BsRead final : public Workload {
 public:
  BsRead(const Conn& c, uint64_t nonce, int64_t size, int blobs)
      : c_(c), nonce_(nonce), size_(size), blobs_(blobs) {}
  absl::Status Setup(int64_t ops) override {
    for (int k = 0; k < blobs_; ++k) {
      uint64_t seed = nonce_ + 1000003ULL * (k + 1);
      digests_.push_back(GeneratedDigest(seed, size_));
      absl::Status s =
          c_.client->UploadBlob(digests_.back(), GeneratedSource(seed, size_));
      if (!s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }
  OpResult Run(int64_t i, std::mt19937_64& rng) override {
    OpResult r;
    r.start_ns = NowNs();
    r.status = c_.client->ReadBlob(digests_[i % digests_.size()],
                                   [&r](absl::string_view chunk) {
                                     r.bytes += chunk.size();
                                     return absl::OkStatus();
                                   });
    return r;
  }

 private:
  const Conn& c_;
  const uint64_t nonce_;
  const int64_t size_;
  const int blobs_;
  std::vector<Digest> digests_;
};

// --------------------------------------------------------------- runner ---

struct Row {
  std::string mix;
  int concurrency = 0;
  int64_t ops = 0;
  int64_t errors = 0;
  double seconds = 0;
  int64_t bytes = 0;
  std::vector<int64_t> latencies_ns;
  ProcSample server_before, server_after;
  double client_cpu_seconds = 0;
  std::string first_error;
};

double SelfCpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Runs ops [0, count) of `w` on `concurrency` threads, stopping at
// `deadline_ns`; records latencies when `row` is given.
void RunOps(Workload& w, int concurrency, int64_t first, int64_t count,
            int64_t deadline_ns, uint64_t seed, Row* row) {
  std::atomic<int64_t> next{first};
  absl::Mutex mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(SplitMix64(seed + t));
      std::vector<int64_t> lat;
      int64_t bytes = 0, errors = 0;
      std::string err;
      for (int64_t i = next++; i < first + count; i = next++) {
        if (NowNs() > deadline_ns) {
          break;
        }
        int64_t before = NowNs();
        OpResult r = w.Run(i, rng);
        lat.push_back(NowNs() - (r.start_ns > 0 ? r.start_ns : before));
        bytes += r.bytes;
        if (!r.status.ok()) {
          ++errors;
          if (err.empty()) {
            err = r.status.ToString();
          }
        }
      }
      if (row == nullptr) {
        return;
      }
      absl::MutexLock lock(&mu);
      row->latencies_ns.insert(row->latencies_ns.end(), lat.begin(), lat.end());
      row->bytes += bytes;
      row->errors += errors;
      if (row->first_error.empty()) {
        row->first_error = err;
      }
    });
  }
  for (std::thread& th : threads) {
    th.join();
  }
}

double Percentile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) {
    return 0;
  }
  size_t idx = static_cast<size_t>(std::ceil(q * sorted.size())) - 1;
  return sorted[std::min(idx, sorted.size() - 1)] / 1e3;  // microseconds
}

struct Options {
  int64_t requests;
  int64_t warmup;
  double duration;
  int server_pid;
  uint64_t seed;
  std::string perf_prefix;
};

// Returns the untimed warm-up count for a row of `requests` operations.
int64_t WarmupOps(const Options& o, int64_t requests) {
  return std::min(o.warmup, requests / 4);
}

Row RunRow(const std::string& mix, int concurrency, int64_t requests,
           Workload& w, const Options& o) {
  Row row;
  row.mix = mix;
  row.concurrency = concurrency;
  int64_t warm = WarmupOps(o, requests);
  RunOps(w, concurrency, requests, warm, NowNs() + int64_t{60} * 1000000000,
         o.seed ^ 0x77, nullptr);
  pid_t perf = -1;
  if (o.server_pid > 0 && !o.perf_prefix.empty()) {
    perf = StartPerf(o.server_pid, absl::StrCat(o.perf_prefix, ".", mix, ".",
                                                concurrency, ".data"));
  }
  if (o.server_pid > 0) {
    ResetPeakRss(o.server_pid);
    row.server_before = {ProcCpuSeconds(o.server_pid), 0};
  }
  double cpu0 = SelfCpuSeconds();
  int64_t t0 = NowNs();
  RunOps(w, concurrency, 0, requests,
         t0 + static_cast<int64_t>(o.duration * 1e9), o.seed, &row);
  row.seconds = (NowNs() - t0) / 1e9;
  row.client_cpu_seconds = SelfCpuSeconds() - cpu0;
  if (o.server_pid > 0) {
    row.server_after = {ProcCpuSeconds(o.server_pid),
                        ProcStatusMib(o.server_pid, "VmHWM:")};
  }
  StopPerf(perf);
  row.ops = row.latencies_ns.size();
  std::sort(row.latencies_ns.begin(), row.latencies_ns.end());
  return row;
}

const char kCsvHeader[] =
    "label,mix,concurrency,ops,errors,seconds,ops_per_s,mb_per_s,p50_us,"
    "p99_us,p999_us,server_cpu_s,server_cpu_us_per_op,server_peak_rss_mib,"
    "client_cpu_s\n";

std::string CsvLine(const std::string& label, const Row& r) {
  double cpu = r.server_after.cpu_seconds - r.server_before.cpu_seconds;
  return absl::StrFormat(
      "%s,%s,%d,%d,%d,%.3f,%.1f,%.2f,%.0f,%.0f,%.0f,%.2f,%.1f,%.1f,%.2f\n",
      label, r.mix, r.concurrency, r.ops, r.errors, r.seconds,
      r.ops / r.seconds, r.bytes / 1e6 / r.seconds,
      Percentile(r.latencies_ns, 0.5), Percentile(r.latencies_ns, 0.99),
      Percentile(r.latencies_ns, 0.999), cpu, r.ops > 0 ? cpu * 1e6 / r.ops : 0,
      r.server_after.peak_rss_mib, r.client_cpu_seconds);
}

void PrintHeader() {
  absl::PrintF("%-12s %-13s %4s %7s %4s %6s %10s %8s %9s %9s %9s %7s %9s\n",
               "server", "mix", "conc", "ops", "err", "secs", "ops/s", "MB/s",
               "p50 ms", "p99 ms", "p999 ms", "srv cpu", "rss MiB");
}

void PrintRow(const std::string& label, const Row& r) {
  absl::PrintF(
      "%-12s %-13s %4d %7d %4d %6.2f %10.1f %8.1f %9.3f %9.3f %9.3f %7.2f "
      "%9.1f\n",
      label, r.mix, r.concurrency, r.ops, r.errors, r.seconds,
      r.ops / r.seconds, r.bytes / 1e6 / r.seconds,
      Percentile(r.latencies_ns, 0.5) / 1e3,
      Percentile(r.latencies_ns, 0.99) / 1e3,
      Percentile(r.latencies_ns, 0.999) / 1e3,
      r.server_after.cpu_seconds - r.server_before.cpu_seconds,
      r.server_after.peak_rss_mib);
  std::fflush(stdout);
  if (!r.first_error.empty()) {
    std::fprintf(stderr, "reapi_load: %s c=%d: first error: %s\n",
                 r.mix.c_str(), r.concurrency, r.first_error.c_str());
  }
}

absl::Status AppendCsv(const std::string& path, const std::string& line) {
  bool fresh = access(path.c_str(), F_OK) != 0;
  FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) {
    return absl::InternalError(
        absl::StrCat("open ", path, ": ", std::strerror(errno)));
  }
  if (fresh) {
    std::fputs(kCsvHeader, f);
  }
  std::fputs(line.c_str(), f);
  std::fclose(f);
  return absl::OkStatus();
}

// -------------------------------------------------------------- wiring ---

absl::Status CheckLoopback(absl::string_view target) {
  if (absl::StartsWith(target, "grpc://127.0.0.1:") ||
      absl::StartsWith(target, "grpc://localhost:") ||
      absl::StartsWith(target, "grpc://[::1]:") ||
      absl::StartsWith(target, "unix://")) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("target ", target, ": loopback or unix:// only"));
}

absl::StatusOr<Conn> Connect() {
  Conn c;
  client::ReapiClientOptions o;
  o.target = absl::GetFlag(FLAGS_target);
  o.instance_name = absl::GetFlag(FLAGS_instance);
  o.timeout = absl::Seconds(absl::GetFlag(FLAGS_rpc_timeout));
  o.max_attempts = 1;  // Errors are counted, never hidden by retries.
  o.tool_name = "cairn-reapi-load";
  absl::StatusOr<std::unique_ptr<client::ReapiClient>> cl =
      client::NewReapiClient(o);
  if (!cl.ok()) {
    return cl.status();
  }
  c.client = *std::move(cl);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  std::string address = o.target.substr(o.target.find("://") + 3);
  if (absl::StartsWith(o.target, "unix://")) {
    address = o.target;
  }
  c.cas = reapi::ContentAddressableStorage::NewStub(grpc::CreateCustomChannel(
      address, grpc::InsecureChannelCredentials(), args));
  c.instance = o.instance_name;
  c.timeout = o.timeout;
  // Wait (bounded) for the server to answer.
  absl::Status s;
  for (int i = 0; i < 100; ++i) {
    s = c.client->GetCapabilities().status();
    if (s.ok()) {
      return c;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return s;
}

struct Mixes {
  const Conn& conn;
  uint64_t nonce;
  Pool pool;
  bool have_blobs = false, have_actions = false;
};

// Returns the workload named `mix` and its operation count.
absl::StatusOr<std::pair<std::unique_ptr<Workload>, int64_t>> MakeWorkload(
    const std::string& mix, int concurrency, Mixes& m) {
  const Conn& c = m.conn;
  uint64_t nonce = SplitMix64(m.nonce ^ std::hash<std::string>()(mix) ^
                              static_cast<uint64_t>(concurrency));
  const int64_t req = absl::GetFlag(FLAGS_requests);
  const int64_t large = absl::GetFlag(FLAGS_large_requests);
  const int64_t huge = absl::GetFlag(FLAGS_huge_requests);
  bool needs_blobs = mix == "find_missing" || mix == "batch_read" ||
                     absl::StartsWith(mix, "ac_");
  if (needs_blobs && !m.have_blobs) {
    if (absl::Status s =
            FillBlobPool(c, m.nonce, absl::GetFlag(FLAGS_pool_blobs), m.pool);
        !s.ok()) {
      return s;
    }
    m.have_blobs = true;
  }
  if (mix == "ac_get_hit" && !m.have_actions) {
    if (absl::Status s = FillActionPool(
            c, m.nonce, absl::GetFlag(FLAGS_pool_actions), m.pool);
        !s.ok()) {
      return s;
    }
    m.have_actions = true;
  }
  using P = std::pair<std::unique_ptr<Workload>, int64_t>;
  const int batch = absl::GetFlag(FLAGS_batch_blobs);
  const int read_blobs = std::min(concurrency, 4);
  if (mix == "find_missing") {
    return P(std::make_unique<FindMissing>(
                 c, m.pool, absl::GetFlag(FLAGS_find_missing_batch)),
             req);
  }
  if (mix == "batch_update") {
    return P(std::make_unique<BatchUpdate>(c, nonce, batch), req);
  }
  if (mix == "batch_read") {
    return P(std::make_unique<BatchRead>(c, m.pool, batch), req);
  }
  if (mix == "ac_get_hit" || mix == "ac_get_miss") {
    return P(std::make_unique<AcGet>(c, m.pool, nonce, mix == "ac_get_hit"),
             req);
  }
  if (mix == "ac_update") {
    return P(std::make_unique<AcUpdate>(c, m.pool, nonce), req);
  }
  if (mix == "bs_write_16m" || mix == "bs_write_1g") {
    bool g = mix == "bs_write_1g";
    return P(std::make_unique<BsWrite>(c, nonce, g ? 1024 * kMiB : 16 * kMiB),
             g ? huge : large);
  }
  if (mix == "bs_read_16m" || mix == "bs_read_1g") {
    bool g = mix == "bs_read_1g";
    return P(std::make_unique<BsRead>(c, nonce, g ? 1024 * kMiB : 16 * kMiB,
                                      g ? 1 : read_blobs),
             g ? huge : large);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown mix ", mix));
}

absl::StatusOr<std::vector<int>> ParseConcurrency() {
  std::vector<int> out;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_concurrency),
                                            ',', absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(s, &v) || v < 1 || v > kMaxConcurrency) {
      return absl::InvalidArgumentError(
          absl::StrCat("--concurrency ", s, ": want 1..", kMaxConcurrency));
    }
    out.push_back(v);
  }
  return out;
}

absl::Status RunAll() {
  if (absl::Status s = CheckLoopback(absl::GetFlag(FLAGS_target)); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::vector<int>> conc = ParseConcurrency();
  if (!conc.ok()) {
    return conc.status();
  }
  absl::StatusOr<Conn> conn = Connect();
  if (!conn.ok()) {
    return conn.status();
  }
  uint64_t seed = absl::GetFlag(FLAGS_seed);
  if (seed == 0) {
    seed = static_cast<uint64_t>(NowNs()) ^
           (static_cast<uint64_t>(getpid()) << 32);
  }
  Mixes m{*conn, SplitMix64(seed), {}};
  Options o{0,
            absl::GetFlag(FLAGS_warmup),
            absl::GetFlag(FLAGS_duration),
            absl::GetFlag(FLAGS_server_pid),
            seed,
            absl::GetFlag(FLAGS_perf_record)};
  const std::string label = absl::GetFlag(FLAGS_label);
  const std::string csv = absl::GetFlag(FLAGS_csv);
  PrintHeader();
  for (absl::string_view mix_view :
       absl::StrSplit(absl::GetFlag(FLAGS_mix), ',', absl::SkipEmpty())) {
    std::string mix(mix_view);
    for (int c : *conc) {
      auto w = MakeWorkload(mix, c, m);
      if (!w.ok()) {
        return w.status();
      }
      auto& [workload, requests] = *w;
      if (absl::Status s = workload->Setup(requests + WarmupOps(o, requests));
          !s.ok()) {
        return absl::Status(s.code(),
                            absl::StrCat(mix, " setup: ", s.message()));
      }
      Row row = RunRow(mix, c, requests, *workload, o);
      PrintRow(label, row);
      if (!csv.empty()) {
        if (absl::Status s = AppendCsv(csv, CsvLine(label, row)); !s.ok()) {
          return s;
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace cairn::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "REAPI cache load generator.\n"
      "Usage: reapi_load --target=grpc://127.0.0.1:PORT [--mix=...] "
      "[--concurrency=1,32] [--requests=N] [--duration=S] "
      "[--server_pid=PID] [--label=NAME] [--csv=FILE]");
  absl::ParseCommandLine(argc, argv);
  absl::Status s = cairn::bench::RunAll();
  if (!s.ok()) {
    std::fprintf(stderr, "reapi_load: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
