// SmallItemStore: the items of the disk store that are too small to deserve
// a file each (CAS blobs and keyed entries under a size threshold), kept in
// one embedded RocksDB database (Debian's librocksdb). It is a building block
// of the disk store (cas/disk_blob_store.h), which owns the LRU index, the
// size budget and verification; this class only stores bytes and metadata.
//
// Per item the database holds two records written in one atomic batch: the
// value, and a small metadata record (size and access stamp) so that
// ForEach() can rebuild the index without reading any value.
//
// Durability: Put() returns after its batch is in the write-ahead log; with
// `sync` the log is fdatasync'ed first. Concurrent Put() calls share one
// log write and one sync (RocksDB's write groups: group commit). An
// acknowledged Put() therefore survives kill -9, and with `sync` power loss.
// PutManyUnsynced() + WhenDurable() split such a write in two so that the
// writing thread need not wait for the sync: one syncing thread syncs the
// log once for every write waiting meanwhile, however many threads wrote.
// Delete() and SetStamp() are not synced: after a crash a deleted item may
// reappear (its bytes intact) and an access stamp may be older.
//
// Errors: NOT_FOUND (absent), DATA_LOSS (the database reports corruption),
// RESOURCE_EXHAUSTED (disk full), UNAVAILABLE (read-only or permission
// denied), INTERNAL (other I/O errors). After a failed write the next write
// first asks the database to resume.
//
// Thread safety: every method may be called concurrently. One process per
// directory (the database holds a lock file).
#ifndef CAIRN_CAS_SMALL_ITEM_STORE_H_
#define CAIRN_CAS_SMALL_ITEM_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "cas/lru_index.h"

namespace cairn::cas {

struct SmallItemStoreOptions {
  // The database's directory; created if missing (not its parents).
  std::string dir;
  // fdatasync the write-ahead log before Put() returns.
  bool sync = true;
  // Bytes of the database's block cache.
  int64_t cache_bytes = int64_t{8} << 20;
};

// One item's metadata as ForEach() reports it.
struct SmallItemMeta {
  ItemKey key;
  int64_t size = 0;   // Bytes of the value.
  int64_t stamp = 0;  // The last access stamp recorded.
};

// One item of a SmallItemStore::PutMany() call.
struct SmallItem {
  ItemKey key;
  int64_t stamp = 0;        // Its access stamp.
  absl::string_view value;  // Not owned.
};

class SmallItemStore {
 public:
  virtual ~SmallItemStore() = default;

  // Stores `value` under `key` with access stamp `stamp`, replacing any
  // previous value, durably (see above).
  absl::Status Put(const ItemKey& key, int64_t stamp, absl::string_view value) {
    const SmallItem item{key, stamp, value};
    return PutMany({&item, 1});
  }

  // Stores every item of `items` (distinct keys) as Put() would, all or
  // none: one database batch, one log write and (with `sync`) one sync.
  virtual absl::Status PutMany(absl::Span<const SmallItem> items) = 0;

  // Like PutMany(), but returns once the batch is in the log, before any
  // sync: the items survive kill -9 at once (and are readable), power loss
  // only once WhenDurable() reports a sync.
  virtual absl::Status PutManyUnsynced(absl::Span<const SmallItem> items) = 0;

  // Calls `done` once every write that returned before this call is
  // durable as `sync` promises, with the status of the sync that made it
  // so. With `sync`, `done` runs on the store's syncing thread after one
  // log sync shared by every call waiting meanwhile (group commit; `done`
  // must be quick and must not call WhenDurable()); without `sync`, or
  // read-only, it runs here at once with OK. Calls waiting when the store
  // is destroyed are synced and called first.
  using DurableCallback = absl::AnyInvocable<void(absl::Status) &&>;
  virtual void WhenDurable(DurableCallback done) = 0;

  // Returns the value stored under `key`. NOT_FOUND, DATA_LOSS, INTERNAL.
  // The bytes are those the database holds; callers verify them.
  virtual absl::StatusOr<std::string> Get(const ItemKey& key) = 0;

  // Returns the metadata of the item under `key` as ForEach() would report
  // it, reading no value. NOT_FOUND (also for a malformed record), DATA_LOSS,
  // INTERNAL.
  virtual absl::StatusOr<SmallItemMeta> GetMeta(const ItemKey& key) = 0;

  // Records `stamp` as the access stamp of the item of `size` bytes stored
  // under `key`; not synced, not even logged (best effort). The caller must
  // not let it race a Put() or Delete() of the same key (it would recreate
  // the metadata of a deleted item).
  virtual absl::Status SetStamp(const ItemKey& key, int64_t size,
                                int64_t stamp) = 0;

  // Deletes the items under `keys` (absent keys are fine); not synced.
  virtual absl::Status Delete(absl::Span<const ItemKey> keys) = 0;

  // Calls `fn` with the metadata of every item, in key order, reading no
  // value. Skips (and deletes) malformed records.
  absl::Status ForEach(absl::FunctionRef<void(const SmallItemMeta&)> fn) {
    return ForEachInPart(0, 1, fn);
  }

  // ForEach() over part `part` of `parts` (1..256) disjoint parts that
  // together hold every item (split by the first byte of the id), so that
  // several threads can scan one database at once.
  virtual absl::Status ForEachInPart(
      int part, int parts,
      absl::FunctionRef<void(const SmallItemMeta&)> fn) = 0;

  // Returns about how many items the database holds (for sizing tables;
  // may be off either way, never negative).
  virtual int64_t ApproximateCount() = 0;

  // Makes every write so far durable (syncs the log); used when closing a
  // store opened without `sync`.
  virtual absl::Status SyncForClose() = 0;
};

// Opens (creating if needed) the database in `options.dir`. UNAVAILABLE when
// the directory is read-only or locked by another process; INTERNAL or
// DATA_LOSS when the database cannot be opened.
absl::StatusOr<std::unique_ptr<SmallItemStore>> OpenSmallItemStore(
    const SmallItemStoreOptions& options);

}  // namespace cairn::cas

#endif  // CAIRN_CAS_SMALL_ITEM_STORE_H_
