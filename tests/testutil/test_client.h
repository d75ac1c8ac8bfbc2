// A small blocking REAPI client for tests that drive a real server (see
// server_process.h), with a deadline on every call so no test can hang on the
// server, and helpers for blobs and store files.
//
// Thread safety: a Client is safe for concurrent calls (gRPC stubs are).
#ifndef CAIRN_TESTS_TESTUTIL_TEST_CLIENT_H_
#define CAIRN_TESTS_TESTUTIL_TEST_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cas/digest.h"
#include "cas/resource_name.h"
#include "google/bytestream/bytestream.grpc.pb.h"

namespace cairn::testutil {

namespace v2 = ::build::bazel::remote::execution::v2;
namespace bs = ::google::bytestream;

// Sends `data` on `writer` as WriteRequests of `chunk` bytes (the first one
// names `resource`, the last one finishes the write; an empty blob is one
// request), then closes the stream; returns the call's status.
inline grpc::Status WriteInChunks(grpc::ClientWriter<bs::WriteRequest>* writer,
                                  const std::string& resource,
                                  const std::string& data, size_t chunk) {
  size_t offset = 0;
  do {  // Bounded: offset advances by `chunk` each pass.
    bs::WriteRequest request;
    if (offset == 0) {
      request.set_resource_name(resource);
    }
    size_t n = std::min(chunk, data.size() - offset);
    request.set_write_offset(static_cast<int64_t>(offset));
    request.set_data(data.substr(offset, n));
    offset += n;
    request.set_finish_write(offset == data.size());
    if (!writer->Write(request)) {
      break;
    }
  } while (offset < data.size());
  writer->WritesDone();
  return writer->Finish();
}

// Returns deterministic pseudo-random bytes for (seed, size).
inline std::string TestBlob(uint64_t seed, size_t size) {
  std::string data(size, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    data[i] = static_cast<char>(x);
  }
  return data;
}

// A blocking client over one channel; every call has a deadline.
class Client {
 public:
  // `ssl_target` overrides the name the server certificate must match.
  explicit Client(const std::string& address,
                  std::shared_ptr<grpc::ChannelCredentials> credentials =
                      grpc::InsecureChannelCredentials(),
                  const std::string& ssl_target = "") {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    if (!ssl_target.empty()) {
      args.SetSslTargetNameOverride(ssl_target);
    }
    channel_ = grpc::CreateCustomChannel(address, credentials, args);
    cas_ = v2::ContentAddressableStorage::NewStub(channel_);
    ac_ = v2::ActionCache::NewStub(channel_);
    bytestream_ = bs::ByteStream::NewStub(channel_);
  }

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  bs::ByteStream::Stub* bytestream() { return bytestream_.get(); }
  v2::ContentAddressableStorage::Stub* cas() { return cas_.get(); }
  v2::ActionCache::Stub* ac() { return ac_.get(); }

  // Sets the deadline (and the bearer token, if any) of `context`.
  void Prepare(grpc::ClientContext* context, int seconds = 60) const {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(seconds));
    if (!token_.empty()) {
      context->AddMetadata("authorization", "Bearer " + token_);
    }
  }
  void set_token(std::string token) { token_ = std::move(token); }

  // Uploads `data` over ByteStream in `chunk`-byte messages.
  grpc::Status Write(const std::string& data, size_t chunk = 256 << 10,
                     const std::string& instance = "") {
    cas::Digest digest = cas::Digest::OfData(data);
    grpc::ClientContext context;
    Prepare(&context);
    bs::WriteResponse response;
    return WriteInChunks(
        bytestream_->Write(&context, &response).get(),
        cas::MakeWriteResourceName(
            instance, absl::StrCat("u-", ++uuid_counter_), digest),
        data, chunk);
  }

  // Reads `digest` over ByteStream into `*out`.
  grpc::Status Read(const cas::Digest& digest, std::string* out,
                    const std::string& instance = "") {
    out->clear();
    grpc::ClientContext context;
    Prepare(&context);
    bs::ReadRequest request;
    request.set_resource_name(cas::MakeReadResourceName(instance, digest));
    auto reader = bytestream_->Read(&context, request);
    bs::ReadResponse response;
    while (reader->Read(&response)) {  // Bounded by the server's blob size.
      out->append(response.data());
    }
    return reader->Finish();
  }

  // Returns the digests of `digests` the server reports missing; an error
  // status leaves `*missing` empty.
  grpc::Status FindMissing(const std::vector<cas::Digest>& digests,
                           std::vector<cas::Digest>* missing) {
    missing->clear();
    v2::FindMissingBlobsRequest request;
    for (const cas::Digest& d : digests) {
      *request.add_blob_digests() = ToProto(d);
    }
    v2::FindMissingBlobsResponse response;
    grpc::ClientContext context;
    Prepare(&context);
    grpc::Status status = cas_->FindMissingBlobs(&context, request, &response);
    for (const v2::Digest& d : response.missing_blob_digests()) {
      missing->push_back(*cas::Digest::Create(d.hash(), d.size_bytes()));
    }
    return status;
  }

  // BatchUpdateBlobs of `blobs`; per-blob codes go to `*codes`.
  grpc::Status BatchUpdate(const std::vector<std::string>& blobs,
                           std::vector<int>* codes) {
    v2::BatchUpdateBlobsRequest request;
    for (const std::string& b : blobs) {
      auto* r = request.add_requests();
      *r->mutable_digest() = ToProto(cas::Digest::OfData(b));
      r->set_data(b);
    }
    v2::BatchUpdateBlobsResponse response;
    grpc::ClientContext context;
    Prepare(&context);
    grpc::Status status = cas_->BatchUpdateBlobs(&context, request, &response);
    codes->clear();
    for (const auto& r : response.responses()) {
      codes->push_back(r.status().code());
    }
    return status;
  }

  static v2::Digest ToProto(const cas::Digest& d) {
    v2::Digest out;
    out.set_hash(d.hash());
    out.set_size_bytes(d.size_bytes());
    return out;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v2::ContentAddressableStorage::Stub> cas_;
  std::unique_ptr<v2::ActionCache::Stub> ac_;
  std::unique_ptr<bs::ByteStream::Stub> bytestream_;
  std::string token_;
  std::atomic<int64_t> uuid_counter_{0};
};

// Returns the regular files under `dir` (recursively; empty if absent).
inline std::vector<std::filesystem::path> FilesUnder(const std::string& dir) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file(ec)) {
      files.push_back(it->path());
    }
  }
  return files;
}

// Returns the contents of `path` ("" if unreadable).
inline std::string ReadWholeFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace cairn::testutil

#endif  // CAIRN_TESTS_TESTUTIL_TEST_CLIENT_H_
