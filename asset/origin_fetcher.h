// OriginFetcher: downloads an asset from its origin (http:// or https://)
// into the CAS, for the Remote Asset API's Fetch when nothing was pushed or
// cached under the name (Bazel's --experimental_remote_downloader expects
// this). Off unless the operator lists URI prefixes that may be fetched:
// letting clients make the server open arbitrary URLs would let them reach
// whatever the server can reach.
//
// A download is streamed into an unlinked spool file while hashed, then
// stored as a verified CAS blob; bodies above `max_bytes` are refused.
// Redirects are followed (at most 5, http and https only); the allow-list is
// checked on the URI asked for.
//
// Thread safety: Fetch() may be called concurrently; it blocks (network and
// disk), so call it from a thread that may block.
#ifndef CAIRN_ASSET_ORIGIN_FETCHER_H_
#define CAIRN_ASSET_ORIGIN_FETCHER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cas/blob_store.h"
#include "cas/digest.h"

namespace cairn::asset {

struct OriginFetcherOptions {
  cas::BlobStore* store = nullptr;  // Not owned; must outlive the fetcher.
  // URI prefixes that may be fetched, each starting with http:// or
  // https:// (e.g. "https://github.com/"). Empty: nothing is fetched.
  std::vector<std::string> allowed_prefixes;
  std::string spool_dir;   // Where downloads wait; "" = temp dir.
  int64_t max_bytes = 0;   // Largest body; 0 = no limit but the store's.
  int max_concurrent = 4;  // Downloads at once; more: RESOURCE_EXHAUSTED.
  absl::Duration default_timeout = absl::Seconds(60);
  absl::Duration max_timeout = absl::Minutes(10);
};

class OriginFetcher {
 public:
  virtual ~OriginFetcher() = default;

  // Returns true when `uri` starts with one of the allowed prefixes.
  virtual bool Allows(absl::string_view uri) const = 0;

  // Downloads `uri` and stores it in the CAS; returns its digest.
  // `timeout` (0 = the default; clamped to the maximum) bounds the whole
  // download. FAILED_PRECONDITION when `uri` is not allowed; NOT_FOUND when
  // the origin answers 404 or 410; DEADLINE_EXCEEDED on timeout;
  // RESOURCE_EXHAUSTED when too many downloads run, the body is over
  // max_bytes or the store is full; UNAVAILABLE for other network or HTTP
  // errors (naming the URI and the origin's status).
  virtual absl::StatusOr<cas::Digest> Fetch(absl::string_view uri,
                                            absl::Duration timeout) = 0;
};

// Returns a fetcher over libcurl. INVALID_ARGUMENT when a prefix is not an
// http:// or https:// URI or `store` is null; FAILED_PRECONDITION when
// libcurl cannot be loaded (cas/curl_api.h).
absl::StatusOr<std::unique_ptr<OriginFetcher>> NewHttpOriginFetcher(
    OriginFetcherOptions options);

}  // namespace cairn::asset

#endif  // CAIRN_ASSET_ORIGIN_FETCHER_H_
