// NewDiskBlobStore(): the BlobStore kept in a directory, the production
// store. Contract as in cas/blob_store.h; this file documents the layout,
// durability and start-up behaviour.
//
// Layout under `root` (version 3; 2 when opened without `keep_zstd`):
//   LAYOUT          "cairn-store-layout 3": the layout version. A store with
//                   a newer version is refused (FAILED_PRECONDITION, naming
//                   both versions); an older store (layout 2, or no file:
//                   a release before layout 2) is opened as is and gets the
//                   version this store writes: 3 with `keep_zstd`, else it
//                   keeps its own (at least 2). Releases of layout 2 refuse
//                   a layout-3 store, whose zstd files they would not see.
//   small/          the small-item database (cas/small_item_store.h):
//                   every item of at most `small_item_max_bytes`, instead
//                   of a file each.
//   cas/ab/<hash>   a larger CAS blob, exactly its bytes; "ab" = first 2
//                   hex chars (shard directories are created on first use).
//   cas/ab/<hash>.<size>.zst
//                   a larger CAS blob of <size> bytes held as the zstd frames
//                   (RFC 8878) a client uploaded (OpenWriteZstd(), or
//                   WriteBlobs() with BlobWrite::zstd), when `keep_zstd` and
//                   they are at least 1/8 smaller (else the blob is stored
//                   plain; an upload whose first 256 KiB do not shrink so
//                   is decoded into a plain file as it arrives, so it is
//                   written once). Plain reads decompress; ReadAsStored() and
//                   OpenReadAsStored() serve the frames as they are. Small
//                   items and keyed entries are always plain.
//   ac/ab/<key>     a larger keyed entry: 8-byte magic "CAIRNAC1", the
//                   32-byte SHA-256 of the value, then the value (a small
//                   entry is stored in the same form in small/).
//   tmp/            writes in progress; emptied at start-up.
// Items are charged their size (a file's size: the compressed size of a zstd
// file) against `max_size_bytes`,
// wherever they live: one budget and one LRU across both places. The
// database's own files may hold more for a while (deleted items linger
// until its compaction drops them).
//
// Upgrade: a layout-1 store's files, small or large, stay where they are
// and are served as before (hashed on their first read); new small items
// go to small/. An item moving between the two places (an entry that grows
// or shrinks) is written to its new place first and removed from the old
// one after; a crash in between leaves both, and start-up keeps the newer.
// A release before layout 2 ignores small/ (it serves only the files).
//
// Small items: written in one database batch with their access stamp;
// the write returns once it is in the database's log, and with `fsync`
// once the log is synced; concurrent writes share one log write and one
// sync (group commit); WriteBlobs() puts all the small blobs of one call in
// one batch (one log write, one sync). So an acknowledged small write
// survives kill -9, and with `fsync` power loss. Their bytes are hashed on
// every read (CAS digest, or the entry's SHA-256 header); a mismatch, or
// corruption the database reports, is DATA_LOSS, counted, and the item is
// deleted.
// Access stamps of small items are written to the database unlogged, at
// most once per `touch_interval`, like the files' mtimes.
//
// Writes: the size is reserved (evicting least recently used items) before
// any byte is written; bytes stream into tmp/ (O_CREAT|O_EXCL) while being
// hashed, are verified, fsynced (unless `fsync` is false), and renamed into
// place. The rename is not followed by a directory fsync: after an OS crash
// or power loss an item committed just before may be missing (a cache miss),
// but an item present is never torn. The shard directories written to are
// fsynced when the store is destroyed. Any failure removes the temp file and
// returns the reservation. ENOSPC/EDQUOT answer RESOURCE_EXHAUSTED;
// EACCES/EPERM/EROFS UNAVAILABLE; other I/O errors INTERNAL. Concurrent writers
// of one digest are safe and share one reservation: the first to commit stores
// the blob, the others succeed without touching it.
//
// Compressed at rest: a zstd file is verified on the content its frames
// decompress to (size and SHA-256), when written and when read, under the
// same rules as a plain file: a read of a file not trusted (below)
// decompresses and hashes it, including a read that serves the frames as
// they are; a mismatch or frames that do not decode is DATA_LOSS, counted,
// and the file is removed.
//
// Recompression at rest (rest_zstd_level): blobs that clients upload plain,
// or as zstd frames at a fast level, are re-encoded in the background at a
// higher level. A blob committed to a file (of at least rest_min_bytes) is
// queued; one thread, niced by rest_nice, takes the most recently queued
// first. It reads the file, checks its content against the digest (a file
// that does not match is left for the readers to find and remove), encodes
// the content at the level (a plain blob whose samples do not shrink at
// the fastest level is skipped first) and keeps the result only when it is smaller by
// at least 1/64 and the KeepZstd rule holds; then it decompresses the new
// frames and checks their size and SHA-256 before anything changes. The
// new frames go through tmp/ (fsynced) and are renamed over the blob's zstd
// file (cas/ab/<hash>.<size>.zst); a plain file is unlinked only after the
// index points at the new one. The item keeps its place in the LRU and is
// charged the new size. A crash at any point leaves either the old file,
// the new one (verified before its rename), or both (start-up keeps one,
// as after an interrupted move, and hashes it on its first read). A blob
// evicted meanwhile is skipped (or its new file removed); a blob read
// meanwhile is served from whichever file the read opened (a read that
// finds the plain file gone looks the blob up again). Not queued: items
// found on disk at start-up, small items, keyed entries. Stats() counts
// recompressed blobs, bytes saved, blobs skipped and blobs pending.
//
// Reads are verified once per process lifetime per file: an item this
// process wrote (and hashed on the way in) or already found intact on a read
// is trusted while its file is unchanged, i.e. while the open file's
// fingerprint (device, inode, size, mtime, ctime; one fstat) equals the one
// recorded at verification. Otherwise Read() and GetEntry() check the whole
// item before returning it, and a BlobReader hashes as it streams (including
// a skipped prefix) and answers DATA_LOSS instead of the end on a mismatch.
// Items found on disk at start-up are hashed on their first read; so is an
// item whose mtime the store refreshed (see below), once.
// The guarantee: a file changed through the file system after it was
// verified (written, truncated, replaced; the kernel updates its ctime, which
// no process can set back) is hashed again before it is served. Not covered:
// corruption that bypasses the file system (media bit rot under a file this
// process already verified) until the next restart or mtime refresh, and a
// change within one tick of the file system's timestamp clock on file
// systems with coarse timestamps. Stats().read_hashes counts the reads that
// hashed a whole item. Corrupt items are removed and counted in
// Stats().corruptions. A reader keeps its open file, so eviction or
// replacement never breaks it.
//
// Entries in memory: the values of the keyed entries most recently written or
// read (and verified) are also kept in memory, up to `entry_cache_bytes`, so
// that TryGetEntry() answers a hit without I/O. Such a copy is dropped when
// its entry is replaced, evicted or found corrupt, so TryGetEntry() serves
// exactly the bytes that were stored and verified; a file changed behind the
// store's back is caught by the next GetEntry() or, for copies, once they
// leave memory (GetEntry() always reads the file).
//
// Access order: the index lives in memory. On every access the file's mtime
// is set to the access time, at most once per `touch_interval` per item, so
// hits stay cheap; at start-up the index is rebuilt by scanning the shard
// directories and the database's metadata in parallel and ordering items by
// their stamps (so the order survives restarts, clean or not, to within
// `touch_interval`). A store bigger than `max_size_bytes` is trimmed once
// the index is loaded.
//
// Start-up with load_index_in_background (cairn-server): the store serves
// as soon as its small-item database is open; the index loads meanwhile.
// Answers stay exact: a lookup or write of a key the partial index does not
// hold yet looks for it on disk first (the database's metadata record and
// the item's file names, as the scan would find them) and indexes what it
// finds, and from then on the loader leaves that key alone, so an item
// written, replaced or removed during the load is counted once, as it is
// after. Eviction waits for the end of the load: writes meanwhile are
// accepted and reserved against the budget without evicting (a store may
// briefly hold more than `max_size_bytes`); when the load ends, items found
// on disk go in behind those used meanwhile, in stamp order, and the store
// is trimmed to its budget. Stats().index_loading is true until then. A
// failed load (an I/O error scanning) is reported to on_index_loaded; the
// store keeps answering exactly but never evicts. A plain CAS file's size is
// its blob's size (a zstd file's name carries it, and its frames are checked
// against it): a blob whose file was truncated behind the store's back is
// reported missing for its real digest after a restart, and DATA_LOSS while the
// store runs.
//
// Thread safety: as BlobStore. One process per root directory.
#ifndef CAIRN_CAS_DISK_BLOB_STORE_H_
#define CAIRN_CAS_DISK_BLOB_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cas/blob_store.h"

namespace cairn::cas {

struct DiskBlobStoreOptions {
  // The store's directory; created (with its parents) if missing.
  std::string root;
  // Budget for stored bytes plus bytes reserved by writes in progress.
  int64_t max_size_bytes = 0;
  // fsync each item before it becomes visible (its directory only when the
  // store closes).
  bool fsync = true;
  // Most bytes of keyed-entry values kept in memory for TryGetEntry() (each
  // also charged 128 bytes of bookkeeping); 0 keeps none.
  int64_t entry_cache_bytes = int64_t{4} << 20;
  // Minimum time between two mtime refreshes of one item on access.
  absl::Duration touch_interval = absl::Minutes(1);
  // Threads scanning the directories at start-up (0: 8).
  int load_threads = 0;
  // Return from NewDiskBlobStore() once the small-item database is open and
  // load the index on a thread of the store's own (see "Start-up" above);
  // false loads it before returning.
  bool load_index_in_background = false;
  // With load_index_in_background: called once on the loading thread when
  // the load ends, with its error if it failed and the store's Stats() (not
  // when the store is destroyed first).
  std::function<void(const absl::Status&, const StoreStats&)> on_index_loaded;
  // Items of at most this many bytes (a keyed entry counting its 40-byte
  // header) are kept in the small-item database instead of a file each;
  // 0 keeps every new item in a file. The default fits one file system
  // block: smaller items cost a file more than their bytes.
  int64_t small_item_max_bytes = 4096;
  // Block cache of the small-item database.
  int64_t small_item_cache_bytes = int64_t{8} << 20;
  // Keep blobs that arrive as zstd frames compressed at rest (see the
  // layout above); false stores every new blob plain (zstd files already
  // held are still served).
  bool keep_zstd = true;
  // Recompression at rest: with a level of 1-19 (and keep_zstd), a
  // background thread re-encodes CAS blobs this process wrote to files (not
  // small items) of at least `rest_min_bytes`, most recently written first,
  // as zstd frames at that level, and keeps the new file when it is smaller
  // (see "Recompression at rest" above). 0: off.
  int rest_zstd_level = 0;
  int64_t rest_min_bytes = 0;
  // Added to the recompressing thread's nice value (Linux: per thread), so
  // that it runs only on CPU the requests leave idle.
  int rest_nice = 19;
  // Most blobs waiting for recompression; beyond it the oldest are dropped
  // (left as they are).
  int64_t rest_queue_max = 1 << 20;
  // Test-only: called before each file system operation with its name
  // ("open_tmp", "write", "fsync", "rename", "open", "read", "touch"; the
  // recompressing thread's: "rest_open", "rest_encode" (an errno value
  // there corrupts the new encoding), "rest_crash" (after the rename: an
  // errno value ends the replacement there, as a crash would, leaving the
  // index and any other file as they were));
  // returning an errno value makes that operation fail with it; 0 proceeds.
  // Called from any thread; must be thread-safe.
  std::function<int(absl::string_view op)> fault_injector_for_test;
  // Test-only: called on the loading thread with "scanned" once the disk has
  // been scanned, before any item found is indexed (a test may block it).
  std::function<void(absl::string_view point)> index_load_hook_for_test;
  // Test-only: called on the recompressing thread with "idle" whenever it
  // has no blob waiting (after each blob it finished, and at its start).
  std::function<void(absl::string_view point)> rest_hook_for_test;
};

// Opens (creating if needed) the store in `options.root`, removing stray temp
// files and rebuilding its index from disk (or starting to: see
// load_index_in_background); Stats().index_load_seconds records how long the
// rebuild took once it is done. INVALID_ARGUMENT for bad options;
// FAILED_PRECONDITION for a newer layout; UNAVAILABLE or INTERNAL when the
// directory cannot be created or read (a read-only directory opens, and
// refuses writes with UNAVAILABLE).
absl::StatusOr<std::unique_ptr<BlobStore>> NewDiskBlobStore(
    const DiskBlobStoreOptions& options);

}  // namespace cairn::cas

#endif  // CAIRN_CAS_DISK_BLOB_STORE_H_
