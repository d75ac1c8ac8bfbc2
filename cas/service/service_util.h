// Conversions and request checks shared by the REAPI service adapters
// (CAS, ByteStream, ActionCache, Capabilities): proto Digest <-> cas::Digest,
// digest_function and instance_name validation.
//
// Thread safety: free functions over values; safe from any thread.
#ifndef CAIRN_CAS_SERVICE_SERVICE_UTIL_H_
#define CAIRN_CAS_SERVICE_SERVICE_UTIL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "cas/digest.h"

namespace cairn::cas {

namespace v2 = ::build::bazel::remote::execution::v2;

// Returns the cas::Digest for `proto`; INVALID_ARGUMENT (naming `what`) when
// the hash is not 64 lowercase hex characters or the size is negative.
absl::StatusOr<Digest> FromProto(const v2::Digest& proto,
                                 absl::string_view what = "digest");

// Returns the proto form of `digest`.
v2::Digest ToProto(const Digest& digest);

// Returns OK for UNKNOWN (the default, meaning SHA-256 here) and SHA256;
// INVALID_ARGUMENT for any other digest function.
absl::Status ValidateDigestFunction(v2::DigestFunction::Value function);

// Returns OK when both the instance name (cas::ValidateInstanceName) and the
// digest function are acceptable, else the first INVALID_ARGUMENT.
absl::Status ValidateRequestScope(absl::string_view instance_name,
                                  v2::DigestFunction::Value function);

// Returns INVALID_ARGUMENT when `digest` is larger than `max_blob_size`
// (0 means no limit), as max_cas_blob_size_bytes prescribes for uploads.
absl::Status CheckUploadSize(const Digest& digest, int64_t max_blob_size);

}  // namespace cairn::cas

#endif  // CAIRN_CAS_SERVICE_SERVICE_UTIL_H_
