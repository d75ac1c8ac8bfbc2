// The HTTP/1.1 cache interface: the same store as the gRPC services, for
// tools that speak plain HTTP (Bazel's --remote_cache=http://, ccache,
// Gradle's HttpBuildCache, sccache's WebDAV backend with
// SCCACHE_WEBDAV_DISABLE_CREATE_DIR=true: it then sends only GET and PUT).
//
//   GET|HEAD|PUT /[INSTANCE/]cas/SHA256  bazel-remote compatible CAS: a PUT
//       is verified against the hash (400 on a mismatch). A GET serves blobs
//       uploaded over HTTP (the hash alone does not give the size, so each
//       PUT records it).
//   GET|HEAD|PUT /[INSTANCE/]ac/SHA256   an ActionResult (serialised proto),
//       validated as on gRPC (400 when malformed) and served only while its
//       outputs are in the CAS. Kept apart from gRPC action results, which
//       are keyed by the full action digest (HTTP gives only the hash).
//   GET|HEAD|PUT /kv/NAMESPACE/KEY...    any key a tool chooses (up to 1 KiB;
//       never a file path): the body is stored as a CAS blob and the key as
//       an asset name pointing at it (asset/asset_store.h).
// 404 on a miss; 401 without acceptable credentials, 403 for writes by a
// read-only principal or on a read-only server; 413 above the blob size
// limit; 507 when the store is full; 429 with Retry-After (seconds) past the
// principal's --write_quota_per_hour (rpc/write_quota.h). Any other method
// (POST, DELETE, and WebDAV's PROPFIND or MKCOL, which cpp-httplib cannot
// even parse) gets 405 with `Allow: GET, HEAD, PUT`, a GET with a body 400;
// these, and a PUT refused before its body is read, close their connection
// without reading the body (never taken for a next request, never buffered
// in memory).
//
// Credentials: `Authorization: Bearer TOKEN`, or HTTP basic auth whose
// password (or, without one, user name) is a token from the same tokens
// file as gRPC (rpc/auth.h).
//
// Bodies stream both ways in fixed-size chunks (GET honours Range: 206): a
// PUT whose digest is known up front (cas with Content-Length) goes straight
// into a BlobWriter; other bodies over 1 MiB, and chunked ones, are spooled
// to an unlinked temporary file while hashed, then copied into the store.
// Connections are served by a fixed pool of threads with keep-alive; when all
// are busy, accepted connections wait in a bounded queue and then in the
// kernel's backlog.
//
// Built on cpp-httplib (Debian libcpp-httplib, already used for /metrics).
//
// Thread safety: Start/Stop from one thread; requests run on the pool.
#ifndef CAIRN_HTTP_HTTP_CACHE_H_
#define CAIRN_HTTP_HTTP_CACHE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "actioncache/action_cache.h"
#include "asset/asset_store.h"
#include "cas/blob_store.h"
#include "rpc/auth.h"
#include "rpc/metrics.h"
#include "rpc/write_quota.h"

namespace cairn::http {

// A front end's options (listener, store, authorizer, metrics, limits), the
// same shape as server::ServerOptions on purpose; each names its own.
struct HttpCacheOptions {
  // HOST:PORT; port 0 picks a free port (see HttpCache::port()).
  std::string listen = "127.0.0.1:8080";
  cas::BlobStore* store = nullptr;  // Not owned; must outlive the cache.
  // Not owned; must outlive the cache. Null: made over `store`.
  actioncache::ActionCache* action_cache = nullptr;
  asset::AssetStore* assets = nullptr;
  // Decides every request; null admits everyone. Not owned.
  const rpc::Authorizer* authorizer = nullptr;
  bool read_only = false;
  // Largest body accepted; 0 means no limit beyond the store's.
  int64_t max_blob_size_bytes = 0;
  // Connection threads (0: 4 x cores, at least 8) and connections that may
  // wait for one (0: 4 per thread).
  int threads = 0;
  int max_queued_connections = 0;
  // Directory for spooled request bodies; empty: the system's temp dir.
  std::string spool_dir;
  // PEM certificate and key: serve HTTPS. With client_ca_file, clients must
  // present a certificate signed by it.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Per-route request counts, latencies and bytes; null: none. Not owned.
  rpc::Registry* metrics = nullptr;
  // Charges each PUT's body to its principal (token, certificate identity,
  // or client address), as the gRPC write paths do; null: no quota. Not
  // owned; must outlive the cache.
  rpc::WriteQuota* write_quota = nullptr;
};

class HttpCache {
 public:
  virtual ~HttpCache() = default;
  // Returns the bound TCP port.
  virtual int port() const = 0;
  // Stops accepting, lets requests in progress finish, joins the threads.
  // Idempotent; also run by the destructor.
  virtual void Stop() = 0;
};

// Starts serving. INVALID_ARGUMENT for a malformed address or options,
// UNAVAILABLE when the address cannot be bound or TLS files not loaded.
absl::StatusOr<std::unique_ptr<HttpCache>> StartHttpCache(
    const HttpCacheOptions& options);

}  // namespace cairn::http

#endif  // CAIRN_HTTP_HTTP_CACHE_H_
