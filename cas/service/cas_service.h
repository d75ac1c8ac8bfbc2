// The REAPI ContentAddressableStorage service: a thin adapter that validates
// each request, hands the storage work to the IoPool and maps the result
// (lookups the store answers from memory are answered on the gRPC thread).
//
//   FindMissingBlobs  returns the absent digests; present ones are touched.
//   BatchUpdateBlobs  verifies and stores each blob (identity or zstd);
//                     one status per blob.
//                     INVALID_ARGUMENT for the whole call when the inlined
//                     data exceeds max_batch_total_size_bytes.
//   BatchReadBlobs    one status per blob (NOT_FOUND when absent);
//                     INVALID_ARGUMENT for the whole call when the requested
//                     sizes exceed max_batch_total_size_bytes.
//   GetTree           streams the Directory tree under root_digest in
//                     breadth-first order, page_size directories per message
//                     (default 1000); next_page_token resumes after it.
//                     NOT_FOUND when the root is absent; absent subtrees are
//                     omitted, as the API specifies.
//   SplitBlob, SpliceBlob: UNIMPLEMENTED (advertised as unsupported).
//
// Every request's instance_name and digest_function are checked first
// (INVALID_ARGUMENT). In read-only mode BatchUpdateBlobs answers
// PERMISSION_DENIED.
//
// Thread safety: the service is safe for concurrent calls; it keeps no state
// besides its options.
#ifndef CAIRN_CAS_SERVICE_CAS_SERVICE_H_
#define CAIRN_CAS_SERVICE_CAS_SERVICE_H_

#include <cstdint>
#include <memory>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cas/blob_store.h"
#include "rpc/auth.h"
#include "rpc/io_pool.h"
#include "rpc/write_quota.h"

namespace cairn::cas {

// The options every service adapter takes (store, pool, authorizer, limits),
// the same shape in each service on purpose; each names its own.
struct CasServiceOptions {
  BlobStore* store = nullptr;      // Not owned; must outlive the service.
  rpc::IoPool* pool = nullptr;     // Not owned; must outlive the service.
  bool read_only = false;
  int64_t max_batch_total_size_bytes = int64_t{4} << 20;
  // Largest blob accepted for upload; 0 means no limit.
  int64_t max_cas_blob_size_bytes = 0;
  // Hard cap on one serialized answer (the server's max message size).
  int64_t max_message_bytes = int64_t{64} << 20;
  // Decides every call (read; write for BatchUpdateBlobs); null admits
  // everyone. Not owned; must outlive the service.
  const rpc::Authorizer* authorizer = nullptr;
  // Charges each stored blob to its writer (a blob past the hourly quota
  // gets RESOURCE_EXHAUSTED with a retry delay in its own status) and
  // counts what was stored; null means no quota. Not owned; must outlive
  // the service.
  rpc::WriteQuota* write_quota = nullptr;
};

// Returns the ContentAddressableStorage service over `options.store`.
std::unique_ptr< ::build::bazel::remote::execution::v2::
                     ContentAddressableStorage::CallbackService>
NewCasService(const CasServiceOptions& options);

}  // namespace cairn::cas

#endif  // CAIRN_CAS_SERVICE_CAS_SERVICE_H_
