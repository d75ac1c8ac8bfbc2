// Fuzzes the Remote Asset API (asset/): each input's first byte picks
// FetchBlob, FetchDirectory, PushBlob or PushDirectory and the rest is that
// request's serialized proto, sent through an in-process cairn-server over
// a memory store holding a blob ("hello") and a Directory naming it, so
// pushes can succeed and fetches can hit. Invariants: nothing crashes
// (ASan/UBSan: timestamps and durations at their extremes included); every
// answer is OK or one of the codes the service documents; a push answered
// OK without an expiry is fetched back with the same digest.
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/client_context.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "build/bazel/remote/asset/v1/remote_asset.grpc.pb.h"
#include "cas/digest.h"
#include "cas/memory_blob_store.h"
#include "server/server.h"

namespace {

namespace ra = ::build::bazel::remote::asset::v1;
namespace v2 = ::build::bazel::remote::execution::v2;

struct Server {
  std::unique_ptr<cairn::cas::BlobStore> store;
  std::unique_ptr<cairn::server::CairnServer> server;
  std::unique_ptr<ra::Fetch::Stub> fetch;
  std::unique_ptr<ra::Push::Stub> push;
};

// Starts the server once; it lives until the process exits.
Server* TheServer() {
  static Server* server = [] {
    // Parsing arbitrary bytes logs each invalid UTF-8 string: keep quiet.
    google::protobuf::SetLogHandler(nullptr);
    auto* s = new Server;
    s->store = cairn::cas::NewMemoryBlobStore({int64_t{64} << 20});
    const std::string hello = "hello";
    const auto hello_digest = cairn::cas::Digest::OfData(hello);
    if (!s->store->Write(hello_digest, hello).ok()) abort();
    v2::Directory dir;
    auto* file = dir.add_files();
    file->set_name("hello.txt");
    file->mutable_digest()->set_hash(hello_digest.hash());
    file->mutable_digest()->set_size_bytes(hello_digest.size_bytes());
    const std::string dir_bytes = dir.SerializeAsString();
    if (!s->store->Write(cairn::cas::Digest::OfData(dir_bytes), dir_bytes)
             .ok()) {
      abort();
    }
    cairn::server::ServerOptions options;
    options.store = s->store.get();
    options.listen_address = "";
    options.io_threads = 2;
    auto started = cairn::server::CairnServer::Start(options);
    if (!started.ok()) abort();
    s->server = *std::move(started);
    auto channel = s->server->InProcessChannel();
    s->fetch = ra::Fetch::NewStub(channel);
    s->push = ra::Push::NewStub(channel);
    return s;
  }();
  return server;
}

// Aborts unless `status` is OK or a code the asset service documents.
void CheckCode(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return;
    default:
      abort();
  }
}

template <typename Request>
bool Parse(const uint8_t* data, size_t size, Request* request) {
  return request->ParseFromArray(data, static_cast<int>(size));
}

// Fetches what `push` recorded and checks it resolves to `digest`.
template <typename Push, typename FetchRequest, typename FetchResponse,
          typename Call>
void FetchBack(const Push& push, const v2::Digest& digest, Call call,
               const v2::Digest& (FetchResponse::*got)() const) {
  FetchRequest request;
  request.set_instance_name(push.instance_name());
  *request.mutable_uris() = push.uris();
  *request.mutable_qualifiers() = push.qualifiers();
  request.set_digest_function(push.digest_function());
  grpc::ClientContext context;
  FetchResponse response;
  grpc::Status status = call(&context, request, &response);
  if (!status.ok() || (response.*got)().hash() != digest.hash() ||
      (response.*got)().size_bytes() != digest.size_bytes()) {
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Server* s = TheServer();
  const uint8_t op = data[0] % 4;
  ++data;
  --size;
  grpc::ClientContext context;
  grpc::Status status;
  if (op == 0) {
    ra::FetchBlobRequest request;
    ra::FetchBlobResponse response;
    if (!Parse(data, size, &request)) return 0;
    status = s->fetch->FetchBlob(&context, request, &response);
  } else if (op == 1) {
    ra::FetchDirectoryRequest request;
    ra::FetchDirectoryResponse response;
    if (!Parse(data, size, &request)) return 0;
    status = s->fetch->FetchDirectory(&context, request, &response);
  } else if (op == 2) {
    ra::PushBlobRequest request;
    ra::PushBlobResponse response;
    if (!Parse(data, size, &request)) return 0;
    status = s->push->PushBlob(&context, request, &response);
    CheckCode(status);
    if (status.ok() && !request.has_expire_at()) {
      FetchBack<ra::PushBlobRequest, ra::FetchBlobRequest,
                ra::FetchBlobResponse>(
          request, request.blob_digest(),
          [s](grpc::ClientContext* c, const ra::FetchBlobRequest& r,
              ra::FetchBlobResponse* out) {
            return s->fetch->FetchBlob(c, r, out);
          },
          &ra::FetchBlobResponse::blob_digest);
    }
  } else {
    ra::PushDirectoryRequest request;
    ra::PushDirectoryResponse response;
    if (!Parse(data, size, &request)) return 0;
    status = s->push->PushDirectory(&context, request, &response);
    CheckCode(status);
    if (status.ok() && !request.has_expire_at()) {
      FetchBack<ra::PushDirectoryRequest, ra::FetchDirectoryRequest,
                ra::FetchDirectoryResponse>(
          request, request.root_directory_digest(),
          [s](grpc::ClientContext* c, const ra::FetchDirectoryRequest& r,
              ra::FetchDirectoryResponse* out) {
            return s->fetch->FetchDirectory(c, r, out);
          },
          &ra::FetchDirectoryResponse::root_directory_digest);
    }
  }
  CheckCode(status);
  return 0;
}
