#include "cas/service/service_util.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "cas/resource_name.h"

namespace cairn::cas {

absl::StatusOr<Digest> FromProto(const v2::Digest& proto,
                                 absl::string_view what) {
  return DigestFromMessage(proto, what, "bad ");
}

v2::Digest ToProto(const Digest& digest) {
  v2::Digest proto;
  proto.set_hash(digest.hash());
  proto.set_size_bytes(digest.size_bytes());
  return proto;
}

absl::Status ValidateDigestFunction(v2::DigestFunction::Value function) {
  if (function == v2::DigestFunction::UNKNOWN ||
      function == v2::DigestFunction::SHA256) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported digest_function ", v2::DigestFunction::Value_Name(function),
      ": this server supports SHA256 only"));
}

absl::Status ValidateRequestScope(absl::string_view instance_name,
                                  v2::DigestFunction::Value function) {
  absl::Status status = ValidateInstanceName(instance_name);
  if (!status.ok()) {
    return status;
  }
  return ValidateDigestFunction(function);
}

absl::Status CheckUploadSize(const Digest& digest, int64_t max_blob_size) {
  if (max_blob_size > 0 && digest.size_bytes() > max_blob_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("cas blob ", digest.ToString(), " is larger than the ",
                     max_blob_size, "-byte limit (max_cas_blob_size_bytes)"));
  }
  return absl::OkStatus();
}

}  // namespace cairn::cas
