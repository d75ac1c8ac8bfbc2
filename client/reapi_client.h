// ReapiClient: a reusable client for the cache half of the Remote Execution
// API v2 (ActionCache, ContentAddressableStorage, ByteStream, Capabilities).
//
// Targets: grpc://HOST:PORT (plaintext), grpcs://HOST:PORT (TLS, optional CA
// file and client certificate/key) and unix:///PATH. Every call carries a
// deadline (`timeout` per attempt) and the extra request headers; calls
// failing with UNAVAILABLE or RESOURCE_EXHAUSTED are retried with jittered
// exponential backoff up to `max_attempts`. Capabilities are read once, on
// first need, and cached. Blobs up to the batch limit travel through
// BatchUpdateBlobs / BatchReadBlobs; larger ones through ByteStream, streamed
// in chunks so no call holds a large blob twice.
//
// Coalescing: concurrent small-blob calls share round trips. UploadBlob and
// ReadBlob of blobs up to the batch limit queue their blob; while fewer than
// `batch_calls_in_flight` batch calls of that kind are running, a waiting
// caller takes the queued blobs from the front (as many as fit in one batch:
// the limit counts each blob's bytes plus kBatchItemFraming) and makes one
// call for all of them: uploads one FindMissingBlobs and then one
// BatchUpdateBlobs for those missing, reads one BatchReadBlobs. An idle
// client sends a lone blob at once; a busy one carries everything that
// queued meanwhile. Each caller still gets its own blob's status; a failed
// call fails every blob it carried. Blobs over the limit go alone, through
// ByteStream.
//
// Compression: when the server advertises zstd (Capabilities
// supported_compressors; supported_batch_update_compressors for batch
// uploads) and `compression` is on, blobs travel zstd-compressed: ByteStream
// "compressed-blobs/zstd" reads and writes, BatchReadBlobs with
// acceptable_compressors, BatchUpdateBlobs items with compressor ZSTD (only
// when that makes them smaller). Digests and their checks stay on the
// uncompressed bytes.
//
// Only SHA-256 is spoken. No gRPC types appear here; messages are the REAPI
// protobuf types.
//
// Thread safety: all methods are safe to call concurrently from any thread.
#ifndef CAIRN_CLIENT_REAPI_CLIENT_H_
#define CAIRN_CLIENT_REAPI_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "cas/digest.h"

namespace cairn::client {

namespace reapi = ::build::bazel::remote::execution::v2;

struct ReapiClientOptions {
  // grpc://HOST:PORT, grpcs://HOST:PORT or unix:///PATH.
  std::string target;
  std::string instance_name;
  // PEM files for grpcs://; an empty CA file means the system roots.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // Extra request headers sent with every call (names are lowercased).
  std::vector<std::pair<std::string, std::string>> headers;
  // Deadline of each attempt of each call.
  absl::Duration timeout = absl::Seconds(10);
  // Attempts per call (1 = no retry) and the first backoff delay.
  int max_attempts = 3;
  absl::Duration initial_backoff = absl::Milliseconds(50);
  // Tool name sent in the REAPI RequestMetadata header.
  std::string tool_name = "cairn";
  // Batch limit assumed when the server advertises none.
  int64_t default_batch_limit = 4 * 1024 * 1024 - 64 * 1024;
  // Use zstd on the wire when the server advertises it.
  bool compression = true;
  // Batch calls of one kind (uploads, plain reads, zstd reads) running at
  // once; callers arriving meanwhile queue and share the next call.
  int batch_calls_in_flight = 2;
  // Called when a call starts waiting for a batch to carry its blob (tests
  // only: lets a test see that callers have queued).
  std::function<void()> on_batch_wait_for_test;
};

// Bytes counted for each blob of a batch, on top of its data, when filling a
// batch up to the limit (digest, status and framing of one item).
inline constexpr int64_t kBatchItemFraming = 128;

// Blob payload bytes that crossed the wire (compressed size when compressed)
// and the uncompressed bytes they carried.
struct WireCounters {
  int64_t received = 0;
  int64_t received_plain = 0;
  int64_t sent = 0;
  int64_t sent_plain = 0;
  // RPC attempts made (every method, retries included).
  int64_t calls = 0;
};

// Parses "name=value" (also "name: value") into a header pair, lowercasing
// the name. INVALID_ARGUMENT when there is no separator or the name is empty
// once surrounding spaces are trimmed.
absl::StatusOr<std::pair<std::string, std::string>> ParseHeader(
    absl::string_view spec);

// Produces successive chunks of a blob being uploaded: called with the offset
// of the next chunk and the most bytes wanted; returns the bytes (empty only
// at the end).
using ChunkSource =
    std::function<absl::StatusOr<std::string>(int64_t offset, int64_t max)>;

// Receives successive chunks of a blob being downloaded, in order.
using ChunkSink = absl::FunctionRef<absl::Status(absl::string_view chunk)>;

// How ReapiClient::ReadBlobWith moves and checks one blob.
struct ReadBlobOptions {
  // Let the bytes travel zstd-compressed when the server offers it (off for
  // callers that measured compression not to pay).
  bool allow_compression = true;
  // Check the SHA-256 of the bytes. Off only for callers that hash what the
  // sink receives anyway and discard it on a mismatch (the Go shim's local
  // store checks every body against its OutputID): the bytes are then
  // hashed once, not twice. The size is checked either way.
  bool verify_hash = true;
};

class ReapiClient {
 public:
  virtual ~ReapiClient() = default;

  // Returns the server's cache capabilities, fetched once and then cached
  // (a failed fetch is not cached). Errors are the RPC's.
  virtual absl::StatusOr<reapi::CacheCapabilities> GetCapabilities() = 0;

  // Sends one GetCapabilities call (one attempt, not cached) and returns its
  // status: a round trip that touches no storage (servers answer it from
  // memory: cairn-server, bazel-remote, Buildbarn, BuildBuddy), so timing
  // it measures the network and not the server's disk or bucket.
  virtual absl::Status Ping() = 0;

  // Returns the largest total blob size sent in one batch call: the
  // advertised limit (minus framing headroom) or the default.
  virtual absl::StatusOr<int64_t> BatchLimit() = 0;

  // Returns the ActionResult stored under `action`, asking the server to
  // inline the named output files. NOT_FOUND when absent.
  virtual absl::StatusOr<reapi::ActionResult> GetActionResult(
      const cas::Digest& action,
      absl::Span<const std::string> inline_output_files) = 0;

  // Stores `result` under `action`. PERMISSION_DENIED from read-only servers.
  virtual absl::Status UpdateActionResult(
      const cas::Digest& action, const reapi::ActionResult& result) = 0;

  // Returns the subset of `digests` the server does not hold.
  virtual absl::StatusOr<std::vector<cas::Digest>> FindMissingBlobs(
      absl::Span<const cas::Digest> digests) = 0;

  // Uploads one blob whose bytes `source` produces, unless the server already
  // has it (FindMissingBlobs first). Small blobs go in a BatchUpdateBlobs
  // call (shared with concurrent uploads, see "Coalescing"), large ones
  // through ByteStream Write. INVALID_ARGUMENT when the bytes do not match
  // `digest`: found by the server, or `source` ends early (nothing is stored
  // then). `source` may be called from another caller's thread while this
  // call waits.
  virtual absl::Status UploadBlob(const cas::Digest& digest,
                                  const ChunkSource& source) = 0;

  // Downloads one blob into `sink`, through BatchReadBlobs when small
  // (shared with concurrent reads, see "Coalescing") or ByteStream Read when
  // large; checks its SHA-256 and size (DATA_LOSS on
  // mismatch; the sink has then seen bad bytes and must discard them).
  // NOT_FOUND when absent.
  virtual absl::Status ReadBlob(const cas::Digest& digest, ChunkSink sink) = 0;

  // Like ReadBlob, with the choices of `options` (ReadBlobOptions).
  virtual absl::Status ReadBlobWith(const cas::Digest& digest, ChunkSink sink,
                                    const ReadBlobOptions& options) = 0;

  // Returns the blob bytes moved so far (ReadBlob and UploadBlob) and the
  // RPC attempts made.
  virtual WireCounters Counters() const = 0;

  // Returns true when ReadBlob moves bytes zstd-compressed (compression on
  // and advertised by the server); false also when capabilities cannot be
  // read.
  virtual bool CompressesReads() = 0;
};

// Returns a client for `options.target`. INVALID_ARGUMENT for a malformed
// target or header; NOT_FOUND / FAILED_PRECONDITION when TLS files cannot be
// read. Does not contact the server.
absl::StatusOr<std::unique_ptr<ReapiClient>> NewReapiClient(
    const ReapiClientOptions& options);

// Returns a ChunkSource over `data`, which must outlive the source.
ChunkSource StringChunkSource(absl::string_view data);

// Returns a ChunkSource reading the file at `path` (opened on first use).
ChunkSource FileChunkSource(std::string path);

}  // namespace cairn::client

#endif  // CAIRN_CLIENT_REAPI_CLIENT_H_
