// zstd compressed-blobs: the codec, ByteStream compressed Read/Write and
// BatchUpdateBlobs with compressor ZSTD, through an in-process server.
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>
#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_getFrameHeader, to check a window.
#include <zstd.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "cas/disk_blob_store.h"
#include "cas/resource_name.h"
#include "cas/zstd_codec.h"
#include "tests/testutil/service_fixture.h"
#include "tests/testutil/temp_dir.h"

namespace cairn::servertest {
namespace {

using ::grpc::ClientContext;
using ::grpc::StatusCode;

std::string Text(size_t size) {
  std::string out;
  for (size_t i = 0; out.size() < size; ++i) {
    out += "line " + std::to_string(i * 7919 % 1000) + " of some build log\n";
  }
  out.resize(size);
  return out;
}

std::string Compress(const std::string& data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  out.resize(
      ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3));
  return out;
}

std::string Decompress(const std::string& frame, size_t size) {
  std::string out(size, '\0');
  size_t n =
      ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) {
    return "<error>";
  }
  out.resize(n);
  return out;
}

TEST(ZstdCodecTest, StreamsRoundTrip) {
  const std::string data = Text(3 << 20);
  cas::ZstdCompressor compressor;
  std::string frame;
  for (size_t off = 0; off < data.size(); off += 1 << 20) {
    ASSERT_TRUE(compressor
                    .Compress(absl::string_view(data).substr(off, 1 << 20),
                              off + (1 << 20) >= data.size(), &frame)
                    .ok());
  }
  EXPECT_LT(frame.size(), data.size() / 4);
  EXPECT_EQ(Decompress(frame, data.size()), data);
  cas::ZstdDecompressor decompressor;
  std::string plain;
  for (size_t off = 0; off < frame.size(); off += 1000) {
    absl::Status status = decompressor.Decompress(
        absl::string_view(frame).substr(off, 1000), data.size(), &plain);
    ASSERT_TRUE(status.ok()) << status << " at " << off;
  }
  EXPECT_TRUE(decompressor.AtFrameEnd());
  EXPECT_EQ(plain, data);
}

// CompressedSize() reuses its context and scratch buffer across inputs of
// any size and order and gives what a fresh one-shot level-1 compression
// gives; it drops a frame Compress() left open, and Compress() then starts
// a new frame.
TEST(ZstdCodecTest, CompressedSizeMatchesAFreshOneShotFrame) {
  std::mt19937 gen(11);
  auto random = [&gen](size_t size) {
    std::string out(size, '\0');
    for (char& c : out) {
      c = static_cast<char>(gen());
    }
    return out;
  };
  auto one_shot = [](const std::string& data) {
    std::string out(ZSTD_compressBound(data.size()), '\0');
    return ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 1);
  };
  cas::ZstdCompressor compressor(1);
  const std::vector<std::string> inputs = {
      Text(20 << 10), random(300 << 10), Text(100),  std::string(),
      random(1000),   Text(2 << 20),     random(5), random(600 << 10)};
  for (size_t i = 0; i < inputs.size(); ++i) {
    SCOPED_TRACE(i);
    absl::StatusOr<size_t> size = compressor.CompressedSize(inputs[i]);
    ASSERT_TRUE(size.ok()) << size.status();
    EXPECT_EQ(*size, one_shot(inputs[i]));
  }
  std::string frame;
  ASSERT_TRUE(compressor.Compress(Text(50000), /*last=*/false, &frame).ok());
  absl::StatusOr<size_t> size = compressor.CompressedSize(inputs[0]);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, one_shot(inputs[0]));
  frame.clear();
  const std::string next = Text(70000);
  ASSERT_TRUE(compressor.Compress(next, /*last=*/true, &frame).ok());
  EXPECT_EQ(Decompress(frame, next.size()), next);
}

TEST(ZstdCodecTest, RefusesBombsAndGarbage) {
  const std::string zeros(64 << 20, '\0');
  const std::string bomb = Compress(zeros);
  EXPECT_LT(bomb.size(), 64u << 10);
  EXPECT_EQ(cas::ZstdDecompressAll(bomb, 1 << 20).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cas::ZstdDecompressAll("not zstd at all", 100).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::string frame = Compress("hello");
  EXPECT_EQ(cas::ZstdDecompressAll(frame.substr(0, frame.size() - 2), 100)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*cas::ZstdDecompressAll(frame, 5), "hello");
}

// Returns `data` as one zstd frame with a window of 2^window_log bytes and no
// content size in the header (streamed, as a client that does not know the
// size ahead compresses), so the decoder must allocate the whole window.
std::string CompressWithWindow(const std::string& data, int window_log) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window_log);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
  std::string out(ZSTD_compressBound(data.size()) + 1024, '\0');
  ZSTD_outBuffer o = {out.data(), out.size(), 0};
  ZSTD_inBuffer in = {data.data(), data.size(), 0};
  ZSTD_compressStream2(cctx, &o, &in, ZSTD_e_continue);
  ZSTD_inBuffer none = {nullptr, 0, 0};
  while (ZSTD_compressStream2(cctx, &o, &none, ZSTD_e_end) != 0) {
  }
  ZSTD_freeCCtx(cctx);
  out.resize(o.pos);
  return out;
}

// Returns the window size a frame's header asks for (0 when unreadable).
uint64_t WindowOf(const std::string& frame) {
  ZSTD_frameHeader header;
  if (ZSTD_getFrameHeader(&header, frame.data(), frame.size()) != 0) {
    return 0;
  }
  return header.windowSize;
}

TEST(ZstdCodecTest, RefusesFramesAskingForAHugeWindow) {
  const std::string data = Text(100000);
  // A 128 MiB window for 100 kB of data: zstd would allocate all of it.
  const std::string huge = CompressWithWindow(data, 27);
  ASSERT_EQ(WindowOf(huge), uint64_t{1} << 27);
  absl::StatusOr<std::string> got = cas::ZstdDecompressAll(huge, data.size());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(got.status().message().find("window"), absl::string_view::npos)
      << got.status();
  // 8 MiB (what level 19 uses) is still accepted.
  const std::string ok = CompressWithWindow(data, cas::kMaxZstdWindowLog);
  ASSERT_EQ(WindowOf(ok), uint64_t{1} << cas::kMaxZstdWindowLog);
  got = cas::ZstdDecompressAll(ok, data.size());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, data);
}

// Decompresses `data` in pieces of `piece` bytes; the status of the first
// failing call, or INVALID_ARGUMENT when the data ends inside a frame.
absl::StatusOr<std::string> DecompressInPieces(absl::string_view data,
                                               size_t piece) {
  cas::ZstdDecompressor decompressor;
  std::string out;
  for (size_t off = 0; off < data.size(); off += piece) {
    absl::Status status =
        decompressor.Decompress(data.substr(off, piece), 1 << 20, &out);
    if (!status.ok()) {
      return status;
    }
  }
  if (!decompressor.AtFrameEnd()) {
    return absl::InvalidArgumentError("ends inside a frame");
  }
  return out;
}

// Found by zstd_fuzz: a frame with the pre-1.0 magic number 0xFD2FB527 was
// taken whole as an empty frame but refused in 3-byte pieces. Only RFC 8878
// frames are accepted now, however the input is split.
TEST(ZstdCodecTest, RefusesLegacyFramesWholeAndInPieces) {
  const std::string legacy("\x27\xb5\x2f\xfd\x20\x2f\xfd\x20\x01", 9);
  for (size_t piece : {size_t{1}, size_t{3}, size_t{9}}) {
    absl::StatusOr<std::string> got = DecompressInPieces(legacy, piece);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument)
        << "piece " << piece;
    EXPECT_NE(got.status().message().find("not a zstd frame"),
              absl::string_view::npos)
        << got.status();
  }
  EXPECT_EQ(cas::ZstdDecompressAll(legacy, 100).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Two frames and a skippable frame between them decode the same whole and
// in pieces of every size from 1 byte, magic numbers split across calls.
TEST(ZstdCodecTest, ConcatenatedFramesDecodeTheSameInAnyPieces) {
  const std::string skippable("\x50\x2a\x4d\x18\x03\x00\x00\x00" "abc", 11);
  const std::string data =
      Compress("first frame ") + skippable + Compress(Text(5000));
  const std::string want = "first frame " + Text(5000);
  ASSERT_EQ(*cas::ZstdDecompressAll(data, 1 << 20), want);
  for (size_t piece = 1; piece <= 17; ++piece) {
    absl::StatusOr<std::string> got = DecompressInPieces(data, piece);
    ASSERT_TRUE(got.ok()) << got.status() << " piece " << piece;
    EXPECT_EQ(*got, want) << "piece " << piece;
  }
  // A partial magic number at the end is inside a frame, not at its end.
  EXPECT_FALSE(DecompressInPieces(data + "\x28\xb5", 5).ok());
}

class ZstdServiceTest : public ServiceTest {
 protected:
  // BatchReadBlobs of `blobs`, accepting zstd when `accept_zstd`; the call's
  // own status goes to `status`.
  v2::BatchReadBlobsResponse BatchRead(const std::vector<std::string>& blobs,
                                       bool accept_zstd,
                                       grpc::Status* status) {
    ClientContext context;
    v2::BatchReadBlobsRequest request;
    for (const std::string& blob : blobs) {
      *request.add_digests() = ProtoDigestOf(blob);
    }
    if (accept_zstd) {
      request.add_acceptable_compressors(v2::Compressor::ZSTD);
    }
    v2::BatchReadBlobsResponse response;
    *status = cas_->BatchReadBlobs(&context, request, &response);
    return response;
  }
};

// Decompression bombs through both upload paths: 256 MiB of zeros compress
// to ~8 kB; uploaded under a 1 MiB digest the server stops decompressing at
// 1 MiB and refuses the blob; a huge-window frame is refused before its
// window is allocated. The server keeps serving afterwards.
TEST_F(ZstdServiceTest, DecompressionBombsAreRefusedOnBothUploadPaths) {
  const std::string zeros(256 << 20, '\0');
  const std::string bomb = CompressWithWindow(zeros, 20);
  ASSERT_LT(bomb.size(), 64u << 10);
  const std::string claimed(1 << 20, '\0');
  const cas::Digest d = cas::Digest::OfData(claimed);
  const std::string window_bomb =
      CompressWithWindow(std::string(1000, 'x'), 27);
  EXPECT_EQ(WriteBlob(cas::MakeWriteResourceName("", "bomb", d,
                                                 cas::Compressor::kZstd),
                      bomb, 4096)
                .error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(WriteBlob(cas::MakeWriteResourceName("", "window", d,
                                                 cas::Compressor::kZstd),
                      window_bomb, 4096)
                .error_code(),
            StatusCode::INVALID_ARGUMENT);
  ClientContext context;
  v2::BatchUpdateBlobsRequest request;
  for (const std::string* frame : {&bomb, &window_bomb}) {
    auto* item = request.add_requests();
    *item->mutable_digest() = ProtoDigest(d);
    item->set_data(*frame);
    item->set_compressor(v2::Compressor::ZSTD);
  }
  v2::BatchUpdateBlobsResponse response;
  ASSERT_TRUE(cas_->BatchUpdateBlobs(&context, request, &response).ok());
  ASSERT_EQ(response.responses_size(), 2);
  EXPECT_EQ(response.responses(0).status().code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(response.responses(1).status().code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(store_->Contains(d));
  // Still serving: the real blob, compressed sanely, goes in.
  EXPECT_TRUE(WriteBlob(cas::MakeWriteResourceName("", "fine", d,
                                                   cas::Compressor::kZstd),
                        Compress(claimed), 4096)
                  .ok());
  EXPECT_TRUE(store_->Contains(d));
}

TEST_F(ZstdServiceTest, CapabilitiesAdvertiseZstd) {
  ClientContext context;
  v2::ServerCapabilities caps;
  ASSERT_TRUE(
      caps_->GetCapabilities(&context, v2::GetCapabilitiesRequest(), &caps)
          .ok());
  const auto& c = caps.cache_capabilities();
  EXPECT_NE(std::find(c.supported_compressors().begin(),
                      c.supported_compressors().end(), v2::Compressor::ZSTD),
            c.supported_compressors().end());
  EXPECT_NE(std::find(c.supported_batch_update_compressors().begin(),
                      c.supported_batch_update_compressors().end(),
                      v2::Compressor::ZSTD),
            c.supported_batch_update_compressors().end());
}

TEST_F(ZstdServiceTest, CompressedWriteThenReadBothForms) {
  const std::string data = Text((2 << 20) + 333);
  const cas::Digest d = cas::Digest::OfData(data);
  const std::string frame = Compress(data);
  bs::WriteResponse response;
  ASSERT_TRUE(WriteBlob(cas::MakeWriteResourceName("ci", "z1", d,
                                                   cas::Compressor::kZstd),
                        frame, 4096, &response)
                  .ok());
  EXPECT_EQ(response.committed_size(), static_cast<int64_t>(frame.size()));
  std::string got;
  ASSERT_TRUE(ReadBlob(cas::MakeReadResourceName("", d), 0, 0, &got).ok());
  EXPECT_EQ(got, data);
  ASSERT_TRUE(ReadBlob(cas::MakeReadResourceName("", d, cas::Compressor::kZstd),
                       0, 0, &got)
                  .ok());
  EXPECT_LT(got.size(), data.size());
  EXPECT_EQ(Decompress(got, data.size()), data);
  ASSERT_TRUE(ReadBlob(cas::MakeReadResourceName("", d, cas::Compressor::kZstd),
                       1000, 0, &got)
                  .ok());
  EXPECT_EQ(Decompress(got, data.size()), data.substr(1000));
  EXPECT_EQ(ReadBlob(cas::MakeReadResourceName("", d, cas::Compressor::kZstd),
                     0, 10, &got)
                .error_code(),
            StatusCode::INVALID_ARGUMENT);
  // Already stored: a compressed upload ends at once with -1.
  ASSERT_TRUE(
      WriteBlob(cas::MakeWriteResourceName("", "z2", d, cas::Compressor::kZstd),
                frame, 4096, &response)
          .ok());
  EXPECT_EQ(response.committed_size(), -1);
}

TEST_F(ZstdServiceTest, CompressedEmptyBlobIsAValidFrame) {
  std::string got;
  ASSERT_TRUE(ReadBlob(cas::MakeReadResourceName("", cas::Digest::Empty(),
                                                 cas::Compressor::kZstd),
                       0, 0, &got)
                  .ok());
  EXPECT_FALSE(got.empty());
  EXPECT_EQ(Decompress(got, 0), "");
}

TEST_F(ZstdServiceTest, CompressedWriteErrors) {
  const std::string data = Text(10000);
  const cas::Digest d = cas::Digest::OfData(data);
  const auto name = [&](const std::string& uuid) {
    return cas::MakeWriteResourceName("", uuid, d, cas::Compressor::kZstd);
  };
  // Wrong content.
  EXPECT_EQ(WriteBlob(name("a"), Compress(Text(9999) + "!")).error_code(),
            StatusCode::INVALID_ARGUMENT);
  // Truncated frame.
  const std::string frame = Compress(data);
  EXPECT_EQ(
      WriteBlob(name("b"), frame.substr(0, frame.size() - 4)).error_code(),
      StatusCode::INVALID_ARGUMENT);
  // Expands past the digest size.
  EXPECT_EQ(WriteBlob(name("c"), Compress(data + data)).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(store_->Contains(d));
}

TEST_F(ZstdServiceTest, BatchUpdateWithZstd) {
  const std::string data = Text(50000);
  ClientContext context;
  v2::BatchUpdateBlobsRequest request;
  auto* good = request.add_requests();
  *good->mutable_digest() = ProtoDigestOf(data);
  good->set_data(Compress(data));
  good->set_compressor(v2::Compressor::ZSTD);
  auto* bad = request.add_requests();
  *bad->mutable_digest() = ProtoDigestOf("other");
  bad->set_data(Compress("not other"));
  bad->set_compressor(v2::Compressor::ZSTD);
  auto* deflate = request.add_requests();
  *deflate->mutable_digest() = ProtoDigestOf("d");
  deflate->set_data("d");
  deflate->set_compressor(v2::Compressor::DEFLATE);
  v2::BatchUpdateBlobsResponse response;
  ASSERT_TRUE(cas_->BatchUpdateBlobs(&context, request, &response).ok());
  ASSERT_EQ(response.responses_size(), 3);
  EXPECT_EQ(response.responses(0).status().code(), 0);
  EXPECT_EQ(response.responses(1).status().code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(response.responses(2).status().code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(*store_->Read(cas::Digest::OfData(data)), data);
}

TEST_F(ZstdServiceTest, BatchReadCompressesWhenAcceptableAndSmaller) {
  const std::string text = Text(50000);
  std::string noise(4096, '\0');
  std::mt19937 gen(7);
  for (char& c : noise) {
    c = static_cast<char>(gen());
  }
  for (const std::string& blob : {text, noise, std::string("tiny")}) {
    ASSERT_TRUE(store_->Write(cas::Digest::OfData(blob), blob).ok());
  }
  for (bool accept : {true, false}) {
    grpc::Status status;
    const v2::BatchReadBlobsResponse response =
        BatchRead({text, noise, "tiny"}, accept, &status);
    ASSERT_TRUE(status.ok());
    ASSERT_EQ(response.responses_size(), 3);
    const auto& t = response.responses(0);
    EXPECT_EQ(t.compressor(),
              accept ? v2::Compressor::ZSTD : v2::Compressor::IDENTITY);
    EXPECT_EQ(accept ? Decompress(t.data(), text.size()) : t.data(), text);
    if (accept) {
      EXPECT_LT(t.data().size(), text.size() / 4);
    }
    // Incompressible and tiny blobs go as they are.
    EXPECT_EQ(response.responses(1).compressor(), v2::Compressor::IDENTITY);
    EXPECT_EQ(response.responses(1).data(), noise);
    EXPECT_EQ(response.responses(2).compressor(), v2::Compressor::IDENTITY);
    EXPECT_EQ(response.responses(2).data(), "tiny");
  }
}

// The services over a disk store that keeps compressed uploads compressed:
// a compressed read answers the very frames the client uploaded (the
// server compresses at another level, so recompressed bytes would differ),
// a plain read the blob.
class ZstdAtRestServiceTest : public ZstdServiceTest {
 protected:
  void SetUp() override {
    server_.reset();
    cas::DiskBlobStoreOptions options;
    options.root = dir_.path() + "/store";
    options.max_size_bytes = int64_t{1} << 30;
    options.fsync = false;
    auto store = cas::NewDiskBlobStore(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    StartServer(server::ServerOptions{});
  }
  void TearDown() override {  // Before dir_ goes.
    server_.reset();
    store_.reset();
  }
  testutil::TempDir dir_;
};

TEST_F(ZstdAtRestServiceTest, ByteStreamServesTheUploadedFrames) {
  const std::string data = Text((1 << 20) + 777);
  const cas::Digest d = cas::Digest::OfData(data);
  const std::string frame = Compress(data);  // Level 3; the server's is 1.
  ASSERT_TRUE(WriteBlob(cas::MakeWriteResourceName("", "u1", d,
                                                   cas::Compressor::kZstd),
                        frame, 4096)
                  .ok());
  std::string got;
  ASSERT_TRUE(ReadBlob(cas::MakeReadResourceName("", d, cas::Compressor::kZstd),
                       0, 0, &got)
                  .ok());
  EXPECT_EQ(got, frame);
  ASSERT_TRUE(ReadBlob(cas::MakeReadResourceName("", d), 0, 0, &got).ok());
  EXPECT_EQ(got, data);
  ASSERT_TRUE(ReadBlob(cas::MakeReadResourceName("", d), 5000, 100, &got).ok());
  EXPECT_EQ(got, data.substr(5000, 100));
  // From an offset: the remaining bytes, compressed by the server.
  ASSERT_TRUE(ReadBlob(cas::MakeReadResourceName("", d, cas::Compressor::kZstd),
                       1000, 0, &got)
                  .ok());
  EXPECT_EQ(Decompress(got, data.size()), data.substr(1000));
  // A blob uploaded plain is compressed on the way out, as before.
  const std::string plain = Text(30000) + "plain";
  ASSERT_TRUE(store_->Write(cas::Digest::OfData(plain), plain).ok());
  ASSERT_TRUE(ReadBlob(cas::MakeReadResourceName("", cas::Digest::OfData(plain),
                                                 cas::Compressor::kZstd),
                       0, 0, &got)
                  .ok());
  EXPECT_EQ(Decompress(got, plain.size()), plain);
}

TEST_F(ZstdAtRestServiceTest, BatchReadServesTheUploadedFrames) {
  const std::string data = Text(60000);
  const std::string frame = Compress(data);
  ClientContext update_context;
  v2::BatchUpdateBlobsRequest update;
  auto* item = update.add_requests();
  *item->mutable_digest() = ProtoDigestOf(data);
  item->set_data(frame);
  item->set_compressor(v2::Compressor::ZSTD);
  v2::BatchUpdateBlobsResponse updated;
  ASSERT_TRUE(cas_->BatchUpdateBlobs(&update_context, update, &updated).ok());
  ASSERT_EQ(updated.responses(0).status().code(), 0);
  for (bool accept : {true, false}) {
    grpc::Status status;
    const v2::BatchReadBlobsResponse response =
        BatchRead({data}, accept, &status);
    ASSERT_TRUE(status.ok());
    ASSERT_EQ(response.responses_size(), 1);
    EXPECT_EQ(response.responses(0).status().code(), 0);
    EXPECT_EQ(response.responses(0).compressor(),
              accept ? v2::Compressor::ZSTD : v2::Compressor::IDENTITY);
    EXPECT_EQ(response.responses(0).data(), accept ? frame : data);
  }
}

}  // namespace
}  // namespace cairn::servertest
