// Fuzzes zstd decompression of client data (cas/zstd_codec.h), as
// ByteStream compressed-blobs writes and BatchUpdateBlobs use it. The input
// is taken as compressed bytes, whole and in chunks whose sizes come from
// the input's first byte. Invariants: nothing crashes; errors are
// INVALID_ARGUMENT; output never exceeds the bound; whole and chunked
// decompression agree; and what compresses decompresses to itself (checked
// for half the inputs).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "cas/zstd_codec.h"

namespace {

constexpr int64_t kMaxOutput = 1 << 20;

void CheckError(const absl::Status& s) {
  if (s.code() != absl::StatusCode::kInvalidArgument) {
    abort();
  }
}

// Decompresses `data` in chunks of `chunk` bytes; nullopt-like false on error.
bool Chunked(absl::string_view data, size_t chunk, std::string* out) {
  cairn::cas::ZstdDecompressor d;
  for (size_t i = 0; i < data.size(); i += chunk) {
    absl::string_view piece = data.substr(i, chunk);
    int64_t room = kMaxOutput - static_cast<int64_t>(out->size());
    absl::Status s = d.Decompress(piece, room, out);
    if (!s.ok()) {
      CheckError(s);
      return false;
    }
    if (static_cast<int64_t>(out->size()) > kMaxOutput) {
      abort();
    }
  }
  return d.AtFrameEnd();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  size_t chunk = 1 + data[0] % 64;  // Low 6 bits: the chunk size.
  absl::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::StatusOr<std::string> whole =
      cairn::cas::ZstdDecompressAll(input, kMaxOutput);
  if (!whole.ok()) {
    CheckError(whole.status());
  } else if (static_cast<int64_t>(whole->size()) > kMaxOutput) {
    abort();
  }
  std::string pieces;
  bool complete = Chunked(input, chunk, &pieces);
  if (whole.ok() && (!complete || pieces != *whole)) {
    abort();
  }
  // Round trip of the input as plain data, for inputs whose first byte has
  // its high bit set (a compressor per input is costly; decompression is
  // what parses client bytes).
  if ((data[0] & 0x80) == 0) {
    return 0;
  }
  cairn::cas::ZstdCompressor c;
  std::string compressed;
  if (!c.Compress(input, /*last=*/true, &compressed).ok()) {
    abort();
  }
  absl::StatusOr<std::string> back =
      cairn::cas::ZstdDecompressAll(compressed, kMaxOutput);
  if (!back.ok() || *back != input) {
    abort();
  }
  return 0;
}
