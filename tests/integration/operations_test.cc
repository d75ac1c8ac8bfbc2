// Operability of the real cairn-server binary: SIGTERM while uploads are in
// flight drains them and loses nothing; the example config file
// (deploy/cairn.yaml) is accepted flag by flag; a bad config is refused with
// a message naming the key; /metrics moves with traffic.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cas/digest.h"
#include "httplib.h"
#include "tests/testutil/server_process.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_client.h"

namespace cairn::faulttest {
namespace {

namespace bs = ::google::bytestream;
using ::cairn::testutil::Client;
using ::cairn::testutil::FilesUnder;
using ::cairn::testutil::ServerProcess;
using ::cairn::testutil::TestBlob;

constexpr int kUploads = 24;
constexpr size_t kBlobSize = 2 << 20;

// Polls QueryWriteStatus (bounded) until the upload has `size` bytes
// committed on the server.
void WaitCommitted(Client* client, const std::string& uuid,
                   const cas::Digest& digest, int64_t size) {
  for (int i = 0; i < 5000; ++i) {
    grpc::ClientContext context;
    client->Prepare(&context, 10);
    bs::QueryWriteStatusRequest request;
    request.set_resource_name(cas::MakeWriteResourceName("", uuid, digest));
    bs::QueryWriteStatusResponse response;
    if (client->bytestream()
            ->QueryWriteStatus(&context, request, &response)
            .ok() &&
        response.committed_size() >= size) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// Uploads `data` in 64 KiB chunks, bumping `*started` once the server has
// committed the first chunk and waiting (bounded) for `*go_on` before the rest,
// so SIGTERM lands while every upload is open.
grpc::Status SlowUpload(Client* client, const std::string& data,
                        std::atomic<int>* started, std::atomic<bool>* go_on) {
  cas::Digest digest = cas::Digest::OfData(data);
  grpc::ClientContext context;
  client->Prepare(&context, 60);
  bs::WriteResponse response;
  auto writer = client->bytestream()->Write(&context, &response);
  constexpr size_t kChunk = 64 << 10;
  for (size_t offset = 0; offset < data.size(); offset += kChunk) {
    bs::WriteRequest request;
    if (offset == 0) {
      request.set_resource_name(cas::MakeWriteResourceName(
          "", absl::StrCat("drain-", digest.hash()), digest));
    }
    request.set_write_offset(static_cast<int64_t>(offset));
    request.set_data(data.substr(offset, kChunk));
    request.set_finish_write(offset + kChunk >= data.size());
    if (!writer->Write(request)) {
      break;
    }
    if (offset == 0) {
      // Counted as in flight once the server reports the chunk committed.
      WaitCommitted(client, absl::StrCat("drain-", digest.hash()), digest,
                    static_cast<int64_t>(std::min(kChunk, data.size())));
      started->fetch_add(1);
      for (int i = 0; i < 20000 && !go_on->load(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  }
  writer->WritesDone();
  return writer->Finish();
}

TEST(OperationsTest, SigtermDuringUploadsDrainsThemAndLosesNothing) {
  testutil::TempDir dir;
  std::vector<std::string> blobs;
  for (int i = 0; i < kUploads; ++i) {
    blobs.push_back(TestBlob(1000 + i, kBlobSize));
  }
  std::vector<grpc::Status> results(kUploads);
  {
    ServerProcess server({absl::StrCat("--dir=", dir.path()), "--fsync=false"});
    ASSERT_TRUE(server.started());
    Client client(server.address());
    std::atomic<int> started{0};
    std::atomic<bool> go_on{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < kUploads; ++i) {
      threads.emplace_back([&, i] {
        results[i] = SlowUpload(&client, blobs[i], &started, &go_on);
      });
    }
    for (int i = 0; i < 20000 && started.load() < kUploads; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(started.load(), kUploads);
    server.Signal(SIGTERM);  // Every upload is open with one chunk sent.
    go_on = true;
    for (auto& t : threads) {
      t.join();
    }
    EXPECT_EQ(server.Terminate(), 0) << server.log();
    EXPECT_TRUE(absl::StrContains(server.log(), "SIGTERM received"));
  }
  for (int i = 0; i < kUploads; ++i) {
    EXPECT_TRUE(results[i].ok())
        << "upload " << i
        << " in flight at SIGTERM: " << results[i].error_message();
  }
  EXPECT_TRUE(FilesUnder(dir.path() + "/tmp").empty()) << "temp files left";
  ServerProcess again({absl::StrCat("--dir=", dir.path())});
  ASSERT_TRUE(again.started());
  Client client(again.address());
  for (int i = 0; i < kUploads; ++i) {
    std::string out;
    grpc::Status s = client.Read(cas::Digest::OfData(blobs[i]), &out);
    ASSERT_TRUE(s.ok()) << "blob " << i << ": " << s.error_message();
    EXPECT_TRUE(out == blobs[i]) << "blob " << i << " differs";
  }
}

TEST(OperationsTest, ExampleConfigIsAcceptedAndMetricsMove) {
  testutil::TempDir dir;
  // The command line wins over the file for the store and the addresses.
  ServerProcess server(
      {absl::StrCat("--config=", CAIRN_SOURCE_DIR, "/deploy/cairn.yaml"),
       absl::StrCat("--dir=", dir.path()), "--metrics_listen=127.0.0.1:0"});
  ASSERT_TRUE(server.started());
  EXPECT_TRUE(absl::StrContains(server.log(), "(max 200GiB)")) << server.log();
  int port = server.LoggedPort("metrics on http://127.0.0.1:");
  ASSERT_GT(port, 0);
  Client client(server.address());
  ASSERT_TRUE(client.Write(TestBlob(7, 1000)).ok());
  httplib::Client http("127.0.0.1", port);
  auto res = http.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_TRUE(absl::StrContains(
      res->body,
      "cairn_grpc_requests_total{service=\"ByteStream\",method=\"Write\","
      "code=\"OK\"} 1\n"))
      << res->body;
  EXPECT_TRUE(absl::StrContains(res->body, "cairn_store_cas_entries 1\n"));
  EXPECT_EQ(server.Terminate(), 0);
}

TEST(OperationsTest, BadConfigIsRefusedNamingTheKey) {
  testutil::TempDir dir;
  std::string path = dir.path() + "/bad.yaml";
  std::ofstream(path) << "listen: 127.0.0.1:0\nmax_sise: 1GiB\n";
  ServerProcess server({absl::StrCat("--config=", path),
                        absl::StrCat("--dir=", dir.path(), "/store")});
  EXPECT_EQ(server.address(), "");
  EXPECT_NE(server.Terminate(), 0);
  EXPECT_TRUE(absl::StrContains(server.log(), "max_sise")) << server.log();
}

}  // namespace
}  // namespace cairn::faulttest
