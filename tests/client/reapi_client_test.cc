// ReapiClient and the Go mapping (NewReapiRemote) against an in-process fake
// REAPI cache served on a unix socket.
#include "client/reapi_client.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cas/zstd_codec.h"
#include "client/gocacheprog/remote.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace cairn::client {
namespace {

namespace bs = ::google::bytestream;

// Shared state of the fake services.
struct FakeState {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, std::string> blobs ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, reapi::ActionResult> ac ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, int> calls ABSL_GUARDED_BY(mu);
  std::string api_key ABSL_GUARDED_BY(mu);
  bool saw_request_metadata ABSL_GUARDED_BY(mu) = false;
  int fail_next ABSL_GUARDED_BY(mu) = 0;
  absl::Duration delay ABSL_GUARDED_BY(mu);
  // Added to every call but GetCapabilities: slow storage (a cold node's
  // bucket) behind a near network.
  absl::Duration storage_delay ABSL_GUARDED_BY(mu);
  // Advertise and speak zstd; serve reads with one byte flipped.
  bool zstd ABSL_GUARDED_BY(mu) = false;
  bool corrupt_reads ABSL_GUARDED_BY(mu) = false;
  // BatchUpdateBlobs answers OK without a response per blob, storing none.
  bool empty_update_answers ABSL_GUARDED_BY(mu) = false;
  // Calls of method `hold` wait in the server until ReleaseHold().
  std::string hold ABSL_GUARDED_BY(mu);
  bool hold_released ABSL_GUARDED_BY(mu) = false;
  absl::CondVar hold_cv;
  // Most blob data bytes one batch call carried.
  int64_t max_batch_bytes ABSL_GUARDED_BY(mu) = 0;

  // Returns the stored blob as served (flipped when corrupt_reads).
  std::string Served(const std::string& blob)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::string out = blob;
    if (corrupt_reads && !out.empty()) {
      out[out.size() / 2] ^= 1;
    }
    return out;
  }

  // Counts the call, records headers; returns UNAVAILABLE while failures
  // are injected.
  grpc::Status Enter(grpc::ServerContext* ctx, const std::string& method) {
    absl::Duration sleep;
    {
      absl::MutexLock lock(&mu);
      sleep = delay + (method == "caps" ? absl::ZeroDuration() : storage_delay);
    }
    absl::SleepFor(sleep);
    absl::MutexLock lock(&mu);
    ++calls[method];
    const auto& md = ctx->client_metadata();
    auto key = md.find("x-api-key");
    if (key != md.end()) {
      api_key = std::string(key->second.data(), key->second.size());
    }
    saw_request_metadata |=
        md.count("build.bazel.remote.execution.v2.requestmetadata-bin") > 0;
    while (hold == method && !hold_released) {
      hold_cv.Wait(&mu);
    }
    if (fail_next > 0) {
      --fail_next;
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "injected");
    }
    return grpc::Status::OK;
  }
  int Calls(const std::string& method) {
    absl::MutexLock lock(&mu);
    return calls[method];
  }
  void Hold(const std::string& method) {
    absl::MutexLock lock(&mu);
    hold = method;
  }
  void ReleaseHold() {
    absl::MutexLock lock(&mu);
    hold_released = true;
    hold_cv.SignalAll();
  }
  void NoteBatch(int64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    max_batch_bytes = std::max(max_batch_bytes, bytes);
  }
};

class FakeCapabilities final : public reapi::Capabilities::Service {
 public:
  explicit FakeCapabilities(FakeState* s) : s_(s) {}
  grpc::Status GetCapabilities(grpc::ServerContext* ctx,
                               const reapi::GetCapabilitiesRequest*,
                               reapi::ServerCapabilities* resp) override {
    if (grpc::Status st = s_->Enter(ctx, "caps"); !st.ok()) return st;
    resp->mutable_cache_capabilities()->set_max_batch_total_size_bytes(128 *
                                                                       1024);
    resp->mutable_cache_capabilities()->add_digest_functions(
        reapi::DigestFunction::SHA256);
    absl::MutexLock lock(&s_->mu);
    if (s_->zstd) {
      resp->mutable_cache_capabilities()->add_supported_compressors(
          reapi::Compressor::ZSTD);
      resp->mutable_cache_capabilities()
          ->add_supported_batch_update_compressors(reapi::Compressor::ZSTD);
    }
    return grpc::Status::OK;
  }

 private:
  FakeState* s_;
};

class FakeCas final : public reapi::ContentAddressableStorage::Service {
 public:
  explicit FakeCas(FakeState* s) : s_(s) {}
  grpc::Status FindMissingBlobs(
      grpc::ServerContext* ctx, const reapi::FindMissingBlobsRequest* req,
      reapi::FindMissingBlobsResponse* resp) override {
    if (grpc::Status st = s_->Enter(ctx, "find"); !st.ok()) return st;
    absl::MutexLock lock(&s_->mu);
    for (const auto& d : req->blob_digests()) {
      if (!s_->blobs.contains(d.hash())) *resp->add_missing_blob_digests() = d;
    }
    return grpc::Status::OK;
  }
  grpc::Status BatchUpdateBlobs(
      grpc::ServerContext* ctx, const reapi::BatchUpdateBlobsRequest* req,
      reapi::BatchUpdateBlobsResponse* resp) override {
    if (grpc::Status st = s_->Enter(ctx, "batch_update"); !st.ok()) return st;
    absl::MutexLock lock(&s_->mu);
    int64_t bytes = 0;
    for (const auto& r : req->requests()) {
      bytes += static_cast<int64_t>(r.data().size());
    }
    s_->NoteBatch(bytes);
    if (s_->empty_update_answers) {
      return grpc::Status::OK;
    }
    for (const auto& r : req->requests()) {
      auto* out = resp->add_responses();
      *out->mutable_digest() = r.digest();
      std::string data = r.data();
      if (r.compressor() == reapi::Compressor::ZSTD) {
        ++s_->calls["batch_update_zstd_item"];
        data = cas::ZstdDecompressAll(r.data(), r.digest().size_bytes())
                   .value_or("<corrupt>");
      }
      if (cas::Digest::OfData(data).hash() != r.digest().hash()) {
        out->mutable_status()->set_code(grpc::StatusCode::INVALID_ARGUMENT);
        continue;
      }
      s_->blobs[r.digest().hash()] = data;
    }
    return grpc::Status::OK;
  }
  grpc::Status BatchReadBlobs(grpc::ServerContext* ctx,
                              const reapi::BatchReadBlobsRequest* req,
                              reapi::BatchReadBlobsResponse* resp) override {
    if (grpc::Status st = s_->Enter(ctx, "batch_read"); !st.ok()) return st;
    absl::MutexLock lock(&s_->mu);
    for (const auto& d : req->digests()) {
      auto* out = resp->add_responses();
      *out->mutable_digest() = d;
      auto it = s_->blobs.find(d.hash());
      const bool zstd =
          s_->zstd && req->acceptable_compressors_size() > 0 &&
          req->acceptable_compressors(0) == reapi::Compressor::ZSTD;
      if (it == s_->blobs.end() ||
          static_cast<int64_t>(it->second.size()) != d.size_bytes()) {
        out->mutable_status()->set_code(grpc::StatusCode::NOT_FOUND);
      } else if (zstd) {
        ++s_->calls["batch_read_zstd_item"];
        cas::ZstdCompressor().Compress(s_->Served(it->second), true,
                                       out->mutable_data());
        out->set_compressor(reapi::Compressor::ZSTD);
      } else {
        out->set_data(s_->Served(it->second));
      }
    }
    int64_t bytes = 0;
    for (const auto& r : resp->responses()) {
      bytes += static_cast<int64_t>(r.data().size());
    }
    s_->NoteBatch(bytes);
    return grpc::Status::OK;
  }

 private:
  FakeState* s_;
};

class FakeActionCache final : public reapi::ActionCache::Service {
 public:
  explicit FakeActionCache(FakeState* s) : s_(s) {}
  grpc::Status GetActionResult(grpc::ServerContext* ctx,
                               const reapi::GetActionResultRequest* req,
                               reapi::ActionResult* resp) override {
    if (grpc::Status st = s_->Enter(ctx, "ac_get"); !st.ok()) return st;
    absl::MutexLock lock(&s_->mu);
    auto it = s_->ac.find(req->action_digest().hash());
    if (it == s_->ac.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no entry");
    }
    *resp = it->second;
    for (auto& f : *resp->mutable_output_files()) {
      for (const auto& want : req->inline_output_files()) {
        auto blob = s_->blobs.find(f.digest().hash());
        if (want == f.path() && blob != s_->blobs.end() &&
            blob->second.size() < 1024) {
          f.set_contents(blob->second);
        }
      }
    }
    return grpc::Status::OK;
  }
  grpc::Status UpdateActionResult(grpc::ServerContext* ctx,
                                  const reapi::UpdateActionResultRequest* req,
                                  reapi::ActionResult* resp) override {
    if (grpc::Status st = s_->Enter(ctx, "ac_update"); !st.ok()) return st;
    if (req->action_digest().size_bytes() <= 0) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "size 0");
    }
    absl::MutexLock lock(&s_->mu);
    s_->ac[req->action_digest().hash()] = req->action_result();
    *resp = req->action_result();
    return grpc::Status::OK;
  }

 private:
  FakeState* s_;
};

class FakeByteStream final : public bs::ByteStream::Service {
 public:
  explicit FakeByteStream(FakeState* s) : s_(s) {}
  grpc::Status Read(grpc::ServerContext* ctx, const bs::ReadRequest* req,
                    grpc::ServerWriter<bs::ReadResponse>* writer) override {
    if (grpc::Status st = s_->Enter(ctx, "bs_read"); !st.ok()) return st;
    std::vector<std::string> parts = absl::StrSplit(req->resource_name(), '/');
    const bool zstd =
        absl::StrContains(req->resource_name(), "/compressed-blobs/zstd/");
    std::string data;
    {
      absl::MutexLock lock(&s_->mu);
      auto it = s_->blobs.find(parts[parts.size() - 2]);
      if (it == s_->blobs.end()) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND, "no blob");
      }
      data = s_->Served(it->second).substr(req->read_offset());
      if (zstd) {
        ++s_->calls["bs_read_zstd"];
        std::string packed;
        cas::ZstdCompressor().Compress(data, true, &packed);
        data = std::move(packed);
      }
    }
    for (size_t off = 0; off < data.size(); off += 100000) {
      bs::ReadResponse r;
      r.set_data(data.substr(off, 100000));
      writer->Write(r);
    }
    return grpc::Status::OK;
  }
  grpc::Status Write(grpc::ServerContext* ctx,
                     grpc::ServerReader<bs::WriteRequest>* reader,
                     bs::WriteResponse* resp) override {
    if (grpc::Status st = s_->Enter(ctx, "bs_write"); !st.ok()) return st;
    bs::WriteRequest req;
    std::string name, data;
    bool finished = false;
    while (reader->Read(&req)) {
      if (!req.resource_name().empty()) name = req.resource_name();
      if (req.write_offset() != static_cast<int64_t>(data.size())) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "offset");
      }
      data += req.data();
      finished = req.finish_write();
    }
    // As a real server: nothing is committed without finish_write (a
    // cancelled stream also ends the reads, with the bytes sent so far).
    if (!finished) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "stream ended without finish_write");
    }
    std::vector<std::string> parts = absl::StrSplit(name, '/');
    const int64_t wire = data.size();
    const bool zstd = absl::StrContains(name, "/compressed-blobs/zstd/");
    if (zstd) {
      data = cas::ZstdDecompressAll(data, 1 << 30).value_or("<corrupt>");
    }
    if (parts.size() < 6 || !absl::StrContains(name, "/uploads/") ||
        cas::Digest::OfData(data).hash() != parts[parts.size() - 2]) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, name);
    }
    absl::MutexLock lock(&s_->mu);
    s_->calls[zstd ? "bs_write_zstd" : "bs_write_identity"]++;
    s_->blobs[parts[parts.size() - 2]] = data;
    resp->set_committed_size(wire);
    return grpc::Status::OK;
  }

 private:
  FakeState* s_;
};

class ReapiClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    target_ = absl::StrCat("unix://", dir_, "/sock");
    grpc::ServerBuilder b;
    b.AddListeningPort(target_, grpc::InsecureServerCredentials());
    b.SetMaxReceiveMessageSize(16 << 20);
    b.RegisterService(&caps_);
    b.RegisterService(&cas_);
    b.RegisterService(&ac_);
    b.RegisterService(&bytestream_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now());
  }
  std::unique_ptr<ReapiClient> Client(
      int max_attempts = 3,
      const std::function<void(ReapiClientOptions&)>& tweak = nullptr) {
    ReapiClientOptions o;
    o.target = target_;
    o.instance_name = "main/go";
    o.max_attempts = max_attempts;
    o.initial_backoff = absl::Milliseconds(1);
    o.headers.push_back(*ParseHeader("X-Api-Key=secret"));
    if (tweak) {
      tweak(o);
    }
    auto c = NewReapiClient(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return *std::move(c);
  }
  std::string Read(ReapiClient& c, const cas::Digest& d) {
    std::string out;
    absl::Status s = c.ReadBlob(d, [&](absl::string_view chunk) {
      out.append(chunk.data(), chunk.size());
      return absl::OkStatus();
    });
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  testutil::TempDir tmp_;
  std::string dir_ = tmp_.path();
  std::string target_;
  FakeState state_;
  FakeCapabilities caps_{&state_};
  FakeCas cas_{&state_};
  FakeActionCache ac_{&state_};
  FakeByteStream bytestream_{&state_};
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(ReapiClientTest, SmallBlobsGoThroughBatchCalls) {
  auto c = Client();
  const std::string data = "small blob";
  const cas::Digest d = cas::Digest::OfData(data);
  ASSERT_TRUE(c->UploadBlob(d, StringChunkSource(data)).ok());
  EXPECT_EQ(Read(*c, d), data);
  EXPECT_EQ(state_.Calls("batch_update"), 1);
  EXPECT_EQ(state_.Calls("batch_read"), 1);
  EXPECT_EQ(state_.Calls("bs_write"), 0);
  // Present already: FindMissingBlobs saves the transfer.
  ASSERT_TRUE(c->UploadBlob(d, StringChunkSource(data)).ok());
  EXPECT_EQ(state_.Calls("batch_update"), 1);
  EXPECT_EQ(state_.Calls("caps"), 1);  // Read once.
}

TEST_F(ReapiClientTest, LargeBlobsGoThroughByteStream) {
  auto c = Client();
  std::string data(3 << 20, '\0');
  std::mt19937 gen(3);
  for (char& ch : data) ch = static_cast<char>(gen());
  const cas::Digest d = cas::Digest::OfData(data);
  ASSERT_TRUE(c->UploadBlob(d, StringChunkSource(data)).ok());
  EXPECT_EQ(state_.Calls("bs_write"), 1);
  EXPECT_TRUE(Read(*c, d) == data);
  EXPECT_EQ(state_.Calls("bs_read"), 1);
}

std::string Text(size_t size) {
  std::string out;
  for (size_t i = 0; out.size() < size; ++i) {
    out += absl::StrCat("symbol ", i * 7919 % 5000, " at offset ", i, "\n");
  }
  out.resize(size);
  return out;
}

TEST_F(ReapiClientTest, ZstdOnTheWireWhenAdvertised) {
  {
    absl::MutexLock lock(&state_.mu);
    state_.zstd = true;
  }
  auto c = Client();
  const std::string small = Text(50000), large = Text(3 << 20);
  const cas::Digest ds = cas::Digest::OfData(small),
                    dl = cas::Digest::OfData(large);
  ASSERT_TRUE(c->UploadBlob(ds, StringChunkSource(small)).ok());
  ASSERT_TRUE(c->UploadBlob(dl, StringChunkSource(large)).ok());
  EXPECT_EQ(state_.Calls("batch_update_zstd_item"), 1);
  EXPECT_EQ(state_.Calls("bs_write_zstd"), 1);
  EXPECT_EQ(state_.Calls("bs_write_identity"), 0);
  EXPECT_TRUE(Read(*c, ds) == small);
  EXPECT_TRUE(Read(*c, dl) == large);
  EXPECT_EQ(state_.Calls("batch_read_zstd_item"), 1);
  EXPECT_EQ(state_.Calls("bs_read_zstd"), 1);
  const WireCounters w = c->Counters();
  EXPECT_EQ(w.sent_plain, ds.size_bytes() + dl.size_bytes());
  EXPECT_EQ(w.received_plain, ds.size_bytes() + dl.size_bytes());
  EXPECT_LT(w.sent, w.sent_plain / 4);
  EXPECT_LT(w.received, w.received_plain / 4);
}

TEST_F(ReapiClientTest, NoZstdUnlessAdvertised) {
  auto c = Client();
  const std::string large = Text(3 << 20);
  const cas::Digest d = cas::Digest::OfData(large);
  ASSERT_TRUE(c->UploadBlob(d, StringChunkSource(large)).ok());
  EXPECT_TRUE(Read(*c, d) == large);
  EXPECT_EQ(state_.Calls("bs_write_identity"), 1);
  EXPECT_EQ(state_.Calls("bs_read_zstd"), 0);
  EXPECT_EQ(c->Counters().sent, c->Counters().sent_plain);
  EXPECT_EQ(c->Counters().received, d.size_bytes());
}

// Uploads each of `blobs` through `c`.
void UploadAll(ReapiClient& c,
               std::initializer_list<const std::string*> blobs) {
  for (const std::string* data : blobs) {
    ASSERT_TRUE(
        c.UploadBlob(cas::Digest::OfData(*data), StringChunkSource(*data))
            .ok());
  }
}

// One message of frames can expand to a whole large blob (64 MiB of zeros
// is a few KiB of zstd): the sink gets it in bounded pieces, never at once.
TEST_F(ReapiClientTest, CompressedReadHandsTheSinkBoundedPieces) {
  {
    absl::MutexLock lock(&state_.mu);
    state_.zstd = true;
  }
  auto c = Client();
  const std::string zeros(64 << 20, '\0');
  const cas::Digest d = cas::Digest::OfData(zeros);
  ASSERT_TRUE(c->UploadBlob(d, StringChunkSource(zeros)).ok());
  size_t largest = 0;
  int64_t total = 0;
  ASSERT_TRUE(c->ReadBlob(d, [&](absl::string_view piece) {
                 largest = std::max(largest, piece.size());
                 total += static_cast<int64_t>(piece.size());
                 return absl::OkStatus();
               }).ok());
  EXPECT_EQ(state_.Calls("bs_read_zstd"), 1);
  EXPECT_EQ(total, d.size_bytes());
  EXPECT_LE(largest, size_t{1} << 20);
}

TEST_F(ReapiClientTest, CompressedBytesAreVerifiedAfterDecompression) {
  auto c = Client();
  const std::string small = Text(50000), large = Text(3 << 20);
  UploadAll(*c, {&small, &large});
  {
    absl::MutexLock lock(&state_.mu);
    state_.zstd = true;
    state_.corrupt_reads = true;
  }
  auto z = Client();  // Reads the capabilities afresh.
  for (const std::string* data : {&small, &large}) {
    absl::Status s =
        z->ReadBlob(cas::Digest::OfData(*data),
                    [](absl::string_view) { return absl::OkStatus(); });
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  }
  EXPECT_EQ(state_.Calls("bs_read_zstd"), 1);
  EXPECT_EQ(state_.Calls("batch_read_zstd_item"), 1);
}

// verify_hash off: the bytes reach the sink unhashed (the caller checks
// them, e.g. the Go shim against the OutputID); the default still refuses.
TEST_F(ReapiClientTest, UnverifiedReadLeavesTheHashToTheCaller) {
  auto c = Client();
  const std::string small = Text(50000), large = Text(3 << 20);
  UploadAll(*c, {&small, &large});
  {
    absl::MutexLock lock(&state_.mu);
    state_.corrupt_reads = true;
  }
  for (const std::string* data : {&small, &large}) {
    const cas::Digest d = cas::Digest::OfData(*data);
    std::string got;
    absl::Status s = c->ReadBlobWith(d,
                                     [&](absl::string_view chunk) {
                                       got.append(chunk.data(), chunk.size());
                                       return absl::OkStatus();
                                     },
                                     {.verify_hash = false});
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(got.size(), data->size());
    EXPECT_NE(cas::Digest::OfData(got), d);  // The flipped bytes, unhashed.
    EXPECT_EQ(c->ReadBlob(d, [](absl::string_view) { return absl::OkStatus(); })
                  .code(),
              absl::StatusCode::kDataLoss);
  }
  EXPECT_EQ(state_.Calls("bs_read"), 2);
  EXPECT_EQ(state_.Calls("batch_read"), 2);
}

// Waits (up to 20 s, not an assertion on speed) until `done` holds.
bool WaitFor(const std::function<bool()>& done) {
  for (int i = 0; i < 2000 && !done(); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  return done();
}

// Coalescing: one batch call in flight at a time, and the server holds the
// first call of `held` until every other caller has queued behind it.
class CoalescingTest : public ReapiClientTest {
 protected:
  static constexpr int kCallers = 16;

  std::unique_ptr<ReapiClient> QueueingClient(int max_attempts = 3) {
    return Client(max_attempts, [this](ReapiClientOptions& o) {
      o.batch_calls_in_flight = 1;
      o.on_batch_wait_for_test = [this] { waits_.fetch_add(1); };
    });
  }
  // Runs `call(i)` for i in [0, kCallers): call 0 first, alone, until it is
  // held in the server's `held`; the others then queue; then releases.
  void RunHeld(const std::string& held, const std::function<void(int)>& call) {
    state_.Hold(held);
    std::vector<std::thread> threads;
    threads.emplace_back(call, 0);
    ASSERT_TRUE(WaitFor([&] { return state_.Calls(held) == 1; }));
    for (int i = 1; i < kCallers; ++i) {
      threads.emplace_back(call, i);
    }
    const bool queued = WaitFor([&] { return waits_.load() == kCallers - 1; });
    state_.ReleaseHold();
    for (std::thread& t : threads) {
      t.join();
    }
    ASSERT_TRUE(queued) << waits_.load() << " callers queued";
  }
  std::vector<std::string> Blobs(size_t size) {
    std::vector<std::string> blobs;
    for (int i = 0; i < kCallers; ++i) {
      blobs.push_back(absl::StrCat(i, ":", Text(size)).substr(0, size));
    }
    return blobs;
  }
  // Uploads each of `blobs` from its own thread (RunHeld on "find") and
  // expects every upload to succeed.
  void UploadConcurrently(ReapiClient& c,
                          const std::vector<std::string>& blobs) {
    std::vector<absl::Status> got(kCallers);
    RunHeld("find", [&](int i) {
      got[i] = c.UploadBlob(cas::Digest::OfData(blobs[i]),
                            StringChunkSource(blobs[i]));
    });
    for (int i = 0; i < kCallers; ++i) {
      EXPECT_TRUE(got[i].ok()) << i << ": " << got[i];
    }
  }
  void Store(const std::vector<std::string>& blobs) {
    absl::MutexLock lock(&state_.mu);
    for (const std::string& b : blobs) {
      state_.blobs[cas::Digest::OfData(b).hash()] = b;
    }
  }

  std::atomic<int> waits_{0};
};

TEST_F(CoalescingTest, ConcurrentUploadsShareOneFindMissingAndOneBatch) {
  auto c = QueueingClient();
  const std::vector<std::string> blobs = Blobs(300);
  UploadConcurrently(*c, blobs);
  // The first upload alone, then the 15 that queued behind it together.
  EXPECT_EQ(state_.Calls("find"), 2);
  EXPECT_EQ(state_.Calls("batch_update"), 2);
  absl::MutexLock lock(&state_.mu);
  for (const std::string& b : blobs) {
    EXPECT_TRUE(state_.blobs.contains(cas::Digest::OfData(b).hash()));
  }
}

TEST_F(CoalescingTest, UploadsAlreadyPresentSkipTheBatch) {
  auto c = QueueingClient();
  const std::vector<std::string> blobs = Blobs(300);
  Store({blobs.begin(), blobs.begin() + kCallers / 2});
  UploadConcurrently(*c, blobs);
  EXPECT_EQ(state_.Calls("find"), 2);
  EXPECT_EQ(state_.Calls("batch_update"), 1);  // Blob 0 was present.
  absl::MutexLock lock(&state_.mu);
  EXPECT_EQ(state_.blobs.size(), static_cast<size_t>(kCallers));
}

class CoalescedReadTest : public CoalescingTest,
                          public ::testing::WithParamInterface<bool> {};

TEST_P(CoalescedReadTest, ConcurrentReadsShareOneBatchRead) {
  const bool zstd = GetParam();
  {
    absl::MutexLock lock(&state_.mu);
    state_.zstd = zstd;
  }
  auto c = QueueingClient();
  const std::vector<std::string> blobs = Blobs(2000);
  Store(blobs);
  std::vector<std::string> got(kCallers);
  RunHeld("batch_read",
          [&](int i) { got[i] = Read(*c, cas::Digest::OfData(blobs[i])); });
  for (int i = 0; i < kCallers; ++i) {
    EXPECT_TRUE(got[i] == blobs[i]) << i;
  }
  EXPECT_EQ(state_.Calls("batch_read"), 2);
  EXPECT_EQ(state_.Calls("batch_read_zstd_item"), zstd ? kCallers : 0);
  EXPECT_EQ(c->Counters().received_plain, kCallers * 2000);
}

INSTANTIATE_TEST_SUITE_P(PlainAndZstd, CoalescedReadTest, ::testing::Bool());

TEST_F(CoalescingTest, BatchesStayWithinTheAdvertisedLimit) {
  // 128 KiB advertised, 64 KiB usable: three 20000-byte blobs per batch.
  auto c = QueueingClient();
  UploadConcurrently(*c, Blobs(20000));
  EXPECT_EQ(state_.Calls("batch_update"), 1 + 5);
  absl::MutexLock lock(&state_.mu);
  EXPECT_EQ(state_.max_batch_bytes, 3 * 20000);
}

TEST_F(CoalescingTest, AFailedBatchFailsEachBlobItCarried) {
  auto c = QueueingClient(/*max_attempts=*/1);
  const std::vector<std::string> blobs = Blobs(300);
  Store(blobs);
  std::vector<absl::Status> got(kCallers);
  RunHeld("batch_read", [&](int i) {
    if (i == 1) {
      absl::MutexLock lock(&state_.mu);
      state_.fail_next = 2;  // The held call and the one after it.
    }
    got[i] = c->ReadBlob(cas::Digest::OfData(blobs[i]),
                         [](absl::string_view) { return absl::OkStatus(); });
  });
  for (int i = 0; i < kCallers; ++i) {
    EXPECT_EQ(got[i].code(), absl::StatusCode::kUnavailable) << i;
  }
  EXPECT_EQ(state_.Calls("batch_read"), 2);
}

// Two digests with one hash and different sizes are two blobs: a batch asks
// for each and hands each caller its own answer.
TEST_F(CoalescingTest, OneHashWithTwoSizesIsTwoBlobsInABatch) {
  auto c = QueueingClient();
  const std::string blob = Text(2000);
  Store({blob});
  const cas::Digest right = cas::Digest::OfData(blob);
  const cas::Digest wrong = *cas::Digest::Create(right.hash(), 1999);
  std::vector<absl::Status> got(kCallers);
  std::vector<std::string> data(kCallers);
  RunHeld("batch_read", [&](int i) {
    got[i] = c->ReadBlob(i % 2 == 0 ? wrong : right, [&](absl::string_view b) {
      data[i].append(b.data(), b.size());
      return absl::OkStatus();
    });
  });
  for (int i = 0; i < kCallers; ++i) {
    if (i % 2 == 0) {
      EXPECT_EQ(got[i].code(), absl::StatusCode::kNotFound) << i << got[i];
    } else {
      EXPECT_TRUE(got[i].ok()) << i << ": " << got[i];
      EXPECT_TRUE(data[i] == blob) << i;
    }
  }
  EXPECT_EQ(state_.Calls("batch_read"), 2);
}

// A source that ends before the digest's size is bytes that do not match
// their digest (INVALID_ARGUMENT, STYLE §3), batched or streamed, and
// stores nothing.
TEST_F(ReapiClientTest, ShortSourceIsInvalidArgumentOnBothPaths) {
  auto c = Client();
  for (int64_t size : {int64_t{1000}, int64_t{3} << 20}) {
    const std::string data = Text(size);
    const cas::Digest d =
        *cas::Digest::Create(cas::Digest::OfData(data).hash(), size + 1);
    EXPECT_EQ(c->UploadBlob(d, StringChunkSource(data)).code(),
              absl::StatusCode::kInvalidArgument)
        << size;
  }
  EXPECT_EQ(state_.Calls("batch_update"), 0);
  absl::MutexLock lock(&state_.mu);
  EXPECT_TRUE(state_.blobs.empty());
}

// A blob the BatchUpdateBlobs answer leaves out (a broken server or proxy)
// failed to upload; it is never reported as stored.
TEST_F(ReapiClientTest, BlobMissingFromABatchUpdateAnswerIsNotUploaded) {
  {
    absl::MutexLock lock(&state_.mu);
    state_.empty_update_answers = true;
  }
  auto c = Client();
  const std::string data = "no answer for this one";
  absl::Status s =
      c->UploadBlob(cas::Digest::OfData(data), StringChunkSource(data));
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
}

TEST_F(ReapiClientTest, MissingBlobIsNotFound) {
  auto c = Client();
  absl::Status s =
      c->ReadBlob(cas::Digest::OfData("absent"),
                  [](absl::string_view) { return absl::OkStatus(); });
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
}

TEST_F(ReapiClientTest, SendsHeadersAndRequestMetadata) {
  auto c = Client();
  ASSERT_TRUE(c->GetCapabilities().ok());
  absl::MutexLock lock(&state_.mu);
  EXPECT_EQ(state_.api_key, "secret");
  EXPECT_TRUE(state_.saw_request_metadata);
}

TEST_F(ReapiClientTest, RetriesUnavailable) {
  auto c = Client(3);
  {
    absl::MutexLock lock(&state_.mu);
    state_.fail_next = 2;
  }
  EXPECT_EQ(c->GetActionResult(cas::Digest::OfData("a"), {}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(state_.Calls("ac_get"), 3);
  {
    absl::MutexLock lock(&state_.mu);
    state_.fail_next = 5;
  }
  EXPECT_EQ(c->GetActionResult(cas::Digest::OfData("a"), {}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(state_.Calls("ac_get"), 6);
}

TEST_F(ReapiClientTest, SlowServerHitsTheDeadline) {
  {
    absl::MutexLock lock(&state_.mu);
    state_.delay = absl::Seconds(2);
  }
  ReapiClientOptions o;
  o.target = target_;
  o.timeout = absl::Milliseconds(200);
  auto c = NewReapiClient(o);
  ASSERT_TRUE(c.ok());
  const absl::Time start = absl::Now();
  EXPECT_EQ((*c)->GetActionResult(cas::Digest::OfData("a"), {}).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST_F(ReapiClientTest, UnreachableServerIsUnavailableNotAHang) {
  ReapiClientOptions o;
  o.target = absl::StrCat("unix://", dir_, "/nobody-here");
  o.timeout = absl::Seconds(5);
  o.initial_backoff = absl::Milliseconds(1);
  auto c = NewReapiClient(o);
  ASSERT_TRUE(c.ok());
  const absl::Time start = absl::Now();
  EXPECT_EQ((*c)->GetCapabilities().status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// grpcs:// with a private CA and a client certificate (mutual TLS), served on
// a loopback port by the same fake services.
TEST_F(ReapiClientTest, TalksTlsWithClientCertificate) {
  const std::string cmd = absl::StrCat(
      "cd ", dir_,
      " && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out "
      "cert.pem -days 1 -subj /CN=localhost -addext "
      "subjectAltName=DNS:localhost >/dev/null 2>&1");
  if (std::system(cmd.c_str()) != 0) {
    GTEST_SKIP() << "openssl could not make a test certificate";
  }
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = Slurp(dir_ + "/cert.pem");
  ssl.pem_key_cert_pairs.push_back(
      {Slurp(dir_ + "/key.pem"), Slurp(dir_ + "/cert.pem")});
  int port = 0;
  grpc::ServerBuilder b;
  b.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl), &port);
  b.RegisterService(&caps_);
  std::unique_ptr<grpc::Server> tls_server = b.BuildAndStart();
  ASSERT_NE(tls_server, nullptr);
  ReapiClientOptions o;
  o.target = absl::StrCat("grpcs://localhost:", port);
  o.tls_ca_file = dir_ + "/cert.pem";
  o.tls_cert_file = dir_ + "/cert.pem";
  o.tls_key_file = dir_ + "/key.pem";
  auto c = NewReapiClient(o);
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<reapi::CacheCapabilities> caps = (*c)->GetCapabilities();
  EXPECT_TRUE(caps.ok()) << caps.status();
  o.tls_cert_file = o.tls_key_file = "";  // The server requires a client cert.
  o.max_attempts = 1;
  auto anonymous = NewReapiClient(o);
  ASSERT_TRUE(anonymous.ok());
  EXPECT_FALSE((*anonymous)->GetCapabilities().ok());
  o.tls_ca_file = dir_ + "/absent.pem";
  EXPECT_FALSE(NewReapiClient(o).ok());
  tls_server->Shutdown(std::chrono::system_clock::now());
}

TEST_F(ReapiClientTest, RejectsBadTargetsAndHeaders) {
  for (const char* t : {"", "http://x:1", "grpc://", "localhost:9092"}) {
    ReapiClientOptions o;
    o.target = t;
    EXPECT_EQ(NewReapiClient(o).status().code(),
              absl::StatusCode::kInvalidArgument)
        << t;
  }
  for (auto header : std::vector<std::pair<std::string, std::string>>{
           {"bad header", "v"}, {"grpc-timeout", "1"}, {"x", "line\nbreak"}}) {
    ReapiClientOptions o;
    o.target = "grpc://127.0.0.1:1";
    o.headers.push_back(header);
    EXPECT_EQ(NewReapiClient(o).status().code(),
              absl::StatusCode::kInvalidArgument)
        << header.first;
  }
  EXPECT_FALSE(ParseHeader("novalue").ok());
  EXPECT_FALSE(ParseHeader("=x").ok());
  // A name of spaces only is empty too (client_parse_fuzz: "\v:" gave "").
  for (const char* spec : {" =x", "\v:", " \t : x"}) {
    EXPECT_EQ(ParseHeader(spec).status().code(),
              absl::StatusCode::kInvalidArgument)
        << spec;
  }
  auto h = ParseHeader("Authorization=Bearer a=b");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->first, "authorization");
  EXPECT_EQ(h->second, "Bearer a=b");
}

TEST_F(ReapiClientTest, GoMappingRoundTrip) {
  auto remote = gocacheprog::NewReapiRemote(Client());
  const std::string body = "go build output";
  const std::string path = dir_ + "/body";
  std::ofstream(path, std::ios::binary) << body;
  cas::Sha256Hasher h;
  h.Update(body);
  const std::string action(32, 'A');
  gocacheprog::Entry entry{h.FinishRaw(), static_cast<int64_t>(body.size()),
                           absl::FromUnixSeconds(1700000000)};
  ASSERT_TRUE(remote->Put(action, entry, path).ok());
  {
    absl::MutexLock lock(&state_.mu);
    auto it = state_.ac.find(gocacheprog::GoActionKey(action).hash());
    ASSERT_NE(it, state_.ac.end());
    ASSERT_EQ(it->second.output_files_size(), 1);
    EXPECT_EQ(it->second.output_files(0).path(), "go-output");
    EXPECT_EQ(it->second.output_files(0).digest().hash(),
              cas::HexEncode(entry.output_id));
    EXPECT_EQ(
        it->second.execution_metadata().worker_completed_timestamp().seconds(),
        1700000000);
  }
  std::string got;
  absl::StatusOr<gocacheprog::Entry> back = remote->Get(
      action, [](int64_t) { return true; },
      [&](absl::string_view c) {
        got.append(c.data(), c.size());
        return absl::OkStatus();
      });
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(got, body);
  // The gate sees the size before the body and may skip it.
  int64_t asked = -1;
  EXPECT_EQ(remote
                ->Get(
                    action,
                    [&](int64_t size) {
                      asked = size;
                      return false;
                    },
                    [](absl::string_view) {
                      ADD_FAILURE() << "skipped body was fetched";
                      return absl::OkStatus();
                    })
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(asked, static_cast<int64_t>(body.size()));
  EXPECT_EQ(back->output_id, entry.output_id);
  EXPECT_EQ(back->time, entry.time);
  EXPECT_EQ(state_.Calls("batch_read"), 0);  // Inlined in GetActionResult.
  EXPECT_EQ(remote
                ->Get(
                    std::string(32, 'B'), [](int64_t) { return true; },
                    [](absl::string_view) { return absl::OkStatus(); })
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

// With zstd reads the body is not inlined (inline bytes are never
// compressed): it comes compressed through BatchReadBlobs.
TEST_F(ReapiClientTest, GoMappingFetchesCompressedBodiesWithZstd) {
  {
    absl::MutexLock lock(&state_.mu);
    state_.zstd = true;
  }
  auto remote =
      gocacheprog::NewReapiRemote(Client(), gocacheprog::ZstdPolicy::kAlways);
  const std::string body = Text(1000);  // The fake inlines under 1024.
  const std::string path = dir_ + "/body";
  std::ofstream(path, std::ios::binary) << body;
  const std::string action(32, 'Z');
  gocacheprog::Entry entry{cas::Digest::OfData(body).hash(),
                           static_cast<int64_t>(body.size()),
                           absl::FromUnixSeconds(1700000000)};
  entry.output_id = absl::HexStringToBytes(entry.output_id);
  ASSERT_TRUE(remote->Put(action, entry, path).ok());
  std::string got;
  ASSERT_TRUE(remote
                  ->Get(
                      action, [](int64_t) { return true; },
                      [&](absl::string_view c) {
                        got.append(c.data(), c.size());
                        return absl::OkStatus();
                      })
                  .ok());
  EXPECT_TRUE(got == body);
  EXPECT_EQ(state_.Calls("batch_read_zstd_item"), 1);
  EXPECT_EQ(remote->Counters().received_plain, 1000);
  EXPECT_LT(remote->Counters().received, 1000);
}

// Stores `n` Go entries of `size` bytes each under ActionIDs 0..n-1.
void PutEntries(gocacheprog::Remote& remote, const std::string& dir, int n,
                int64_t size) {
  for (int i = 0; i < n; ++i) {
    const std::string body = Text(size) + std::to_string(i);
    const std::string path = absl::StrCat(dir, "/body", i);
    std::ofstream(path, std::ios::binary) << body;
    gocacheprog::Entry entry{
        absl::HexStringToBytes(cas::Digest::OfData(body).hash()),
        static_cast<int64_t>(body.size()), absl::FromUnixSeconds(1)};
    ASSERT_TRUE(
        remote.Put(std::string(32, static_cast<char>(i)), entry, path).ok());
  }
}

// Fetches entry `i`; returns its body.
std::string GetEntry(gocacheprog::Remote& remote, int i) {
  std::string got;
  absl::StatusOr<gocacheprog::Entry> e = remote.Get(
      std::string(32, static_cast<char>(i)), [](int64_t) { return true; },
      [&](absl::string_view c) {
        got.append(c.data(), c.size());
        return absl::OkStatus();
      });
  EXPECT_TRUE(e.ok()) << e.status();
  return got;
}

// --zstd=auto: bodies travel plain (no compressed read) while the probe
// measures a fast link; here the unix socket.
TEST_F(ReapiClientTest, GoMappingAutoStaysPlainOnAFastLink) {
  {
    absl::MutexLock lock(&state_.mu);
    state_.zstd = true;
  }
  auto remote = gocacheprog::NewReapiRemote(Client());
  const int n = gocacheprog::TransferChooser::kProbeSamples + 3;
  // 1 MiB: plain when the best of the probe's fetches takes under 26 ms.
  const int64_t size = 1 << 20;
  PutEntries(*remote, dir_, n, size);
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(GetEntry(*remote, i).size(), size + std::to_string(i).size());
  }
  const gocacheprog::Remote::Transfers t = remote->TransferCounts();
  ASSERT_GT(t.probe_rate, 0);
  if (t.probe_rate < gocacheprog::TransferChooser::kZstdBelowBytesPerSecond) {
    // The fake is on loopback, far above the threshold on an idle machine,
    // but a sanitizer build on a loaded one can measure less (TSan on the
    // shared machine: 29.7 MB/s). The rate is the machine's, not the code's:
    // then the fetches after the probe must follow its decision.
    EXPECT_EQ(t.plain, gocacheprog::TransferChooser::kProbeSamples);
    EXPECT_EQ(t.zstd, n - gocacheprog::TransferChooser::kProbeSamples);
    return;
  }
  EXPECT_EQ(state_.Calls("batch_read_zstd_item"), 0);
  EXPECT_EQ(state_.Calls("bs_read_zstd"), 0);
  EXPECT_EQ(t.plain, n);
  EXPECT_EQ(t.zstd, 0);
  EXPECT_EQ(remote->Counters().received, remote->Counters().received_plain);
}

// --zstd=auto on a far link (every call delayed, the pings too): bodies
// travel compressed from the first fetch, without a plain probe.
TEST_F(ReapiClientTest, GoMappingAutoCompressesFromTheFirstFetchOnAFarLink) {
  {
    absl::MutexLock lock(&state_.mu);
    state_.zstd = true;
  }
  auto remote = gocacheprog::NewReapiRemote(Client());
  const int n = gocacheprog::TransferChooser::kProbeSamples + 2;
  const int64_t size = gocacheprog::TransferChooser::kMinSampleBytes;
  PutEntries(*remote, dir_, n, size);
  {
    absl::MutexLock lock(&state_.mu);
    state_.delay = absl::Milliseconds(10);
  }
  for (int i = 0; i < n; ++i) {
    // Above the fake's batch limit: ByteStream.
    EXPECT_EQ(GetEntry(*remote, i).size(), size + std::to_string(i).size());
  }
  EXPECT_EQ(state_.Calls("bs_read_zstd"), n);
  const gocacheprog::Remote::Transfers t = remote->TransferCounts();
  EXPECT_EQ(t.plain, 0);
  EXPECT_EQ(t.zstd, n);
  EXPECT_GE(t.round_trip, gocacheprog::TransferChooser::kFarRoundTrip);
}

// A zstd-speaking fake whose storage is slow: every call but
// GetCapabilities waits (as a cold node waits for its bucket).
class SlowStorageTest : public ReapiClientTest {
 protected:
  // Returns an auto remote over the fake holding `n` entries of `size`
  // bytes, with `wait` added to every storage call from now on.
  std::unique_ptr<gocacheprog::Remote> StoredRemote(int n, int64_t size,
                                                    absl::Duration wait) {
    {
      absl::MutexLock lock(&state_.mu);
      state_.zstd = true;
    }
    auto remote = gocacheprog::NewReapiRemote(Client());
    PutEntries(*remote, dir_, n, size);
    absl::MutexLock lock(&state_.mu);
    state_.storage_delay = wait;
    return remote;
  }
};

// --zstd=auto through a near server whose storage is slow: the pings see
// a near network, so the probe decides, from bodies large enough that the
// wait does not pass for a slow link.
TEST_F(SlowStorageTest, GoMappingAutoMeasuresTheNetworkNotTheStorage) {
  const int probe = gocacheprog::TransferChooser::kProbeSamples;
  auto remote =
      StoredRemote(probe + 2, 4 * gocacheprog::TransferChooser::kMinSampleBytes,
                   absl::Milliseconds(10));
  for (int i = 0; i < probe + 2; ++i) {
    GetEntry(*remote, i);
  }
  const gocacheprog::Remote::Transfers t = remote->TransferCounts();
  EXPECT_GT(t.round_trip, absl::ZeroDuration());
  EXPECT_LT(t.round_trip, gocacheprog::TransferChooser::kFarRoundTrip);
  // The probe's fetches went plain (a lookup or a fetch timed as the round
  // trip would have made this a far remote: all zstd).
  EXPECT_GE(t.plain, probe);
  if (t.probe_rate < gocacheprog::TransferChooser::kZstdBelowBytesPerSecond) {
    // 4 MiB per 20 ms of waits plus the transfer is ~200 MB/s on an idle
    // machine; a sanitizer build on a loaded one can measure less (see
    // GoMappingAutoStaysPlainOnAFastLink): then the decision is followed.
    EXPECT_EQ(t.zstd, 2);
    return;
  }
  EXPECT_EQ(t.plain, probe + 2);
  EXPECT_EQ(t.zstd, 0);
}

// --zstd=auto: a body fetched in a call of its own is timed from that call,
// not from the lookup before it, which waited for the storage too.
TEST_F(SlowStorageTest, GoMappingAutoTimesABodyFromItsOwnCall) {
  const int probe = gocacheprog::TransferChooser::kProbeSamples;
  const int64_t size = 2 * gocacheprog::TransferChooser::kMinSampleBytes;
  // Longer than the transfer of `size` even in a TSan build on a loaded
  // machine (144 ms seen there; the assertion below needs transfer < wait).
  const absl::Duration wait = absl::Milliseconds(400);
  auto remote = StoredRemote(probe, size, wait);
  for (int i = 0; i < probe; ++i) {
    GetEntry(*remote, i);  // A lookup and a ByteStream read, each `wait`.
  }
  // Timed from the lookup each sample took over 2 x `wait`; from its own
  // read, `wait` and the transfer (under `wait`).
  EXPECT_GT(remote->TransferCounts().probe_rate,
            size / absl::ToDoubleSeconds(2 * wait));
}

TEST_F(ReapiClientTest, ForeignActionResultIsAMiss) {
  auto remote = gocacheprog::NewReapiRemote(Client());
  const std::string action(32, 'C');
  {
    absl::MutexLock lock(&state_.mu);
    reapi::ActionResult foreign;  // e.g. written by another tool
    foreign.add_output_files()->set_path("bazel-out/x");
    state_.ac[gocacheprog::GoActionKey(action).hash()] = foreign;
  }
  EXPECT_EQ(remote
                ->Get(
                    action, [](int64_t) { return true; },
                    [](absl::string_view) { return absl::OkStatus(); })
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace cairn::client
