// ContentAddressableStorage and Capabilities through an in-process server.
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/testutil/service_fixture.h"

namespace cairn::servertest {
namespace {

using ::grpc::ClientContext;
using ::grpc::StatusCode;

constexpr char kBadHash[] =
    "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";

class CasServiceTest : public ServiceTest {};

TEST_F(CasServiceTest, CapabilitiesAdvertiseTheCache) {
  ClientContext context;
  v2::GetCapabilitiesRequest request;
  v2::ServerCapabilities caps;
  ASSERT_TRUE(caps_->GetCapabilities(&context, request, &caps).ok());
  const v2::CacheCapabilities& cache = caps.cache_capabilities();
  ASSERT_EQ(cache.digest_functions_size(), 1);
  EXPECT_EQ(cache.digest_functions(0), v2::DigestFunction::SHA256);
  EXPECT_TRUE(cache.action_cache_update_capabilities().update_enabled());
  EXPECT_EQ(cache.max_batch_total_size_bytes(), 4 << 20);
  EXPECT_EQ(cache.symlink_absolute_path_strategy(),
            v2::SymlinkAbsolutePathStrategy::ALLOWED);
  EXPECT_FALSE(caps.execution_capabilities().exec_enabled());
  EXPECT_EQ(caps.execution_capabilities().digest_function(),
            v2::DigestFunction::SHA256);
  EXPECT_EQ(caps.low_api_version().major(), 2);
  EXPECT_EQ(caps.low_api_version().minor(), 0);
  EXPECT_EQ(caps.high_api_version().major(), 2);
  EXPECT_EQ(caps.high_api_version().minor(), 3);
}

TEST_F(CasServiceTest, CapabilitiesReadOnlyAndLimits) {
  server::ServerOptions options;
  options.read_only = true;
  options.max_batch_total_size_bytes = 1 << 20;
  options.max_cas_blob_size_bytes = 1 << 30;
  StartServer(options);
  ClientContext context;
  v2::GetCapabilitiesRequest request;
  request.set_instance_name("a/b");
  v2::ServerCapabilities caps;
  ASSERT_TRUE(caps_->GetCapabilities(&context, request, &caps).ok());
  EXPECT_FALSE(caps.cache_capabilities()
                   .action_cache_update_capabilities()
                   .update_enabled());
  EXPECT_EQ(caps.cache_capabilities().max_batch_total_size_bytes(), 1 << 20);
  EXPECT_EQ(caps.cache_capabilities().max_cas_blob_size_bytes(), 1 << 30);
}

TEST_F(CasServiceTest, CapabilitiesRejectBadInstance) {
  ClientContext context;
  v2::GetCapabilitiesRequest request;
  request.set_instance_name("a/../b");
  v2::ServerCapabilities caps;
  EXPECT_EQ(caps_->GetCapabilities(&context, request, &caps).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

TEST_F(CasServiceTest, FindMissingReportsOnlyAbsentBlobs) {
  cas::Digest present = Put("present");
  ClientContext context;
  v2::FindMissingBlobsRequest request;
  request.set_instance_name("main/instance");
  *request.add_blob_digests() = ProtoDigest(present);
  *request.add_blob_digests() = ProtoDigestOf("absent");
  *request.add_blob_digests() = ProtoDigest(cas::Digest::Empty());
  v2::FindMissingBlobsResponse response;
  ASSERT_TRUE(cas_->FindMissingBlobs(&context, request, &response).ok());
  ASSERT_EQ(response.missing_blob_digests_size(), 1);
  EXPECT_EQ(response.missing_blob_digests(0).hash(),
            cas::Digest::OfData("absent").hash());
}

TEST_F(CasServiceTest, RequestLevelValidation) {
  struct Case {
    const char* name;
    std::string instance;
    v2::DigestFunction::Value function;
    v2::Digest digest;
    StatusCode want;
  };
  v2::Digest good = ProtoDigestOf("x");
  v2::Digest upper = good;
  upper.set_hash(kBadHash);
  v2::Digest negative = good;
  negative.set_size_bytes(-1);
  v2::Digest short_hash = good;
  short_hash.set_hash("abc");
  const std::vector<Case> cases = {
      {"ok", "", v2::DigestFunction::UNKNOWN, good, StatusCode::OK},
      {"sha256", "i", v2::DigestFunction::SHA256, good, StatusCode::OK},
      {"sha1", "", v2::DigestFunction::SHA1, good,
       StatusCode::INVALID_ARGUMENT},
      {"blake3", "", v2::DigestFunction::BLAKE3, good,
       StatusCode::INVALID_ARGUMENT},
      {"uppercase", "", v2::DigestFunction::UNKNOWN, upper,
       StatusCode::INVALID_ARGUMENT},
      {"negative", "", v2::DigestFunction::UNKNOWN, negative,
       StatusCode::INVALID_ARGUMENT},
      {"short", "", v2::DigestFunction::UNKNOWN, short_hash,
       StatusCode::INVALID_ARGUMENT},
      {"dotdot", "../x", v2::DigestFunction::UNKNOWN, good,
       StatusCode::INVALID_ARGUMENT},
      {"reserved", "blobs", v2::DigestFunction::UNKNOWN, good,
       StatusCode::INVALID_ARGUMENT},
  };
  for (const Case& c : cases) {
    ClientContext context;
    v2::FindMissingBlobsRequest request;
    request.set_instance_name(c.instance);
    request.set_digest_function(c.function);
    *request.add_blob_digests() = c.digest;
    v2::FindMissingBlobsResponse response;
    EXPECT_EQ(cas_->FindMissingBlobs(&context, request, &response).error_code(),
              c.want)
        << c.name;
  }
}

TEST_F(CasServiceTest, BatchUpdateVerifiesEachBlob) {
  ClientContext context;
  v2::BatchUpdateBlobsRequest request;
  auto* good = request.add_requests();
  *good->mutable_digest() = ProtoDigestOf("good");
  good->set_data("good");
  auto* bad = request.add_requests();
  *bad->mutable_digest() = ProtoDigestOf("other");
  bad->set_data("wrong");
  auto* wrong_size = request.add_requests();
  *wrong_size->mutable_digest() = ProtoDigestOf("size");
  wrong_size->mutable_digest()->set_size_bytes(5);
  wrong_size->set_data("size");
  auto* empty = request.add_requests();
  *empty->mutable_digest() = ProtoDigestOf("");
  auto* zstd = request.add_requests();
  *zstd->mutable_digest() = ProtoDigestOf("z");
  zstd->set_data("z");
  zstd->set_compressor(v2::Compressor::ZSTD);
  auto* malformed = request.add_requests();
  malformed->mutable_digest()->set_hash("nothex");
  v2::BatchUpdateBlobsResponse response;
  ASSERT_TRUE(cas_->BatchUpdateBlobs(&context, request, &response).ok());
  ASSERT_EQ(response.responses_size(), 6);
  EXPECT_EQ(response.responses(0).status().code(), 0);
  EXPECT_EQ(response.responses(0).digest().hash(), good->digest().hash());
  EXPECT_EQ(response.responses(1).status().code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(response.responses(2).status().code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(response.responses(3).status().code(), 0);
  EXPECT_EQ(response.responses(4).status().code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(response.responses(5).status().code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(store_->Contains(cas::Digest::OfData("good")));
  EXPECT_FALSE(store_->Contains(cas::Digest::OfData("other")));
}

TEST_F(CasServiceTest, BatchUpdateOverLimitFailsWholeCall) {
  server::ServerOptions options;
  options.max_batch_total_size_bytes = 1000;
  StartServer(options);
  ClientContext context;
  v2::BatchUpdateBlobsRequest request;
  for (int i = 0; i < 2; ++i) {
    std::string data(600, 'a' + i);
    auto* item = request.add_requests();
    *item->mutable_digest() = ProtoDigestOf(data);
    item->set_data(data);
  }
  v2::BatchUpdateBlobsResponse response;
  EXPECT_EQ(cas_->BatchUpdateBlobs(&context, request, &response).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

TEST_F(CasServiceTest, BatchUpdateAcceptsFullDefaultBatch) {
  // 4 MiB of data plus framing: above gRPC's default 4 MiB receive limit.
  ClientContext context;
  v2::BatchUpdateBlobsRequest request;
  for (int i = 0; i < 4; ++i) {
    std::string data(1 << 20, 'a' + i);
    auto* item = request.add_requests();
    *item->mutable_digest() = ProtoDigestOf(data);
    item->set_data(data);
  }
  v2::BatchUpdateBlobsResponse response;
  ASSERT_TRUE(cas_->BatchUpdateBlobs(&context, request, &response).ok());
  for (const auto& r : response.responses()) {
    EXPECT_EQ(r.status().code(), 0) << r.status().message();
  }
}

TEST_F(CasServiceTest, BatchUpdateBlobTooLargeAndStoreFull) {
  ResetStore(100);
  server::ServerOptions options;
  options.max_cas_blob_size_bytes = 50;
  StartServer(options);
  ClientContext context;
  v2::BatchUpdateBlobsRequest request;
  for (int size : {60, 40, 40, 40}) {
    std::string data(size, 'a' + request.requests_size());
    auto* item = request.add_requests();
    *item->mutable_digest() = ProtoDigestOf(data);
    item->set_data(data);
  }
  v2::BatchUpdateBlobsResponse response;
  ASSERT_TRUE(cas_->BatchUpdateBlobs(&context, request, &response).ok());
  ASSERT_EQ(response.responses_size(), 4);
  EXPECT_EQ(response.responses(0).status().code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(response.responses(1).status().code(), 0);
}

TEST_F(CasServiceTest, BatchUpdateStoreFullIsResourceExhausted) {
  ResetStore(100);
  StartServer(server::ServerOptions{});
  ClientContext context;
  v2::BatchUpdateBlobsRequest request;
  std::string data(150, 'x');
  auto* item = request.add_requests();
  *item->mutable_digest() = ProtoDigestOf(data);
  item->set_data(data);
  v2::BatchUpdateBlobsResponse response;
  ASSERT_TRUE(cas_->BatchUpdateBlobs(&context, request, &response).ok());
  EXPECT_EQ(response.responses(0).status().code(),
            StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(CasServiceTest, BatchUpdateReadOnlyIsPermissionDenied) {
  server::ServerOptions options;
  options.read_only = true;
  StartServer(options);
  ClientContext context;
  v2::BatchUpdateBlobsRequest request;
  auto* item = request.add_requests();
  *item->mutable_digest() = ProtoDigestOf("x");
  item->set_data("x");
  v2::BatchUpdateBlobsResponse response;
  EXPECT_EQ(cas_->BatchUpdateBlobs(&context, request, &response).error_code(),
            StatusCode::PERMISSION_DENIED);
}

TEST_F(CasServiceTest, BatchReadReturnsPerBlobStatus) {
  cas::Digest present = Put("hello");
  ClientContext context;
  v2::BatchReadBlobsRequest request;
  *request.add_digests() = ProtoDigest(present);
  *request.add_digests() = ProtoDigestOf("missing");
  *request.add_digests() = ProtoDigest(cas::Digest::Empty());
  request.add_digests()->set_hash("bad");
  v2::BatchReadBlobsResponse response;
  ASSERT_TRUE(cas_->BatchReadBlobs(&context, request, &response).ok());
  ASSERT_EQ(response.responses_size(), 4);
  EXPECT_EQ(response.responses(0).status().code(), 0);
  EXPECT_EQ(response.responses(0).data(), "hello");
  EXPECT_EQ(response.responses(0).digest().hash(), present.hash());
  EXPECT_EQ(response.responses(1).status().code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(response.responses(2).status().code(), 0);
  EXPECT_EQ(response.responses(2).data(), "");
  EXPECT_EQ(response.responses(3).status().code(),
            StatusCode::INVALID_ARGUMENT);
}

TEST_F(CasServiceTest, BatchReadOverLimitFailsWholeCall) {
  ClientContext context;
  v2::BatchReadBlobsRequest request;
  v2::Digest big = ProtoDigestOf("x");
  big.set_size_bytes((4 << 20) + 1);
  *request.add_digests() = big;
  v2::BatchReadBlobsResponse response;
  EXPECT_EQ(cas_->BatchReadBlobs(&context, request, &response).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

TEST_F(CasServiceTest, BatchReadHugeSizesDoNotOverflowTheLimit) {
  ClientContext context;
  v2::BatchReadBlobsRequest request;
  for (int i = 0; i < 4; ++i) {
    v2::Digest huge = ProtoDigestOf(std::to_string(i));
    huge.set_size_bytes(int64_t{1} << 62);
    *request.add_digests() = huge;
  }
  v2::BatchReadBlobsResponse response;
  EXPECT_EQ(cas_->BatchReadBlobs(&context, request, &response).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

TEST_F(CasServiceTest, BatchReadFullDefaultBatch) {
  v2::BatchReadBlobsRequest request;
  for (int i = 0; i < 4; ++i) {
    *request.add_digests() = ProtoDigest(Put(std::string(1 << 20, 'a' + i)));
  }
  ClientContext context;
  v2::BatchReadBlobsResponse response;
  ASSERT_TRUE(cas_->BatchReadBlobs(&context, request, &response).ok());
  ASSERT_EQ(response.responses_size(), 4);
  for (const auto& r : response.responses()) {
    EXPECT_EQ(r.status().code(), 0);
    EXPECT_EQ(r.data().size(), 1u << 20);
  }
}

// Builds a tree: root -> {a, b}, a -> {c}, b -> {c} (c shared), plus one
// child of b that is missing from the CAS.
class GetTreeTest : public CasServiceTest {
 protected:
  void SetUp() override {
    CasServiceTest::SetUp();
    v2::Directory c;
    c.add_files()->set_name("c.txt");
    *c.mutable_files(0)->mutable_digest() = ProtoDigest(Put("c"));
    c_ = Put(c.SerializeAsString());
    v2::Directory a;
    AddDir(&a, "c", c_);
    a_ = Put(a.SerializeAsString());
    v2::Directory b;
    AddDir(&b, "c", c_);
    v2::Directory gone;
    gone.add_symlinks()->set_name("gone");
    AddDir(&b, "gone", cas::Digest::OfData(gone.SerializeAsString()));
    b_ = Put(b.SerializeAsString());
    v2::Directory root;
    AddDir(&root, "a", a_);
    AddDir(&root, "b", b_);
    root_ = Put(root.SerializeAsString());
  }

  static void AddDir(v2::Directory* parent, const std::string& name,
                     const cas::Digest& digest) {
    auto* node = parent->add_directories();
    node->set_name(name);
    *node->mutable_digest() = ProtoDigest(digest);
  }

  // Runs GetTree and returns every page.
  grpc::Status Tree(int page_size, const std::string& token,
                    std::vector<v2::GetTreeResponse>* pages, cas::Digest root) {
    ClientContext context;
    v2::GetTreeRequest request;
    *request.mutable_root_digest() = ProtoDigest(root);
    request.set_page_size(page_size);
    request.set_page_token(token);
    auto reader = cas_->GetTree(&context, request);
    v2::GetTreeResponse page;
    while (reader->Read(&page)) {
      pages->push_back(page);
    }
    return reader->Finish();
  }

  cas::Digest root_, a_, b_, c_;
};

TEST_F(GetTreeTest, WholeTreeInOnePage) {
  std::vector<v2::GetTreeResponse> pages;
  ASSERT_TRUE(Tree(0, "", &pages, root_).ok());
  ASSERT_EQ(pages.size(), 1u);
  EXPECT_EQ(pages[0].directories_size(), 4);  // root, a, b, c once.
  EXPECT_EQ(pages[0].next_page_token(), "");
  EXPECT_EQ(cas::Digest::OfData(pages[0].directories(0).SerializeAsString()),
            root_);
}

TEST_F(GetTreeTest, PagesAndResumesFromToken) {
  std::vector<v2::GetTreeResponse> pages;
  ASSERT_TRUE(Tree(1, "", &pages, root_).ok());
  ASSERT_EQ(pages.size(), 4u);
  for (size_t i = 0; i + 1 < pages.size(); ++i) {
    EXPECT_EQ(pages[i].directories_size(), 1);
    EXPECT_NE(pages[i].next_page_token(), "");
  }
  EXPECT_EQ(pages.back().next_page_token(), "");
  std::vector<v2::GetTreeResponse> rest;
  ASSERT_TRUE(Tree(2, pages[1].next_page_token(), &rest, root_).ok());
  ASSERT_EQ(rest.size(), 1u);
  ASSERT_EQ(rest[0].directories_size(), 2);
  EXPECT_EQ(rest[0].directories(0).SerializeAsString(),
            pages[2].directories(0).SerializeAsString());
  EXPECT_EQ(rest[0].directories(1).SerializeAsString(),
            pages[3].directories(0).SerializeAsString());
}

// A page stops growing once it holds 2 MiB, so that it fits a client's
// default 4 MiB limit (the size is now summed as the page grows).
TEST_F(GetTreeTest, PageStopsPastTwoMebibytes) {
  v2::Directory root;
  for (int i = 0; i < 3; ++i) {
    v2::Directory big;
    big.add_files()->set_name(std::string(1 << 20, static_cast<char>('a' + i)));
    AddDir(&root, absl::StrCat("big", i), Put(big.SerializeAsString()));
  }
  std::vector<v2::GetTreeResponse> pages;
  ASSERT_TRUE(Tree(0, "", &pages, Put(root.SerializeAsString())).ok());
  ASSERT_EQ(pages.size(), 2u);
  EXPECT_EQ(pages[0].directories_size(), 3);  // root, big0, big1: > 2 MiB.
  EXPECT_GT(pages[0].ByteSizeLong(), size_t{2} << 20);
  EXPECT_EQ(pages[1].directories_size(), 1);
  EXPECT_EQ(pages[1].next_page_token(), "");
}

TEST_F(GetTreeTest, MissingRootIsNotFound) {
  std::vector<v2::GetTreeResponse> pages;
  EXPECT_EQ(Tree(0, "", &pages, cas::Digest::OfData("nope")).error_code(),
            StatusCode::NOT_FOUND);
}

TEST_F(GetTreeTest, BadTokenIsInvalidArgument) {
  std::vector<v2::GetTreeResponse> pages;
  EXPECT_EQ(Tree(0, "garbage", &pages, root_).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

// Only the tokens the server issues are accepted (get_tree_fuzz: these were
// read as offset 1).
TEST_F(GetTreeTest, TokenNotInIssuedFormIsInvalidArgument) {
  for (const char* token :
       {"tree-offset:+1", "tree-offset: 1", "tree-offset:1 ", "tree-offset:01",
        "tree-offset:-0", "tree-offset:"}) {
    std::vector<v2::GetTreeResponse> pages;
    EXPECT_EQ(Tree(1, token, &pages, root_).error_code(),
              StatusCode::INVALID_ARGUMENT)
        << token;
  }
  std::vector<v2::GetTreeResponse> pages;
  EXPECT_TRUE(Tree(1, "tree-offset:0", &pages, root_).ok());
}

TEST_F(CasServiceTest, SplitBlobIsUnimplemented) {
  ClientContext context;
  v2::SplitBlobRequest request;
  v2::SplitBlobResponse response;
  EXPECT_EQ(cas_->SplitBlob(&context, request, &response).error_code(),
            StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace cairn::servertest
