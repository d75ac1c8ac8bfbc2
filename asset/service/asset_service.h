// The Remote Asset API v1 services (build.bazel.remote.asset.v1): thin
// adapters over AssetStore.
//
//   FetchBlob / FetchDirectory  answer a pushed (or earlier fetched) mapping
//       whose content is all in the CAS (see asset_store.h). On a miss,
//       FetchBlob downloads the first URI an OriginFetcher allows (when one
//       is configured), stores it and records the mapping; qualifiers it
//       cannot honour from an origin (anything but checksum.sri, which is
//       verified, and bazel.canonical_id, a name only) are INVALID_ARGUMENT
//       with a google.rpc.BadRequest detail naming each; a failed download
//       is answered inline in the response's `status` (NOT_FOUND,
//       DEADLINE_EXCEEDED, UNAVAILABLE...), as the API asks for errors
//       outside the server's control. Otherwise a miss is the call status
//       NOT_FOUND.
//   PushBlob / PushDirectory    record a mapping; FAILED_PRECONDITION when
//       the content is not in the CAS yet; PERMISSION_DENIED when read-only;
//       RESOURCE_EXHAUSTED (with a retry delay) past the caller's write
//       quota.
//
// A request without URIs is INVALID_ARGUMENT: BuildStream probes a remote
// with exactly that and accepts only INVALID_ARGUMENT as proof that the
// service exists. instance_name and digest_function are checked as by the
// other services. Every call is authorised (read for Fetch, write for Push)
// and its storage work runs on the IoPool.
//
// Thread safety: safe for concurrent calls.
#ifndef CAIRN_ASSET_SERVICE_ASSET_SERVICE_H_
#define CAIRN_ASSET_SERVICE_ASSET_SERVICE_H_

#include <memory>

#include "asset/asset_store.h"
#include "asset/origin_fetcher.h"
#include "build/bazel/remote/asset/v1/remote_asset.grpc.pb.h"
#include "rpc/auth.h"
#include "rpc/io_pool.h"
#include "rpc/write_quota.h"

namespace cairn::asset {

// The options every service adapter takes (store, pool, authorizer, limits),
// the same shape as CasServiceOptions on purpose; each names its own.
struct AssetServiceOptions {
  AssetStore* assets = nullptr;  // Not owned; must outlive the services.
  rpc::IoPool* pool = nullptr;   // Not owned; must outlive the services.
  bool read_only = false;
  // Decides every call; null admits everyone. Not owned; must outlive.
  const rpc::Authorizer* authorizer = nullptr;
  // Downloads FetchBlob misses from allowed origins; null: never. Not
  // owned; must outlive the services.
  OriginFetcher* origin = nullptr;
  // Charges each Push (the serialized request, what the mapping stores) to
  // its principal, refusing past the hourly quota with RESOURCE_EXHAUSTED
  // and a retry delay; null: no quota. Not owned; must outlive.
  rpc::WriteQuota* write_quota = nullptr;
};

// Returns the Fetch service.
std::unique_ptr<::build::bazel::remote::asset::v1::Fetch::CallbackService>
NewFetchService(const AssetServiceOptions& options);

// Returns the Push service.
std::unique_ptr<::build::bazel::remote::asset::v1::Push::CallbackService>
NewPushService(const AssetServiceOptions& options);

}  // namespace cairn::asset

#endif  // CAIRN_ASSET_SERVICE_ASSET_SERVICE_H_
