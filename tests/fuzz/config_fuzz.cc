// Fuzzes the YAML config file reader (server/config.h) and the byte-size
// flag type (server/byte_size.h). The input's first byte picks what is fed:
// even -> the rest as a config file over a few flags of every type the
// server uses; odd -> the rest as a byte size. Invariants: nothing crashes,
// hangs or throws; config errors are INVALID_ARGUMENT; a size that parses
// is non-negative and formats to text that parses back to the same value;
// size errors are INVALID_ARGUMENT.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/byte_size.h"
#include "server/config.h"

ABSL_FLAG(std::string, fuzz_listen, "127.0.0.1:0", "fuzz flag");
ABSL_FLAG(int64_t, fuzz_threads, 4, "fuzz flag");
ABSL_FLAG(int32_t, fuzz_port, 0, "fuzz flag");
ABSL_FLAG(double, fuzz_ratio, 0.5, "fuzz flag");
ABSL_FLAG(bool, fuzz_read_only, false, "fuzz flag");
ABSL_FLAG(std::vector<std::string>, fuzz_list, {}, "fuzz flag");
ABSL_FLAG(cairn::server::ByteSize, fuzz_max_size, {}, "fuzz flag");

namespace {

void FuzzByteSize(absl::string_view text) {
  absl::StatusOr<int64_t> bytes = cairn::server::ParseByteSize(text);
  if (!bytes.ok()) {
    if (bytes.status().code() != absl::StatusCode::kInvalidArgument) {
      abort();
    }
    return;
  }
  if (*bytes < 0) {
    abort();
  }
  absl::StatusOr<int64_t> again =
      cairn::server::ParseByteSize(cairn::server::FormatByteSize(*bytes));
  if (!again.ok() || *again != *bytes) {
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  absl::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 1) {
    FuzzByteSize(text);
    return 0;
  }
  absl::FlagSaver saver;  // Every input starts from the defaults.
  absl::Status s = cairn::server::ApplyConfigText(text, "fuzz.yaml");
  if (!s.ok() && s.code() != absl::StatusCode::kInvalidArgument) {
    abort();
  }
  return 0;
}
