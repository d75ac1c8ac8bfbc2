// Records: "m" kind id -> fixed64 size, fixed64 stamp (little endian);
//          "d" kind id -> the value.
// The metadata records sort together, so ForEach() reads only their blocks.
#include "cas/small_item_store.h"

#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/perf_level.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"

namespace cairn::cas {
namespace {

constexpr char kMetaPrefix = 'm';
constexpr char kDataPrefix = 'd';
constexpr size_t kRecordKeySize = 2 + 32;
constexpr size_t kMetaValueSize = 16;

// RocksDB counts per thread, unless told not to, what each call does (its
// default perf level is kEnableCount: key comparisons, bytes, ...), through a
// thread-local context looked up on every comparison of a memtable insert.
// Nothing reads those counts here. Turns them off for the calling thread.
void NoPerfCounts() {
  thread_local bool off = false;
  if (!off) {
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
    off = true;
  }
}

std::string RecordKey(char prefix, const ItemKey& key) {
  std::string k(kRecordKeySize, '\0');
  k[0] = prefix;
  k[1] = static_cast<char>(key.kind);
  std::memcpy(k.data() + 2, key.id.data(), key.id.size());
  return k;
}

void PutFixed64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

uint64_t GetFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) {
    v = (v << 8) | static_cast<uint8_t>(p[i]);
  }
  return v;
}

std::string MetaValue(int64_t size, int64_t stamp) {
  std::string v;
  v.reserve(kMetaValueSize);
  PutFixed64(&v, static_cast<uint64_t>(size));
  PutFixed64(&v, static_cast<uint64_t>(stamp));
  return v;
}

// Reads back what MetaValue() wrote into `*meta` (size, stamp); false when
// `v` is not such a record.
bool ParseMetaValue(absl::string_view v, SmallItemMeta* meta) {
  if (v.size() != kMetaValueSize) {
    return false;
  }
  meta->size = static_cast<int64_t>(GetFixed64(v.data()));
  meta->stamp = static_cast<int64_t>(GetFixed64(v.data() + 8));
  return true;
}

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) {
    return absl::OkStatus();
  }
  std::string msg = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) {
    return absl::NotFoundError(msg);
  }
  if (s.IsCorruption()) {
    return absl::DataLossError(msg);
  }
  if (s.IsNoSpace() || absl::StrContains(s.ToString(), strerror(ENOSPC)) ||
      absl::StrContains(s.ToString(), strerror(EDQUOT))) {
    return absl::ResourceExhaustedError(msg);
  }
  if (absl::StrContains(s.ToString(), strerror(EROFS)) ||
      absl::StrContains(s.ToString(), strerror(EACCES)) ||
      absl::StrContains(s.ToString(), strerror(EPERM)) ||
      absl::StrContains(s.ToString(), "lock")) {
    return absl::UnavailableError(msg);
  }
  return absl::InternalError(msg);
}

// The store of a read-only directory that has no database: holds nothing,
// refuses writes.
class EmptySmallItemStore final : public SmallItemStore {
 public:
  explicit EmptySmallItemStore(std::string why) : why_(std::move(why)) {}
  absl::Status PutMany(absl::Span<const SmallItem>) override {
    return absl::UnavailableError(why_);
  }
  absl::Status PutManyUnsynced(absl::Span<const SmallItem>) override {
    return absl::UnavailableError(why_);
  }
  void WhenDurable(DurableCallback done) override {
    std::move(done)(absl::OkStatus());
  }
  absl::StatusOr<std::string> Get(const ItemKey&) override {
    return absl::NotFoundError("no small-item database");
  }
  absl::StatusOr<SmallItemMeta> GetMeta(const ItemKey&) override {
    return absl::NotFoundError("no small-item database");
  }
  absl::Status SetStamp(const ItemKey&, int64_t, int64_t) override {
    return absl::UnavailableError(why_);
  }
  absl::Status Delete(absl::Span<const ItemKey>) override {
    return absl::UnavailableError(why_);
  }
  absl::Status ForEachInPart(
      int, int, absl::FunctionRef<void(const SmallItemMeta&)>) override {
    return absl::OkStatus();
  }
  absl::Status SyncForClose() override { return absl::OkStatus(); }
  int64_t ApproximateCount() override { return 0; }

 private:
  const std::string why_;
};

class RocksSmallItemStore final : public SmallItemStore {
 public:
  RocksSmallItemStore(std::unique_ptr<rocksdb::DB> db, bool sync,
                      bool read_only)
      : db_(std::move(db)), read_only_(read_only) {
    put_options_.sync = sync;
    stamp_options_.disableWAL = true;
    if (sync && !read_only) {
      syncer_ = std::thread([this] { SyncLoop(); });
    }
  }

  ~RocksSmallItemStore() override {
    {
      absl::MutexLock lock(&sync_mu_);
      stopping_ = true;
    }
    if (syncer_.joinable()) {
      syncer_.join();
    }
  }

  absl::Status PutMany(absl::Span<const SmallItem> items) override {
    return WriteItems(put_options_, items);
  }

  absl::Status PutManyUnsynced(absl::Span<const SmallItem> items) override {
    return WriteItems(rocksdb::WriteOptions(), items);
  }

  void WhenDurable(DurableCallback done) override {
    if (!syncer_.joinable()) {
      std::move(done)(absl::OkStatus());
      return;
    }
    absl::MutexLock lock(&sync_mu_);
    waiting_.push_back(std::move(done));
  }

  absl::StatusOr<std::string> Get(const ItemKey& key) override {
    std::string value;
    NoPerfCounts();
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), RecordKey(kDataPrefix, key), &value);
    if (!s.ok()) {
      return FromRocks(s, "read small item");
    }
    return value;
  }

  absl::StatusOr<SmallItemMeta> GetMeta(const ItemKey& key) override {
    std::string v;
    NoPerfCounts();
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), RecordKey(kMetaPrefix, key), &v);
    if (!s.ok()) {
      return FromRocks(s, "read small item metadata");
    }
    SmallItemMeta meta{key};
    if (!ParseMetaValue(v, &meta)) {
      return absl::NotFoundError("small item metadata malformed");
    }
    return meta;
  }

  absl::Status SetStamp(const ItemKey& key, int64_t size,
                        int64_t stamp) override {
    rocksdb::WriteBatch batch;
    batch.Put(RecordKey(kMetaPrefix, key), MetaValue(size, stamp));
    return Write(stamp_options_, batch, "stamp small item");
  }

  absl::Status Delete(absl::Span<const ItemKey> keys) override {
    rocksdb::WriteBatch batch;
    for (const ItemKey& key : keys) {
      batch.Delete(RecordKey(kMetaPrefix, key));
      batch.Delete(RecordKey(kDataPrefix, key));
    }
    return Write(rocksdb::WriteOptions(), batch, "delete small items");
  }

  absl::Status ForEachInPart(
      int part, int parts,
      absl::FunctionRef<void(const SmallItemMeta&)> fn) override;

  int64_t ApproximateCount() override {
    uint64_t keys = 0;
    if (!db_->GetIntProperty("rocksdb.estimate-num-keys", &keys)) {
      return 0;
    }
    return static_cast<int64_t>(keys / 2);  // Two records per item.
  }

  absl::Status SyncForClose() override {
    if (read_only_) {
      return absl::OkStatus();
    }
    return FromRocks(db_->FlushWAL(/*sync=*/true), "sync small items");
  }

 private:
  // Writes `items` in one batch with `options`.
  absl::Status WriteItems(const rocksdb::WriteOptions& options,
                          absl::Span<const SmallItem> items) {
    size_t bytes = 64;
    for (const SmallItem& item : items) {
      bytes += kRecordKeySize * 2 + kMetaValueSize + item.value.size() + 16;
    }
    rocksdb::WriteBatch batch(bytes);
    for (const SmallItem& item : items) {
      batch.Put(RecordKey(kDataPrefix, item.key),
                rocksdb::Slice(item.value.data(), item.value.size()));
      batch.Put(RecordKey(kMetaPrefix, item.key),
                MetaValue(static_cast<int64_t>(item.value.size()), item.stamp));
    }
    return Write(options, batch,
                 items.size() == 1 ? "store small item" : "store small items");
  }
  // Calls `fn` for the well-formed metadata records in [lower, upper) and
  // adds the keys of malformed ones to `malformed`.
  absl::Status ScanRange(const std::string& lower, const std::string& upper,
                         absl::FunctionRef<void(const SmallItemMeta&)> fn,
                         std::vector<std::string>* malformed);
  // The syncing thread: syncs the log once for all the callbacks waiting,
  // then calls them; drains the queue before returning when stopping.
  void SyncLoop();
  absl::Status Write(const rocksdb::WriteOptions& options,
                     rocksdb::WriteBatch& batch, absl::string_view what) {
    if (read_only_) {
      return absl::UnavailableError(
          absl::StrCat(what, ": the store's directory is read-only"));
    }
    // A failed write (e.g. disk full) stops the database's writes until it
    // is told to resume; try that once space may have come back.
    if (needs_resume_.load(std::memory_order_relaxed)) {
      if (db_->Resume().ok()) {
        needs_resume_.store(false, std::memory_order_relaxed);
      }
    }
    NoPerfCounts();
    rocksdb::Status s = db_->Write(options, &batch);
    if (!s.ok() && !s.IsInvalidArgument()) {
      needs_resume_.store(true, std::memory_order_relaxed);
    }
    return FromRocks(s, what);
  }

  const std::unique_ptr<rocksdb::DB> db_;
  const bool read_only_;
  rocksdb::WriteOptions put_options_;
  rocksdb::WriteOptions stamp_options_;
  std::atomic<bool> needs_resume_{false};
  absl::Mutex sync_mu_;
  std::vector<DurableCallback> waiting_ ABSL_GUARDED_BY(sync_mu_);
  bool stopping_ ABSL_GUARDED_BY(sync_mu_) = false;
  std::thread syncer_;  // Runs SyncLoop() when opened with `sync`.
};

void RocksSmallItemStore::SyncLoop() {
  std::vector<DurableCallback> batch;
  for (;;) {
    {
      absl::MutexLock lock(&sync_mu_);
      sync_mu_.Await(absl::Condition(
          +[](RocksSmallItemStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
               s->sync_mu_) { return !s->waiting_.empty() || s->stopping_; },
          this));
      if (waiting_.empty()) {
        return;  // Stopping, and nothing waits.
      }
      batch.swap(waiting_);
    }
    // Every write whose callback is in `batch` returned before the callback
    // was queued, so this sync covers it.
    rocksdb::Status synced = db_->SyncWAL();
    if (!synced.ok()) {
      needs_resume_.store(true, std::memory_order_relaxed);
    }
    const absl::Status s = FromRocks(synced, "sync small items");
    for (DurableCallback& done : batch) {
      std::move(done)(s);
    }
    batch.clear();
  }
}

absl::Status RocksSmallItemStore::ScanRange(
    const std::string& lower, const std::string& upper,
    absl::FunctionRef<void(const SmallItemMeta&)> fn,
    std::vector<std::string>* malformed) {
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions read;
  read.fill_cache = false;
  read.iterate_upper_bound = &upper_slice;
  read.readahead_size = 2 << 20;
  NoPerfCounts();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read));
  for (it->Seek(lower); it->Valid(); it->Next()) {
    rocksdb::Slice k = it->key();
    rocksdb::Slice v = it->value();
    const uint8_t kind = k.size() == kRecordKeySize
                             ? static_cast<uint8_t>(k.data()[1])
                             : uint8_t{0xff};
    SmallItemMeta meta;
    if (kind > static_cast<uint8_t>(ItemKind::kAc) ||
        !ParseMetaValue(absl::string_view(v.data(), v.size()), &meta)) {
      malformed->push_back(k.ToString());
      continue;
    }
    meta.key.kind = static_cast<ItemKind>(kind);
    std::memcpy(meta.key.id.data(), k.data() + 2, meta.key.id.size());
    fn(meta);
  }
  return FromRocks(it->status(), "scan small items");
}

absl::Status RocksSmallItemStore::ForEachInPart(
    int part, int parts, absl::FunctionRef<void(const SmallItemMeta&)> fn) {
  if (parts < 1 || parts > 256 || part < 0 || part >= parts) {
    return absl::InvalidArgumentError("scan small items: bad part");
  }
  // Part p holds, of each kind, the ids whose first byte is in
  // [256p/parts, 256(p+1)/parts). Key bytes: prefix, kind, id...; the
  // whole metadata range is ["m", "n"), so records of a malformed length
  // or kind fall in the first part's bounds or the last's.
  const int lo = 256 * part / parts;
  const int hi = 256 * (part + 1) / parts;
  auto bound = [](int kind, int byte) {
    std::string b(1, kMetaPrefix);
    if (byte == 256) {  // The end of this kind: the next kind's start.
      ++kind;
      byte = 0;
    }
    b.push_back(static_cast<char>(kind));
    b.push_back(static_cast<char>(byte));
    return b;
  };
  std::vector<std::string> malformed;
  constexpr int kKinds = static_cast<int>(ItemKind::kAc) + 1;
  for (int kind = 0; kind < kKinds; ++kind) {
    std::string lower = bound(kind, lo);
    std::string upper = bound(kind, hi);
    if (kind == 0 && lo == 0) {
      lower = std::string(1, kMetaPrefix);
    }
    if (kind == kKinds - 1 && hi == 256) {
      upper = std::string(1, kMetaPrefix + 1);
    }
    if (absl::Status s = ScanRange(lower, upper, fn, &malformed); !s.ok()) {
      return s;
    }
  }
  if (!malformed.empty()) {
    rocksdb::WriteBatch batch;
    for (const std::string& k : malformed) {
      batch.Delete(k);
    }
    return Write(rocksdb::WriteOptions(), batch, "delete malformed records");
  }
  return absl::OkStatus();
}

rocksdb::Options DatabaseOptions(const SmallItemStoreOptions& options) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.paranoid_checks = true;
  // Acknowledged writes are in the log; a torn tail (a write never
  // acknowledged) is dropped on recovery.
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  // No preallocation: it would charge megabytes of disk up front.
  o.allow_fallocate = false;
  o.manifest_preallocation_size = 64 << 10;
  // Items written stay in the memtable until it is flushed: 4 MiB (was 16)
  // keeps UpdateActionResult's peak RSS at 32 streams at 52 MiB instead of
  // 58-60, at the same CPU per call.
  o.write_buffer_size = 4 << 20;
  o.max_write_buffer_number = 3;
  o.max_total_wal_size = 64 << 20;
  o.max_background_jobs = 2;
  o.compression = rocksdb::kNoCompression;  // CPU per operation matters more.
  o.level_compaction_dynamic_level_bytes = true;
  o.info_log_level = rocksdb::WARN_LEVEL;
  o.keep_log_file_num = 2;
  o.max_log_file_size = 1 << 20;
  o.avoid_unnecessary_blocking_io = true;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache =
      rocksdb::NewLRUCache(static_cast<size_t>(options.cache_bytes));
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return o;
}

// Whether `s` says the file system refused a write (read-only, permissions).
bool ReadOnlyError(const rocksdb::Status& s) {
  const std::string text = s.ToString();
  return absl::StrContains(text, strerror(EROFS)) ||
         absl::StrContains(text, strerror(EACCES)) ||
         absl::StrContains(text, strerror(EPERM));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SmallItemStore>> OpenSmallItemStore(
    const SmallItemStoreOptions& options) {
  const bool created = mkdir(options.dir.c_str(), 0755) == 0;
  const int mkdir_err = created ? 0 : errno;
  if (!created && mkdir_err != EEXIST) {
    std::string msg =
        absl::StrCat("create ", options.dir, ": ", strerror(mkdir_err));
    if (mkdir_err == EACCES || mkdir_err == EPERM || mkdir_err == EROFS) {
      // A read-only store written before this database existed.
      return std::unique_ptr<SmallItemStore>(new EmptySmallItemStore(msg));
    }
    return absl::InternalError(msg);
  }
  const std::string what =
      absl::StrCat("open small-item database ", options.dir);
  rocksdb::DB* raw = nullptr;
  rocksdb::Options db_options = DatabaseOptions(options);
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.dir, &raw);
  bool read_only = false;
  if (!s.ok() && ReadOnlyError(s)) {
    // A read-only directory: serve what is there, refuse writes.
    read_only = true;
    s = rocksdb::DB::OpenForReadOnly(db_options, options.dir, &raw);
  }
  if (!s.ok()) {
    return FromRocks(s, what);
  }
  return std::unique_ptr<SmallItemStore>(new RocksSmallItemStore(
      std::unique_ptr<rocksdb::DB>(raw), options.sync, read_only));
}

}  // namespace cairn::cas
