// Fault tests against the real cairn-server binary (label "fault"): kill -9
// during 64 concurrent uploads, a full disk, corrupt files planted in the
// store, misbehaving clients, and traversal attempts. Each test checks the
// store's invariants on disk afterwards: every blob is complete and valid or
// absent, no temp files are left, and the index matches the disk.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cas/digest.h"
#include "tests/testutil/server_process.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_client.h"

namespace cairn::faulttest {
namespace {

namespace v2 = ::build::bazel::remote::execution::v2;
namespace bs = ::google::bytestream;
using ::cairn::testutil::Client;
using ::cairn::testutil::FilesUnder;
using ::cairn::testutil::ReadWholeFile;
using ::cairn::testutil::ServerProcess;
using ::cairn::testutil::TestBlob;

namespace fs = std::filesystem;

// Checks the on-disk store at `root` against a running server: no temp
// files; every file under cas/ is named by the digest of its bytes and the
// server reports it present. Up to `planted` files may not match their name
// (corruption planted while the server was down, which it cannot see without
// reading): each must then refuse to be served under its name and size and
// be gone from disk afterwards. Returns the valid digests on disk.
std::vector<cas::Digest> CheckStoreMatchesDisk(const std::string& root,
                                               Client& client,
                                               int planted = 0) {
  EXPECT_TRUE(FilesUnder(root + "/tmp").empty()) << "temp files left";
  std::vector<cas::Digest> on_disk;
  int corrupt = 0;
  for (const fs::path& path : FilesUnder(root + "/cas")) {
    std::string data = ReadWholeFile(path);
    cas::Digest digest = cas::Digest::OfData(data);
    if (path.filename().string() == digest.hash()) {
      on_disk.push_back(digest);
      continue;
    }
    ++corrupt;
    absl::StatusOr<cas::Digest> named = cas::Digest::Create(
        path.filename().string(), static_cast<int64_t>(data.size()));
    if (!named.ok()) {
      ADD_FAILURE() << "foreign file " << path;
      continue;
    }
    std::string served;
    grpc::Status status = client.Read(*named, &served);
    EXPECT_FALSE(status.ok()) << "corrupt file " << path << " was served";
    EXPECT_FALSE(fs::exists(path)) << "corrupt file " << path << " kept";
  }
  EXPECT_LE(corrupt, planted) << "unexpected corrupt files in the store";
  std::vector<cas::Digest> missing;
  for (size_t i = 0; i < on_disk.size(); i += 1000) {
    std::vector<cas::Digest> part(
        on_disk.begin() + i,
        on_disk.begin() + std::min(on_disk.size(), i + 1000));
    grpc::Status status = client.FindMissing(part, &missing);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(missing.empty())
        << missing.size() << " blobs on disk are not in the index";
  }
  return on_disk;
}

// Returns cairn_store_corruptions_total scraped over HTTP from the server's
// --metrics_listen endpoint (named in its start-up line), or -1.
int64_t CorruptionsCounted(const ServerProcess& server) {
  int port = server.LoggedPort("metrics on http://127.0.0.1:");
  if (port < 0) {
    return -1;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request =
        "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, request.data(), request.size()) ==
        static_cast<ssize_t>(request.size())) {
      char buf[4096];
      for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) {
        response.append(buf, static_cast<size_t>(n));
      }
    }
  }
  close(fd);
  const std::string metric = "\ncairn_store_corruptions_total ";
  size_t at = response.find(metric);
  return at == std::string::npos
             ? -1
             : std::atoll(response.c_str() + at + metric.size());
}

// Returns the path of `digest`'s file in the disk store at `root`.
std::string BlobPath(const std::string& root, const cas::Digest& digest) {
  return absl::StrCat(root, "/cas/", digest.hash().substr(0, 2), "/",
                      digest.hash());
}

class FaultTest : public ::testing::Test {
 protected:
  std::vector<std::string> Flags(const std::string& root) const {
    return {"--dir=" + root, "--max_size=1GiB"};
  }
  static std::vector<std::string> WithMetrics(std::vector<std::string> flags) {
    flags.push_back("--metrics_listen=127.0.0.1:0");
    return flags;
  }

  testutil::TempDir dir_;
};

// One round: 64 clients upload `blobs` concurrently (each its share, in
// order) until `kill_after` are acknowledged, then the server gets SIGKILL.
// Marks acknowledged blobs in `acked`; returns the uploads in flight at the
// kill.
int UploadAndKill(const std::vector<std::string>& flags,
                  const std::vector<std::string>& blobs, int kill_after,
                  std::vector<char>* acked) {
  constexpr int kClients = 64;
  ServerProcess server(flags);
  EXPECT_TRUE(server.started());
  Client client(server.address());
  std::atomic<int> acked_count{0};
  std::atomic<int> in_flight{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      for (size_t i = c; i < blobs.size(); i += kClients) {
        in_flight.fetch_add(1);
        bool ok = client.Write(blobs[i], 128 << 10).ok();
        in_flight.fetch_sub(1);
        if (!ok) {
          break;  // The server is gone.
        }
        (*acked)[i] = 1;
        acked_count.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 6000 && acked_count.load() < kill_after; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  int interrupted = in_flight.load();
  server.Kill9();
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_LT(acked_count.load(), static_cast<int>(blobs.size()))
      << "every upload finished before the kill; nothing was interrupted";
  return interrupted;
}

TEST_F(FaultTest, KillNineDuring64ConcurrentUploads) {
  const std::string root = dir_.path() + "/store";
  constexpr int kRounds = 3;
  constexpr int kBlobsPerRound = 768;
  std::vector<std::string> blobs;
  std::vector<char> acked;
  int interrupted = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::string> batch;
    for (int i = 0; i < kBlobsPerRound; ++i) {
      // Mostly small, every fourth spanning several ByteStream chunks.
      size_t size = (i % 4 == 3) ? (600 << 10) + i * 100 : 1000 + i * 37;
      batch.push_back(TestBlob(round * 100000 + i, size));
    }
    std::vector<char> batch_acked(batch.size(), 0);
    interrupted += UploadAndKill(Flags(root), batch,
                                 kBlobsPerRound / 8 << round, &batch_acked);
    blobs.insert(blobs.end(), batch.begin(), batch.end());
    acked.insert(acked.end(), batch_acked.begin(), batch_acked.end());

    // After each kill: a restart finds every blob complete or absent.
    ServerProcess server(Flags(root));
    ASSERT_TRUE(server.started());
    Client client(server.address());
    CheckStoreMatchesDisk(root, client);
    int present = 0;
    int lost = 0;
    for (size_t i = 0; i < blobs.size(); ++i) {
      cas::Digest digest = cas::Digest::OfData(blobs[i]);
      std::string data;
      grpc::Status status = client.Read(digest, &data);
      if (status.ok()) {
        EXPECT_EQ(data, blobs[i]) << "blob " << digest.ToString() << " differs";
        ++present;
      } else {
        EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND)
            << status.error_message();
        lost += acked[i];
      }
    }
    EXPECT_EQ(lost, 0) << "acknowledged uploads lost";
    std::printf(
        "kill -9 round %d: %d uploads in flight at the kill; %d of %d blobs "
        "present after restart, %d acknowledged lost\n",
        round + 1, interrupted, present, static_cast<int>(blobs.size()), lost);
  }
}

TEST_F(FaultTest, DiskFullIsResourceExhaustedAndRecovers) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "needs root to mount a small tmpfs";
  }
  const std::string mnt = dir_.path() + "/mnt";
  fs::create_directories(mnt);
  if (mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=24m") != 0) {
    GTEST_SKIP() << "cannot mount tmpfs here: " << std::strerror(errno);
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const std::string root = mnt + "/store";
  ServerProcess server(Flags(root));
  ASSERT_TRUE(server.started());
  Client client(server.address());
  std::vector<std::string> stored;
  for (int i = 0; i < 4; ++i) {
    stored.push_back(TestBlob(100 + i, 1 << 20));
    ASSERT_TRUE(client.Write(stored.back()).ok());
  }
  // Fill the file system with a file outside the store.
  const std::string filler = mnt + "/filler";
  {
    std::ofstream out(filler, std::ios::binary);
    const std::string mib(1 << 20, 'f');
    for (int i = 0; i < 64 && out.good(); ++i) {
      out.write(mib.data(), mib.size());
      out.flush();
    }
  }
  const std::string big = TestBlob(200, 3 << 20);
  grpc::Status full = client.Write(big);
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << full.error_message();
  const std::string batch_blob = TestBlob(201, 1 << 20);
  std::vector<int> codes;
  ASSERT_TRUE(client.BatchUpdate({batch_blob}, &codes).ok());
  ASSERT_EQ(codes.size(), 1u);
  EXPECT_EQ(codes[0], grpc::StatusCode::RESOURCE_EXHAUSTED);
  // No partial blob, and reads keep working.
  std::vector<cas::Digest> missing;
  ASSERT_TRUE(client
                  .FindMissing({cas::Digest::OfData(big),
                                cas::Digest::OfData(batch_blob)},
                               &missing)
                  .ok());
  EXPECT_EQ(missing.size(), 2u);
  EXPECT_FALSE(fs::exists(BlobPath(root, cas::Digest::OfData(big))));
  for (const std::string& blob : stored) {
    std::string data;
    ASSERT_TRUE(client.Read(cas::Digest::OfData(blob), &data).ok());
    EXPECT_EQ(data, blob);
  }
  CheckStoreMatchesDisk(root, client);
  // Space returns: uploads succeed again.
  fs::remove(filler);
  grpc::Status again = client.Write(big);
  EXPECT_TRUE(again.ok()) << again.error_message();
  ASSERT_TRUE(client.BatchUpdate({batch_blob}, &codes).ok());
  EXPECT_EQ(codes, std::vector<int>{0});
  std::string data;
  ASSERT_TRUE(client.Read(cas::Digest::OfData(big), &data).ok());
  EXPECT_EQ(data, big);
  CheckStoreMatchesDisk(root, client);
  server.Kill9();
}

// Flips one byte in the middle of `path`.
void FlipByte(const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(0, std::ios::end);
  std::streamoff middle = f.tellg() / 2;
  f.seekg(middle);
  char c = 0;
  f.read(&c, 1);
  c ^= 0x20;
  f.seekp(middle);
  f.write(&c, 1);
}

TEST_F(FaultTest, PlantedCorruptionIsNeverServedAndIsRemoved) {
  const std::string root = dir_.path() + "/store";
  std::vector<std::string> blobs;
  for (int i = 0; i < 6; ++i) {
    blobs.push_back(TestBlob(300 + i, (i % 2 == 0) ? (3 << 20) : 5000));
  }
  std::vector<cas::Digest> digests;
  for (const std::string& b : blobs) {
    digests.push_back(cas::Digest::OfData(b));
  }
  {
    ServerProcess server(WithMetrics(Flags(root)));
    ASSERT_TRUE(server.started());
    Client client(server.address());
    for (const std::string& b : blobs) {
      ASSERT_TRUE(client.Write(b).ok());
    }
    // While serving: flip a byte (0, 1), truncate (2, 3).
    FlipByte(BlobPath(root, digests[0]));
    FlipByte(BlobPath(root, digests[1]));
    fs::resize_file(BlobPath(root, digests[2]), blobs[2].size() / 2);
    fs::resize_file(BlobPath(root, digests[3]), 100);
    for (int i = 0; i < 4; ++i) {
      std::string data;
      grpc::Status status = client.Read(digests[i], &data);
      EXPECT_FALSE(status.ok()) << "corrupt blob " << i << " was served";
      EXPECT_NE(data, blobs[i]);
      std::vector<cas::Digest> missing;
      ASSERT_TRUE(client.FindMissing({digests[i]}, &missing).ok());
      EXPECT_EQ(missing.size(), 1u) << "corrupt blob " << i << " still listed";
      EXPECT_FALSE(fs::exists(BlobPath(root, digests[i])));
    }
    EXPECT_EQ(CorruptionsCounted(server), 4) << server.log();
    CheckStoreMatchesDisk(root, client);
    // A client re-uploads and gets the right bytes.
    ASSERT_TRUE(client.Write(blobs[0]).ok());
    std::string data;
    ASSERT_TRUE(client.Read(digests[0], &data).ok());
    EXPECT_EQ(data, blobs[0]);
    EXPECT_EQ(server.Terminate(), 0);
  }
  // While stopped: corrupt 4 (flip) and 5 (truncate), then restart.
  FlipByte(BlobPath(root, digests[4]));
  fs::resize_file(BlobPath(root, digests[5]), 10);
  ServerProcess server(Flags(root));
  ASSERT_TRUE(server.started());
  Client client(server.address());
  for (int i = 4; i < 6; ++i) {
    std::string data;
    grpc::Status status = client.Read(digests[i], &data);
    EXPECT_FALSE(status.ok()) << "corrupt blob " << i << " served";
    EXPECT_NE(data, blobs[i]);
    std::vector<cas::Digest> missing;
    ASSERT_TRUE(client.FindMissing({digests[i]}, &missing).ok());
    EXPECT_EQ(missing.size(), 1u);
  }
  v2::BatchReadBlobsRequest request;
  *request.add_digests() = Client::ToProto(digests[4]);
  v2::BatchReadBlobsResponse response;
  grpc::ClientContext context;
  client.Prepare(&context);
  ASSERT_TRUE(client.cas()->BatchReadBlobs(&context, request, &response).ok());
  ASSERT_EQ(response.responses_size(), 1);
  EXPECT_NE(response.responses(0).status().code(), 0);
  EXPECT_TRUE(response.responses(0).data().empty());
  CheckStoreMatchesDisk(root, client, /*planted=*/1);
}

// Opens a ByteStream write for `data` and sends its first `sent` bytes.
struct OpenUpload {
  grpc::ClientContext context;
  bs::WriteResponse response;
  std::unique_ptr<grpc::ClientWriter<bs::WriteRequest>> writer;
};

std::unique_ptr<OpenUpload> StartUpload(Client& client, const std::string& uuid,
                                        const std::string& data, size_t sent) {
  auto upload = std::make_unique<OpenUpload>();
  client.Prepare(&upload->context);
  upload->writer =
      client.bytestream()->Write(&upload->context, &upload->response);
  bs::WriteRequest request;
  request.set_resource_name(
      cas::MakeWriteResourceName("", uuid, cas::Digest::OfData(data)));
  request.set_data(data.substr(0, sent));
  upload->writer->Write(request);
  return upload;
}

TEST_F(FaultTest, MisbehavingClientsGetClearErrorsAndReleaseResources) {
  const std::string root = dir_.path() + "/store";
  ServerProcess server(Flags(root));
  ASSERT_TRUE(server.started());
  Client client(server.address());
  const std::string data = TestBlob(400, 4 << 20);
  const cas::Digest digest = cas::Digest::OfData(data);

  // Cancelled mid-stream, 100 times: partial uploads stay bounded.
  for (int i = 0; i < 100; ++i) {
    auto upload = StartUpload(client, absl::StrCat("cancel-", i),
                              TestBlob(500 + i, 1 << 20), 256 << 10);
    upload->context.TryCancel();
    EXPECT_FALSE(upload->writer->Finish().ok());
  }
  // Out-of-order write offset.
  {
    auto upload = StartUpload(client, "gap", data, 64 << 10);
    bs::WriteRequest request;
    request.set_write_offset(128 << 10);
    request.set_data(data.substr(128 << 10, 64 << 10));
    upload->writer->Write(request);
    upload->writer->WritesDone();
    grpc::Status status = upload->writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_message();
  }
  // More bytes than the digest says, and bytes that do not match it.
  {
    auto upload = StartUpload(client, "long", data.substr(0, 1000), 1000);
    bs::WriteRequest request;
    request.set_write_offset(1000);
    request.set_data("extra");
    request.set_finish_write(true);
    upload->writer->Write(request);
    upload->writer->WritesDone();
    EXPECT_EQ(upload->writer->Finish().error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    std::string wrong = data.substr(0, 1000);
    grpc::ClientContext context;
    client.Prepare(&context);
    bs::WriteResponse response;
    auto writer = client.bytestream()->Write(&context, &response);
    bs::WriteRequest request;
    request.set_resource_name(cas::MakeWriteResourceName(
        "", "mismatch", cas::Digest::OfData(std::string(1000, 'x'))));
    request.set_data(wrong);
    request.set_finish_write(true);
    writer->Write(request);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  // Oversized messages: one ByteStream message and one batch larger than
  // the server accepts; a batch over the advertised limit.
  {
    const std::string huge(100 << 20, 'h');
    auto upload = StartUpload(client, "huge", huge, huge.size());
    upload->writer->WritesDone();
    grpc::Status status = upload->writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << status.error_message();
    std::vector<int> codes;
    status = client.BatchUpdate({huge}, &codes);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << status.error_message();
    status = client.BatchUpdate({std::string(6 << 20, 'b')}, &codes);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_message();
  }
  // None of it was stored; a well-behaved upload of the same blob works.
  std::vector<cas::Digest> missing;
  ASSERT_TRUE(client.FindMissing({digest}, &missing).ok());
  EXPECT_EQ(missing.size(), 1u);
  ASSERT_TRUE(client.Write(data).ok());
  std::string back;
  ASSERT_TRUE(client.Read(digest, &back).ok());
  EXPECT_EQ(back, data);
  // Interrupted uploads kept for resuming are bounded (64 by default).
  EXPECT_LE(FilesUnder(root + "/tmp").size(), 64u);
  // A restart drops them all.
  EXPECT_EQ(server.Terminate(), 0);
  ASSERT_TRUE(server.Restart());
  Client client2(server.address());
  CheckStoreMatchesDisk(root, client2);
}

TEST_F(FaultTest, StalledUploadsAreCancelledAndReleaseTheirSpace) {
  const std::string root = dir_.path() + "/store";
  // A store with room for about four stalled 10 MiB uploads.
  ServerProcess server({"--dir=" + root, "--max_size=48MiB",
                        // Both generous: on a slow (sanitizer) build the
                        // 40 MiB upload below must not look idle, and the
                        // checks must see the parked uploads before expiry.
                        "--stream_idle_timeout=3s",
                        "--partial_upload_timeout=9s",
                        // This test is about the store's space and the idle
                        // watchdog; upload_limits_test covers the caps.
                        "--max_upload_reserve_per_client=off",
                        "--max_upload_reserve=off"});
  ASSERT_TRUE(server.started());
  Client client(server.address());
  std::vector<std::unique_ptr<OpenUpload>> stalled;
  for (int i = 0; i < 4; ++i) {
    stalled.push_back(StartUpload(client, absl::StrCat("stall-", i),
                                  TestBlob(600 + i, 10 << 20), 64 << 10));
  }
  // Each stalled client now sends nothing; Finish returns once the server
  // cancels it (bounded by the 60 s call deadline).
  for (auto& upload : stalled) {
    grpc::Status status = upload->writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED)
        << status.error_message();
  }
  // Each is kept for resuming, with what it had sent...
  bs::QueryWriteStatusRequest query;
  query.set_resource_name(cas::MakeWriteResourceName(
      "", "stall-0", cas::Digest::OfData(TestBlob(600, 10 << 20))));
  bs::QueryWriteStatusResponse progress;
  grpc::ClientContext query_context;
  client.Prepare(&query_context);
  ASSERT_TRUE(client.bytestream()
                  ->QueryWriteStatus(&query_context, query, &progress)
                  .ok());
  EXPECT_EQ(progress.committed_size(), 64 << 10);
  // ...until --partial_upload_timeout, when their space is released and a
  // 40 MiB upload fits (polled: at most ~30 s plus the uploads).
  const std::string big = TestBlob(700, 40 << 20);
  grpc::Status status;
  for (int i = 0; i < 60; ++i) {
    status = client.Write(big);
    if (status.ok()) {
      break;
    }
    // The server refuses at once, while the client is still sending; gRPC
    // over TCP may then end the client's stream as CANCELLED instead of
    // delivering the status (seen on a slow TSan build).
    EXPECT_TRUE(status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                status.error_code() == grpc::StatusCode::CANCELLED)
        << status.error_code() << ": " << status.error_message();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(server.Terminate(), 0);
}

TEST_F(FaultTest, TraversalAttemptsAreRejected) {
  const std::string root = dir_.path() + "/store";
  ServerProcess server(Flags(root));
  ASSERT_TRUE(server.started());
  Client client(server.address());
  const std::string blob = "payload";
  const cas::Digest digest = cas::Digest::OfData(blob);
  const std::vector<std::string> bad_instances = {
      "..",    "../..",       "../../etc", "a/../../b",
      "/etc",  "a//b",        "./a",       "a/.",
      "blobs", "x/uploads/y", "a\\..\\..", std::string("a\0b", 3)};
  for (const std::string& instance : bad_instances) {
    v2::FindMissingBlobsRequest request;
    request.set_instance_name(instance);
    *request.add_blob_digests() = Client::ToProto(digest);
    v2::FindMissingBlobsResponse response;
    grpc::ClientContext context;
    client.Prepare(&context);
    grpc::Status status =
        client.cas()->FindMissingBlobs(&context, request, &response);
    // Backslashes are ordinary characters; the rest must be refused.
    if (instance != "a\\..\\..") {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << "instance '" << instance << "'";
    }
    v2::GetActionResultRequest get;
    get.set_instance_name(instance);
    *get.mutable_action_digest() = Client::ToProto(digest);
    v2::ActionResult result;
    grpc::ClientContext get_context;
    client.Prepare(&get_context);
    status = client.ac()->GetActionResult(&get_context, get, &result);
    EXPECT_TRUE(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
                status.error_code() == grpc::StatusCode::NOT_FOUND);
  }
  for (const std::string& name :
       {absl::StrCat("../../blobs/", digest.hash(), "/7"),
        absl::StrCat("blobs/../", digest.hash(), "/7"),
        absl::StrCat("/blobs/", digest.hash(), "/7"),
        absl::StrCat("blobs/", digest.hash(), "/7/../../x"),
        absl::StrCat("blobs/../../../etc/passwd/7"),
        absl::StrCat("uploads/u/blobs/", digest.hash(), "/7")}) {
    std::string data;
    grpc::ClientContext context;
    client.Prepare(&context);
    bs::ReadRequest request;
    request.set_resource_name(name);
    auto reader = client.bytestream()->Read(&context, request);
    bs::ReadResponse response;
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << name;
  }
  for (const std::string& name :
       {absl::StrCat("../uploads/u/blobs/", digest.hash(), "/7"),
        absl::StrCat("uploads/../../u/blobs/", digest.hash(), "/7"),
        absl::StrCat("uploads/u/blobs/../../", digest.hash(), "/7"),
        absl::StrCat("uploads/u/blobs/", digest.hash(), "/-7")}) {
    grpc::ClientContext context;
    client.Prepare(&context);
    bs::WriteResponse response;
    auto writer = client.bytestream()->Write(&context, &response);
    bs::WriteRequest request;
    request.set_resource_name(name);
    request.set_data(blob);
    request.set_finish_write(true);
    writer->Write(request);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << name;
  }
  ASSERT_TRUE(client.Write(blob).ok());
  for (const char* path : {"../../evil", "/etc/passwd", "a/../../b", "a//b",
                           "./a", "a/..", "", "ok/../.."}) {
    v2::UpdateActionResultRequest request;
    *request.mutable_action_digest() = Client::ToProto(digest);
    v2::OutputFile* file = request.mutable_action_result()->add_output_files();
    file->set_path(path);
    *file->mutable_digest() = Client::ToProto(digest);
    v2::ActionResult response;
    grpc::ClientContext context;
    client.Prepare(&context);
    EXPECT_EQ(client.ac()
                  ->UpdateActionResult(&context, request, &response)
                  .error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << "output path '" << path << "'";
    v2::UpdateActionResultRequest dir_request = request;
    dir_request.mutable_action_result()->clear_output_files();
    auto* dir = dir_request.mutable_action_result()->add_output_directories();
    dir->set_path(path);
    *dir->mutable_tree_digest() = Client::ToProto(digest);
    grpc::ClientContext dir_context;
    client.Prepare(&dir_context);
    EXPECT_EQ(client.ac()
                  ->UpdateActionResult(&dir_context, dir_request, &response)
                  .error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << "output directory '" << path << "'";
  }
  // Nothing appeared outside the store, and only its own folders inside.
  for (const auto& entry : fs::directory_iterator(dir_.path())) {
    EXPECT_EQ(entry.path().filename(), "store");
  }
  for (const auto& entry : fs::directory_iterator(root)) {
    std::string name = entry.path().filename().string();
    EXPECT_TRUE(name == "cas" || name == "ac" || name == "tmp" ||
                name == "small" || name == "LAYOUT")
        << name;
  }
  CheckStoreMatchesDisk(root, client);
}

}  // namespace
}  // namespace cairn::faulttest
