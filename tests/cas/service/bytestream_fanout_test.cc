// Fan-out: many concurrent ByteStream Reads over TCP (so HTTP/2 flow control
// applies), half of them slow, against a small read buffer budget. Every read
// returns the whole blob, and the response buffers the server holds stay
// within budget + 2 x 16 KiB x readers however slowly clients read
// (before the budget each Read held two 1 MiB chunks: 400 MiB for 200).
// Small calls made during the fan-out are answered. Label "fanout": 200
// reader threads, a few seconds.
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/testutil/service_fixture.h"

namespace cairn::servertest {
namespace {

constexpr int kReaders = 200;
constexpr int64_t kBudget = int64_t{4} << 20;
constexpr int64_t kMinChunk = int64_t{16} << 10;

class FanoutTest : public ServiceTest {};

TEST_F(FanoutTest, ReadBuffersStayWithinTheBudget) {
  server::ServerOptions options;
  options.read_buffer_bytes = kBudget;
  StartServer(options, /*tcp=*/true);
  std::string blob(size_t{2} << 20, '\0');
  for (size_t i = 0; i < blob.size(); ++i) {
    blob[i] = static_cast<char>((i * 131) >> 7);
  }
  const cas::Digest digest = Put(blob);
  const std::string resource =
      absl::StrCat("blobs/", digest.hash(), "/", digest.size_bytes());

  // Eight connections, as a build farm's clients would share a few.
  std::vector<std::unique_ptr<bs::ByteStream::Stub>> stubs;
  for (int i = 0; i < 8; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("cairn.test.channel", i);
    stubs.push_back(bs::ByteStream::NewStub(
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                  grpc::InsecureChannelCredentials(), args)));
  }
  std::atomic<int> ok{0};
  std::atomic<int64_t> largest_chunk{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      grpc::ClientContext context;
      bs::ReadRequest request;
      request.set_resource_name(resource);
      auto reader = stubs[r % stubs.size()]->Read(&context, request);
      bs::ReadResponse response;
      std::string got;
      while (reader->Read(&response)) {
        got += response.data();
        int64_t n = static_cast<int64_t>(response.data().size());
        int64_t seen = largest_chunk.load();
        while (n > seen && !largest_chunk.compare_exchange_weak(seen, n)) {
        }
        if (r % 2 == 0) {
          absl::SleepFor(absl::Milliseconds(2));  // A slow reader.
        }
      }
      grpc::Status status = reader->Finish();
      if (status.ok() && got == blob) {
        ok.fetch_add(1);
      } else {
        ADD_FAILURE() << "reader " << r << ": " << status.error_message()
                      << ", " << got.size() << " bytes";
      }
    });
  }
  // A small call during the fan-out is answered.
  v2::FindMissingBlobsRequest find;
  *find.add_blob_digests() = ProtoDigest(digest);
  v2::FindMissingBlobsResponse missing;
  grpc::ClientContext find_context;
  find_context.set_deadline(std::chrono::system_clock::now() +
                            std::chrono::seconds(60));
  EXPECT_TRUE(cas_->FindMissingBlobs(&find_context, find, &missing).ok());
  EXPECT_EQ(missing.missing_blob_digests_size(), 0);
  for (std::thread& t : readers) {
    t.join();
  }
  EXPECT_EQ(ok.load(), kReaders);
  const int64_t bound = kBudget + 2 * kMinChunk * kReaders;
  const int64_t peak = server_->PeakReadBufferBytesForTest();
  EXPECT_GT(peak, 0);
  EXPECT_LE(peak, bound) << "read buffers peaked at " << peak << " bytes";
  EXPECT_LE(largest_chunk.load(), int64_t{1} << 20);
}

TEST_F(FanoutTest, ALoneReaderGetsFullChunks) {
  server::ServerOptions options;
  options.read_buffer_bytes = kBudget;
  StartServer(options, /*tcp=*/true);
  std::string blob(size_t{3} << 20, 'x');
  const cas::Digest digest = Put(blob);
  std::string got;
  int chunks = 0;
  ASSERT_TRUE(
      ReadBlob(absl::StrCat("blobs/", digest.hash(), "/", digest.size_bytes()),
               0, 0, &got, &chunks)
          .ok());
  EXPECT_EQ(got, blob);
  EXPECT_EQ(chunks, 3);  // 1 MiB each: the budget only bites when shared.
  EXPECT_LE(server_->PeakReadBufferBytesForTest(), int64_t{2} << 20);
}

}  // namespace
}  // namespace cairn::servertest
