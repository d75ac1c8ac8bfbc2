// Parsing of ByteStream resource names as the Remote Execution API uses them:
//
//   read:  {instance}/blobs/[{digest_function}/]{hash}/{size}
//          {instance}/compressed-blobs/{compressor}/[{digest_function}/]{hash}/{size}
//   write: {instance}/uploads/{uuid}/blobs/[{digest_function}/]{hash}/{size}[/{metadata...}]
//          {instance}/uploads/{uuid}/compressed-blobs/{compressor}/[...]{hash}/{size}[/...]
//
// The instance part may be empty or contain slashes, but no segment of it may
// be one of the reserved words ("blobs", "uploads", "compressed-blobs",
// "actions", "actionResults", "operations", "capabilities"), nor "." / ".."
// or empty. Only SHA-256 is supported; the function name "sha256" is accepted
// when spelled out. Compressors are "identity" and "zstd".
//
// Thread safety: free functions over values; safe from any thread.
#ifndef CAIRN_CAS_RESOURCE_NAME_H_
#define CAIRN_CAS_RESOURCE_NAME_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cas/digest.h"

namespace cairn::cas {

enum class Compressor { kIdentity, kZstd };

struct ResourceName {
  std::string instance_name;
  Digest digest;
  Compressor compressor = Compressor::kIdentity;
  // Upload id; set for write names only.
  std::string uuid;
};

// Parses a Read resource name. INVALID_ARGUMENT names what is wrong.
absl::StatusOr<ResourceName> ParseReadResourceName(absl::string_view name);

// Parses a Write resource name. INVALID_ARGUMENT names what is wrong.
absl::StatusOr<ResourceName> ParseWriteResourceName(absl::string_view name);

// Returns OK when `instance_name` is acceptable (see the file comment), else
// INVALID_ARGUMENT. Used for the instance_name field of every request.
absl::Status ValidateInstanceName(absl::string_view instance_name);

// Returns "{instance/}blobs/{hash}/{size}" (or compressed-blobs/zstd/...).
std::string MakeReadResourceName(absl::string_view instance_name,
                                 const Digest& digest,
                                 Compressor compressor = Compressor::kIdentity);

// Returns "{instance/}uploads/{uuid}/blobs/{hash}/{size}" (or compressed).
std::string MakeWriteResourceName(absl::string_view instance_name,
                                  absl::string_view uuid, const Digest& digest,
                                  Compressor compressor = Compressor::kIdentity);

}  // namespace cairn::cas

#endif  // CAIRN_CAS_RESOURCE_NAME_H_
