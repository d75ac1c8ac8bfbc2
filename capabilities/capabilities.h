// The REAPI Capabilities service: tells clients (Bazel asks first) what this
// cache supports. Answers from fixed options without touching storage.
//
// Advertised API range: 2.0 .. 2.3. 2.3 is the newest published REAPI
// version; Cairn implements what the cache half of it defines (digest_function
// in every request, compressed-blobs resource names, max_cas_blob_size_bytes).
// Blob splitting/splicing is newer and is advertised as unsupported.
//
// Thread safety: the service is immutable after construction.
#ifndef CAIRN_CAPABILITIES_CAPABILITIES_H_
#define CAIRN_CAPABILITIES_CAPABILITIES_H_

#include <cstdint>
#include <memory>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "rpc/auth.h"

namespace cairn::capabilities {

struct CapabilitiesOptions {
  // When true, update_enabled is false (clients may not write results).
  bool read_only = false;
  // Advertised max_batch_total_size_bytes.
  int64_t max_batch_total_size_bytes = int64_t{4} << 20;
  // Advertised max_cas_blob_size_bytes; 0 means no limit.
  int64_t max_cas_blob_size_bytes = 0;
  // Whether zstd compressed-blobs and batch compression are supported.
  bool zstd = false;
  // Advertises symlink_absolute_path_strategy DISALLOWED (the server refuses
  // absolute or escaping symlink targets) instead of ALLOWED.
  bool strict_symlink_targets = false;
  // Decides who may call (read access); null admits everyone. Not owned.
  const rpc::Authorizer* authorizer = nullptr;
};

// Returns the ServerCapabilities message for `options`.
::build::bazel::remote::execution::v2::ServerCapabilities MakeCapabilities(
    const CapabilitiesOptions& options);

// Returns the Capabilities service. GetCapabilities answers INVALID_ARGUMENT
// for a malformed instance_name, else the message from MakeCapabilities().
std::unique_ptr<
    ::build::bazel::remote::execution::v2::Capabilities::CallbackService>
NewCapabilitiesService(const CapabilitiesOptions& options);

}  // namespace cairn::capabilities

#endif  // CAIRN_CAPABILITIES_CAPABILITIES_H_
