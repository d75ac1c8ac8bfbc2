#include "cas/zstd_codec.h"

#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "cas/blob_store.h"

namespace cairn::cas {
namespace {

// Compression level: fast; REAPI lets servers choose any level.
constexpr int kLevel = 1;

}  // namespace

struct ZstdCompressor::Ctx {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ~Ctx() { ZSTD_freeCCtx(cctx); }
};

ZstdCompressor::ZstdCompressor() : ZstdCompressor(kLevel) {}

ZstdCompressor::ZstdCompressor(int level) : ctx_(std::make_unique<Ctx>()) {
  ZSTD_CCtx_setParameter(ctx_->cctx, ZSTD_c_compressionLevel, level);
}

ZstdCompressor::~ZstdCompressor() = default;

absl::Status ZstdCompressor::Compress(absl::string_view input, bool last,
                                      std::string* output) {
  ZSTD_inBuffer in = {input.data(), input.size(), 0};
  const ZSTD_EndDirective mode = last ? ZSTD_e_end : ZSTD_e_continue;
  for (;;) {
    const size_t base = output->size();
    const size_t room = std::max(ZSTD_CStreamOutSize(), input.size() / 2);
    output->resize(base + room);
    ZSTD_outBuffer out = {output->data() + base, room, 0};
    const size_t remaining = ZSTD_compressStream2(ctx_->cctx, &out, &in, mode);
    output->resize(base + out.pos);
    if (ZSTD_isError(remaining)) {
      return absl::InternalError(
          absl::StrCat("zstd compress: ", ZSTD_getErrorName(remaining)));
    }
    const bool done = last ? remaining == 0 : in.pos == in.size;
    if (done) {
      return absl::OkStatus();
    }
  }
}

absl::StatusOr<size_t> ZstdCompressor::CompressedSize(
    absl::string_view input) {
  const size_t bound = ZSTD_compressBound(input.size());
  if (bound > scratch_size_) {
    scratch_.reset(new char[bound]);  // Not value-initialised: no zero fill.
    scratch_size_ = bound;
  }
  const size_t n = ZSTD_compress2(ctx_->cctx, scratch_.get(), scratch_size_,
                                  input.data(), input.size());
  if (ZSTD_isError(n)) {
    return absl::InternalError(
        absl::StrCat("zstd compress: ", ZSTD_getErrorName(n)));
  }
  return n;
}

struct ZstdDecompressor::Ctx {
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  ~Ctx() { ZSTD_freeDCtx(dctx); }
};

ZstdDecompressor::ZstdDecompressor() : ctx_(std::make_unique<Ctx>()) {
  ZSTD_DCtx_setParameter(ctx_->dctx, ZSTD_d_windowLogMax, kMaxZstdWindowLog);
}

ZstdDecompressor::~ZstdDecompressor() = default;

absl::Status ZstdDecompressor::Decompress(absl::string_view input,
                                          int64_t max_output,
                                          std::string* output) {
  return DecompressSome(input, max_output, SIZE_MAX, output).status();
}

absl::Status ZstdDecompressor::DecompressTo(
    absl::string_view input, int64_t max_output, size_t piece,
    absl::FunctionRef<absl::Status(absl::string_view)> sink) {
  std::string out;
  while (!input.empty()) {
    out.clear();
    absl::StatusOr<size_t> used = DecompressSome(input, max_output, piece, &out);
    if (!used.ok()) {
      return used.status();
    }
    input.remove_prefix(*used);
    max_output -= static_cast<int64_t>(out.size());
    if (!out.empty()) {
      if (absl::Status s = sink(out); !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> ZstdDecompressor::DecompressSome(absl::string_view input,
                                                        int64_t max_output,
                                                        size_t max_step,
                                                        std::string* output) {
  const size_t start = output->size();
  const size_t given = input.size();
  while (!input.empty()) {
    if (output->size() - start >= max_step) {
      break;  // The caller passes the rest again.
    }
    if (!in_frame_) {
      // A frame starts here: check its magic number before zstd sees it.
      const size_t take =
          std::min(sizeof(uint32_t) - magic_.size(), input.size());
      magic_.append(input.data(), take);
      input.remove_prefix(take);
      at_frame_end_ = false;
      if (magic_.size() < sizeof(uint32_t)) {
        break;
      }
      const auto* b = reinterpret_cast<const unsigned char*>(magic_.data());
      const uint32_t magic = b[0] | b[1] << 8 | b[2] << 16 |
                             static_cast<uint32_t>(b[3]) << 24;
      if (magic != ZSTD_MAGICNUMBER &&
          (magic & ZSTD_MAGIC_SKIPPABLE_MASK) != ZSTD_MAGIC_SKIPPABLE_START) {
        return absl::InvalidArgumentError(absl::StrCat(
            "not a zstd frame (magic number 0x", absl::Hex(magic),
            "); only the format of RFC 8878 is accepted"));
      }
      in_frame_ = true;
      const std::string first = std::move(magic_);
      magic_.clear();
      absl::StatusOr<size_t> used =
          Feed(first, start, max_output, SIZE_MAX, output);
      if (!used.ok()) {
        return used.status();
      }
      continue;  // zstd keeps the 4 bytes: a frame header is longer.
    }
    absl::StatusOr<size_t> used =
        Feed(input, start, max_output, max_step, output);
    if (!used.ok()) {
      return used.status();
    }
    input.remove_prefix(*used);
  }
  return given - input.size();
}

absl::StatusOr<size_t> ZstdDecompressor::Feed(absl::string_view input,
                                              size_t start,
                                              int64_t max_output,
                                              size_t max_step,
                                              std::string* output) {
  ZSTD_inBuffer in = {input.data(), input.size(), 0};
  const size_t step = ZSTD_DStreamOutSize();
  bool flushed = false;
  while (in.pos < in.size || !flushed) {
    const size_t base = output->size();
    output->resize(base + step);
    ZSTD_outBuffer out = {output->data() + base, step, 0};
    const size_t hint = ZSTD_decompressStream(ctx_->dctx, &out, &in);
    output->resize(base + out.pos);
    if (ZSTD_getErrorCode(hint) == ZSTD_error_frameParameter_windowTooLarge) {
      return absl::InvalidArgumentError(absl::StrCat(
          "zstd frame asks for a window over ", 1 << (kMaxZstdWindowLog - 20),
          " MiB; compress at level 19 or below, without --long"));
    }
    if (ZSTD_isError(hint)) {
      return absl::InvalidArgumentError(
          absl::StrCat("zstd data is corrupt: ", ZSTD_getErrorName(hint)));
    }
    if (static_cast<int64_t>(output->size() - start) > max_output) {
      return absl::InvalidArgumentError(absl::StrCat(
          "zstd data expands past the ", max_output, " bytes expected"));
    }
    if (hint == 0) {
      // The frame is decoded and flushed; zstd stops at its last byte, and
      // what follows must start a new frame with its own magic number.
      in_frame_ = false;
      at_frame_end_ = true;
      return in.pos;
    }
    flushed = out.pos < step;  // Output not full: nothing is held back.
    if (output->size() - start >= max_step && in.pos < in.size) {
      return in.pos;  // Enough for this call; zstd resumes with the rest.
    }
  }
  return in.pos;
}

absl::StatusOr<std::string> ZstdDecompressAll(absl::string_view data,
                                              int64_t max_output) {
  ZstdDecompressor decompressor;
  std::string out;
  absl::Status status = decompressor.Decompress(data, max_output, &out);
  if (!status.ok()) {
    return status;
  }
  if (!decompressor.AtFrameEnd()) {
    return absl::InvalidArgumentError("zstd data ends inside a frame");
  }
  return out;
}

absl::Status DecodeFramesInto(ZstdDecompressor& decompressor,
                              const Digest& digest, absl::string_view frames,
                              BlobWriter& plain) {
  // Decompressed bytes handed on at once, however much the frames expand.
  constexpr size_t kPiece = 256 << 10;
  absl::Status written;  // The plain writer's error, if any.
  absl::Status s = decompressor.DecompressTo(
      frames, digest.size_bytes() - plain.committed_size(), kPiece,
      [&plain, &written](absl::string_view piece) {
        written = plain.Append(piece);
        return written;
      });
  if (s.ok() || !written.ok()) {
    return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("cas blob ", digest.ToString(), ": ", s.message()));
}

namespace {

// See NewZstdDecodingWriter().
class ZstdDecodingWriter final : public BlobWriter {
 public:
  ZstdDecodingWriter(Digest digest, std::unique_ptr<BlobWriter> plain)
      : digest_(std::move(digest)), plain_(std::move(plain)) {}

  absl::Status Append(absl::string_view data) override {
    if (plain_ == nullptr) {
      return WriterClosedError(digest_);
    }
    if (absl::Status s =
            DecodeFramesInto(decompressor_, digest_, data, *plain_);
        !s.ok()) {
      plain_.reset();
      return s;
    }
    compressed_ += static_cast<int64_t>(data.size());
    return absl::OkStatus();
  }
  int64_t committed_size() const override { return compressed_; }
  absl::Status Commit() override {
    if (plain_ == nullptr) {
      return WriterClosedError(digest_);
    }
    std::unique_ptr<BlobWriter> plain = std::move(plain_);
    if (!decompressor_.AtFrameEnd()) {
      return absl::InvalidArgumentError(
          absl::StrCat("Write: zstd data for cas blob ", digest_.ToString(),
                       " ends inside a frame"));
    }
    return plain->Commit();
  }

 private:
  const Digest digest_;
  std::unique_ptr<BlobWriter> plain_;  // Null once closed.
  ZstdDecompressor decompressor_;
  int64_t compressed_ = 0;
};

}  // namespace

std::unique_ptr<BlobWriter> NewZstdDecodingWriter(
    Digest digest, std::unique_ptr<BlobWriter> plain) {
  return std::make_unique<ZstdDecodingWriter>(std::move(digest),
                                              std::move(plain));
}

}  // namespace cairn::cas
