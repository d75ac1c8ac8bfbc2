// A blob corrupted on disk is never served: ByteStream Read ends with
// DATA_LOSS before the last chunk, BatchReadBlobs reports it per blob, and
// the blob then reads as missing so clients re-upload it.
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cas/digest.h"
#include "cas/disk_blob_store.h"
#include "cas/resource_name.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "server/server.h"
#include "tests/testutil/temp_dir.h"

namespace cairn {
namespace {

namespace v2 = ::build::bazel::remote::execution::v2;
namespace bs = ::google::bytestream;

class CorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cas::DiskBlobStoreOptions store_options;
    store_options.root = dir_.path();
    store_options.max_size_bytes = int64_t{1} << 30;
    store_options.fsync = false;
    // Corruption is planted in the blobs' files (the small-item database's
    // is covered by tests/cas/disk_blob_store_test.cc).
    store_options.small_item_max_bytes = 0;
    auto store = cas::NewDiskBlobStore(store_options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    server::ServerOptions options;
    options.listen_address = "";
    options.store = store_.get();
    auto server = server::CairnServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    bytestream_ = bs::ByteStream::NewStub(server_->InProcessChannel());
    cas_ = v2::ContentAddressableStorage::NewStub(server_->InProcessChannel());
  }

  // Stores `data`, then flips one byte of its file near the end.
  cas::Digest PutCorrupt(const std::string& data) {
    const cas::Digest d = cas::Digest::OfData(data);
    EXPECT_TRUE(store_->Write(d, data).ok());
    const std::string path =
        dir_.path() + "/cas/" + d.hash().substr(0, 2) + "/" + d.hash();
    FILE* f = std::fopen(path.c_str(), "r+b");
    EXPECT_NE(f, nullptr) << path;
    if (f != nullptr) {
      std::fseek(f, static_cast<long>(data.size() - 3), SEEK_SET);
      std::fputc(data[data.size() - 3] ^ 0x55, f);
      std::fclose(f);
    }
    return d;
  }

  testutil::TempDir dir_;
  std::unique_ptr<cas::BlobStore> store_;
  std::unique_ptr<server::CairnServer> server_;
  std::unique_ptr<bs::ByteStream::Stub> bytestream_;
  std::unique_ptr<v2::ContentAddressableStorage::Stub> cas_;
};

TEST_F(CorruptionTest, ByteStreamReadEndsWithDataLoss) {
  const std::string data(3 * (1 << 20) + 100, 'c');
  const cas::Digest d = PutCorrupt(data);
  grpc::ClientContext context;
  bs::ReadRequest request;
  request.set_resource_name(cas::MakeReadResourceName("", d));
  auto reader = bytestream_->Read(&context, request);
  bs::ReadResponse response;
  int64_t received = 0;
  while (reader->Read(&response)) {
    received += response.data().size();
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_LT(received, d.size_bytes());  // The corrupt tail never left.
  EXPECT_FALSE(store_->Contains(d));    // Removed: clients re-upload.
}

TEST_F(CorruptionTest, BatchReadReportsCorruptBlob) {
  const cas::Digest d = PutCorrupt("a small blob that rots");
  grpc::ClientContext context;
  v2::BatchReadBlobsRequest request;
  request.add_digests()->set_hash(d.hash());
  request.mutable_digests(0)->set_size_bytes(d.size_bytes());
  v2::BatchReadBlobsResponse response;
  ASSERT_TRUE(cas_->BatchReadBlobs(&context, request, &response).ok());
  ASSERT_EQ(response.responses_size(), 1);
  EXPECT_EQ(response.responses(0).status().code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_TRUE(response.responses(0).data().empty());

  grpc::ClientContext find_context;
  v2::FindMissingBlobsRequest find;
  *find.add_blob_digests() = request.digests(0);
  v2::FindMissingBlobsResponse missing;
  ASSERT_TRUE(cas_->FindMissingBlobs(&find_context, find, &missing).ok());
  EXPECT_EQ(missing.missing_blob_digests_size(), 1);
}

}  // namespace
}  // namespace cairn
