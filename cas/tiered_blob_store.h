// NewTieredBlobStore(): the BlobStore of a node that shares one S3-compatible
// bucket with other nodes. The bucket is the store of record; a local
// BlobStore (the disk store) is a cache in front of it. Contract as in
// cas/blob_store.h, plus these semantics (docs/s3.md has the long form):
//
// Keys in the bucket: `<prefix>cas/<hash>` holds a CAS blob's bytes;
// `<prefix>ac/<key>` holds a keyed entry (action result) as written.
//
// Objects in the bucket are the blobs' plain bytes. A compressed upload
// (OpenWriteZstd()) is decompressed to check and upload it; the local tier
// gets the frames as they came. ReadAsStored()/OpenReadAsStored() answer as
// the local tier holds the blob (fetching it first when absent).
//
// Write-through: Write()/Commit() and PutEntry() succeed only after the
// bucket holds the item, or has confirmed holding it already (a CAS upload
// is a conditional PUT, If-None-Match: *, carrying the blob's SHA-256 as the
// signed payload hash, so the engine checks the bytes too; blobs of at least
// `multipart_threshold` are preceded by a HEAD and go up in streamed parts of
// `part_size`: memory stays flat in blob size). The local tier is filled
// after the bucket has the item, never before: a local item is one the bucket
// had. Once any node answers OK, every node sees the item.
//
// Read-through: a local miss of a blob up to `fetch_chunk` bytes fetches the
// object into the local tier, then serves it from there. A bigger blob is
// streamed: the reader fetches ranges of `fetch_chunk` bytes, hands each to
// the caller while appending it to the local tier and hashing it (memory
// stays flat in blob size); at the end a SHA-256 mismatch is DATA_LOSS from
// the last Read() (as BlobReader promises) and nothing is kept. Concurrent
// misses of one digest share one fetch: later ones wait for it to finish and
// read the local copy (if the streaming reader is dropped unfinished, a
// waiting miss starts its own fetch). A keyed entry missing locally is
// fetched the same way.
//
// Fetch-on-check: FindMissingForRead() (the action cache's completeness
// check, whose outputs the client reads next) GETs the digests the local
// tier lacks into it, all at once, instead of HEADing them, when they are
// at most `check_fetch_max_blobs` of at most `check_fetch_max_bytes` each:
// one bucket round trip confirms them and the reads that follow are local.
// The fill is verified as every fetch is, joins (and is joined by) fetches
// in progress, and a bucket error is UNAVAILABLE, never "missing". More or
// bigger digests are HEADed as FindMissingChecked() does.
//
// Entries with their blobs: PutEntry() naming blobs (an action result and its
// outputs) writes into the entry's object copies of those blobs the bucket
// is known to hold (existence cache) and the local tier has, in order,
// skipping those that would overflow `entry_blobs_max_bytes` in all. A copy
// of at least 2 KiB travels as zstd frames when they save an eighth (those
// the local tier holds, or compressed here); the budget counts the bytes
// carried, the plain bytes stay within four times it. A node
// fetching the entry puts each copy into its local tier only after checking
// it against its digest (WriteBlobs(), a compressed copy decompressed first
// and handed over with its frames, which the local tier may keep); a bad
// copy is dropped and counted as a corrupt fetch. So a cold node's hit costs
// one bucket request (the entry), not two (the entry, then its outputs). The
// copies are extra bytes in the bucket, not objects: each blob's own object
// stays the store of record and FindMissing never answers from a copy alone,
// except that without retention a kept copy counts as present (the writer saw
// its object, and Cairn never deletes). An object with copies starts with a
// different magic; nodes of older Cairn versions read it as a miss.
//
// FindMissing is exact: a blob is present when the positive-only existence
// cache (bucket confirmations, at most `existence_cache_entries`) has it
// within its retention window, or, with no retention configured, when the
// local tier has it; every other digest is checked against the bucket with
// HEAD (`head_concurrency` at once). FindMissingChecked() answers UNAVAILABLE
// when the bucket cannot answer; FindMissing() then reports those digests
// missing (callers that must tell the two apart use FindMissingChecked()).
//
// Retention: with `retention` > 0 (the bucket's lifecycle rule expires
// objects that long after their last write), an object a lookup finds older
// than `retention - refresh_margin` is refreshed by a server-side self-copy,
// so a blob reported present lives at least `refresh_margin` longer. The same
// holds for keyed entries: GetEntry() checks the entry's object age (one HEAD
// per entry per `retention - refresh_margin`, remembered) and refreshes it,
// or uploads the local copy again when the bucket lost it. Cairn never
// deletes from the bucket.
//
// Bucket down: local hits are served; writes and lookups the local tier
// cannot confirm answer UNAVAILABLE, unless `degraded_local` is set: then
// writes go to the local tier and onto a backlog (at most `backlog_max`
// items; beyond that writes answer UNAVAILABLE again), and FindMissing
// trusts the local tier. A background thread uploads the backlog, oldest
// first, once the bucket answers again (tried every `backlog_retry`, and at
// once when a request sees the bucket back). The backlog is appended to
// `backlog_file` (when set) and reloaded by the next store over that file,
// so a restart does not forget it; an item the local tier evicted before it
// went up is counted lost. Each request tries the bucket again, so the node
// recovers by itself.
//
// Keyed entries are PUT unconditionally (a value may change), but not again
// when this node knows the bucket holds an entry under the key and its local
// copy equals the value being stored.
//
// Thread safety: as BlobStore.
#ifndef CAIRN_CAS_TIERED_BLOB_STORE_H_
#define CAIRN_CAS_TIERED_BLOB_STORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cas/blob_store.h"
#include "cas/s3_client.h"

namespace cairn::cas {

struct TieredBlobStoreOptions {
  // Key prefix inside the bucket ("" or ending in '/'; [A-Za-z0-9._/-]).
  std::string prefix;
  // Lifecycle expiry of the bucket's objects; 0: none configured.
  absl::Duration retention = absl::ZeroDuration();
  // Refresh objects found older than retention - refresh_margin.
  absl::Duration refresh_margin = absl::Hours(24);
  int64_t multipart_threshold = int64_t{64} << 20;
  int64_t part_size = int64_t{16} << 20;  // >= 5 MiB.
  int64_t existence_cache_entries = 1 << 20;
  // Blobs larger than this are streamed to readers in ranges of this size.
  int64_t fetch_chunk = int64_t{4} << 20;
  // Fetch-on-check limits (see above); 0 blobs: always HEAD.
  int64_t check_fetch_max_blobs = 4;
  int64_t check_fetch_max_bytes = int64_t{4} << 20;
  // Entries with their blobs (see above): bytes of blob copies an entry's
  // object carries at most (<= 32 MiB); 0: none.
  int64_t entry_blobs_max_bytes = int64_t{1} << 20;
  // Keep accepting writes into the local tier while the bucket is down, and
  // upload them later (see "Bucket down" above).
  bool degraded_local = false;
  // File holding the backlog of degraded writes ("" keeps it in memory).
  std::string backlog_file;
  int64_t backlog_max = 100000;
  absl::Duration backlog_retry = absl::Seconds(10);
  // Called (any thread) when the bucket goes from answering to failing or
  // back, with the failure or OK; must be thread-safe.
  std::function<void(bool down, const absl::Status& status)> on_bucket_state;
};

// Counters of the tiered store, for metrics.
struct TieredStats {
  int64_t existence_cache_hits = 0;
  int64_t existence_cache_entries = 0;
  int64_t bucket_lookups = 0;    // Digests checked against the bucket.
  int64_t refreshes = 0;         // Self-copies done.
  int64_t fetches = 0;           // Read-through fetches started.
  int64_t fetch_shared = 0;      // Misses that joined a fetch in progress.
  int64_t uploads = 0;           // Objects uploaded (PUT or multipart).
  int64_t upload_skipped = 0;    // Uploads the bucket already had.
  int64_t degraded_writes = 0;   // Writes kept locally only (bucket down).
  int64_t corrupt_fetches = 0;   // Fetched objects failing their digest.
  int64_t streamed_fetches = 0;  // Fetches streamed to a reader.
  int64_t check_fetches = 0;     // Blobs GET by a completeness check.
  int64_t entry_refreshes = 0;   // Keyed entries refreshed or put back.
  int64_t entry_blobs_kept = 0;  // Blob copies of fetched entries kept.
  int64_t backlog = 0;           // Degraded writes not uploaded yet.
  int64_t backlog_uploaded = 0;  // Degraded writes uploaded later.
  int64_t backlog_lost = 0;      // Degraded writes evicted before upload.
  bool bucket_down = false;      // The last bucket request failed.
};

class TieredBlobStore : public BlobStore {
 public:
  // Returns the counters.
  virtual TieredStats Counters() = 0;
};

// Returns the tiered store over `local` (owned) and `s3` (owned).
// INVALID_ARGUMENT for bad options; INTERNAL when `backlog_file` cannot be
// read or created. Makes no request: call `s3->CheckBucket()` at start-up to
// fail early. Starts the backlog thread when `degraded_local` is set.
absl::StatusOr<std::unique_ptr<TieredBlobStore>> NewTieredBlobStore(
    std::unique_ptr<BlobStore> local, std::unique_ptr<S3Client> s3,
    const TieredBlobStoreOptions& options);

}  // namespace cairn::cas

#endif  // CAIRN_CAS_TIERED_BLOB_STORE_H_
