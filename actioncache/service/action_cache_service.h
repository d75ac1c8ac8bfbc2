// The REAPI ActionCache service: a thin adapter over ActionCache.
//
//   GetActionResult     NOT_FOUND when absent or when anything the result
//                       references is gone from the CAS; honours
//                       inline_stdout, inline_stderr and inline_output_files.
//   UpdateActionResult  INVALID_ARGUMENT for a malformed digest, path or
//                       request; PERMISSION_DENIED in read-only mode;
//                       RESOURCE_EXHAUSTED when the store is full.
//
// instance_name and digest_function are checked first (INVALID_ARGUMENT).
// Results are kept per instance. Storage work runs on the IoPool; a hit or a
// miss the store can tell from memory is answered on the gRPC thread.
//
// Thread safety: safe for concurrent calls.
#ifndef CAIRN_ACTIONCACHE_SERVICE_ACTION_CACHE_SERVICE_H_
#define CAIRN_ACTIONCACHE_SERVICE_ACTION_CACHE_SERVICE_H_

#include <cstdint>
#include <memory>

#include "actioncache/action_cache.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "rpc/auth.h"
#include "rpc/io_pool.h"
#include "rpc/metrics_interceptor.h"
#include "rpc/write_quota.h"

namespace cairn::actioncache {

struct ActionCacheServiceOptions {
  ActionCache* cache = nullptr;    // Not owned; must outlive the service.
  // The store behind `cache`. When set, GetActionResult is answered on the
  // gRPC thread whenever ActionCache::TryGet() can (a miss, or a hit whose
  // bytes and outputs the store can check from memory), without a pool hop;
  // null always uses the pool. Not owned; must outlive the service.
  cas::BlobStore* store = nullptr;
  rpc::IoPool* pool = nullptr;  // Not owned; must outlive the service.
  bool read_only = false;
  // Most bytes of stdout/stderr/output files inlined into one answer.
  int64_t max_inline_bytes = int64_t{1} << 20;
  // Decides every call (read; write for UpdateActionResult); null admits
  // everyone. Not owned; must outlive the service.
  const rpc::Authorizer* authorizer = nullptr;
  // Charges each stored result (its serialized size) to its writer,
  // refusing past the hourly quota with RESOURCE_EXHAUSTED and a retry
  // delay, and counts what was stored; null means no quota. Not owned; must
  // outlive the service.
  rpc::WriteQuota* write_quota = nullptr;
  // When set, both methods record their own per-RPC metrics
  // (RpcMetrics::SelfRecorded) instead of leaving them to the metrics
  // interceptor. Not owned; must outlive the service.
  rpc::RpcMetrics* metrics = nullptr;
};

// Returns the ActionCache service.
std::unique_ptr<
    ::build::bazel::remote::execution::v2::ActionCache::CallbackService>
NewActionCacheService(const ActionCacheServiceOptions& options);

}  // namespace cairn::actioncache

#endif  // CAIRN_ACTIONCACHE_SERVICE_ACTION_CACHE_SERVICE_H_
