// ByteStream Read/Write/QueryWriteStatus through an in-process server.
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/sync_stream.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cas/disk_blob_store.h"
#include "cas/resource_name.h"
#include "cas/zstd_codec.h"
#include "tests/testutil/service_fixture.h"
#include "tests/testutil/temp_dir.h"

namespace cairn::servertest {
namespace {

using ::grpc::ClientContext;
using ::grpc::StatusCode;

std::string Pattern(size_t size, int seed = 0) {
  std::string data(size, '\0');
  uint32_t x = 2463534242u + seed;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    data[i] = static_cast<char>(x);
  }
  return data;
}

std::string ReadName(const cas::Digest& d, const std::string& instance = "") {
  return cas::MakeReadResourceName(instance, d);
}

std::string WriteName(const cas::Digest& d, const std::string& uuid = "u1",
                      const std::string& instance = "") {
  return cas::MakeWriteResourceName(instance, uuid, d);
}

class ByteStreamTest : public ServiceTest {
 protected:
  // Sends `requests` on one Write stream, optionally without closing it
  // cleanly, and returns the status and committed size.
  grpc::Status WriteRequests(const std::vector<bs::WriteRequest>& requests,
                             int64_t* committed) {
    ClientContext context;
    bs::WriteResponse response;
    auto writer = bytestream_->Write(&context, &response);
    for (const auto& r : requests) {
      if (!writer->Write(r)) {
        break;
      }
    }
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    *committed = response.committed_size();
    return status;
  }

  static bs::WriteRequest Req(const std::string& name, int64_t offset,
                              const std::string& data, bool finish) {
    bs::WriteRequest r;
    r.set_resource_name(name);
    r.set_write_offset(offset);
    r.set_data(data);
    r.set_finish_write(finish);
    return r;
  }

  int64_t QueryCommitted(const std::string& name, bool* complete,
                         StatusCode* code) {
    ClientContext context;
    bs::QueryWriteStatusRequest request;
    request.set_resource_name(name);
    bs::QueryWriteStatusResponse response;
    *code = bytestream_->QueryWriteStatus(&context, request, &response)
                .error_code();
    *complete = response.complete();
    return response.committed_size();
  }
};

TEST_F(ByteStreamTest, WriteThenReadInChunks) {
  const std::string data = Pattern(3 * (1 << 20) + 17);
  const cas::Digest d = cas::Digest::OfData(data);
  bs::WriteResponse response;
  ASSERT_TRUE(
      WriteBlob(WriteName(d, "u1", "inst/a"), data, 700 * 1024, &response)
          .ok());
  EXPECT_EQ(response.committed_size(), d.size_bytes());
  std::string got;
  int chunks = 0;
  ASSERT_TRUE(ReadBlob(ReadName(d, "other"), 0, 0, &got, &chunks).ok());
  EXPECT_EQ(got, data);
  EXPECT_EQ(chunks, 4);  // 1 MiB chunks.
}

TEST_F(ByteStreamTest, WriteAcceptsMetadataSuffix) {
  const std::string data = "with metadata";
  const cas::Digest d = cas::Digest::OfData(data);
  ASSERT_TRUE(WriteBlob(WriteName(d) + "/some/meta", data).ok());
  EXPECT_TRUE(store_->Contains(d));
}

TEST_F(ByteStreamTest, ReadOffsetAndLimit) {
  const std::string data = Pattern(1000);
  const cas::Digest d = Put(data);
  struct Case {
    int64_t offset, limit;
    StatusCode code;
    std::string want;
  };
  const std::vector<Case> cases = {
      {0, 0, StatusCode::OK, data},
      {10, 0, StatusCode::OK, data.substr(10)},
      {10, 20, StatusCode::OK, data.substr(10, 20)},
      {990, 100, StatusCode::OK, data.substr(990)},  // Limit past the end.
      {1000, 0, StatusCode::OK, ""},
      {1001, 0, StatusCode::OUT_OF_RANGE, ""},
      {-1, 0, StatusCode::OUT_OF_RANGE, ""},
      {0, -1, StatusCode::INVALID_ARGUMENT, ""},
  };
  for (const Case& c : cases) {
    std::string got;
    grpc::Status status = ReadBlob(ReadName(d), c.offset, c.limit, &got);
    EXPECT_EQ(status.error_code(), c.code) << c.offset << "," << c.limit;
    EXPECT_EQ(got, c.want) << c.offset << "," << c.limit;
  }
}

TEST_F(ByteStreamTest, ReadErrors) {
  std::string got;
  EXPECT_EQ(ReadBlob(ReadName(cas::Digest::OfData("absent")), 0, 0, &got)
                .error_code(),
            StatusCode::NOT_FOUND);
  for (const char* bad :
       {"", "blobs/xyz/1", "blobs/abc", "uploads/u/blobs/abc/1",
        "../blobs/"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0"}) {
    EXPECT_EQ(ReadBlob(bad, 0, 0, &got).error_code(),
              StatusCode::INVALID_ARGUMENT)
        << bad;
  }
}

TEST_F(ByteStreamTest, EmptyBlob) {
  std::string got = "x";
  EXPECT_TRUE(ReadBlob(ReadName(cas::Digest::Empty()), 0, 0, &got).ok());
  EXPECT_EQ(got, "");
  bs::WriteResponse response;
  EXPECT_TRUE(
      WriteBlob(WriteName(cas::Digest::Empty()), "", 1, &response).ok());
  EXPECT_EQ(response.committed_size(), 0);
}

// Reads `resource` as raw messages, as they arrive on the wire, over
// `channel`. Each must be exactly protobuf's encoding of a ReadResponse
// whose data is a non-empty piece of the blob (the server encodes them by
// hand); the pieces, in order, go to `*data`.
grpc::Status ReadRawMessages(grpc::Channel* channel,
                             const std::string& resource, int64_t offset,
                             int64_t limit, std::string* data,
                             int* messages) {
  bs::ReadRequest request;
  request.set_resource_name(resource);
  request.set_read_offset(offset);
  request.set_read_limit(limit);
  std::string request_bytes = request.SerializeAsString();
  grpc::Slice request_slice(request_bytes);
  grpc::ByteBuffer raw_request(&request_slice, 1);
  ClientContext context;
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
          channel,
          grpc::internal::RpcMethod(
              "/google.bytestream.ByteStream/Read",
              grpc::internal::RpcMethod::SERVER_STREAMING),
          &context, raw_request));
  data->clear();
  *messages = 0;
  grpc::ByteBuffer raw;
  while (reader->Read(&raw)) {
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(raw.Dump(&slices).ok());
    std::string wire;
    for (const grpc::Slice& slice : slices) {
      wire.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
    bs::ReadResponse decoded;
    EXPECT_TRUE(decoded.ParseFromString(wire)) << "message " << *messages;
    EXPECT_FALSE(decoded.data().empty()) << "message " << *messages;
    bs::ReadResponse expected;
    expected.set_data(decoded.data());
    EXPECT_EQ(wire, expected.SerializeAsString()) << "message " << *messages;
    data->append(decoded.data());
    ++*messages;
  }
  return reader->Finish();
}

// Pins the wire form of Read's hand-encoded responses: blob sizes and
// chunks whose lengths need 1, 2 and 3 varint bytes, offsets, limits, the
// empty blob and compressed reads, in process and over TCP, with 1 MiB
// chunks and with a read buffer budget small enough for 16 KiB ones.
TEST_F(ByteStreamTest, ReadResponsesAreProtobufOnTheWire) {
  const std::vector<size_t> sizes = {0,     1,     127,   128,
                                     129,   16383, 16384, 16385,
                                     70000, (size_t{1} << 20) + 300};
  for (bool tcp : {false, true}) {
    for (int64_t budget : {int64_t{0}, int64_t{1}}) {
      server::ServerOptions options;
      options.read_buffer_bytes = budget;
      StartServer(options, tcp);
      std::shared_ptr<grpc::Channel> channel =
          tcp ? grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                    grpc::InsecureChannelCredentials())
              : server_->InProcessChannel();
      const std::string where = absl::StrCat("tcp ", tcp, " budget ", budget);
      for (size_t size : sizes) {
        const std::string data = Pattern(size, static_cast<int>(size));
        const cas::Digest d = Put(data);
        struct Case {
          int64_t offset, limit;
        };
        const int64_t n = static_cast<int64_t>(size);
        for (Case c : {Case{0, 0}, Case{n / 2, 0}, Case{n, 0},
                       Case{std::min<int64_t>(n, 3), 200}, Case{0, n + 5}}) {
          std::string got;
          int messages = 0;
          ASSERT_TRUE(ReadRawMessages(channel.get(), ReadName(d), c.offset,
                                      c.limit, &got, &messages)
                          .ok())
              << where << " size " << size;
          const size_t len = c.limit == 0 ? std::string::npos : c.limit;
          EXPECT_EQ(got, data.substr(c.offset, len))
              << where << " size " << size << " offset " << c.offset;
          if (got.empty()) {
            EXPECT_EQ(messages, 0) << where << " size " << size;
          }
        }
        std::string frames;
        int messages = 0;
        ASSERT_TRUE(ReadRawMessages(
                        channel.get(),
                        cas::MakeReadResourceName("", d, cas::Compressor::kZstd),
                        0, 0, &frames, &messages)
                        .ok())
            << where << " size " << size;
        std::string plain;
        cas::ZstdDecompressor decompressor;
        ASSERT_TRUE(decompressor.Decompress(frames, n, &plain).ok());
        EXPECT_EQ(plain, data) << where << " compressed, size " << size;
      }
    }
  }
}

// The typed client reads what the hand-encoded responses carry, in chunks
// of the configured size.
TEST_F(ByteStreamTest, TypedClientReadsHandEncodedChunks) {
  server::ServerOptions options;
  options.read_buffer_bytes = 1;  // 16 KiB chunks.
  StartServer(options, /*tcp=*/true);
  const std::string data = Pattern(5 * 16384 + 7);
  const cas::Digest d = Put(data);
  ClientContext context;
  // A message the client cannot parse leaves its sync reader waiting for a
  // server blocked on flow control: the deadline turns that into a failure.
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  bs::ReadRequest request;
  request.set_resource_name(ReadName(d));
  auto reader = bytestream_->Read(&context, request);
  bs::ReadResponse response;
  std::string got;
  int chunks = 0;
  while (reader->Read(&response)) {
    got.append(response.data());
    ++chunks;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(got, data);
  EXPECT_EQ(chunks, 6);
}

TEST_F(ByteStreamTest, WriteRejectsDigestMismatch) {
  const cas::Digest d = cas::Digest::OfData("expected");
  EXPECT_EQ(WriteBlob(WriteName(d), "unexpect").error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(store_->Contains(d));
  // Too many bytes.
  EXPECT_EQ(WriteBlob(WriteName(d), "expected!").error_code(),
            StatusCode::INVALID_ARGUMENT);
}

TEST_F(ByteStreamTest, WriteRejectsBadResourceNames) {
  const cas::Digest d = cas::Digest::OfData("x");
  for (const std::string& bad :
       {ReadName(d), std::string("uploads/u/blobs/abc/1"), std::string("")}) {
    EXPECT_EQ(WriteBlob(bad, "x").error_code(), StatusCode::INVALID_ARGUMENT)
        << bad;
  }
}

TEST_F(ByteStreamTest, WriteOffsetMustBeContinuous) {
  const std::string data = "0123456789";
  const cas::Digest d = cas::Digest::OfData(data);
  int64_t committed = 0;
  EXPECT_EQ(WriteRequests({Req(WriteName(d), 0, "01234", false),
                           Req("", 6, "6789", true)},
                          &committed)
                .error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      WriteRequests({Req(WriteName(d, "u2"), 3, "3456789", true)}, &committed)
          .error_code(),
      StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(store_->Contains(d));
}

TEST_F(ByteStreamTest, WriteCompletesEarlyWhenBlobExists) {
  const std::string data = Pattern(5000);
  const cas::Digest d = Put(data);
  int64_t committed = 0;
  EXPECT_TRUE(WriteRequests({Req(WriteName(d), 0, data.substr(0, 100), false)},
                            &committed)
                  .ok());
  EXPECT_EQ(committed, d.size_bytes());
}

TEST_F(ByteStreamTest, EarlyCompletionEndsAStreamingClientOverTcp) {
  StartServer(server::ServerOptions{}, /*tcp=*/true);
  const std::string data = Pattern(4 << 20, 21);
  const cas::Digest d = Put(data);
  bs::WriteResponse response;
  ASSERT_TRUE(WriteBlob(WriteName(d), data, 64 * 1024, &response).ok());
  EXPECT_EQ(response.committed_size(), d.size_bytes());
}

TEST_F(ByteStreamTest, ResumableUploadWithQueryWriteStatus) {
  const std::string data = Pattern(300000, 7);
  const cas::Digest d = cas::Digest::OfData(data);
  const std::string name = WriteName(d, "resume-me", "ci");
  bool complete = true;
  StatusCode code;
  QueryCommitted(name, &complete, &code);
  EXPECT_EQ(code, StatusCode::NOT_FOUND);

  int64_t committed = 0;
  ASSERT_TRUE(
      WriteRequests({Req(name, 0, data.substr(0, 100000), false),
                     Req("", 100000, data.substr(100000, 50000), false)},
                    &committed)
          .ok());
  EXPECT_EQ(committed, 150000);
  EXPECT_EQ(QueryCommitted(name, &complete, &code), 150000);
  EXPECT_EQ(code, StatusCode::OK);
  EXPECT_FALSE(complete);
  EXPECT_FALSE(store_->Contains(d));

  // Resuming at the wrong offset is refused; the upload survives it.
  EXPECT_EQ(WriteRequests({Req(name, 100, data.substr(100), true)}, &committed)
                .error_code(),
            StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(
      WriteRequests({Req(name, 150000, data.substr(150000), true)}, &committed)
          .ok());
  EXPECT_EQ(committed, d.size_bytes());
  EXPECT_TRUE(store_->Contains(d));
  EXPECT_EQ(QueryCommitted(name, &complete, &code), d.size_bytes());
  EXPECT_TRUE(complete);
}

TEST_F(ByteStreamTest, IdlePartialUploadIsDroppedAndItsSpaceReleased) {
  server::ServerOptions options;
  options.partial_upload_idle_timeout = absl::Milliseconds(20);
  StartServer(options);
  const std::string data = Pattern(100000, 9);
  const cas::Digest d = cas::Digest::OfData(data);
  const std::string name = WriteName(d, "idle");
  int64_t committed = 0;
  ASSERT_TRUE(
      WriteRequests({Req(name, 0, data.substr(0, 1000), false)}, &committed)
          .ok());
  bool complete;
  StatusCode code = StatusCode::OK;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (code == StatusCode::OK && absl::Now() < deadline) {
    QueryCommitted(name, &complete, &code);
    std::this_thread::yield();
  }
  EXPECT_EQ(code, StatusCode::NOT_FOUND);
  // The sweep forgets the upload under the registry's lock and destroys its
  // writer (which releases the reservation) just after, off the lock: a
  // query can see NOT_FOUND in between.
  while (store_->Stats().reserved_bytes != 0 && absl::Now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(store_->Stats().reserved_bytes, 0);
}

TEST_F(ByteStreamTest, RestartAtZeroDiscardsPartialUpload) {
  const std::string data = Pattern(1000, 3);
  const cas::Digest d = cas::Digest::OfData(data);
  const std::string name = WriteName(d, "again");
  int64_t committed = 0;
  ASSERT_TRUE(
      WriteRequests({Req(name, 0, data.substr(0, 400), false)}, &committed)
          .ok());
  ASSERT_TRUE(WriteRequests({Req(name, 0, data, true)}, &committed).ok());
  EXPECT_EQ(committed, 1000);
  EXPECT_TRUE(store_->Contains(d));
}

TEST_F(ByteStreamTest, QueryWriteStatusErrors) {
  bool complete;
  StatusCode code;
  QueryCommitted("not a name", &complete, &code);
  EXPECT_EQ(code, StatusCode::INVALID_ARGUMENT);
  QueryCommitted(WriteName(cas::Digest::OfData("never")), &complete, &code);
  EXPECT_EQ(code, StatusCode::NOT_FOUND);
}

TEST_F(ByteStreamTest, ReadOnlyRefusesWrites) {
  server::ServerOptions options;
  options.read_only = true;
  StartServer(options);
  const cas::Digest d = cas::Digest::OfData("ro");
  EXPECT_EQ(WriteBlob(WriteName(d), "ro").error_code(),
            StatusCode::PERMISSION_DENIED);
  const cas::Digest present = Put("readable");
  std::string got;
  EXPECT_TRUE(ReadBlob(ReadName(present), 0, 0, &got).ok());
  EXPECT_EQ(got, "readable");
}

TEST_F(ByteStreamTest, BlobLimitAndStoreFull) {
  ResetStore(1000);
  server::ServerOptions options;
  options.max_cas_blob_size_bytes = 500;
  StartServer(options);
  EXPECT_EQ(
      WriteBlob(WriteName(cas::Digest::OfData(Pattern(600))), Pattern(600))
          .error_code(),
      StatusCode::INVALID_ARGUMENT);
  StartServer(server::ServerOptions{});
  EXPECT_EQ(
      WriteBlob(WriteName(cas::Digest::OfData(Pattern(2000))), Pattern(2000))
          .error_code(),
      StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(ByteStreamTest, ConcurrentSameDigestUploads) {
  // Over TCP: uploads that start after another one stored the blob end at
  // once while the client still has data to send; gRPC's in-process
  // transport never fails such a pending client write, TCP (HTTP/2) does.
  StartServer(server::ServerOptions{}, /*tcp=*/true);
  const std::string data = Pattern(2 << 20, 11);
  const cas::Digest d = cas::Digest::OfData(data);
  std::vector<std::thread> threads;
  std::vector<grpc::StatusCode> codes(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      codes[i] =
          WriteBlob(WriteName(d, absl::StrCat("uuid-", i)), data, 256 * 1024)
              .error_code();
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(codes[i], StatusCode::OK) << i;
  }
  std::string got;
  ASSERT_TRUE(ReadBlob(ReadName(d), 0, 0, &got).ok());
  EXPECT_EQ(got, data);
}

// Full-speed uploads over TCP (so the server's pipelined Write has several
// chunks in flight) of sizes that are not a multiple of the chunk size, into
// the disk store, several at once: every byte must arrive in order. An
// earlier draft of the pipelined Write lost two chunks of a 13,357,700-byte
// upload sent in 1 MiB messages; the digest check then refuses the blob, so
// a lost, repeated or reordered chunk fails the upload here.
TEST_F(ByteStreamTest, ManyChunkUnalignedUploadsArriveIntact) {
  testutil::TempDir dir;
  server_.reset();
  cas::DiskBlobStoreOptions disk;
  disk.root = dir.path() + "/cas";
  disk.max_size_bytes = int64_t{1} << 30;
  auto opened = cas::NewDiskBlobStore(disk);
  ASSERT_TRUE(opened.ok()) << opened.status();
  store_ = *std::move(opened);
  StartServer(server::ServerOptions{}, /*tcp=*/true);

  struct Upload {
    size_t size;
    size_t chunk;
  };
  const std::vector<Upload> uploads = {
      {13'357'700, 1 << 20},           // The size that lost data.
      {9 * (1 << 20) + 1, 1 << 20},    // One byte into a last chunk.
      {5 * (1 << 20) - 1, 1 << 20},    // One byte short of aligned.
      {7'000'003, 65'537},             // Many small odd chunks.
      {11'111'111, 3 * (1 << 20) - 7}, // Chunks larger than the server's.
  };
  std::vector<std::string> data;
  std::vector<cas::Digest> digests;
  for (size_t i = 0; i < uploads.size(); ++i) {
    data.push_back(Pattern(uploads[i].size, 100 + static_cast<int>(i)));
    digests.push_back(cas::Digest::OfData(data.back()));
  }
  std::vector<grpc::Status> statuses(uploads.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < uploads.size(); ++i) {
    threads.emplace_back([&, i] {
      statuses[i] = WriteBlob(WriteName(digests[i], absl::StrCat("big-", i)),
                              data[i], uploads[i].chunk);
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  for (size_t i = 0; i < uploads.size(); ++i) {
    ASSERT_TRUE(statuses[i].ok())
        << i << ": " << statuses[i].error_message();
    std::string got;
    ASSERT_TRUE(ReadBlob(ReadName(digests[i]), 0, 0, &got).ok()) << i;
    EXPECT_EQ(got.size(), data[i].size()) << i;
    EXPECT_TRUE(got == data[i]) << i;
  }
  // The same again, one after another, on one connection.
  for (size_t i = 0; i < uploads.size(); ++i) {
    const std::string again = Pattern(uploads[i].size, 200 + static_cast<int>(i));
    const cas::Digest d = cas::Digest::OfData(again);
    grpc::Status s = WriteBlob(WriteName(d, absl::StrCat("seq-", i)), again,
                               uploads[i].chunk);
    ASSERT_TRUE(s.ok()) << i << ": " << s.error_message();
    std::string got;
    ASSERT_TRUE(ReadBlob(ReadName(d), 0, 0, &got).ok()) << i;
    EXPECT_TRUE(got == again) << i;
  }
}

TEST_F(ByteStreamTest, SameUploadNameTwiceAtOnceIsAborted) {
  const std::string data = Pattern(1000, 5);
  const cas::Digest d = cas::Digest::OfData(data);
  const std::string name = WriteName(d, "dup");
  ClientContext first_context;
  bs::WriteResponse first_response;
  auto first = bytestream_->Write(&first_context, &first_response);
  ASSERT_TRUE(first->Write(Req(name, 0, data.substr(0, 10), false)));
  // QueryWriteStatus sees the active upload once the first chunk landed.
  bool complete;
  StatusCode code = StatusCode::NOT_FOUND;
  for (int i = 0; i < 1000 && code != StatusCode::OK; ++i) {
    QueryCommitted(name, &complete, &code);
    if (code != StatusCode::OK) {
      std::this_thread::yield();
    }
  }
  ASSERT_EQ(code, StatusCode::OK);
  int64_t committed = 0;
  EXPECT_EQ(WriteRequests({Req(name, 0, data, true)}, &committed).error_code(),
            StatusCode::ABORTED);
  ASSERT_TRUE(first->Write(Req("", 10, data.substr(10), true)));
  first->WritesDone();
  EXPECT_TRUE(first->Finish().ok());
  EXPECT_EQ(first_response.committed_size(), 1000);
}

}  // namespace
}  // namespace cairn::servertest
