// The Remote Asset Fetch and Push services through the in-process server:
// BuildStream's probe, push/fetch round trips, qualifiers, expiry,
// oldest_content_accepted, completeness of blobs and trees, read-only mode;
// FetchBlob misses downloaded from an allowed origin (an httplib server).
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "asset/origin_fetcher.h"
#include "build/bazel/remote/asset/v1/remote_asset.grpc.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "httplib.h"
#include "rpc/grpc_status.h"
#include "tests/testutil/service_fixture.h"

namespace cairn::servertest {
namespace {

namespace ra = ::build::bazel::remote::asset::v1;

class AssetServiceTest : public ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    MakeStubs();
  }

  void Restart(server::ServerOptions options) {
    StartServer(options);
    MakeStubs();
  }

  void MakeStubs() {
    auto channel = server_->InProcessChannel();
    fetch_ = ra::Fetch::NewStub(channel);
    push_ = ra::Push::NewStub(channel);
  }

  grpc::StatusCode PushBlob(const ra::PushBlobRequest& request) {
    grpc::ClientContext context;
    ra::PushBlobResponse response;
    return push_->PushBlob(&context, request, &response).error_code();
  }

  grpc::StatusCode FetchBlob(const ra::FetchBlobRequest& request,
                             ra::FetchBlobResponse* response) {
    grpc::ClientContext context;
    return fetch_->FetchBlob(&context, request, response).error_code();
  }

  static ra::PushBlobRequest PushOf(const std::string& uri,
                                    const cas::Digest& digest) {
    ra::PushBlobRequest request;
    request.add_uris(uri);
    *request.mutable_blob_digest() = ProtoDigest(digest);
    return request;
  }

  static ra::FetchBlobRequest FetchOf(const std::string& uri) {
    ra::FetchBlobRequest request;
    request.add_uris(uri);
    return request;
  }

  static void AddQualifier(
      const std::string& name, const std::string& value,
      google::protobuf::RepeatedPtrField<ra::Qualifier>* q) {
    ra::Qualifier* added = q->Add();
    added->set_name(name);
    added->set_value(value);
  }

  static std::string Sri(const cas::Digest& d) {
    return "sha256-" + absl::Base64Escape(absl::HexStringToBytes(d.hash()));
  }

  std::unique_ptr<ra::Fetch::Stub> fetch_;
  std::unique_ptr<ra::Push::Stub> push_;
};

// BuildStream sends FetchBlob and PushBlob without URIs at start-up and
// accepts only INVALID_ARGUMENT as proof that the service is there.
TEST_F(AssetServiceTest, ProbeWithoutUrisIsInvalidArgument) {
  ra::FetchBlobResponse response;
  EXPECT_EQ(FetchBlob(ra::FetchBlobRequest(), &response),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(PushBlob(ra::PushBlobRequest()),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext context;
  ra::FetchDirectoryResponse dir_response;
  EXPECT_EQ(
      fetch_
          ->FetchDirectory(&context, ra::FetchDirectoryRequest(), &dir_response)
          .error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AssetServiceTest, PushedBlobIsFetchedByAnyOfItsUris) {
  const cas::Digest blob = Put("artifact bytes");
  ra::PushBlobRequest push = PushOf("urn:a", blob);
  push.add_uris("urn:b");
  ASSERT_EQ(PushBlob(push), grpc::StatusCode::OK);

  ra::FetchBlobRequest fetch = FetchOf("urn:unknown");
  fetch.add_uris("urn:b");
  ra::FetchBlobResponse response;
  ASSERT_EQ(FetchBlob(fetch, &response), grpc::StatusCode::OK);
  EXPECT_EQ(response.uri(), "urn:b");
  EXPECT_EQ(response.blob_digest().hash(), blob.hash());
  EXPECT_EQ(response.blob_digest().size_bytes(), blob.size_bytes());
  EXPECT_FALSE(response.has_expires_at());

  ra::FetchBlobResponse miss;
  EXPECT_EQ(FetchBlob(FetchOf("urn:c"), &miss), grpc::StatusCode::NOT_FOUND);
}

TEST_F(AssetServiceTest, QualifiersArePartOfTheName) {
  const cas::Digest blob = Put("qualified");
  ra::PushBlobRequest push = PushOf("urn:q", blob);
  AddQualifier("resource_type", "application/x-tar", push.mutable_qualifiers());
  AddQualifier("vcs.commit", "abc", push.mutable_qualifiers());
  ASSERT_EQ(PushBlob(push), grpc::StatusCode::OK);

  ra::FetchBlobResponse response;
  EXPECT_EQ(FetchBlob(FetchOf("urn:q"), &response),
            grpc::StatusCode::NOT_FOUND);
  ra::FetchBlobRequest fetch = FetchOf("urn:q");
  AddQualifier("vcs.commit", "abc", fetch.mutable_qualifiers());  // Reordered.
  AddQualifier("resource_type", "application/x-tar",
               fetch.mutable_qualifiers());
  ASSERT_EQ(FetchBlob(fetch, &response), grpc::StatusCode::OK);
  EXPECT_EQ(response.qualifiers_size(), 2);
  fetch.mutable_qualifiers(0)->set_value("abd");
  EXPECT_EQ(FetchBlob(fetch, &response), grpc::StatusCode::NOT_FOUND);

  ra::FetchBlobRequest twice = FetchOf("urn:q");
  AddQualifier("a", "1", twice.mutable_qualifiers());
  AddQualifier("a", "2", twice.mutable_qualifiers());
  EXPECT_EQ(FetchBlob(twice, &response), grpc::StatusCode::INVALID_ARGUMENT);
}

// Each test spells out its push and fetch: the requests are what it checks.
TEST_F(AssetServiceTest, InstancesAreSeparate) {
  const cas::Digest blob = Put("per instance");
  ra::PushBlobRequest push = PushOf("urn:i", blob);
  push.set_instance_name("team-a");
  ASSERT_EQ(PushBlob(push), grpc::StatusCode::OK);
  ra::FetchBlobRequest fetch = FetchOf("urn:i");
  ra::FetchBlobResponse response;
  EXPECT_EQ(FetchBlob(fetch, &response), grpc::StatusCode::NOT_FOUND);
  fetch.set_instance_name("team-a");
  EXPECT_EQ(FetchBlob(fetch, &response), grpc::StatusCode::OK);
}

TEST_F(AssetServiceTest, ChecksumSriIsChecked) {
  const cas::Digest blob = Put("sri content");
  const cas::Digest other = Put("other content");
  ra::PushBlobRequest push = PushOf("https://example.org/x.tar.gz", blob);
  AddQualifier("checksum.sri", Sri(other), push.mutable_qualifiers());
  EXPECT_EQ(PushBlob(push), grpc::StatusCode::INVALID_ARGUMENT);
  push.mutable_qualifiers(0)->set_value(Sri(blob));
  ASSERT_EQ(PushBlob(push), grpc::StatusCode::OK);

  ra::FetchBlobRequest fetch = FetchOf("https://example.org/x.tar.gz");
  AddQualifier("checksum.sri", Sri(blob), fetch.mutable_qualifiers());
  ra::FetchBlobResponse response;
  EXPECT_EQ(FetchBlob(fetch, &response), grpc::StatusCode::OK);
  fetch.mutable_qualifiers(0)->set_value("sha512-AAAA");
  EXPECT_EQ(FetchBlob(fetch, &response), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AssetServiceTest, BlobMustBeInTheCasToBePushed) {
  const cas::Digest absent = cas::Digest::OfData("never uploaded");
  EXPECT_EQ(PushBlob(PushOf("urn:absent", absent)),
            grpc::StatusCode::FAILED_PRECONDITION);
  ra::PushBlobRequest push = PushOf("urn:ref", Put("present"));
  *push.add_references_blobs() = ProtoDigest(absent);
  EXPECT_EQ(PushBlob(push), grpc::StatusCode::FAILED_PRECONDITION);
  ra::PushBlobRequest bad = PushOf("urn:bad", Put("x"));
  bad.mutable_blob_digest()->set_hash("ABC");
  EXPECT_EQ(PushBlob(bad), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AssetServiceTest, EvictedContentIsAMiss) {
  ResetStore(1000);
  Restart(server::ServerOptions{});
  const cas::Digest first = Put(std::string(600, 'a'));
  ASSERT_EQ(PushBlob(PushOf("urn:evict", first)), grpc::StatusCode::OK);
  ra::FetchBlobResponse response;
  ASSERT_EQ(FetchBlob(FetchOf("urn:evict"), &response), grpc::StatusCode::OK);
  Put(std::string(600, 'b'));  // Evicts the least recently used blob.
  ASSERT_FALSE(store_->Contains(first));
  EXPECT_EQ(FetchBlob(FetchOf("urn:evict"), &response),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(AssetServiceTest, ExpiryAndOldestContentAccepted) {
  const cas::Digest blob = Put("timed");
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  ra::PushBlobRequest expired = PushOf("urn:expired", blob);
  expired.mutable_expire_at()->set_seconds(now - 10);
  ASSERT_EQ(PushBlob(expired), grpc::StatusCode::OK);
  ra::FetchBlobResponse response;
  EXPECT_EQ(FetchBlob(FetchOf("urn:expired"), &response),
            grpc::StatusCode::NOT_FOUND);

  ra::PushBlobRequest later = PushOf("urn:later", blob);
  later.mutable_expire_at()->set_seconds(now + 3600);
  ASSERT_EQ(PushBlob(later), grpc::StatusCode::OK);
  ASSERT_EQ(FetchBlob(FetchOf("urn:later"), &response), grpc::StatusCode::OK);
  EXPECT_EQ(response.expires_at().seconds(), now + 3600);

  ra::FetchBlobRequest fresh_only = FetchOf("urn:later");
  fresh_only.mutable_oldest_content_accepted()->set_seconds(now + 60);
  EXPECT_EQ(FetchBlob(fresh_only, &response), grpc::StatusCode::NOT_FOUND);
  fresh_only.mutable_oldest_content_accepted()->set_seconds(now - 60);
  EXPECT_EQ(FetchBlob(fresh_only, &response), grpc::StatusCode::OK);
}

// Found by asset_fuzz: an expiry far beyond what int64 microseconds hold
// overflowed (UBSan); it now means "never expires", and one far in the past
// means expired.
TEST_F(AssetServiceTest, ExtremeExpiryTimesSaturate) {
  const cas::Digest blob = Put("extreme");
  ra::PushBlobRequest far = PushOf("urn:far", blob);
  far.mutable_expire_at()->set_seconds(int64_t{9000000000000000000});
  ASSERT_EQ(PushBlob(far), grpc::StatusCode::OK);
  ra::FetchBlobResponse response;
  EXPECT_EQ(FetchBlob(FetchOf("urn:far"), &response), grpc::StatusCode::OK);
  ra::PushBlobRequest past = PushOf("urn:past", blob);
  past.mutable_expire_at()->set_seconds(-int64_t{9000000000000000000});
  ASSERT_EQ(PushBlob(past), grpc::StatusCode::OK);
  EXPECT_EQ(FetchBlob(FetchOf("urn:past"), &response),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(AssetServiceTest, DirectoryNeedsItsWholeTree) {
  const cas::Digest file = cas::Digest::OfData("file in subdir");
  v2::Directory sub;
  v2::FileNode* node = sub.add_files();
  node->set_name("f.txt");
  *node->mutable_digest() = ProtoDigest(file);
  const cas::Digest sub_digest = Put(sub.SerializeAsString());
  v2::Directory root;
  v2::DirectoryNode* dir = root.add_directories();
  dir->set_name("sub");
  *dir->mutable_digest() = ProtoDigest(sub_digest);
  const cas::Digest root_digest = Put(root.SerializeAsString());

  ra::PushDirectoryRequest push;
  push.add_uris("git://example.org/repo");
  *push.mutable_root_directory_digest() = ProtoDigest(root_digest);
  grpc::ClientContext c1;
  ra::PushDirectoryResponse pushed;
  EXPECT_EQ(push_->PushDirectory(&c1, push, &pushed).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);  // f.txt is missing.
  Put("file in subdir");
  grpc::ClientContext c2;
  ASSERT_EQ(push_->PushDirectory(&c2, push, &pushed).error_code(),
            grpc::StatusCode::OK);

  ra::FetchDirectoryRequest fetch;
  fetch.add_uris("git://example.org/repo");
  ra::FetchDirectoryResponse response;
  grpc::ClientContext c3;
  ASSERT_EQ(fetch_->FetchDirectory(&c3, fetch, &response).error_code(),
            grpc::StatusCode::OK);
  EXPECT_EQ(response.root_directory_digest().hash(), root_digest.hash());
  ra::FetchBlobResponse blob_response;  // A directory is not a blob.
  EXPECT_EQ(FetchBlob(FetchOf("git://example.org/repo"), &blob_response),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(AssetServiceTest, ReadOnlyRefusesPushes) {
  const cas::Digest blob = Put("ro");
  server::ServerOptions options;
  options.read_only = true;
  Restart(options);
  EXPECT_EQ(PushBlob(PushOf("urn:ro", blob)),
            grpc::StatusCode::PERMISSION_DENIED);
  ra::FetchBlobResponse response;
  EXPECT_EQ(FetchBlob(FetchOf("urn:ro"), &response),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(AssetServiceTest, WriteQuotaChargesPushes) {
  const cas::Digest blob = Put("quota");
  server::ServerOptions options;
  options.write_quota_per_hour = 200;
  Restart(options);
  const std::string pad(120, 'p');
  const ra::PushBlobRequest first = PushOf("urn:q1/" + pad, blob);
  ASSERT_GT(first.ByteSizeLong(), 100u);
  ASSERT_LT(first.ByteSizeLong(), 200u);
  // A push that fails (content not in the CAS) is refunded.
  EXPECT_EQ(PushBlob(PushOf("urn:q0/" + pad, cas::Digest::OfData("absent"))),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(PushBlob(first), grpc::StatusCode::OK);
  grpc::ClientContext context;
  ra::PushBlobResponse response;
  grpc::Status refused =
      push_->PushBlob(&context, PushOf("urn:q2/" + pad, blob), &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  EXPECT_TRUE(rpc::RetryDelayOf(refused.error_details()).has_value());
  ra::FetchBlobResponse fetched;
  EXPECT_EQ(FetchBlob(FetchOf("urn:q2/" + pad), &fetched),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(FetchBlob(FetchOf("urn:q1/" + pad), &fetched),
            grpc::StatusCode::OK);
  EXPECT_EQ(server_->write_quota()->WrittenBytesForTest("peer"),
            static_cast<int64_t>(first.ByteSizeLong()));
  EXPECT_EQ(server_->write_quota()->RefusalsForTest("peer"), 1);
}

// An origin on loopback: GET /file.tar.gz answers kBody, anything else 404;
// counts the requests it gets.
class Origin {
 public:
  static constexpr char kBody[] = "origin bytes of file.tar.gz";

  Origin() {
    server_.Get("/file.tar.gz",
                [this](const httplib::Request&, httplib::Response& res) {
                  ++gets_;
                  res.set_content(kBody, "application/octet-stream");
                });
    server_.Get("/.*", [this](const httplib::Request&, httplib::Response& res) {
      ++gets_;
      res.status = 404;
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // This httplib has no wait_until_ready(): poll (bounded) so that Stop()
    // never races the listen loop's start.
    for (int i = 0; i < 5000 && !server_.is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ~Origin() { Stop(); }
  void Stop() {
    server_.stop();
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int gets() const { return gets_.load(); }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<int> gets_{0};
};

class OriginFetchTest : public AssetServiceTest {
 protected:
  void SetUp() override {
    AssetServiceTest::SetUp();
    asset::OriginFetcherOptions options;
    options.store = store_.get();
    options.allowed_prefixes = {origin_.Url("/")};
    auto made = asset::NewHttpOriginFetcher(options);
    ASSERT_TRUE(made.ok()) << made.status();
    fetcher_ = *std::move(made);
    server::ServerOptions server_options;
    server_options.asset_origin = fetcher_.get();
    Restart(server_options);
  }

  Origin origin_;
  std::unique_ptr<asset::OriginFetcher> fetcher_;
};

TEST_F(OriginFetchTest, MissIsDownloadedOnceThenServedWithoutTheOrigin) {
  const cas::Digest want = cas::Digest::OfData(Origin::kBody);
  ra::FetchBlobRequest fetch = FetchOf(origin_.Url("/file.tar.gz"));
  AddQualifier("checksum.sri", Sri(want), fetch.mutable_qualifiers());
  AddQualifier("bazel.canonical_id", "file-1", fetch.mutable_qualifiers());
  ra::FetchBlobResponse response;
  ASSERT_EQ(FetchBlob(fetch, &response), grpc::StatusCode::OK);
  EXPECT_EQ(response.status().code(), 0) << response.status().message();
  EXPECT_EQ(response.blob_digest().hash(), want.hash());
  EXPECT_EQ(response.blob_digest().size_bytes(), want.size_bytes());
  EXPECT_EQ(response.uri(), origin_.Url("/file.tar.gz"));
  EXPECT_TRUE(store_->Contains(want));
  EXPECT_EQ(origin_.gets(), 1);

  origin_.Stop();
  ra::FetchBlobResponse again;
  ASSERT_EQ(FetchBlob(fetch, &again), grpc::StatusCode::OK);
  EXPECT_EQ(again.blob_digest().hash(), want.hash());
  EXPECT_EQ(origin_.gets(), 1);

  // Content older than the client accepts is fetched again: the origin is
  // gone, so the answer says why, inline.
  fetch.mutable_oldest_content_accepted()->set_seconds(
      absl::ToUnixSeconds(absl::Now()) + 60);
  ra::FetchBlobResponse stale;
  ASSERT_EQ(FetchBlob(fetch, &stale), grpc::StatusCode::OK);
  EXPECT_EQ(stale.status().code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(stale.has_blob_digest());
}

TEST_F(OriginFetchTest, OldestContentAcceptedForcesARefetch) {
  ra::FetchBlobRequest fetch = FetchOf(origin_.Url("/file.tar.gz"));
  ra::FetchBlobResponse response;
  ASSERT_EQ(FetchBlob(fetch, &response), grpc::StatusCode::OK);
  ASSERT_EQ(FetchBlob(fetch, &response), grpc::StatusCode::OK);
  EXPECT_EQ(origin_.gets(), 1);
  fetch.mutable_oldest_content_accepted()->set_seconds(
      absl::ToUnixSeconds(absl::Now()) + 60);
  ASSERT_EQ(FetchBlob(fetch, &response), grpc::StatusCode::OK);
  EXPECT_EQ(response.status().code(), 0);
  EXPECT_EQ(origin_.gets(), 2);
}

TEST_F(OriginFetchTest, OriginErrorsAreAnsweredInline) {
  ra::FetchBlobResponse response;
  ASSERT_EQ(FetchBlob(FetchOf(origin_.Url("/absent.tar.gz")), &response),
            grpc::StatusCode::OK);
  EXPECT_EQ(response.status().code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_FALSE(response.has_blob_digest());

  // Content that does not match its checksum is not served nor recorded.
  ra::FetchBlobRequest wrong = FetchOf(origin_.Url("/file.tar.gz"));
  AddQualifier("checksum.sri", Sri(cas::Digest::OfData("something else")),
               wrong.mutable_qualifiers());
  ra::FetchBlobResponse mismatch;
  ASSERT_EQ(FetchBlob(wrong, &mismatch), grpc::StatusCode::OK);
  EXPECT_EQ(mismatch.status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(mismatch.has_blob_digest());
  const int gets = origin_.gets();
  ASSERT_EQ(FetchBlob(wrong, &mismatch), grpc::StatusCode::OK);
  EXPECT_EQ(origin_.gets(), gets + 1);
}

TEST_F(OriginFetchTest, UnsupportedQualifiersAreRejectedForOriginFetches) {
  ra::FetchBlobRequest fetch = FetchOf(origin_.Url("/file.tar.gz"));
  AddQualifier("resource_type", "application/x-tar",
               fetch.mutable_qualifiers());
  grpc::ClientContext context;
  ra::FetchBlobResponse response;
  grpc::Status status = fetch_->FetchBlob(&context, fetch, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("\"resource_type\" not supported"),
            std::string::npos)
      << status.error_message();
  // The BadRequest detail the API asks for: one violation per qualifier.
  google::rpc::Status rich;
  ASSERT_TRUE(rich.ParseFromString(status.error_details()));
  google::rpc::BadRequest bad;
  bool found = false;
  for (const google::protobuf::Any& any : rich.details()) {
    if (any.type_url() == "type.googleapis.com/google.rpc.BadRequest") {
      found = any.UnpackTo(&bad);
    }
  }
  ASSERT_TRUE(found);
  ASSERT_EQ(bad.field_violations_size(), 1);
  EXPECT_EQ(bad.field_violations(0).field(), "qualifiers.name");
  EXPECT_EQ(bad.field_violations(0).description(),
            "\"resource_type\" not supported");
  EXPECT_EQ(origin_.gets(), 0);

  // A name that no origin serves stays a plain lookup: pushed assets may
  // carry any qualifiers (the pusher vouches for them).
  const cas::Digest blob = Put("pushed with a qualifier");
  ra::PushBlobRequest push = PushOf("urn:pushed", blob);
  AddQualifier("resource_type", "application/x-tar", push.mutable_qualifiers());
  ASSERT_EQ(PushBlob(push), grpc::StatusCode::OK);
  ra::FetchBlobRequest pushed = FetchOf("urn:pushed");
  AddQualifier("resource_type", "application/x-tar",
               pushed.mutable_qualifiers());
  EXPECT_EQ(FetchBlob(pushed, &response), grpc::StatusCode::OK);
  pushed.mutable_qualifiers(0)->set_name("vcs.branch");
  EXPECT_EQ(FetchBlob(pushed, &response), grpc::StatusCode::NOT_FOUND);
}

TEST_F(OriginFetchTest, OnlyAllowedOriginsAreFetched) {
  Origin other;
  ra::FetchBlobResponse response;
  EXPECT_EQ(FetchBlob(FetchOf(other.Url("/file.tar.gz")), &response),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(other.gets(), 0);
  // The next allowed URI in the list is tried.
  ra::FetchBlobRequest fetch = FetchOf(other.Url("/file.tar.gz"));
  fetch.add_uris(origin_.Url("/file.tar.gz"));
  ASSERT_EQ(FetchBlob(fetch, &response), grpc::StatusCode::OK);
  EXPECT_EQ(response.uri(), origin_.Url("/file.tar.gz"));
  EXPECT_EQ(other.gets(), 0);
}

TEST(OriginFetcherTest, PrefixesMustBeHttpUrisWithAPath) {
  std::unique_ptr<cas::BlobStore> store = cas::NewMemoryBlobStore({1 << 20});
  for (const char* bad : {"ftp://example.org/", "file:///etc/",
                          "http://127.0.0.1:8080", "example.org/"}) {
    asset::OriginFetcherOptions options;
    options.store = store.get();
    options.allowed_prefixes = {bad};
    EXPECT_EQ(asset::NewHttpOriginFetcher(options).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  asset::OriginFetcherOptions options;
  options.store = store.get();
  options.allowed_prefixes = {"https://github.com/", "http://127.0.0.1:1/x"};
  auto made = asset::NewHttpOriginFetcher(options);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_TRUE((*made)->Allows("https://github.com/a/b.tar.gz"));
  EXPECT_FALSE((*made)->Allows("https://github.com.evil/"));
  EXPECT_FALSE((*made)->Allows("http://127.0.0.1:1/"));
}

}  // namespace
}  // namespace cairn::servertest
