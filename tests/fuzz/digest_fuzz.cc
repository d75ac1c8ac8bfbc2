// Fuzzes Digest::Create and the hex helpers: any input must either be rejected
// with INVALID_ARGUMENT or yield a digest that round-trips through ToString().
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cas/digest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::pair<std::string, std::string> parts = absl::StrSplit(input, '/');
  int64_t n = 0;
  if (!absl::SimpleAtoi(parts.second, &n)) {
    n = static_cast<int64_t>(size) - 70;
  }
  auto d = cairn::cas::Digest::Create(parts.first, n);
  if (d.ok()) {
    if (d->hash() != parts.first || d->size_bytes() != n) abort();
    if (d->ToString() != parts.first + "/" + std::to_string(n)) abort();
  } else if (d.status().code() != absl::StatusCode::kInvalidArgument) {
    abort();
  }
  if (cairn::cas::HexEncode(input).size() != 2 * size) abort();
  cairn::cas::Sha256Hasher h;
  h.Update(input);
  if (h.FinishDigest() != cairn::cas::Digest::OfData(input)) abort();
  return 0;
}
