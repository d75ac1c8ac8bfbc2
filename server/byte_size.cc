#include "server/byte_size.h"

#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace cairn::server {
namespace {

struct Unit {
  const char* name;
  int64_t multiplier;
};

constexpr Unit kUnits[] = {
    {"", 1},
    {"b", 1},
    {"k", int64_t{1} << 10},
    {"kib", int64_t{1} << 10},
    {"kb", 1000},
    {"m", int64_t{1} << 20},
    {"mib", int64_t{1} << 20},
    {"mb", 1000 * 1000},
    {"g", int64_t{1} << 30},
    {"gib", int64_t{1} << 30},
    {"gb", 1000 * 1000 * 1000},
    {"t", int64_t{1} << 40},
    {"tib", int64_t{1} << 40},
    {"tb", int64_t{1000} * 1000 * 1000 * 1000},
};

}  // namespace

absl::StatusOr<int64_t> ParseByteSize(absl::string_view text) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  size_t digits = 0;
  while (digits < s.size() && absl::ascii_isdigit(s[digits])) {
    ++digits;
  }
  int64_t number = 0;
  if (digits == 0 || !absl::SimpleAtoi(s.substr(0, digits), &number)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad size \"", text, "\": expected e.g. 50GiB"));
  }
  const std::string unit =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(s.substr(digits)));
  for (const Unit& u : kUnits) {
    if (unit != u.name) {
      continue;
    }
    if (number > std::numeric_limits<int64_t>::max() / u.multiplier) {
      return absl::InvalidArgumentError(
          absl::StrCat("size \"", text, "\" is too large"));
    }
    return number * u.multiplier;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "bad size \"", text, "\": unknown unit \"", unit, "\" (use KiB..TiB)"));
}

std::string FormatByteSize(int64_t bytes) {
  constexpr const char* kNames[] = {"TiB", "GiB", "MiB", "KiB"};
  constexpr int kShifts[] = {40, 30, 20, 10};
  for (int i = 0; i < 4; ++i) {
    const int64_t unit = int64_t{1} << kShifts[i];
    if (bytes != 0 && bytes % unit == 0) {
      return absl::StrCat(bytes / unit, kNames[i]);
    }
  }
  return absl::StrCat(bytes);
}

bool AbslParseFlag(absl::string_view text, ByteSize* size, std::string* error) {
  absl::StatusOr<int64_t> bytes = ParseByteSize(text);
  if (!bytes.ok()) {
    *error = std::string(bytes.status().message());
    return false;
  }
  size->bytes = *bytes;
  return true;
}

std::string AbslUnparseFlag(ByteSize size) {
  return FormatByteSize(size.bytes);
}

}  // namespace cairn::server
