// The shared tier's wiring: the --s3_* flags, the start-up check of the
// bucket, its log lines and its metrics. Without --s3_bucket the local store
// is used alone, exactly as before.
//
// Thread safety: call from main() before serving.
#ifndef CAIRN_SERVER_SHARED_TIER_H_
#define CAIRN_SERVER_SHARED_TIER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cas/blob_store.h"
#include "rpc/metrics.h"

namespace cairn::server {

// Returns `local` itself when --s3_bucket is empty; otherwise the tiered
// store over `local` and the bucket, after one request checked that the
// bucket exists and the credentials are accepted (INVALID_ARGUMENT,
// PERMISSION_DENIED, NOT_FOUND or UNAVAILABLE with a message saying what to
// fix). Registers the bucket metrics in `metrics` (not owned; must outlive
// the store) and appends a description to `*description`. `store_dir` is
// the local store's directory ("" for a memory store): the backlog of
// --s3_degraded=local writes is kept there.
absl::StatusOr<std::unique_ptr<cas::BlobStore>> MaybeAddSharedTier(
    std::unique_ptr<cas::BlobStore> local, absl::string_view store_dir,
    rpc::Registry* metrics, std::string* description);

// Returns how many bucket requests the shared tier may have in flight
// (--s3_max_concurrency), or 0 when --s3_bucket is empty.
int SharedTierConcurrency();

}  // namespace cairn::server

#endif  // CAIRN_SERVER_SHARED_TIER_H_
