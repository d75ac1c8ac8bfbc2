// ByteSize: a byte count written the way people write sizes ("50GiB",
// "512MB", "1048576"), usable as an absl flag type.
//
// Units (case-insensitive, optional space, optional trailing "B"/"iB"):
//   K, KiB = 2^10; M, MiB = 2^20; G, GiB = 2^30; T, TiB = 2^40;
//   KB = 10^3; MB = 10^6; GB = 10^9; TB = 10^12. No unit means bytes.
//
// Thread safety: a value type; the functions are pure.
#ifndef CAIRN_SERVER_BYTE_SIZE_H_
#define CAIRN_SERVER_BYTE_SIZE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cairn::server {

struct ByteSize {
  int64_t bytes = 0;
};

// Returns the byte count `text` names; INVALID_ARGUMENT for malformed text,
// negative numbers or values that overflow int64.
absl::StatusOr<int64_t> ParseByteSize(absl::string_view text);

// Returns `bytes` in the largest binary unit that divides it ("10GiB"),
// or as a plain number.
std::string FormatByteSize(int64_t bytes);

// absl flag hooks.
bool AbslParseFlag(absl::string_view text, ByteSize* size, std::string* error);
std::string AbslUnparseFlag(ByteSize size);

}  // namespace cairn::server

#endif  // CAIRN_SERVER_BYTE_SIZE_H_
