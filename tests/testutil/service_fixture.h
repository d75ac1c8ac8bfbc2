// ServiceTest: a CairnServer over an in-memory store reached through an
// in-process channel, with stubs for every service and small helpers. Each
// test gets a fresh server; StartServer() restarts it with other options.
//
// Thread safety: helpers may be called from several test threads at once
// (stubs are thread-safe); StartServer() may not.
#ifndef CAIRN_TESTS_TESTUTIL_SERVICE_FIXTURE_H_
#define CAIRN_TESTS_TESTUTIL_SERVICE_FIXTURE_H_

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cas/blob_store.h"
#include "cas/digest.h"
#include "cas/memory_blob_store.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "server/server.h"
#include "tests/testutil/test_client.h"

namespace cairn::servertest {

namespace v2 = ::build::bazel::remote::execution::v2;
namespace bs = ::google::bytestream;

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ResetStore(int64_t{1} << 30);
    StartServer(server::ServerOptions{});
  }

  // Replaces the store (stops the server first; call StartServer after).
  void ResetStore(int64_t max_size) {
    server_.reset();
    store_ = cas::NewMemoryBlobStore({max_size});
  }

  // (Re)starts the server over store_ with `options` (store and listen
  // address are filled in) and makes new stubs.
  // With `tcp` the stubs connect over 127.0.0.1 instead of in-process.
  void StartServer(server::ServerOptions options, bool tcp = false) {
    server_.reset();
    options.store = store_.get();
    options.listen_address = tcp ? "127.0.0.1:0" : "";
    auto started = server::CairnServer::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    auto channel = tcp ? grpc::CreateChannel(
                             "127.0.0.1:" + std::to_string(server_->port()),
                             grpc::InsecureChannelCredentials())
                       : server_->InProcessChannel();
    cas_ = v2::ContentAddressableStorage::NewStub(channel);
    ac_ = v2::ActionCache::NewStub(channel);
    caps_ = v2::Capabilities::NewStub(channel);
    bytestream_ = bs::ByteStream::NewStub(channel);
  }

  static v2::Digest ProtoDigest(const cas::Digest& d) {
    v2::Digest out;
    out.set_hash(d.hash());
    out.set_size_bytes(d.size_bytes());
    return out;
  }
  static v2::Digest ProtoDigestOf(const std::string& data) {
    return ProtoDigest(cas::Digest::OfData(data));
  }

  // Stores `data` directly in the store and returns its digest.
  cas::Digest Put(const std::string& data) {
    cas::Digest d = cas::Digest::OfData(data);
    EXPECT_TRUE(store_->Write(d, data).ok());
    return d;
  }

  // Uploads `data` in one ByteStream Write of `chunk`-byte messages.
  grpc::Status WriteBlob(const std::string& resource, const std::string& data,
                         size_t chunk = size_t{1} << 20,
                         bs::WriteResponse* response = nullptr) {
    grpc::ClientContext context;
    bs::WriteResponse local;
    return testutil::WriteInChunks(
        bytestream_->Write(&context, response ? response : &local).get(),
        resource, data, chunk);
  }

  // Reads a resource; returns the status and fills `data` and `chunks`.
  grpc::Status ReadBlob(const std::string& resource, int64_t offset,
                        int64_t limit, std::string* data,
                        int* chunks = nullptr) {
    grpc::ClientContext context;
    bs::ReadRequest request;
    request.set_resource_name(resource);
    request.set_read_offset(offset);
    request.set_read_limit(limit);
    auto reader = bytestream_->Read(&context, request);
    bs::ReadResponse response;
    data->clear();
    int n = 0;
    while (reader->Read(&response)) {
      data->append(response.data());
      ++n;
    }
    if (chunks != nullptr) {
      *chunks = n;
    }
    return reader->Finish();
  }

  std::unique_ptr<cas::BlobStore> store_;
  std::unique_ptr<server::CairnServer> server_;
  std::unique_ptr<v2::ContentAddressableStorage::Stub> cas_;
  std::unique_ptr<v2::ActionCache::Stub> ac_;
  std::unique_ptr<v2::Capabilities::Stub> caps_;
  std::unique_ptr<bs::ByteStream::Stub> bytestream_;
};

}  // namespace cairn::servertest

#endif  // CAIRN_TESTS_TESTUTIL_SERVICE_FIXTURE_H_
