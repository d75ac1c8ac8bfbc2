// AssetStore: names for content in the CAS, over a BlobStore. An asset is
// named by (instance, URI, qualifiers) and resolves to a blob or to a
// Directory tree; this is what the Remote Asset API's Push records and its
// Fetch answers, and what the HTTP cache's /kv space keeps per key.
//
// Each (kind, instance, URI, sorted qualifiers) becomes a 64-hex keyed entry
// of the BlobStore (so no client text ever becomes a path) holding a
// StoredAsset. Resolve() serves a mapping only while it has not expired, was
// stored no earlier than the caller accepts, and everything it names is still
// in the CAS: the blob, the referenced blobs, and every Directory and file of
// the referenced trees (the action cache's completeness rule). Otherwise the
// answer is NOT_FOUND, so a client re-creates the content rather than getting
// a name it cannot use. This class never fetches from an origin (the Fetch
// service does, through an OriginFetcher, and records what it got here).
//
// Qualifiers are part of the name: a Resolve matches a Record with the same
// set. "checksum.sri" is also understood: a sha256 SRI must match the digest
// recorded (INVALID_ARGUMENT on Record, NOT_FOUND on Resolve otherwise);
// other SRI algorithms are INVALID_ARGUMENT (this server keys by SHA-256).
//
// Thread safety: all methods are safe to call concurrently. Methods block on
// the store (disk I/O): call them from a thread that may block.
#ifndef CAIRN_ASSET_ASSET_STORE_H_
#define CAIRN_ASSET_ASSET_STORE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "cairn/asset/stored_asset.pb.h"
#include "cas/blob_store.h"
#include "cas/digest.h"

namespace cairn::asset {

// A (name, value) qualifier.
using Qualifier = std::pair<std::string, std::string>;

// Most URIs and qualifiers in one request, and longest URI / qualifier text.
inline constexpr size_t kMaxUris = 64;
inline constexpr size_t kMaxQualifiers = 64;
inline constexpr size_t kMaxNameBytes = 8192;

// Returns OK when `uris` and `qualifiers` can name an asset: 1..kMaxUris
// non-empty URIs, at most kMaxQualifiers qualifiers with non-empty, distinct
// names, every text at most kMaxNameBytes and free of NUL; a "checksum.sri"
// qualifier must be "sha256-<base64 of 32 bytes>". INVALID_ARGUMENT naming
// the problem otherwise (no URIs: "at least one URI is required").
absl::Status ValidateAssetName(absl::Span<const std::string> uris,
                               absl::Span<const Qualifier> qualifiers);

// Returns the 64-hex store key of one asset name. Qualifier order does not
// matter; every field is length-prefixed so no two names collide.
std::string AssetKey(StoredAsset::Kind kind, absl::string_view instance,
                     absl::string_view uri,
                     absl::Span<const Qualifier> qualifiers);

// What Resolve() found.
struct ResolvedAsset {
  std::string uri;  // Which of the URIs asked for resolved.
  StoredAsset asset;
  // Not OK when a download from the origin failed (then the rest is empty).
  absl::Status fetch_status;
};

class AssetStore {
 public:
  // `store` is not owned and must outlive this object.
  explicit AssetStore(cas::BlobStore* store) : store_(store) {}

  AssetStore(const AssetStore&) = delete;
  AssetStore& operator=(const AssetStore&) = delete;

  // Records `asset` (kind, digest, references, expiry) under every URI in
  // `uris` with `qualifiers`, replacing earlier mappings; sets its push
  // time to now. INVALID_ARGUMENT for a bad name (ValidateAssetName), a
  // malformed digest, or a checksum.sri that does not match the digest;
  // FAILED_PRECONDITION when the content or a reference is not in the CAS
  // (upload it first); RESOURCE_EXHAUSTED when the store is full.
  absl::Status Record(absl::string_view instance,
                      absl::Span<const std::string> uris,
                      absl::Span<const Qualifier> qualifiers,
                      StoredAsset asset);

  // Returns the first of `uris` (in order) whose mapping of `kind` with
  // exactly `qualifiers` exists, was pushed at or after `oldest_accepted`,
  // has not expired, and whose content is all present. NOT_FOUND otherwise;
  // INVALID_ARGUMENT for a bad name. Marks what it checked recently used.
  absl::StatusOr<ResolvedAsset> Resolve(StoredAsset::Kind kind,
                                        absl::string_view instance,
                                        absl::Span<const std::string> uris,
                                        absl::Span<const Qualifier> qualifiers,
                                        absl::Time oldest_accepted);

 private:
  // Returns OK when everything `asset` names is in the CAS; NOT_FOUND
  // naming the first missing digest otherwise.
  absl::Status CheckComplete(const StoredAsset& asset);
  // Returns OK when the Directory `root` and every file and Directory below
  // it are present; NOT_FOUND or INVALID_ARGUMENT (not a Directory) else.
  absl::Status CheckTree(const cas::Digest& root);

  cas::BlobStore* const store_;  // Not owned.
};

}  // namespace cairn::asset

#endif  // CAIRN_ASSET_ASSET_STORE_H_
