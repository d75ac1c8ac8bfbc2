// Parsing of the HTTP cache's request paths (see http_cache.h):
//
//   /[INSTANCE/]cas/SHA256   a CAS blob by its SHA-256 (bazel-remote layout)
//   /[INSTANCE/]ac/SHA256    an ActionResult by its action's SHA-256
//   /kv/NAMESPACE/KEY...     a body under any key a tool chooses
//
// Nothing here touches a file system: instances and keys only ever become
// part of a hashed store key.
//
// Thread safety: free functions over values.
#ifndef CAIRN_HTTP_HTTP_PATH_H_
#define CAIRN_HTTP_HTTP_PATH_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cairn::http {

// Longest /kv key (namespace and path after "/kv/") accepted.
inline constexpr size_t kMaxKvKeyBytes = 1024;

struct CachePath {
  enum class Route { kCas, kAc, kKv };
  Route route = Route::kCas;
  std::string instance;  // kCas, kAc: "" or the instance name.
  std::string hash;      // kCas, kAc: 64 lowercase hex characters.
  std::string key;       // kKv: "NAMESPACE/KEY...", never empty parts.
};

// Returns the route named by `path` (already percent-decoded, starting with
// '/'). INVALID_ARGUMENT for a malformed hash, instance or key (too long,
// NUL, empty namespace or key, '.' or '..' segments in an instance);
// NOT_FOUND for a path that names no route.
absl::StatusOr<CachePath> ParseCachePath(absl::string_view path);

// Returns the route's label for metrics: "cas", "ac" or "kv".
absl::string_view RouteName(CachePath::Route route);

}  // namespace cairn::http

#endif  // CAIRN_HTTP_HTTP_PATH_H_
