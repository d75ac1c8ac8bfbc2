// S3Client: the few S3 operations the shared tier needs, over libcurl with
// its built-in AWS Signature V4 signing (CURLOPT_AWS_SIGV4). No gRPC types.
//
// Addressing: path style (`endpoint/bucket/key`) or virtual-host style
// (`bucket.host/key`). Keys are used verbatim in the URL; callers pass keys
// made of [A-Za-z0-9._/-] only (NewS3Client checks the prefix, the stores
// build the rest from hex).
//
// Signing: every request carries `x-amz-content-sha256` (libcurl 7.88 does
// not add it): the body's SHA-256 when the caller knows it (a CAS blob's
// digest, so the engine checks the content end to end), computed here for
// small bodies, UNSIGNED-PAYLOAD otherwise. Query strings are built already
// canonical (sorted, percent-encoded), which libcurl 7.88 requires.
//
// Connections are reused across requests and threads (one curl share handle
// holding the connection cache, DNS and TLS sessions; a pool of easy handles).
// At most `max_concurrency` requests are in flight at once; more wait.
// Every request has a deadline: `request_timeout` for requests without a big
// body, and for streamed bodies a stall limit (`stall_timeout` without a
// byte moving) so that a stopped engine, which still accepts TCP connections,
// cannot hang a caller.
//
// Errors: 404 -> NOT_FOUND; 412 (If-None-Match) -> ALREADY_EXISTS; 403/401
// -> PERMISSION_DENIED; 416 -> OUT_OF_RANGE; 400 -> INVALID_ARGUMENT (for
// example a content hash mismatch); other 4xx -> FAILED_PRECONDITION;
// 5xx, timeouts and connection failures -> UNAVAILABLE. Messages name the
// operation, the key, the HTTP status and the engine's error code.
//
// Thread safety: every method is safe to call concurrently.
#ifndef CAIRN_CAS_S3_CLIENT_H_
#define CAIRN_CAS_S3_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace cairn::cas {

struct S3Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // Optional (temporary credentials).
};

// One finished request, reported to S3ClientOptions::on_request.
struct S3RequestRecord {
  absl::string_view kind;  // "head", "get", "put", "copy", "multipart", ...
  int http_status = 0;     // 0 when no response arrived.
  absl::StatusCode code = absl::StatusCode::kOk;
  double seconds = 0;
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
  // Connections the request had to open (0: it reused a kept one).
  int64_t connections_opened = 0;
};

struct S3ClientOptions {
  // "https://host[:port]" or "http://host[:port]"; no path.
  std::string endpoint;
  std::string bucket;
  std::string region = "us-east-1";
  bool path_style = false;
  // PEM bundle of trusted CAs; empty: the system's.
  std::string ca_file;
  S3Credentials credentials;
  int max_concurrency = 32;
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration request_timeout = absl::Seconds(30);
  absl::Duration stall_timeout = absl::Seconds(30);
  // Called before and after every request (any thread); must be
  // thread-safe.
  std::function<void(absl::string_view kind)> on_start;
  std::function<void(const S3RequestRecord&)> on_request;
};

// What HEAD tells about an object.
struct S3ObjectInfo {
  int64_t size = 0;
  absl::Time last_modified;
};

// Receives a streamed body; a non-OK status aborts the transfer and is
// returned by the request.
using S3Sink = std::function<absl::Status(absl::string_view chunk)>;

class S3Client {
 public:
  virtual ~S3Client() = default;

  // Returns the bucket's existence and our access to it (HEAD bucket).
  virtual absl::Status CheckBucket() = 0;

  // Returns the object's size and Last-Modified. NOT_FOUND when absent.
  virtual absl::StatusOr<S3ObjectInfo> Head(absl::string_view key) = 0;

  // HEADs every key with up to `max_concurrency` requests in flight; one
  // result per key, in order.
  virtual std::vector<absl::StatusOr<S3ObjectInfo>> HeadMany(
      absl::Span<const std::string> keys) = 0;

  // Streams the object's bytes [offset, offset + length) to `sink`
  // (length < 0: to the end). Returns the whole object's size and its
  // Last-Modified on success.
  virtual absl::StatusOr<S3ObjectInfo> Get(absl::string_view key,
                                           int64_t offset, int64_t length,
                                           const S3Sink& sink) = 0;

  // GETs the whole object under each key, up to `max_concurrency` at once
  // on one thread, streaming keys[i]'s body to sinks[i] (one sink per key);
  // one result per key, in order, as Get() answers it.
  virtual std::vector<absl::StatusOr<S3ObjectInfo>> GetMany(
      absl::Span<const std::string> keys, absl::Span<const S3Sink> sinks) = 0;

  // Returns the whole object (small objects).
  virtual absl::StatusOr<std::string> GetAll(absl::string_view key) = 0;

  // Stores `body` under `key`. `sha256_hex` is its SHA-256 (empty: computed
  // here). With `if_absent`, sends If-None-Match: * and answers
  // ALREADY_EXISTS when the key exists (nothing is uploaded twice).
  virtual absl::Status Put(absl::string_view key, absl::string_view body,
                           absl::string_view sha256_hex, bool if_absent) = 0;

  // Multipart upload (parts of at least 5 MiB but the last).
  // Returns the upload id.
  virtual absl::StatusOr<std::string> CreateMultipart(
      absl::string_view key) = 0;
  // Uploads part `number` (1-based); returns its ETag.
  virtual absl::StatusOr<std::string> UploadPart(absl::string_view key,
                                                 absl::string_view upload_id,
                                                 int number,
                                                 absl::string_view body) = 0;
  // Completes the upload from the parts' ETags, in part order.
  virtual absl::Status CompleteMultipart(
      absl::string_view key, absl::string_view upload_id,
      absl::Span<const std::string> etags) = 0;
  // Abandons the upload (best effort).
  virtual absl::Status AbortMultipart(absl::string_view key,
                                      absl::string_view upload_id) = 0;

  // Copies the object onto itself with its metadata replaced, which resets
  // its Last-Modified (and so its lifecycle age). NOT_FOUND when absent.
  virtual absl::Status Refresh(absl::string_view key) = 0;
};

// Returns a client for `options`. INVALID_ARGUMENT for a malformed endpoint,
// bucket or missing credentials; FAILED_PRECONDITION when libcurl cannot be
// loaded (cas/curl_api.h: the first client loads it). Makes no request.
absl::StatusOr<std::unique_ptr<S3Client>> NewS3Client(
    const S3ClientOptions& options);

// Reads credentials the way AWS tools do: AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN from the environment; else the
// profile AWS_PROFILE (default "default") of the file
// AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials). NOT_FOUND when
// neither has them.
absl::StatusOr<S3Credentials> LoadS3Credentials();

// Same, from explicit values (tests): `env` answers a variable (nullopt when
// unset), `home` is $HOME.
absl::StatusOr<S3Credentials> LoadS3CredentialsFrom(
    const std::function<std::optional<std::string>(const char*)>& env);

// Returns the fields of an S3 XML document: the text of the first element
// named by each entry of `names` (local names, any depth); absent ones are
// missing from the result. INVALID_ARGUMENT when the XML is malformed.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
ParseS3XmlForTest(absl::string_view xml, absl::Span<const std::string> names);

// Returns true when `key` holds only [A-Za-z0-9._/-], the characters keys
// may use.
bool S3KeyIsSafe(absl::string_view key);

// Returns the RFC 3986 encoding of `s` for a canonical query string
// (unreserved characters kept, everything else %XX, uppercase).
std::string S3QueryEncode(absl::string_view s);

}  // namespace cairn::cas

#endif  // CAIRN_CAS_S3_CLIENT_H_
