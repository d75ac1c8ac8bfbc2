// Fuzzes ByteStream resource-name parsing. Invariants: parsing never crashes;
// errors are INVALID_ARGUMENT; an accepted name has a valid instance name (no
// '..', no empty segment, no reserved word) and re-making the name from the
// parsed parts parses back to the same parts.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "cas/resource_name.h"

namespace {

using cairn::cas::ResourceName;

void Check(const absl::StatusOr<ResourceName>& r, bool write) {
  if (!r.ok()) {
    if (r.status().code() != absl::StatusCode::kInvalidArgument) abort();
    return;
  }
  if (!cairn::cas::ValidateInstanceName(r->instance_name).ok()) abort();
  std::string again =
      write ? cairn::cas::MakeWriteResourceName(r->instance_name, r->uuid,
                                                r->digest, r->compressor)
            : cairn::cas::MakeReadResourceName(r->instance_name, r->digest,
                                               r->compressor);
  auto r2 = write ? cairn::cas::ParseWriteResourceName(again)
                  : cairn::cas::ParseReadResourceName(again);
  if (!r2.ok() || r2->instance_name != r->instance_name ||
      r2->digest != r->digest || r2->compressor != r->compressor ||
      r2->uuid != r->uuid) {
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string name(reinterpret_cast<const char*>(data), size);
  Check(cairn::cas::ParseReadResourceName(name), /*write=*/false);
  Check(cairn::cas::ParseWriteResourceName(name), /*write=*/true);
  cairn::cas::ValidateInstanceName(name).IgnoreError();
  return 0;
}
