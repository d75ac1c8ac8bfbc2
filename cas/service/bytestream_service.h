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
//       QueryWriteStatus().committed_size. Uploads in progress are capped
//       per client and in total (UploadLimits), and so are the bytes a
//       client writes per hour (write_quota): RESOURCE_EXHAUSTED, with a
//       google.rpc.RetryInfo delay, when a new one would pass a cap (as for
//       max_streams_per_client). PERMISSION_DENIED in read-only mode;
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

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/time/time.h"
#include "cas/blob_store.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "rpc/auth.h"
#include "rpc/idle_watchdog.h"
#include "rpc/io_pool.h"
#include "rpc/write_quota.h"

namespace cairn::cas {

// The memory all Read calls together hold in response buffers. Each Read
// keeps two buffers (the chunk gRPC is sending and the next one, read
// ahead); each buffer's size is the fair share budget / (2 x open reads),
// clamped to [min_chunk, max_chunk], and a buffer only grows while the total
// stays within the budget. So the buffers hold at most
//   budget + 2 x min_chunk x open reads
// (only buffers growing to min_chunk may pass the budget). gRPC sends the
// buffer itself (no serialized copy), so a Read costs 2 chunks; a buffer
// gRPC still holds when the Read would refill it is replaced and freed when
// gRPC lets go (at most one more chunk per call). Flow control keeps the rest
// of the blob on disk until the client has taken the previous chunk.
// Compressed reads hold one uncompressed chunk more (not counted).
//
// Thread safety: all methods are safe to call concurrently.
class ReadBufferBudget {
 public:
  ReadBufferBudget(int64_t budget_bytes, size_t min_chunk, size_t max_chunk);
  ReadBufferBudget(const ReadBufferBudget&) = delete;
  ReadBufferBudget& operator=(const ReadBufferBudget&) = delete;

  // Counts a Read call in (or out of) the fair share.
  void AddStream();
  void RemoveStream();

  // Resizes the grant of one buffer now granted `*granted` bytes to what it
  // may hold for its next chunk, and returns it (also in `*granted`).
  size_t Regrant(size_t* granted);

  // Gives back a buffer's grant (the call is over).
  void Release(size_t granted);

  int64_t held_bytes() const { return held_.load(); }
  int64_t peak_bytes() const { return peak_.load(); }
  int64_t streams() const { return streams_.load(); }
  int64_t budget_bytes() const { return budget_; }
  size_t min_chunk() const { return min_chunk_; }

 private:
  const int64_t budget_;
  const size_t min_chunk_;
  const size_t max_chunk_;
  std::atomic<int64_t> held_{0};
  std::atomic<int64_t> peak_{0};
  std::atomic<int64_t> streams_{0};
};

// Caps on uploads in progress (active or parked for a resume), per client
// (rpc::PrincipalOf: verified token, certificate identity or peer address)
// and in total; 0 means no cap. Each upload counts its blob's size, which
// the store reserves while it is in progress.
struct UploadLimits {
  int64_t max_uploads_per_client = 0;
  int64_t max_bytes_per_client = 0;
  int64_t max_bytes = 0;
};

// How often the limits bit (for metrics). Thread-safe counters.
struct UploadLimitStats {
  std::atomic<int64_t> refused_client_uploads{0};  // Over the count.
  std::atomic<int64_t> refused_client_bytes{0};    // Over the client's bytes.
  std::atomic<int64_t> refused_total_bytes{0};     // Over the total bytes.
  std::atomic<int64_t> dropped_parked{0};  // Parked uploads dropped to fit.
  // ByteStream calls refused: the client had max_streams_per_client open.
  std::atomic<int64_t> refused_client_streams{0};
};

// The options every service adapter takes (store, pool, authorizer, limits),
// the same shape as CasServiceOptions on purpose; each names its own.
struct ByteStreamServiceOptions {
  BlobStore* store = nullptr;   // Not owned; must outlive the service.
  rpc::IoPool* pool = nullptr;  // Not owned; must outlive the service.
  bool read_only = false;
  // Largest blob accepted for upload; 0 means no limit.
  int64_t max_cas_blob_size_bytes = 0;
  // Bytes per ReadResponse (at most: see read_buffers).
  size_t read_chunk_bytes = size_t{1} << 20;
  // Shares read buffer memory among Read calls (see ReadBufferBudget); null
  // means every Read uses read_chunk_bytes chunks. Not owned; must outlive
  // the service.
  ReadBufferBudget* read_buffers = nullptr;
  // Interrupted uploads kept for resuming; beyond this the oldest of the
  // client parking the most is dropped.
  size_t max_partial_uploads = 64;
  // Caps on uploads in progress; a new upload over a cap drops the client's
  // own parked uploads first, else answers RESOURCE_EXHAUSTED.
  UploadLimits upload_limits;
  // Most ByteStream calls (Read and Write) one client may have open at once;
  // past it a call is refused with RESOURCE_EXHAUSTED. 0 means no cap.
  int64_t max_streams_per_client = 0;
  // Counts how often the caps bite; null keeps the counts private. Not
  // owned; must outlive the service.
  UploadLimitStats* upload_stats = nullptr;
  // Charges each upload's bytes to its client (refusing past the hourly
  // quota) and counts what it stored; null means no quota. Not owned; must
  // outlive the service.
  rpc::WriteQuota* write_quota = nullptr;
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
