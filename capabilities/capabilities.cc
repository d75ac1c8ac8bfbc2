#include "capabilities/capabilities.h"

#include <utility>

#include "cas/resource_name.h"
#include "rpc/reactors.h"

namespace cairn::capabilities {
namespace {

namespace v2 = ::build::bazel::remote::execution::v2;

void SetVersion(int major, int minor, ::build::bazel::semver::SemVer* out) {
  out->set_major(major);
  out->set_minor(minor);
}

class CapabilitiesService final : public v2::Capabilities::CallbackService {
 public:
  CapabilitiesService(v2::ServerCapabilities capabilities,
                      const rpc::Authorizer* authorizer)
      : capabilities_(std::move(capabilities)), authorizer_(authorizer) {}

  grpc::ServerUnaryReactor* GetCapabilities(
      grpc::CallbackServerContext* context,
      const v2::GetCapabilitiesRequest* request,
      v2::ServerCapabilities* response) override {
    // Answered from memory: the call never reaches the I/O pool.
    return rpc::UnaryCall(context, authorizer_, rpc::Access::kRead,
                          /*pool=*/nullptr, "GetCapabilities")
        .Validate(
            [&] { return cas::ValidateInstanceName(request->instance_name()); })
        .AnswerNow([&] {
          *response = capabilities_;
          return absl::OkStatus();
        });
  }

 private:
  const v2::ServerCapabilities capabilities_;
  const rpc::Authorizer* const authorizer_;  // Not owned; may be null.
};

}  // namespace

v2::ServerCapabilities MakeCapabilities(const CapabilitiesOptions& options) {
  v2::ServerCapabilities caps;
  v2::CacheCapabilities* cache = caps.mutable_cache_capabilities();
  cache->add_digest_functions(v2::DigestFunction::SHA256);
  cache->mutable_action_cache_update_capabilities()->set_update_enabled(
      !options.read_only);
  cache->set_max_batch_total_size_bytes(options.max_batch_total_size_bytes);
  cache->set_symlink_absolute_path_strategy(
      options.strict_symlink_targets
          ? v2::SymlinkAbsolutePathStrategy::DISALLOWED
          : v2::SymlinkAbsolutePathStrategy::ALLOWED);
  cache->add_supported_compressors(v2::Compressor::IDENTITY);
  cache->add_supported_batch_update_compressors(v2::Compressor::IDENTITY);
  if (options.zstd) {
    cache->add_supported_compressors(v2::Compressor::ZSTD);
    cache->add_supported_batch_update_compressors(v2::Compressor::ZSTD);
  }
  cache->set_max_cas_blob_size_bytes(options.max_cas_blob_size_bytes);
  cache->set_split_blob_support(false);
  cache->set_splice_blob_support(false);

  v2::ExecutionCapabilities* exec = caps.mutable_execution_capabilities();
  exec->set_digest_function(v2::DigestFunction::SHA256);
  exec->add_digest_functions(v2::DigestFunction::SHA256);
  exec->set_exec_enabled(false);

  SetVersion(2, 0, caps.mutable_deprecated_api_version());
  SetVersion(2, 0, caps.mutable_low_api_version());
  SetVersion(2, 3, caps.mutable_high_api_version());
  return caps;
}

std::unique_ptr<v2::Capabilities::CallbackService> NewCapabilitiesService(
    const CapabilitiesOptions& options) {
  return std::make_unique<CapabilitiesService>(MakeCapabilities(options),
                                               options.authorizer);
}

}  // namespace cairn::capabilities
