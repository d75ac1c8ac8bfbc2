// A 1 GiB ByteStream round trip through the disk store, streamed on both
// sides (neither the client nor the server holds the blob in memory).
// Label "large".
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "absl/time/clock.h"
#include "cas/digest.h"
#include "cas/disk_blob_store.h"
#include "cas/resource_name.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "server/server.h"
#include "tests/testutil/temp_dir.h"

namespace cairn {
namespace {

namespace bs = ::google::bytestream;

constexpr int64_t kSize = int64_t{1} << 30;
constexpr size_t kChunk = size_t{1} << 20;

// Fills `chunk` with the deterministic bytes of chunk number `index`.
void FillChunk(int64_t index, std::string* chunk) {
  chunk->resize(kChunk);
  uint64_t x = 0x9e3779b97f4a7c15ull * (index + 1);
  for (size_t i = 0; i < kChunk; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(chunk->data() + i, &x, 8);
  }
}

TEST(LargeBlobTest, OneGibRoundTrip) {
  testutil::TempDir dir;
  cas::DiskBlobStoreOptions store_options;
  store_options.root = dir.path();
  store_options.max_size_bytes = int64_t{3} << 30;
  store_options.fsync = false;
  auto store = cas::NewDiskBlobStore(store_options);
  ASSERT_TRUE(store.ok()) << store.status();
  server::ServerOptions options;
  options.listen_address = "";
  options.store = store->get();
  auto server = server::CairnServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = bs::ByteStream::NewStub((*server)->InProcessChannel());

  std::string chunk;
  cas::Sha256Hasher hasher;
  for (int64_t i = 0; i < kSize / kChunk; ++i) {
    FillChunk(i, &chunk);
    hasher.Update(chunk);
  }
  const cas::Digest digest = hasher.FinishDigest();

  const absl::Time write_start = absl::Now();
  grpc::ClientContext write_context;
  bs::WriteResponse written;
  auto writer = stub->Write(&write_context, &written);
  for (int64_t i = 0; i < kSize / kChunk; ++i) {
    bs::WriteRequest request;
    if (i == 0) {
      request.set_resource_name(
          cas::MakeWriteResourceName("", "large", digest));
    }
    request.set_write_offset(i * kChunk);
    FillChunk(i, request.mutable_data());
    request.set_finish_write((i + 1) * kChunk == kSize);
    if (!writer->Write(request)) {
      // The server ended the call: its status says why.
      const grpc::Status ended = writer->Finish();
      FAIL() << "write of chunk " << i << " refused: "
             << static_cast<int>(ended.error_code()) << " "
             << ended.error_message();
    }
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(written.committed_size(), kSize);
  const absl::Duration write_time = absl::Now() - write_start;

  const absl::Time read_start = absl::Now();
  grpc::ClientContext read_context;
  bs::ReadRequest read;
  read.set_resource_name(cas::MakeReadResourceName("", digest));
  auto reader = stub->Read(&read_context, read);
  bs::ReadResponse response;
  cas::Sha256Hasher read_hasher;
  int64_t chunks = 0;
  while (reader->Read(&response)) {
    EXPECT_LE(response.data().size(), kChunk);
    read_hasher.Update(response.data());
    ++chunks;
  }
  status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(read_hasher.FinishDigest(), digest);
  EXPECT_EQ(chunks, kSize / static_cast<int64_t>(kChunk));
  const absl::Duration read_time = absl::Now() - read_start;
  std::printf(
      "1 GiB ByteStream write %.2fs (%.0f MiB/s), read %.2fs (%.0f MiB/s)\n",
      absl::ToDoubleSeconds(write_time),
      1024 / absl::ToDoubleSeconds(write_time),
      absl::ToDoubleSeconds(read_time),
      1024 / absl::ToDoubleSeconds(read_time));
}

}  // namespace
}  // namespace cairn
