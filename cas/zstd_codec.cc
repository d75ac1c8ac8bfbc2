#include "cas/zstd_codec.h"

#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace cairn::cas {
namespace {

// Compression level: fast; REAPI lets servers choose any level.
constexpr int kLevel = 1;

}  // namespace

struct ZstdCompressor::Ctx {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ~Ctx() { ZSTD_freeCCtx(cctx); }
};

ZstdCompressor::ZstdCompressor() : ctx_(std::make_unique<Ctx>()) {
  ZSTD_CCtx_setParameter(ctx_->cctx, ZSTD_c_compressionLevel, kLevel);
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
  ZSTD_inBuffer in = {input.data(), input.size(), 0};
  const size_t start = output->size();
  const size_t step = ZSTD_DStreamOutSize();
  bool flushed = false;
  while (in.pos < in.size || !flushed) {
    const size_t base = output->size();
    output->resize(base + step);
    ZSTD_outBuffer out = {output->data() + base, step, 0};
    const size_t in_before = in.pos;
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
    if (in.pos != in_before || out.pos > 0) {
      // A call without progress after a frame ends asks for the next one.
      at_frame_end_ = hint == 0;
    }
    flushed = out.pos < step;  // Output not full: nothing is held back.
  }
  return absl::OkStatus();
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

}  // namespace cairn::cas
