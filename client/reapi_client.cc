#include "client/reapi_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cas/resource_name.h"
#include "cas/zstd_codec.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "grpcpp/grpcpp.h"

// Invariants: stubs are thread-safe and shared; each attempt of each call has
// its own ClientContext with a fresh deadline and the configured headers.
// Capabilities are cached under `mu_` once fetched successfully. Coalescing
// (header comment) is a group commit per kind of batch call: a Coalescer's
// queue and in-flight count live under its own mutex, a leaf never held
// across a call; a blob's result fields are written by the leader outside
// the lock and read by its owner only after it saw `done` under the lock.

namespace cairn::client {
namespace {

namespace bs = ::google::bytestream;

constexpr int64_t kChunkSize = 1024 * 1024;
// Most plain bytes a compressed read hands its sink at once.
constexpr size_t kReadPiece = 256 * 1024;
// Room left in a batch request for per-blob framing and the digests.
constexpr int64_t kBatchHeadroom = 64 * 1024;
constexpr int kMaxMessageSize = 64 * 1024 * 1024;
// Smaller batch uploads are sent as they are: a zstd frame costs ~10 bytes
// and the saving on a few hundred bytes is not worth the CPU.
constexpr int64_t kMinCompressSize = 512;

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok()) {
    return absl::OkStatus();
  }
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

absl::Status FromRpcStatus(const google::rpc::Status& s,
                           absl::string_view what) {
  return absl::Status(static_cast<absl::StatusCode>(s.code()),
                      absl::StrCat(what, ": ", s.message()));
}

bool Retryable(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kResourceExhausted;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read TLS file ", path));
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

reapi::Digest ToProto(const cas::Digest& d) {
  reapi::Digest p;
  p.set_hash(d.hash());
  p.set_size_bytes(d.size_bytes());
  return p;
}

std::string NewUuid() {
  static absl::Mutex mu(absl::kConstInit);
  static std::mt19937_64* gen ABSL_GUARDED_BY(mu) = nullptr;
  absl::MutexLock lock(&mu);
  if (gen == nullptr) {
    gen = new std::mt19937_64(std::random_device{}());
  }
  uint64_t a = (*gen)(), b = (*gen)();
  a = (a & ~0xf000ULL) | 0x4000ULL;  // version 4
  b = (b & ~(3ULL << 62)) | (2ULL << 62);
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", a >> 32,
                         (a >> 16) & 0xffff, a & 0xffff, b >> 48,
                         b & 0xffffffffffffULL);
}

// Group commit of small-blob calls of one kind. Item has `bytes` (its
// share of the batch limit) and `done` (guarded by the coalescer's mutex).
template <typename Item>
class Coalescer {
 public:
  using BatchFn = std::function<void(absl::Span<Item* const>)>;
  Coalescer(int max_in_flight, std::function<void()> on_wait, BatchFn batch)
      : max_in_flight_(std::max(1, max_in_flight)),
        on_wait_(std::move(on_wait)),
        batch_(std::move(batch)) {}

  // Returns once `item` has been through a batch call: led by this caller
  // (with whatever else queued, up to `limit` bytes) or by another.
  void Run(Item* item, int64_t limit) ABSL_LOCKS_EXCLUDED(mu_) {
    mu_.Lock();
    queue_.push_back(item);
    bool waited = false;
    while (!item->done) {
      if (in_flight_ < max_in_flight_ && !queue_.empty()) {
        std::vector<Item*> batch = TakeLocked(limit);
        ++in_flight_;
        mu_.Unlock();
        batch_(batch);
        mu_.Lock();
        --in_flight_;
        for (Item* b : batch) {
          b->done = true;
        }
        done_.SignalAll();
        continue;
      }
      if (!waited && on_wait_) {
        waited = true;
        on_wait_();
      }
      done_.Wait(&mu_);
    }
    mu_.Unlock();
  }

 private:
  // Takes blobs from the front while they fit in `limit` (at least one).
  std::vector<Item*> TakeLocked(int64_t limit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<Item*> batch;
    int64_t total = 0;
    while (!queue_.empty()) {
      const int64_t next = queue_.front()->bytes + kBatchItemFraming;
      if (!batch.empty() && total + next > limit) {
        break;
      }
      total += next;
      batch.push_back(queue_.front());
      queue_.pop_front();
    }
    return batch;
  }

  const int max_in_flight_;
  const std::function<void()> on_wait_;
  const BatchFn batch_;
  absl::Mutex mu_;
  absl::CondVar done_;
  std::deque<Item*> queue_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

// One blob of a coalesced upload: the result is `status`.
struct UploadItem {
  cas::Digest digest;
  const ChunkSource* source = nullptr;
  int64_t bytes = 0;
  bool done = false;
  absl::Status status;
};

// One blob of a coalesced read: the result is `status` and, when OK, `data`
// (zstd-compressed when `zstd_data`).
struct ReadItem {
  cas::Digest digest;
  int64_t bytes = 0;
  bool done = false;
  absl::Status status;
  std::string data;
  bool zstd_data = false;
};

// Returns the error of a source that ended after `got` bytes: its bytes do
// not match the digest (INVALID_ARGUMENT, as a server would answer them).
absl::Status ShortSourceError(const cas::Digest& digest, int64_t got) {
  return absl::InvalidArgumentError(absl::StrCat(
      "upload ", digest.ToString(), ": the source ends after ", got, " bytes"));
}

// Reads all of `digest`'s bytes from `source` (ShortSourceError() when it
// ends early).
absl::StatusOr<std::string> ReadSource(const cas::Digest& digest,
                                       const ChunkSource& source) {
  std::string data;
  while (static_cast<int64_t>(data.size()) < digest.size_bytes()) {
    absl::StatusOr<std::string> chunk =
        source(data.size(), digest.size_bytes() - data.size());
    if (!chunk.ok()) {
      return chunk.status();
    }
    if (chunk->empty()) {
      return ShortSourceError(digest, static_cast<int64_t>(data.size()));
    }
    data.append(*chunk);
  }
  return data;
}

// A blob in a batch and in its answers: hash and size (two digests with one
// hash and different sizes are two blobs, asked and answered apart).
using BlobKey = std::pair<std::string, int64_t>;
BlobKey KeyOf(const cas::Digest& d) { return {d.hash(), d.size_bytes()}; }
BlobKey KeyOf(const reapi::Digest& d) { return {d.hash(), d.size_bytes()}; }

struct Endpoint {
  std::string address;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TlsCredentials(
    const ReapiClientOptions& o) {
  grpc::SslCredentialsOptions ssl;
  if (!o.tls_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadWholeFile(o.tls_ca_file);
    if (!ca.ok()) {
      return ca.status();
    }
    ssl.pem_root_certs = *std::move(ca);
  }
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS client certificate and key must be given together");
  }
  if (!o.tls_cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadWholeFile(o.tls_cert_file);
    absl::StatusOr<std::string> key = ReadWholeFile(o.tls_key_file);
    if (!cert.ok() || !key.ok()) {
      return cert.ok() ? key.status() : cert.status();
    }
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<Endpoint> ParseTarget(const ReapiClientOptions& o) {
  absl::string_view t = o.target;
  if (absl::ConsumePrefix(&t, "grpc://") && !t.empty()) {
    return Endpoint{std::string(t), grpc::InsecureChannelCredentials()};
  }
  if (absl::ConsumePrefix(&t, "grpcs://") && !t.empty()) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
        TlsCredentials(o);
    if (!creds.ok()) {
      return creds.status();
    }
    return Endpoint{std::string(t), *std::move(creds)};
  }
  if (absl::StartsWith(o.target, "unix://") && o.target.size() > 7) {
    return Endpoint{o.target, grpc::InsecureChannelCredentials()};
  }
  return absl::InvalidArgumentError(
      absl::StrCat("remote \"", o.target,
                   "\": want grpc://HOST:PORT, grpcs://HOST:PORT or "
                   "unix:///PATH"));
}

class GrpcReapiClient final : public ReapiClient {
 public:
  GrpcReapiClient(ReapiClientOptions options,
                  std::shared_ptr<grpc::Channel> channel)
      : options_(std::move(options)),
        ac_(reapi::ActionCache::NewStub(channel)),
        cas_(reapi::ContentAddressableStorage::NewStub(channel)),
        caps_(reapi::Capabilities::NewStub(channel)),
        bytestream_(bs::ByteStream::NewStub(channel)),
        uploads_(options_.batch_calls_in_flight,
                 options_.on_batch_wait_for_test,
                 [this](absl::Span<UploadItem* const> batch) {
                   UploadBatch(batch);
                 }),
        plain_reads_(options_.batch_calls_in_flight,
                     options_.on_batch_wait_for_test,
                     [this](absl::Span<ReadItem* const> batch) {
                       ReadBatch(batch, /*zstd=*/false);
                     }),
        zstd_reads_(options_.batch_calls_in_flight,
                    options_.on_batch_wait_for_test,
                    [this](absl::Span<ReadItem* const> batch) {
                      ReadBatch(batch, /*zstd=*/true);
                    }) {
    reapi::RequestMetadata md;
    md.mutable_tool_details()->set_tool_name(options_.tool_name);
    md.set_tool_invocation_id(NewUuid());
    request_metadata_ = md.SerializeAsString();
  }

  absl::StatusOr<reapi::CacheCapabilities> GetCapabilities() override;
  absl::Status Ping() override;
  absl::StatusOr<int64_t> BatchLimit() override;
  absl::StatusOr<reapi::ActionResult> GetActionResult(
      const cas::Digest& action,
      absl::Span<const std::string> inline_output_files) override;
  absl::Status UpdateActionResult(const cas::Digest& action,
                                  const reapi::ActionResult& result) override;
  absl::StatusOr<std::vector<cas::Digest>> FindMissingBlobs(
      absl::Span<const cas::Digest> digests) override;
  absl::Status UploadBlob(const cas::Digest& digest,
                          const ChunkSource& source) override;
  absl::Status ReadBlob(const cas::Digest& digest, ChunkSink sink) override {
    return ReadBlobWith(digest, sink, ReadBlobOptions());
  }
  absl::Status ReadBlobWith(const cas::Digest& digest, ChunkSink sink,
                            const ReadBlobOptions& options) override {
    const bool zstd =
        options.allow_compression && UseZstd(/*batch_update=*/false);
    return Read(digest, sink, zstd, options.verify_hash);
  }
  bool CompressesReads() override { return UseZstd(/*batch_update=*/false); }
  WireCounters Counters() const override {
    return {received_.load(), received_plain_.load(), sent_.load(),
            sent_plain_.load(), calls_.load()};
  }

 private:
  // Returns true when blobs may travel zstd-compressed: through ByteStream
  // and BatchReadBlobs (`batch_update` false) or in BatchUpdateBlobs (true).
  bool UseZstd(bool batch_update);
  // Fills a context with the deadline and headers of one attempt.
  void Prepare(grpc::ClientContext& ctx) const;
  // Runs `attempt` until it succeeds, fails with a non-retryable code, or
  // runs out of attempts, sleeping with jittered backoff in between.
  absl::Status WithRetry(absl::FunctionRef<absl::Status()> attempt) const;
  // One FindMissingBlobs for `batch`, then one BatchUpdateBlobs carrying
  // those missing; sets each item's status.
  void UploadBatch(absl::Span<UploadItem* const> batch);
  // Adds `data` for `digest` to `req`, zstd-compressed when that pays.
  // Returns the bytes it adds to the wire.
  int64_t AddUpdate(const cas::Digest& digest, std::string data,
                    reapi::BatchUpdateBlobsRequest& req);
  absl::Status StreamUpload(const cas::Digest& digest, const ChunkSource& src);
  absl::Status StreamUploadOnce(const cas::Digest& digest,
                                const ChunkSource& src);
  // ReadBlob, asking for zstd when `zstd`, checking the SHA-256 when
  // `verify` (the size always).
  absl::Status Read(const cas::Digest& digest, ChunkSink sink, bool zstd,
                    bool verify);
  // One BatchReadBlobs for `batch`; sets each item's status and data.
  void ReadBatch(absl::Span<ReadItem* const> batch, bool zstd);
  // Returns the plain bytes of a read `item`, decompressed when needed.
  absl::StatusOr<std::string> TakeReadData(ReadItem& item);
  absl::Status StreamRead(const cas::Digest& digest, ChunkSink sink, bool zstd,
                          bool verify);

  const ReapiClientOptions options_;
  std::string request_metadata_;
  std::unique_ptr<reapi::ActionCache::Stub> ac_;
  std::unique_ptr<reapi::ContentAddressableStorage::Stub> cas_;
  std::unique_ptr<reapi::Capabilities::Stub> caps_;
  std::unique_ptr<bs::ByteStream::Stub> bytestream_;

  std::atomic<int64_t> received_{0};
  std::atomic<int64_t> received_plain_{0};
  std::atomic<int64_t> sent_{0};
  std::atomic<int64_t> sent_plain_{0};
  mutable std::atomic<int64_t> calls_{0};

  Coalescer<UploadItem> uploads_;
  Coalescer<ReadItem> plain_reads_;
  Coalescer<ReadItem> zstd_reads_;

  mutable absl::Mutex mu_;
  bool have_caps_ ABSL_GUARDED_BY(mu_) = false;
  reapi::CacheCapabilities caps_cache_ ABSL_GUARDED_BY(mu_);
};

void GrpcReapiClient::Prepare(grpc::ClientContext& ctx) const {
  calls_.fetch_add(1);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  ctx.AddMetadata("build.bazel.remote.execution.v2.requestmetadata-bin",
                  request_metadata_);
  for (const auto& [name, value] : options_.headers) {
    ctx.AddMetadata(name, value);
  }
}

absl::Status GrpcReapiClient::WithRetry(
    absl::FunctionRef<absl::Status()> attempt) const {
  thread_local std::minstd_rand jitter(std::random_device{}());
  absl::Duration backoff = options_.initial_backoff;
  absl::Status s;
  for (int i = 0; i < std::max(1, options_.max_attempts); ++i) {
    if (i > 0) {
      std::uniform_real_distribution<double> d(0.5, 1.5);
      absl::SleepFor(backoff * d(jitter));
      backoff *= 2;
    }
    s = attempt();
    if (!Retryable(s)) {
      return s;
    }
  }
  return s;
}

absl::StatusOr<reapi::CacheCapabilities> GrpcReapiClient::GetCapabilities() {
  {
    absl::MutexLock lock(&mu_);
    if (have_caps_) {
      return caps_cache_;
    }
  }
  reapi::GetCapabilitiesRequest req;
  req.set_instance_name(options_.instance_name);
  reapi::ServerCapabilities resp;
  absl::Status s = WithRetry([&] {
    grpc::ClientContext ctx;
    Prepare(ctx);
    return FromGrpc(caps_->GetCapabilities(&ctx, req, &resp),
                    "GetCapabilities");
  });
  if (!s.ok()) {
    return s;
  }
  absl::MutexLock lock(&mu_);
  have_caps_ = true;
  caps_cache_ = resp.cache_capabilities();
  return caps_cache_;
}

absl::Status GrpcReapiClient::Ping() {
  reapi::GetCapabilitiesRequest req;
  req.set_instance_name(options_.instance_name);
  reapi::ServerCapabilities resp;
  grpc::ClientContext ctx;
  Prepare(ctx);
  return FromGrpc(caps_->GetCapabilities(&ctx, req, &resp), "GetCapabilities");
}

bool GrpcReapiClient::UseZstd(bool batch_update) {
  if (!options_.compression) {
    return false;
  }
  absl::StatusOr<reapi::CacheCapabilities> caps = GetCapabilities();
  if (!caps.ok()) {
    return false;
  }
  const auto& list = batch_update ? caps->supported_batch_update_compressors()
                                  : caps->supported_compressors();
  return std::find(list.begin(), list.end(), reapi::Compressor::ZSTD) !=
         list.end();
}

absl::StatusOr<int64_t> GrpcReapiClient::BatchLimit() {
  absl::StatusOr<reapi::CacheCapabilities> caps = GetCapabilities();
  if (!caps.ok()) {
    return caps.status();
  }
  int64_t limit = caps->max_batch_total_size_bytes();
  if (limit <= 0) {
    return options_.default_batch_limit;
  }
  return std::max<int64_t>(0, limit - kBatchHeadroom);
}

absl::StatusOr<reapi::ActionResult> GrpcReapiClient::GetActionResult(
    const cas::Digest& action,
    absl::Span<const std::string> inline_output_files) {
  reapi::GetActionResultRequest req;
  req.set_instance_name(options_.instance_name);
  *req.mutable_action_digest() = ToProto(action);
  req.set_digest_function(reapi::DigestFunction::SHA256);
  for (const std::string& f : inline_output_files) {
    req.add_inline_output_files(f);
  }
  reapi::ActionResult result;
  absl::Status s = WithRetry([&] {
    grpc::ClientContext ctx;
    Prepare(ctx);
    return FromGrpc(ac_->GetActionResult(&ctx, req, &result),
                    absl::StrCat("GetActionResult ", action.ToString()));
  });
  if (!s.ok()) {
    return s;
  }
  return result;
}

absl::Status GrpcReapiClient::UpdateActionResult(
    const cas::Digest& action, const reapi::ActionResult& result) {
  reapi::UpdateActionResultRequest req;
  req.set_instance_name(options_.instance_name);
  *req.mutable_action_digest() = ToProto(action);
  *req.mutable_action_result() = result;
  req.set_digest_function(reapi::DigestFunction::SHA256);
  return WithRetry([&] {
    grpc::ClientContext ctx;
    Prepare(ctx);
    reapi::ActionResult resp;
    return FromGrpc(ac_->UpdateActionResult(&ctx, req, &resp),
                    absl::StrCat("UpdateActionResult ", action.ToString()));
  });
}

absl::StatusOr<std::vector<cas::Digest>> GrpcReapiClient::FindMissingBlobs(
    absl::Span<const cas::Digest> digests) {
  reapi::FindMissingBlobsRequest req;
  req.set_instance_name(options_.instance_name);
  req.set_digest_function(reapi::DigestFunction::SHA256);
  for (const cas::Digest& d : digests) {
    *req.add_blob_digests() = ToProto(d);
  }
  reapi::FindMissingBlobsResponse resp;
  absl::Status s = WithRetry([&] {
    grpc::ClientContext ctx;
    Prepare(ctx);
    return FromGrpc(cas_->FindMissingBlobs(&ctx, req, &resp),
                    "FindMissingBlobs");
  });
  if (!s.ok()) {
    return s;
  }
  std::vector<cas::Digest> missing;
  for (const reapi::Digest& p : resp.missing_blob_digests()) {
    absl::StatusOr<cas::Digest> d =
        cas::Digest::Create(p.hash(), p.size_bytes());
    if (!d.ok()) {
      return absl::InternalError(
          absl::StrCat("FindMissingBlobs: server answered a bad digest: ",
                       d.status().message()));
    }
    missing.push_back(*std::move(d));
  }
  return missing;
}

absl::Status GrpcReapiClient::UploadBlob(const cas::Digest& digest,
                                         const ChunkSource& source) {
  if (digest.IsEmpty()) {
    return absl::OkStatus();
  }
  absl::StatusOr<int64_t> limit = BatchLimit();
  if (!limit.ok()) {
    return limit.status();
  }
  if (digest.size_bytes() <= *limit) {
    UploadItem item{.digest = digest,
                    .source = &source,
                    .bytes = digest.size_bytes(),
                    .status = absl::OkStatus()};
    uploads_.Run(&item, *limit);
    return item.status;
  }
  absl::StatusOr<std::vector<cas::Digest>> missing =
      FindMissingBlobs(absl::MakeConstSpan(&digest, 1));
  if (!missing.ok()) {
    return missing.status();
  }
  if (missing->empty()) {
    return absl::OkStatus();
  }
  return StreamUpload(digest, source);
}

void GrpcReapiClient::UploadBatch(absl::Span<UploadItem* const> batch) {
  std::vector<cas::Digest> digests;
  for (UploadItem* item : batch) {
    digests.push_back(item->digest);
  }
  absl::StatusOr<std::vector<cas::Digest>> missing = FindMissingBlobs(digests);
  if (!missing.ok()) {
    for (UploadItem* item : batch) {
      item->status = missing.status();
    }
    return;
  }
  // Blob -> the items waiting for it (one request entry per distinct blob).
  absl::flat_hash_map<BlobKey, std::vector<UploadItem*>> waiting;
  for (const cas::Digest& d : *missing) {
    waiting[KeyOf(d)];
  }
  reapi::BatchUpdateBlobsRequest req;
  req.set_instance_name(options_.instance_name);
  req.set_digest_function(reapi::DigestFunction::SHA256);
  int64_t wire = 0, plain = 0;
  for (UploadItem* item : batch) {
    auto it = waiting.find(KeyOf(item->digest));
    if (it == waiting.end()) {
      continue;  // Present already: OK.
    }
    if (it->second.empty()) {
      absl::StatusOr<std::string> data =
          ReadSource(item->digest, *item->source);
      if (!data.ok()) {
        item->status = data.status();
        continue;
      }
      plain += static_cast<int64_t>(data->size());
      wire += AddUpdate(item->digest, *std::move(data), req);
    }
    it->second.push_back(item);
  }
  if (req.requests_size() == 0) {
    return;
  }
  reapi::BatchUpdateBlobsResponse resp;
  absl::Status s = WithRetry([&] {
    grpc::ClientContext ctx;
    Prepare(ctx);
    return FromGrpc(
        cas_->BatchUpdateBlobs(&ctx, req, &resp),
        absl::StrCat("BatchUpdateBlobs of ", req.requests_size(), " blobs"));
  });
  for (const auto& r : resp.responses()) {
    auto it = waiting.find(KeyOf(r.digest()));
    if (!s.ok() || it == waiting.end()) {
      continue;
    }
    for (UploadItem* item : it->second) {  // OK when the code is.
      item->status = FromRpcStatus(
          r.status(), absl::StrCat("upload ", item->digest.ToString()));
    }
    it->second.clear();
  }
  for (auto& [blob, items] : waiting) {  // Not answered: not stored.
    for (UploadItem* item : items) {
      item->status = s.ok() ? absl::InternalError(absl::StrCat(
                                  "BatchUpdateBlobs: no answer for ",
                                  item->digest.ToString()))
                            : s;
    }
  }
  if (s.ok()) {
    sent_.fetch_add(wire);
    sent_plain_.fetch_add(plain);
  }
}

int64_t GrpcReapiClient::AddUpdate(const cas::Digest& digest, std::string data,
                                   reapi::BatchUpdateBlobsRequest& req) {
  auto* item = req.add_requests();
  *item->mutable_digest() = ToProto(digest);
  if (static_cast<int64_t>(data.size()) >= kMinCompressSize &&
      UseZstd(/*batch_update=*/true)) {
    std::string packed;
    if (cas::ZstdCompressor().Compress(data, /*last=*/true, &packed).ok() &&
        packed.size() < data.size()) {
      data = std::move(packed);
      item->set_compressor(reapi::Compressor::ZSTD);
    }
  }
  *item->mutable_data() = std::move(data);
  return static_cast<int64_t>(item->data().size());
}

absl::Status GrpcReapiClient::StreamUpload(const cas::Digest& digest,
                                           const ChunkSource& source) {
  return WithRetry([&] { return StreamUploadOnce(digest, source); });
}

absl::Status GrpcReapiClient::StreamUploadOnce(const cas::Digest& digest,
                                               const ChunkSource& source) {
  const bool zstd = UseZstd(/*batch_update=*/false);
  std::unique_ptr<cas::ZstdCompressor> compressor;
  if (zstd) {
    compressor = std::make_unique<cas::ZstdCompressor>();
  }
  grpc::ClientContext ctx;
  Prepare(ctx);
  bs::WriteResponse resp;
  std::unique_ptr<grpc::ClientWriter<bs::WriteRequest>> writer =
      bytestream_->Write(&ctx, &resp);
  const std::string what = absl::StrCat("ByteStream Write ", digest.ToString());
  int64_t offset = 0;  // Uncompressed bytes read from the source.
  int64_t sent = 0;    // Bytes sent (compressed when compressing).
  bool first = true;
  while (offset < digest.size_bytes()) {
    absl::StatusOr<std::string> chunk =
        source(offset, std::min(kChunkSize, digest.size_bytes() - offset));
    if (!chunk.ok() || chunk->empty()) {
      ctx.TryCancel();
      writer->Finish().ok();
      return chunk.ok() ? ShortSourceError(digest, offset) : chunk.status();
    }
    offset += chunk->size();
    const bool last = offset >= digest.size_bytes();
    bs::WriteRequest req;
    if (compressor != nullptr) {
      if (absl::Status s =
              compressor->Compress(*chunk, last, req.mutable_data());
          !s.ok()) {
        ctx.TryCancel();
        writer->Finish().ok();
        return s;
      }
    } else {
      *req.mutable_data() = *std::move(chunk);
    }
    if (req.data().empty() && !last) {
      continue;  // The compressor kept it all; nothing to send yet.
    }
    if (first) {
      req.set_resource_name(cas::MakeWriteResourceName(
          options_.instance_name, NewUuid(), digest,
          zstd ? cas::Compressor::kZstd : cas::Compressor::kIdentity));
      first = false;
    }
    req.set_write_offset(sent);
    sent += req.data().size();
    req.set_finish_write(last);
    if (!writer->Write(req)) {
      break;  // The server ended the call (maybe: already present); see Finish.
    }
  }
  writer->WritesDone();
  absl::Status s = FromGrpc(writer->Finish(), what);
  // A compressed upload of a blob the server already has may end with -1.
  const int64_t done = resp.committed_size();
  if (s.ok() && done != (zstd ? sent : digest.size_bytes()) &&
      !(zstd && (done == -1 || done == digest.size_bytes()))) {
    return absl::DataLossError(absl::StrCat(what, ": server committed ",
                                            resp.committed_size(), " bytes"));
  }
  if (s.ok()) {
    sent_.fetch_add(sent);
    sent_plain_.fetch_add(offset);
  }
  return s;
}

absl::Status GrpcReapiClient::Read(const cas::Digest& digest, ChunkSink sink,
                                   bool zstd, bool verify) {
  if (digest.IsEmpty()) {
    return absl::OkStatus();
  }
  absl::StatusOr<int64_t> limit = BatchLimit();
  if (!limit.ok()) {
    return limit.status();
  }
  if (digest.size_bytes() > *limit) {
    return StreamRead(digest, sink, zstd, verify);
  }
  ReadItem item{.digest = digest,
                .bytes = digest.size_bytes(),
                .status = absl::OkStatus(),
                .data = {}};
  (zstd ? zstd_reads_ : plain_reads_).Run(&item, *limit);
  absl::StatusOr<std::string> data = TakeReadData(item);
  if (!data.ok()) {
    return data.status();
  }
  if (static_cast<int64_t>(data->size()) != digest.size_bytes() ||
      (verify && cas::Digest::OfData(*data) != digest)) {
    return absl::DataLossError(
        absl::StrCat("cas blob ", digest.ToString(), ": bytes do not match"));
  }
  return sink(*data);
}

void GrpcReapiClient::ReadBatch(absl::Span<ReadItem* const> batch, bool zstd) {
  reapi::BatchReadBlobsRequest req;
  req.set_instance_name(options_.instance_name);
  req.set_digest_function(reapi::DigestFunction::SHA256);
  if (zstd) {
    req.add_acceptable_compressors(reapi::Compressor::ZSTD);
  }
  // Blob -> the items waiting for it (each distinct blob asked once).
  absl::flat_hash_map<BlobKey, std::vector<ReadItem*>> waiting;
  for (ReadItem* item : batch) {
    std::vector<ReadItem*>& items = waiting[KeyOf(item->digest)];
    if (items.empty()) {
      *req.add_digests() = ToProto(item->digest);
    }
    items.push_back(item);
  }
  reapi::BatchReadBlobsResponse resp;
  absl::Status s = WithRetry([&] {
    grpc::ClientContext ctx;
    Prepare(ctx);
    return FromGrpc(
        cas_->BatchReadBlobs(&ctx, req, &resp),
        absl::StrCat("BatchReadBlobs of ", req.digests_size(), " blobs"));
  });
  for (auto& r : *resp.mutable_responses()) {
    auto it = waiting.find(KeyOf(r.digest()));
    if (!s.ok() || it == waiting.end() || it->second.empty()) {
      continue;
    }
    std::vector<ReadItem*> items = std::move(it->second);
    it->second.clear();
    const std::string what =
        absl::StrCat("cas blob ", items[0]->digest.ToString());
    absl::Status status;
    if (r.status().code() != 0) {
      status = FromRpcStatus(r.status(), what);
    } else if (r.compressor() != reapi::Compressor::IDENTITY &&
               r.compressor() != reapi::Compressor::ZSTD) {
      status = absl::DataLossError(absl::StrCat(
          what, ": answered with compressor ",
          reapi::Compressor::Value_Name(r.compressor()), " not asked for"));
    } else {
      received_.fetch_add(static_cast<int64_t>(r.data().size()));
      received_plain_.fetch_add(items[0]->digest.size_bytes());
    }
    for (size_t i = 0; i < items.size(); ++i) {
      items[i]->status = status;
      items[i]->zstd_data = r.compressor() == reapi::Compressor::ZSTD;
      if (!status.ok()) {
        continue;
      }
      if (i + 1 < items.size()) {
        items[i]->data = r.data();
      } else {
        items[i]->data = std::move(*r.mutable_data());
      }
    }
  }
  for (auto& [blob, items] : waiting) {
    for (ReadItem* item : items) {
      item->status =
          s.ok()
              ? absl::InternalError(absl::StrCat(
                    "BatchReadBlobs: no answer for ", item->digest.ToString()))
              : s;
    }
  }
}

absl::StatusOr<std::string> GrpcReapiClient::TakeReadData(ReadItem& item) {
  if (!item.status.ok()) {
    return item.status;
  }
  if (!item.zstd_data) {
    return std::move(item.data);
  }
  absl::StatusOr<std::string> plain =
      cas::ZstdDecompressAll(item.data, item.digest.size_bytes());
  if (!plain.ok()) {
    return absl::DataLossError(absl::StrCat("cas blob ", item.digest.ToString(),
                                            ": ", plain.status().message()));
  }
  return plain;
}

absl::Status GrpcReapiClient::StreamRead(const cas::Digest& digest,
                                         ChunkSink sink, bool zstd,
                                         bool verify) {
  cas::Sha256Hasher hasher;
  int64_t got = 0;  // Uncompressed bytes the sink has taken.
  const std::string what = absl::StrCat("ByteStream Read ", digest.ToString());
  absl::Status last_error;
  absl::Status s = WithRetry([&]() -> absl::Status {
    if (zstd && got > 0) {
      // A compressed stream cannot resume mid-frame; the sink has bytes.
      return absl::AbortedError(
          absl::StrCat(what, ": compressed read broke off after ", got,
                       " bytes: ", last_error.message()));
    }
    grpc::ClientContext ctx;
    Prepare(ctx);
    bs::ReadRequest req;
    req.set_resource_name(cas::MakeReadResourceName(
        options_.instance_name, digest,
        zstd ? cas::Compressor::kZstd : cas::Compressor::kIdentity));
    req.set_read_offset(got);  // Resume where a retry left off.
    std::unique_ptr<grpc::ClientReader<bs::ReadResponse>> reader =
        bytestream_->Read(&ctx, req);
    std::unique_ptr<cas::ZstdDecompressor> decompressor;
    if (zstd) {
      decompressor = std::make_unique<cas::ZstdDecompressor>();
    }
    bs::ReadResponse resp;
    absl::Status sink_status;
    // Hands `data` (plain bytes) to the sink.
    auto deliver = [&](absl::string_view data) -> absl::Status {
      if (verify) {
        hasher.Update(data);
      }
      got += static_cast<int64_t>(data.size());
      received_plain_.fetch_add(static_cast<int64_t>(data.size()));
      sink_status = sink(data);
      return sink_status;
    };
    while (sink_status.ok() && reader->Read(&resp)) {
      received_.fetch_add(static_cast<int64_t>(resp.data().size()));
      const int64_t room = digest.size_bytes() - got;
      if (decompressor != nullptr) {
        // In pieces: one message of frames may expand to the whole blob
        // (a GiB of zeros is a few KiB of zstd), which must not sit in
        // memory at once.
        absl::Status s = decompressor->DecompressTo(resp.data(), room,
                                                    kReadPiece, deliver);
        if (!s.ok() && sink_status.ok()) {
          sink_status =
              absl::DataLossError(absl::StrCat(what, ": ", s.message()));
        }
      } else if (static_cast<int64_t>(resp.data().size()) > room) {
        sink_status = absl::DataLossError(absl::StrCat(what, ": too long"));
      } else {
        deliver(resp.data());
      }
    }
    if (!sink_status.ok()) {
      ctx.TryCancel();
      reader->Finish().ok();
      return sink_status;
    }
    last_error = FromGrpc(reader->Finish(), what);
    if (last_error.ok() && decompressor != nullptr &&
        !decompressor->AtFrameEnd()) {
      return absl::DataLossError(absl::StrCat(what, ": truncated zstd data"));
    }
    return last_error;
  });
  if (!s.ok()) {
    return s;
  }
  if (got != digest.size_bytes() ||
      (verify && hasher.FinishDigest() != digest)) {
    return absl::DataLossError(absl::StrCat(what, ": bytes do not match"));
  }
  return absl::OkStatus();
}

// gRPC metadata rules: lowercase token names (not reserved "grpc-"), and
// printable ASCII values unless the name ends in "-bin".
absl::Status ValidateHeader(absl::string_view name, absl::string_view value) {
  bool ok = !name.empty() && !absl::StartsWith(name, "grpc-");
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                c == '_' || c == '.');
  }
  for (char c : value) {
    ok = ok && (absl::EndsWith(name, "-bin") || (c >= 0x20 && c < 0x7f));
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("header \"", name, "\": not a valid gRPC header"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::pair<std::string, std::string>> ParseHeader(
    absl::string_view spec) {
  size_t eq = spec.find_first_of("=:");
  std::string name;
  if (eq != absl::string_view::npos) {
    name =
        absl::AsciiStrToLower(absl::StripAsciiWhitespace(spec.substr(0, eq)));
  }
  if (name.empty()) {  // No separator, or nothing but spaces before it.
    return absl::InvalidArgumentError(
        absl::StrCat("header \"", spec, "\": want NAME=VALUE"));
  }
  std::string value(absl::StripAsciiWhitespace(spec.substr(eq + 1)));
  return std::make_pair(std::move(name), std::move(value));
}

absl::StatusOr<std::unique_ptr<ReapiClient>> NewReapiClient(
    const ReapiClientOptions& options) {
  absl::StatusOr<Endpoint> endpoint = ParseTarget(options);
  if (!endpoint.ok()) {
    return endpoint.status();
  }
  ReapiClientOptions o = options;
  for (auto& [name, value] : o.headers) {
    name = absl::AsciiStrToLower(name);
    if (absl::Status s = ValidateHeader(name, value); !s.ok()) {
      return s;
    }
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageSize);
  args.SetMaxSendMessageSize(kMaxMessageSize);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(endpoint->address, endpoint->credentials, args);
  return std::make_unique<GrpcReapiClient>(std::move(o), std::move(channel));
}

ChunkSource StringChunkSource(absl::string_view data) {
  return [data](int64_t offset, int64_t max) -> absl::StatusOr<std::string> {
    if (offset >= static_cast<int64_t>(data.size())) {
      return std::string();
    }
    return std::string(data.substr(offset, max));
  };
}

ChunkSource FileChunkSource(std::string path) {
  return [path = std::move(path)](int64_t offset,
                                  int64_t max) -> absl::StatusOr<std::string> {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return absl::NotFoundError(
          absl::StrCat("open ", path, ": ", std::strerror(errno)));
    }
    std::string buf(static_cast<size_t>(max), '\0');
    ssize_t n = pread(fd, buf.data(), buf.size(), offset);
    int err = errno;
    close(fd);
    if (n < 0) {
      return absl::InternalError(
          absl::StrCat("read ", path, ": ", std::strerror(err)));
    }
    buf.resize(n);
    return buf;
  };
}

}  // namespace cairn::client
