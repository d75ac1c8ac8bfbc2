// Streaming zstd compression and decompression for REAPI compressed-blobs
// (ByteStream "compressed-blobs/zstd/..." and BatchUpdateBlobs with
// compressor ZSTD). Decompression is bounded twice against decompression
// bombs: output past `max_output` bytes is refused with INVALID_ARGUMENT, so
// a small message cannot expand into unbounded memory, and a frame whose
// window exceeds kMaxZstdWindowLog is refused before any window is
// allocated, so a 20-byte frame header cannot make each upload allocate the
// 128 MiB window zstd accepts by default. Only the zstd format of RFC 8878 is
// accepted: a frame must start with its magic number (or be a skippable
// frame); the pre-1.0 "legacy" formats libzstd may still decode are refused,
// since no REAPI client writes them and their decoders parse differently
// whole and in pieces.
//
// Thread safety: one object per stream, used by one thread at a time.
#ifndef CAIRN_CAS_ZSTD_CODEC_H_
#define CAIRN_CAS_ZSTD_CODEC_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cairn::cas {

// The largest window (log2 bytes) a frame may ask the decoder for: 8 MiB.
// zstd's levels 1-19 use at most this much (level 19's window is 8 MiB);
// only --ultra levels (20-22) and --long ask for more, and such frames are
// refused (INVALID_ARGUMENT naming the window). Each decompressing upload
// then holds at most 8 MiB of window, however its frame header lies.
inline constexpr int kMaxZstdWindowLog = 23;

// Whether zstd frames of `compressed` bytes are worth keeping instead of the
// `content_size` plain bytes they hold: they save at least an eighth. The
// one rule for frames kept at rest (disk store) and carried in bucket entry
// objects (tiered store).
inline bool ZstdSavesEnough(int64_t compressed, int64_t content_size) {
  return compressed <= content_size - content_size / 8;
}

class ZstdCompressor {
 public:
  // Compresses at level 1 (fast: what the services use on the wire).
  ZstdCompressor();
  // Compresses at `level` (1-19: levels above 19 would ask decoders for
  // more than kMaxZstdWindowLog).
  explicit ZstdCompressor(int level);
  ~ZstdCompressor();
  ZstdCompressor(const ZstdCompressor&) = delete;
  ZstdCompressor& operator=(const ZstdCompressor&) = delete;

  // Compresses `input` and appends what is ready to `*output`; with `last`
  // the frame is finished. INTERNAL on a zstd failure.
  absl::Status Compress(absl::string_view input, bool last,
                        std::string* output);

  // The size of `input` compressed as one whole frame, which is not kept:
  // for guessing whether data compresses. The frame goes to a scratch
  // buffer this object keeps and reuses (never zero-filled), and the zstd
  // context is reused too, so a compressor kept for many guesses costs
  // little beyond the compression itself. Drops a frame Compress() left
  // unfinished. INTERNAL on a zstd failure.
  absl::StatusOr<size_t> CompressedSize(absl::string_view input);

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
  std::unique_ptr<char[]> scratch_;  // For CompressedSize().
  size_t scratch_size_ = 0;
};

class ZstdDecompressor {
 public:
  ZstdDecompressor();
  ~ZstdDecompressor();
  ZstdDecompressor(const ZstdDecompressor&) = delete;
  ZstdDecompressor& operator=(const ZstdDecompressor&) = delete;

  // Decompresses `input`, appending to `*output`. INVALID_ARGUMENT for
  // corrupt input, a frame not in the RFC 8878 format, a frame whose window
  // is larger than 2^kMaxZstdWindowLog bytes, or when more than `max_output`
  // bytes would be appended. Input may be split anywhere across calls; the
  // output does not depend on where.
  absl::Status Decompress(absl::string_view input, int64_t max_output,
                          std::string* output);

  // Like Decompress(), but stops once `*output` has grown by `max_step`
  // bytes or more (by at most about max_step + 128 KiB: zstd decodes a
  // block at a time) and returns how many bytes of `input` it used; the
  // caller passes the rest again. Memory then stays bounded however much
  // the frames expand. `max_output` bounds this call's output.
  absl::StatusOr<size_t> DecompressSome(absl::string_view input,
                                        int64_t max_output, size_t max_step,
                                        std::string* output);

  // Decompresses `input` as Decompress() does, handing the output to `sink`
  // in pieces of about `piece` bytes (see DecompressSome()); an error from
  // `sink` ends it and is returned.
  absl::Status DecompressTo(
      absl::string_view input, int64_t max_output, size_t piece,
      absl::FunctionRef<absl::Status(absl::string_view)> sink);

  // Returns true when the input so far ends exactly at the end of a frame.
  bool AtFrameEnd() const { return at_frame_end_; }

 private:
  // Feeds `input` (inside a frame) to zstd until it is used up or the frame
  // ends; returns the bytes consumed.
  // Stops early, once the output has grown by `max_step` (see
  // DecompressSome()) and input is left.
  absl::StatusOr<size_t> Feed(absl::string_view input, size_t start,
                              int64_t max_output, size_t max_step,
                              std::string* output);

  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
  bool at_frame_end_ = true;
  bool in_frame_ = false;  // The current frame's magic number was accepted.
  std::string magic_;      // The next frame's first bytes, until there are 4.
};

// Returns `data` decompressed; INVALID_ARGUMENT when it is not one or more
// complete zstd frames, asks for too large a window or expands past
// `max_output` bytes.
absl::StatusOr<std::string> ZstdDecompressAll(absl::string_view data,
                                              int64_t max_output);

}  // namespace cairn::cas

#endif  // CAIRN_CAS_ZSTD_CODEC_H_
