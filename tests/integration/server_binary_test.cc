// Starts the real cairn-server binary on port 0 over a temp --dir, drives
// every service over TCP with a gRPC client, then SIGTERMs it and checks the
// exit status. A second start on the same directory sees the stored data.
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <future>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cas/digest.h"
#include "cas/resource_name.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "tests/testutil/server_process.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_client.h"

namespace cairn {
namespace {

namespace v2 = ::build::bazel::remote::execution::v2;
namespace bs = ::google::bytestream;

using testutil::ServerProcess;

std::string Call(grpc::GenericStub* stub, const std::string& method,
                 const std::string& request, grpc::Status* status) {
  grpc::ClientContext context;
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1), out;
  std::promise<grpc::Status> done;
  stub->UnaryCall(&context, method, grpc::StubOptions(), &in, &out,
                  [&done](grpc::Status s) { done.set_value(s); });
  *status = done.get_future().get();
  std::vector<grpc::Slice> slices;
  std::string result;
  if (status->ok() && out.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      result.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return result;
}

// Lists services over server reflection (v1alpha), raw bytes in and out.
std::string ReflectionListServices(const std::shared_ptr<grpc::Channel>& ch) {
  grpc::GenericStub stub(ch);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  auto call = stub.PrepareCall(
      &context,
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  cq.Next(&tag, &ok);
  const std::string list_services("\x3a\x00", 2);  // list_services = "".
  grpc::Slice slice(list_services);
  grpc::ByteBuffer request(&slice, 1), response;
  call->Write(request, reinterpret_cast<void*>(2));
  cq.Next(&tag, &ok);
  call->Read(&response, reinterpret_cast<void*>(3));
  cq.Next(&tag, &ok);
  std::string text;
  std::vector<grpc::Slice> slices;
  if (ok && response.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      text.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  context.TryCancel();
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  return text;
}

TEST(ServerBinaryTest, ServesOverTcpAndStopsCleanly) {
  // An idle synchronous C++ client reads its socket only from gRPC's backup
  // poller (every 5 s by default), so it would notice the server's GOAWAY
  // late and stretch the graceful shutdown; poll often instead.
  setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "50", 1);
  testutil::TempDir dir;
  const std::string store = dir.path() + "/store";
  const std::string data(5 << 20, 'q');  // Several ByteStream chunks.
  const cas::Digest digest = cas::Digest::OfData(data);
  {
    ServerProcess server(
        {"--dir=" + store, "--max_size=1GiB", "--fsync=false"});
    ASSERT_TRUE(server.started());
    EXPECT_TRUE(absl::StrContains(server.log(), store));
    auto channel = grpc::CreateChannel(server.address(),
                                       grpc::InsecureChannelCredentials());

    grpc::GenericStub generic(channel);
    grpc::Status status;
    EXPECT_EQ(Call(&generic, "/grpc.health.v1.Health/Check", "", &status),
              std::string("\x08\x01", 2));  // SERVING.
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(absl::StrContains(
        ReflectionListServices(channel),
        "build.bazel.remote.execution.v2.ContentAddressableStorage"));

    auto caps = v2::Capabilities::NewStub(channel);
    grpc::ClientContext caps_context;
    v2::ServerCapabilities capabilities;
    ASSERT_TRUE(caps->GetCapabilities(&caps_context, {}, &capabilities).ok());
    EXPECT_EQ(capabilities.high_api_version().minor(), 3);

    auto bytestream = bs::ByteStream::NewStub(channel);
    grpc::ClientContext write_context;
    bs::WriteResponse written;
    auto writer = bytestream->Write(&write_context, &written);
    for (size_t off = 0; off < data.size(); off += 1 << 20) {
      bs::WriteRequest request;
      if (off == 0) {
        request.set_resource_name(
            cas::MakeWriteResourceName("ci", "u", digest));
      }
      request.set_write_offset(off);
      request.set_data(data.substr(off, 1 << 20));
      request.set_finish_write(off + (1 << 20) >= data.size());
      ASSERT_TRUE(writer->Write(request));
    }
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
    EXPECT_EQ(written.committed_size(), digest.size_bytes());

    auto ac = v2::ActionCache::NewStub(channel);
    grpc::ClientContext update_context;
    v2::UpdateActionResultRequest update;
    update.set_instance_name("ci");
    update.mutable_action_digest()->set_hash(
        cas::Digest::OfData("action").hash());
    update.mutable_action_digest()->set_size_bytes(6);
    auto* file = update.mutable_action_result()->add_output_files();
    file->set_path("big.bin");
    file->mutable_digest()->set_hash(digest.hash());
    file->mutable_digest()->set_size_bytes(digest.size_bytes());
    v2::ActionResult stored;
    ASSERT_TRUE(ac->UpdateActionResult(&update_context, update, &stored).ok());
    EXPECT_EQ(server.Terminate(), 0);
  }
  ServerProcess again({"--dir=" + store, "--max_size=1GiB"});
  ASSERT_TRUE(again.started());
  auto channel =
      grpc::CreateChannel(again.address(), grpc::InsecureChannelCredentials());
  auto bytestream = bs::ByteStream::NewStub(channel);
  // Read by hand, not with Client::Read: each message's size is checked.
  grpc::ClientContext read_context;
  bs::ReadRequest read;
  read.set_resource_name(cas::MakeReadResourceName("", digest));
  auto reader = bytestream->Read(&read_context, read);
  std::string got;
  bs::ReadResponse chunk;
  while (reader->Read(&chunk)) {
    EXPECT_LE(chunk.data().size(), 1u << 20);
    got += chunk.data();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(got == data, true);

  auto ac = v2::ActionCache::NewStub(channel);
  grpc::ClientContext get_context;
  v2::GetActionResultRequest get;
  get.set_instance_name("ci");
  get.mutable_action_digest()->set_hash(cas::Digest::OfData("action").hash());
  get.mutable_action_digest()->set_size_bytes(6);
  v2::ActionResult result;
  ASSERT_TRUE(ac->GetActionResult(&get_context, get, &result).ok());
  EXPECT_EQ(result.output_files(0).path(), "big.bin");
  EXPECT_EQ(again.Terminate(), 0);
}

TEST(ServerBinaryTest, ServesOnUnixSocket) {
  setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "50", 1);
  testutil::TempDir dir;
  const std::string socket = "unix://" + dir.path() + "/cairn.sock";
  ServerProcess server({"--listen=" + socket, "--memory"});
  ASSERT_EQ(server.address(), socket) << server.log();
  auto caps = v2::Capabilities::NewStub(
      grpc::CreateChannel(socket, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v2::ServerCapabilities capabilities;
  EXPECT_TRUE(caps->GetCapabilities(&context, {}, &capabilities).ok());
  EXPECT_EQ(server.Terminate(), 0);
}

TEST(ServerBinaryTest, BadFlagsFailFast) {
  ServerProcess server({"--max_size=lots"});
  EXPECT_EQ(server.address(), "");
  EXPECT_NE(server.Terminate(), 0);
}

TEST(ServerBinaryTest, NegativeIoQueueFailsFast) {
  ServerProcess server({"--io_queue=-1"});
  EXPECT_EQ(server.address(), "");
  EXPECT_NE(server.Terminate(), 0);
}

}  // namespace
}  // namespace cairn
