// Stalled and abusive uploads (issue 17): a client holding a thousand
// interrupted uploads and hundreds of stalled open ones cannot stop another
// client from uploading or resuming. Clients are told apart by bearer token
// (rpc::PrincipalOf); the store is 64 MiB, client A's uploads would reserve
// far more than that without the caps. Also the cap on open ByteStream calls
// per client.
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "rpc/auth.h"
#include "rpc/grpc_status.h"
#include "rpc/metrics.h"
#include "tests/testutil/service_fixture.h"
#include "tests/testutil/temp_dir.h"

namespace cairn::servertest {
namespace {

constexpr char kTokenA[] = "client-a-token-0123456789";
constexpr char kTokenB[] = "client-b-token-0123456789";
constexpr int64_t kStore = int64_t{64} << 20;

class UploadLimitsTest : public ServiceTest {
 protected:
  void SetUp() override {
    std::ofstream(dir_.path() + "/tokens")
        << "rw " << kTokenA << "\nrw " << kTokenB << "\n";
    rpc::AuthOptions auth;
    auth.tokens_file = dir_.path() + "/tokens";
    auth.anonymous = rpc::Access::kNone;
    auto authorizer = rpc::NewAuthorizer(auth);
    ASSERT_TRUE(authorizer.ok()) << authorizer.status();
    authorizer_ = *std::move(authorizer);
    ResetStore(kStore);
  }

  struct OpenWrite {
    grpc::ClientContext context;
    bs::WriteResponse response;
    std::unique_ptr<grpc::ClientWriter<bs::WriteRequest>> writer;
  };

  void Start(server::ServerOptions options) {
    options.authorizer = authorizer_.get();
    StartServer(options);
  }

  // A blob of `size` bytes named by `seed`.
  static std::string Blob(int seed, size_t size) {
    std::string data(size, '\0');
    for (size_t i = 0; i < size; ++i) {
      data[i] = static_cast<char>((seed * 7919 + i * 31) >> 3);
    }
    return data;
  }

  static std::string Resource(const std::string& uuid,
                              const std::string& data) {
    cas::Digest d = cas::Digest::OfData(data);
    return absl::StrCat("uploads/", uuid, "/blobs/", d.hash(), "/",
                        d.size_bytes());
  }

  // Opens a Write as `token` and sends data[offset, offset + n) without
  // finish_write. The stream stays open in `*open` (when given) or is
  // ended at once (the upload is parked). Returns how the first message
  // went: OK, or the call's status when the server ended it.
  grpc::Status Partial(const char* token, const std::string& uuid,
                       const std::string& data, size_t offset, size_t n,
                       std::vector<std::unique_ptr<OpenWrite>>* open) {
    auto w = std::make_unique<OpenWrite>();
    w->context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    w->writer = bytestream_->Write(&w->context, &w->response);
    bs::WriteRequest request;
    request.set_resource_name(Resource(uuid, data));
    request.set_write_offset(static_cast<int64_t>(offset));
    request.set_data(data.substr(offset, n));
    if (!w->writer->Write(request) || open == nullptr) {
      w->writer->WritesDone();
      return w->writer->Finish();
    }
    open->push_back(std::move(w));
    return grpc::Status::OK;
  }

  // Writes data[offset, end) as `token` with finish_write.
  grpc::Status Rest(const char* token, const std::string& uuid,
                    const std::string& data, size_t offset) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    bs::WriteResponse response;
    auto writer = bytestream_->Write(&context, &response);
    bs::WriteRequest request;
    request.set_resource_name(Resource(uuid, data));
    request.set_write_offset(static_cast<int64_t>(offset));
    request.set_data(data.substr(offset));
    request.set_finish_write(true);
    writer->Write(request);
    writer->WritesDone();
    return writer->Finish();
  }

  // Waits (at most 30 s) until the server reports `committed` bytes of an
  // open upload, i.e. it has taken the stream's first message.
  bool WaitCommitted(const std::string& uuid, const std::string& data,
                     int64_t committed) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      grpc::ClientContext context;
      context.AddMetadata("authorization", absl::StrCat("Bearer ", kTokenA));
      bs::QueryWriteStatusRequest request;
      request.set_resource_name(Resource(uuid, data));
      bs::QueryWriteStatusResponse response;
      if (bytestream_->QueryWriteStatus(&context, request, &response).ok() &&
          response.committed_size() == committed) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  testutil::TempDir dir_;
  std::unique_ptr<rpc::Authorizer> authorizer_;
};

TEST_F(UploadLimitsTest, StalledUploadsOfOneClientDoNotStopAnother) {
  Start(server::ServerOptions{});  // Defaults: 256 uploads, 16 MiB, 32 MiB.
  // B parks half of a 1 MiB upload.
  const std::string b_blob = Blob(-1, size_t{1} << 20);
  ASSERT_TRUE(
      Partial(kTokenB, "b-resume", b_blob, 0, b_blob.size() / 2, nullptr).ok());
  // A parks a thousand uploads of 256 KiB blobs (250 MiB, reserved while
  // they are kept), then opens 300 more and stalls on them.
  const size_t a_size = size_t{256} << 10;
  for (int i = 0; i < 1000; ++i) {
    grpc::Status s = Partial(kTokenA, absl::StrCat("a-parked-", i),
                             Blob(i, a_size), 0, 1024, nullptr);
    ASSERT_TRUE(s.ok()) << i << ": " << s.error_message();
  }
  std::vector<std::unique_ptr<OpenWrite>> stalled;
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(Partial(kTokenA, absl::StrCat("a-open-", i),
                        Blob(1000 + i, a_size), 0, 1024, &stalled)
                    .ok());
  }
  // The server refuses some once it has read their first message (the
  // client learns it at Finish), so wait for the count; A then holds at
  // most 16 MiB of uploads (64 of 256 KiB).
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (server_->UploadRefusalsForTest() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_GT(server_->UploadRefusalsForTest(), 0);
  // B still resumes its upload and starts a new one.
  grpc::Status resumed = Rest(kTokenB, "b-resume", b_blob, b_blob.size() / 2);
  EXPECT_TRUE(resumed.ok()) << resumed.error_message();
  const std::string b_new = Blob(-2, size_t{4} << 20);
  grpc::Status fresh = Rest(kTokenB, "b-new", b_new, 0);
  EXPECT_TRUE(fresh.ok()) << fresh.error_message();
  EXPECT_TRUE(store_->Contains(cas::Digest::OfData(b_blob)));
  EXPECT_TRUE(store_->Contains(cas::Digest::OfData(b_new)));
  // Ending the stalled streams parks those the server took; the others
  // were refused.
  int refused = 0;
  for (auto& w : stalled) {
    w->writer->WritesDone();
    grpc::Status s = w->writer->Finish();
    refused += s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
  }
  EXPECT_GE(refused, 300 - 64);
}

TEST_F(UploadLimitsTest, AClientsOnlyUploadFitsEvenAboveTheByteCaps) {
  // Caps of 1 MiB per client and 2 MiB in all; the store has 64 MiB.
  server::ServerOptions options;
  options.max_upload_bytes_per_client = int64_t{1} << 20;
  options.max_upload_bytes = int64_t{2} << 20;
  Start(options);
  // A lone 8 MiB upload is bounded by the store, not refused by the caps.
  const std::string big = Blob(-3, size_t{8} << 20);
  grpc::Status lone = Rest(kTokenA, "big", big, 0);
  EXPECT_TRUE(lone.ok()) << lone.error_message();
  EXPECT_TRUE(store_->Contains(cas::Digest::OfData(big)));
  // A second upload while the first is open is still held to the caps.
  std::vector<std::unique_ptr<OpenWrite>> open;
  const std::string first = Blob(-4, size_t{8} << 20);
  ASSERT_TRUE(Partial(kTokenA, "first", first, 0, 1024, &open).ok());
  ASSERT_TRUE(WaitCommitted("first", first, 1024));
  grpc::Status second = Rest(kTokenA, "second", Blob(-5, size_t{1} << 20), 0);
  EXPECT_EQ(second.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << second.error_message();
  for (auto& w : open) {
    w->context.TryCancel();
    w->writer->Finish().IgnoreError();
  }
}

TEST_F(UploadLimitsTest, AClientOverItsCountLosesItsOwnParkedUploadsFirst) {
  server::ServerOptions options;
  options.max_uploads_per_client = 3;
  options.max_upload_bytes_per_client = -1;
  options.max_upload_bytes = -1;
  Start(options);
  const std::string b_blob = Blob(-1, 4096);
  ASSERT_TRUE(Partial(kTokenB, "b", b_blob, 0, 100, nullptr).ok());
  std::vector<std::string> a_blobs;
  for (int i = 0; i < 5; ++i) {
    a_blobs.push_back(Blob(i, 4096));
    ASSERT_TRUE(
        Partial(kTokenA, absl::StrCat("a", i), a_blobs.back(), 0, 100, nullptr)
            .ok());
  }
  // A's two oldest were dropped to fit its cap of 3; B's survives.
  EXPECT_FALSE(Rest(kTokenA, "a0", a_blobs[0], 100).ok());
  EXPECT_TRUE(Rest(kTokenA, "a4", a_blobs[4], 100).ok());
  EXPECT_TRUE(Rest(kTokenB, "b", b_blob, 100).ok());
  // Resuming a0 found nothing (dropping a2 to make room), a4 finished: a3
  // is parked. Three stalled open uploads drop it; a fourth is refused.
  std::vector<std::unique_ptr<OpenWrite>> open;
  for (int i = 0; i < 3; ++i) {
    const std::string data = Blob(10 + i, 4096);
    const std::string uuid = absl::StrCat("o", i);
    ASSERT_TRUE(Partial(kTokenA, uuid, data, 0, 100, &open).ok());
    ASSERT_TRUE(WaitCommitted(uuid, data, 100));
  }
  grpc::Status s = Rest(kTokenA, "o3", Blob(13, 4096), 0);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_message();
  EXPECT_EQ(server_->UploadRefusalsForTest(), 1);
  for (auto& w : open) {
    w->context.TryCancel();
    w->writer->Finish().IgnoreError();
  }
}

TEST_F(UploadLimitsTest, StreamsPerClientAreCapped) {
  server::ServerOptions options;
  options.max_streams_per_client = 2;
  Start(options);
  std::vector<std::unique_ptr<OpenWrite>> open;
  for (int i = 0; i < 2; ++i) {
    const std::string data = Blob(i, 4096);
    const std::string uuid = absl::StrCat("s", i);
    ASSERT_TRUE(Partial(kTokenA, uuid, data, 0, 100, &open).ok());
    ASSERT_TRUE(WaitCommitted(uuid, data, 100));
  }
  // A third call of A, upload or read, is refused; B is not affected.
  grpc::Status third = Rest(kTokenA, "s2", Blob(2, 4096), 0);
  EXPECT_EQ(third.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << third.error_message();
  EXPECT_EQ(rpc::RetryDelayOf(third.error_details()), absl::Seconds(1));
  const std::string stored = Blob(3, 4096);
  cas::Digest d = Put(stored);
  auto read = [&](const char* token) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    bs::ReadRequest request;
    request.set_resource_name(
        absl::StrCat("blobs/", d.hash(), "/", d.size_bytes()));
    auto reader = bytestream_->Read(&context, request);
    bs::ReadResponse response;
    while (reader->Read(&response)) {
    }
    return reader->Finish().error_code();
  };
  EXPECT_EQ(read(kTokenA), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(read(kTokenB), grpc::StatusCode::OK);
  EXPECT_TRUE(Rest(kTokenB, "b", Blob(4, 4096), 0).ok());
  EXPECT_EQ(server_->UploadRefusalsForTest(), 2);
  // Once A's calls end, A may call again.
  for (auto& w : open) {
    w->writer->WritesDone();
    EXPECT_TRUE(w->writer->Finish().ok());
  }
  // The server counts a call out when gRPC reports it done, which can come
  // just after the client saw its status: poll (bounded, 10 s).
  grpc::StatusCode after = read(kTokenA);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (after != grpc::StatusCode::OK && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
    after = read(kTokenA);
  }
  EXPECT_EQ(after, grpc::StatusCode::OK);
}

// The principal label rpc::WriteQuota uses for `token`.
std::string TokenLabel(const char* token) {
  rpc::CallCredentials credentials;
  credentials.authorization = absl::StrCat("Bearer ", token);
  return rpc::PrincipalOf(credentials, "ipv4:127.0.0.1:1", /*verified=*/true);
}

TEST_F(UploadLimitsTest, WriteQuotaRefusesPastTheHourlyBytesWithARetryDelay) {
  rpc::Registry metrics;
  // The server records into `metrics` until it stops: stop it first.
  absl::Cleanup stop = [this] { server_.reset(); };
  server::ServerOptions options;
  options.metrics = &metrics;
  options.write_quota_per_hour = int64_t{1} << 20;
  Start(options);
  const size_t kib = 1024;
  ASSERT_TRUE(Rest(kTokenA, "a1", Blob(1, 768 * kib), 0).ok());
  // A failed upload (bytes not matching the digest) is refunded.
  const std::string good = Blob(2, 256 * kib);
  std::string bad = good;
  bad[0] ^= 1;
  grpc::ClientContext context;
  context.AddMetadata("authorization", absl::StrCat("Bearer ", kTokenA));
  bs::WriteResponse response;
  EXPECT_EQ(
      testutil::WriteInChunks(bytestream_->Write(&context, &response).get(),
                              Resource("a2", good), bad, 64 * kib)
          .error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(Rest(kTokenA, "a3", good, 0).ok());
  // 1 MiB written: the next 512 KiB would pass the quota.
  grpc::Status refused = Rest(kTokenA, "a4", Blob(4, 512 * kib), 0);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  std::optional<absl::Duration> delay =
      rpc::RetryDelayOf(refused.error_details());
  ASSERT_TRUE(delay.has_value());
  // 512 KiB refill at 1 MiB per hour: half an hour (less what refilled).
  EXPECT_GT(*delay, absl::Minutes(29));
  EXPECT_LE(*delay, absl::Minutes(30));
  // BatchUpdateBlobs: refused per blob, with the delay in the item status.
  {
    grpc::ClientContext batch_context;
    batch_context.AddMetadata("authorization",
                              absl::StrCat("Bearer ", kTokenA));
    v2::BatchUpdateBlobsRequest request;
    const std::string data = Blob(5, 512 * kib);
    auto* item = request.add_requests();
    *item->mutable_digest() = ProtoDigestOf(data);
    item->set_data(data);
    v2::BatchUpdateBlobsResponse batch;
    ASSERT_TRUE(cas_->BatchUpdateBlobs(&batch_context, request, &batch).ok());
    ASSERT_EQ(batch.responses_size(), 1);
    EXPECT_EQ(batch.responses(0).status().code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_EQ(batch.responses(0).status().details_size(), 1);
    EXPECT_FALSE(store_->Contains(cas::Digest::OfData(data)));
  }
  // B has its own hour.
  EXPECT_TRUE(Rest(kTokenB, "b1", Blob(6, 768 * kib), 0).ok());
  const std::string text = metrics.Render();
  for (const std::string& line :
       {absl::StrCat("cairn_principal_written_bytes_total{principal=\"",
                     TokenLabel(kTokenA), "\"} ", 1024 * kib),
        absl::StrCat("cairn_principal_written_bytes_total{principal=\"",
                     TokenLabel(kTokenB), "\"} ", 768 * kib),
        absl::StrCat("cairn_principal_quota_refused_total{principal=\"",
                     TokenLabel(kTokenA), "\"} 2")}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
}

TEST_F(UploadLimitsTest, BatchUpdateCountsStoredBytesWithoutAQuota) {
  server::ServerOptions options;  // write_quota_per_hour 0: counted only.
  Start(options);
  grpc::ClientContext context;
  context.AddMetadata("authorization", absl::StrCat("Bearer ", kTokenA));
  v2::BatchUpdateBlobsRequest request;
  const std::string a = Blob(7, 1000);
  const std::string b = Blob(8, 3000);
  for (const std::string* data : {&a, &b, &a}) {
    auto* item = request.add_requests();
    *item->mutable_digest() = ProtoDigestOf(*data);
    item->set_data(*data);
  }
  request.mutable_requests(2)->set_data(b.substr(0, 1000));  // Mismatch.
  v2::BatchUpdateBlobsResponse response;
  ASSERT_TRUE(cas_->BatchUpdateBlobs(&context, request, &response).ok());
  ASSERT_EQ(response.responses_size(), 3);
  EXPECT_EQ(response.responses(2).status().code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(server_->write_quota()->WrittenBytesForTest(TokenLabel(kTokenA)),
            4000);
  EXPECT_EQ(server_->write_quota()->refusals(), 0);
}

TEST_F(UploadLimitsTest, EvictionsAreCountedByWhoWroteTheEvictedItems) {
  rpc::Registry metrics;
  absl::Cleanup stop = [this] { server_.reset(); };
  server::ServerOptions options;
  options.metrics = &metrics;
  Start(options);
  const size_t mib = size_t{1} << 20;
  // B fills half the 64 MiB store, then A writes 48 MiB: B's two oldest
  // blobs make room (the store evicts in LRU order).
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        Rest(kTokenB, absl::StrCat("b", i), Blob(100 + i, 8 * mib), 0).ok());
  }
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(
        Rest(kTokenA, absl::StrCat("a", i), Blob(200 + i, 8 * mib), 0).ok());
  }
  EXPECT_FALSE(store_->Contains(cas::Digest::OfData(Blob(100, 8 * mib))));
  EXPECT_TRUE(store_->Contains(cas::Digest::OfData(Blob(103, 8 * mib))));
  const std::string text = metrics.Render();
  for (const std::string& line :
       {absl::StrCat("cairn_principal_evicted_items_total{principal=\"",
                     TokenLabel(kTokenB), "\"} 2"),
        absl::StrCat("cairn_principal_evicted_bytes_total{principal=\"",
                     TokenLabel(kTokenB), "\"} ", 16 * mib)}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
  EXPECT_EQ(text.find(absl::StrCat("evicted_items_total{principal=\"",
                                   TokenLabel(kTokenA))),
            std::string::npos)
      << text;
}

TEST_F(UploadLimitsTest, WriteQuotaCoversActionResults) {
  server::ServerOptions options;
  options.write_quota_per_hour = 100;  // Smaller than one result.
  Start(options);
  auto update = [&](int exit_code) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", absl::StrCat("Bearer ", kTokenA));
    v2::UpdateActionResultRequest request;
    *request.mutable_action_digest() =
        ProtoDigestOf(absl::StrCat("action ", exit_code));
    request.mutable_action_result()->set_exit_code(exit_code);
    request.mutable_action_result()->set_stdout_raw(std::string(200, 'o'));
    v2::ActionResult response;
    return ac_->UpdateActionResult(&context, request, &response);
  };
  // A full bucket admits one oversized write; the next waits for a refill.
  EXPECT_TRUE(update(1).ok());
  grpc::Status refused = update(2);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  std::optional<absl::Duration> delay =
      rpc::RetryDelayOf(refused.error_details());
  ASSERT_TRUE(delay.has_value());
  EXPECT_GT(*delay, absl::Hours(1));
}

}  // namespace
}  // namespace cairn::servertest
