// The ByteStream service as REAPI uses it, a thin streaming adapter over
// BlobStore::OpenRead/OpenWrite. Reactor methods validate only; every store
// call runs on the IoPool, which starts the next read/write or finishes.
//
// Read  "{instance}/blobs/{hash}/{size}": streams from read_offset in chunks
//       of read_chunk_bytes, at most read_limit bytes (0 = no limit; a limit
//       past the end is not an error). Offset < 0 or > size: OUT_OF_RANGE;
//       negative limit: INVALID_ARGUMENT; absent: NOT_FOUND. Reading to the
//       end verifies the blob first: a corrupt blob ends the call with
//       DATA_LOSS before its last chunk is sent.
// Write "{instance}/uploads/{uuid}/blobs/{hash}/{size}[/{metadata}]": the
//       first message names the resource; every write_offset must equal the
//       bytes committed so far (INVALID_ARGUMENT otherwise); finish_write
//       verifies and commits (INVALID_ARGUMENT on a digest mismatch). When the
//       blob already exists the call ends at once with committed_size = size.
//       A stream that ends without finish_write keeps its bytes for resuming
//       (at most max_partial_uploads, each for partial_upload_idle_timeout);
//       the client resumes with write_offset =
//       QueryWriteStatus().committed_size. PERMISSION_DENIED in read-only mode;
//       blobs over max_cas_blob_size_bytes: INVALID_ARGUMENT.
// QueryWriteStatus: committed_size/complete of an upload, or of a stored blob
//       (complete); NOT_FOUND for an unknown upload.
// compressed-blobs/zstd: Read streams zstd frames of the blob from
//       read_offset (an uncompressed offset; read_limit must be 0, else
//       INVALID_ARGUMENT). Write decompresses while streaming (bounded by the
//       digest size); write_offset counts compressed bytes after the first
//       request, which must start at 0 (compressed uploads do not resume);
//       committed_size is the compressed byte count, or -1 when the blob
//       already existed.
//
// Thread safety: the service is safe for concurrent calls. Partial uploads
// live in a map guarded by a mutex (never held across I/O).
#ifndef CAIRN_CAS_SERVICE_BYTESTREAM_SERVICE_H_
#define CAIRN_CAS_SERVICE_BYTESTREAM_SERVICE_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/time/time.h"
#include "cas/blob_store.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "rpc/auth.h"
#include "rpc/idle_watchdog.h"
#include "rpc/io_pool.h"

namespace cairn::cas {

// The options every service adapter takes (store, pool, authorizer, limits),
// the same shape as CasServiceOptions on purpose; each names its own.
struct ByteStreamServiceOptions {
  BlobStore* store = nullptr;      // Not owned; must outlive the service.
  rpc::IoPool* pool = nullptr;     // Not owned; must outlive the service.
  bool read_only = false;
  // Largest blob accepted for upload; 0 means no limit.
  int64_t max_cas_blob_size_bytes = 0;
  // Bytes per ReadResponse.
  size_t read_chunk_bytes = size_t{1} << 20;
  // Interrupted uploads kept for resuming; the oldest is dropped beyond this.
  size_t max_partial_uploads = 64;
  // An interrupted upload not resumed within this time is dropped.
  absl::Duration partial_upload_idle_timeout = absl::Minutes(10);
  // Decides every call (read; write for Write); null admits everyone. Not
  // owned; must outlive the service.
  const rpc::Authorizer* authorizer = nullptr;
  // Cancels uploads whose client stalls; null means never. Not owned; must
  // outlive the service.
  rpc::IdleWatchdog* watchdog = nullptr;
};

// Returns the ByteStream service over `options.store`.
std::unique_ptr<::google::bytestream::ByteStream::CallbackService>
NewByteStreamService(const ByteStreamServiceOptions& options);

}  // namespace cairn::cas

#endif  // CAIRN_CAS_SERVICE_BYTESTREAM_SERVICE_H_
