// The tiered store. Invariants:
//  - The local tier only ever receives an item after the bucket has it (or
//    confirmed having it), except degraded writes (options_.degraded_local).
//  - `known_` holds positive bucket confirmations only (hash -> size and the
//    object's Last-Modified); a digest is removed when a fetch finds its
//    object corrupt, and put in `corrupt_`, which makes FindMissing report it
//    missing and the next upload overwrite it (no If-None-Match).
//  - `fetches_` has one entry per digest being fetched (whole, or streamed by
//    a FillingReader); later misses wait on it. No lock is held across a
//    bucket request or local I/O, except that backlog_mu_ covers appending
//    one line to (or rewriting) the backlog file, which only degraded writes
//    and the backlog thread take.
//  - `backlog_` lists degraded writes in arrival order (blobs before the
//    action results naming them); only the backlog thread removes from it.
// Lock order: cache_mu_, fetch_mu_ and backlog_mu_ are never held together.
#include "cas/tiered_blob_store.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <thread>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "cas/entry_object.h"
#include "cas/zstd_codec.h"

namespace cairn::cas {
namespace {

constexpr int64_t kMinPartSize = int64_t{5} << 20;
// An action-cache object larger than this is not a Cairn entry.
constexpr size_t kMaxEntryObject = size_t{64} << 20;
// A blob copy of at least this many bytes goes into an entry object
// compressed, when zstd saves an eighth or more (as the disk store keeps
// frames at rest: cas/disk_blob_store.h).
constexpr int64_t kMinZstdCopy = 2048;
// Returns zstd frames of `data` when they are at most 7/8 of its size.
std::optional<std::string> CompressIfSmaller(absl::string_view data) {
  ZstdCompressor c;
  std::string frames;
  if (!c.Compress(data, /*last=*/true, &frames).ok() ||
      !ZstdSavesEnough(static_cast<int64_t>(frames.size()),
                       static_cast<int64_t>(data.size()))) {
    return std::nullopt;
  }
  return frames;
}

// A bucket failure as the client of the store sees it: the shared tier is
// unavailable (clients treat it as a miss), whatever the engine said.
absl::Status BucketError(absl::string_view what, const absl::Status& s) {
  return absl::UnavailableError(
      absl::StrCat(what, ": shared tier unavailable: ", s.message()));
}

// A bounded set of positive facts ("the bucket holds this"), key -> what
// was seen (size, Last-Modified). When full, Put() drops an arbitrary entry
// (the hash map's first) to make room, not the least recently used: every
// entry is only a shortcut past a bucket HEAD, so forgetting the wrong one
// costs one extra lookup later and never a wrong answer, which is not worth
// recency bookkeeping on every hit. A capacity of 0 keeps nothing.
// Not thread-safe: the owner guards it.
template <typename V>
class ExistenceCache {
 public:
  explicit ExistenceCache(int64_t capacity) : capacity_(capacity) {}

  void Put(absl::string_view key, V value) {
    if (capacity_ == 0) {
      return;
    }
    if (static_cast<int64_t>(map_.size()) >= capacity_ && !map_.empty()) {
      map_.erase(map_.begin());
    }
    map_[key] = std::move(value);
  }
  // Returns what was seen under `key`, or null; valid until the next Put().
  const V* Find(absl::string_view key) const {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &it->second;
  }
  void Erase(absl::string_view key) { map_.erase(key); }
  size_t size() const { return map_.size(); }

 private:
  const int64_t capacity_;
  absl::flat_hash_map<std::string, V> map_;
};

class TieredStore;

// A degraded write still owed to the bucket: a CAS blob (hash, size) or a
// keyed entry (key). One line of the backlog file: "cas HASH SIZE" or
// "ac KEY".
struct BacklogItem {
  bool entry = false;
  std::string key;
  int64_t size = 0;
};

std::string BacklogLine(const BacklogItem& item) {
  return item.entry ? absl::StrCat("ac ", item.key, "\n")
                    : absl::StrCat("cas ", item.key, " ", item.size, "\n");
}

std::optional<BacklogItem> ParseBacklogLine(absl::string_view line) {
  std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
  BacklogItem item;
  if (f.size() == 2 && f[0] == "ac" && ValidateSha256Hex(f[1]).ok()) {
    item.entry = true;
    item.key = std::string(f[1]);
    return item;
  }
  if (f.size() == 3 && f[0] == "cas" && absl::SimpleAtoi(f[2], &item.size) &&
      Digest::Create(f[1], item.size).ok()) {
    item.key = std::string(f[1]);
    return item;
  }
  return std::nullopt;  // A torn last line after a crash: skipped.
}

// One fetch of a digest from the bucket; later misses wait on `done`.
struct InFlight {
  absl::Notification done;
  absl::Status status;  // Written before `done` is notified.
};

// Streams a blob to the local tier and, for big blobs, to the bucket in
// parts; small blobs are kept in memory and PUT at Commit().
class TieredWriter final : public BlobWriter {
 public:
  // `backlog`: when the upload fails, keep the blob locally and put it on
  // the backlog if the store is degraded_local (false for backlog uploads).
  // `owed`: upload nothing now, put the blob on the backlog at Commit().
  TieredWriter(TieredStore* store, Digest digest,
               std::unique_ptr<BlobWriter> local, bool multipart,
               bool skip_upload, bool backlog = true, bool owed = false)
      : store_(store),
        digest_(std::move(digest)),
        local_(std::move(local)),
        multipart_(multipart),
        skip_upload_(skip_upload || owed),
        backlog_(backlog),
        owed_(owed) {}
  ~TieredWriter() override;
  TieredWriter(const TieredWriter&) = delete;
  TieredWriter& operator=(const TieredWriter&) = delete;

  absl::Status Append(absl::string_view data) override;
  int64_t committed_size() const override { return written_; }
  absl::Status Commit() override;

 private:
  absl::Status Fail(absl::Status s) {
    failed_ = true;
    return s;
  }
  absl::Status FlushPart();

  TieredStore* const store_;
  const Digest digest_;
  std::unique_ptr<BlobWriter> local_;  // Null when the local tier refused.
  const bool multipart_;
  const bool skip_upload_;  // The bucket has it already.
  const bool backlog_;
  const bool owed_;  // Bucket down at open (degraded): goes on the backlog.
  Sha256Hasher hasher_;
  int64_t written_ = 0;
  bool failed_ = false;
  bool committed_ = false;
  std::string buffer_;  // Small blob, or the current part.
  std::string upload_id_;
  std::vector<std::string> etags_;
};

// A compressed upload (OpenWriteZstd): the frames go to the local tier as
// they came (it keeps them compressed when that pays) and, decompressed, to
// the tiered writer, which checks the digest and uploads the plain bytes (the
// bucket's objects stay plain: every node, old or new, reads them). The local
// tier commits only after the bucket has the blob.
class ZstdTeeWriter final : public BlobWriter {
 public:
  ZstdTeeWriter(std::unique_ptr<BlobWriter> decoding,
                std::unique_ptr<BlobWriter> local)
      : decoding_(std::move(decoding)), local_(std::move(local)) {}

  absl::Status Append(absl::string_view frames) override {
    if (absl::Status s = decoding_->Append(frames); !s.ok()) {
      return s;
    }
    if (local_ != nullptr && !local_->Append(frames).ok()) {
      local_.reset();  // A cache: the bucket is the record.
    }
    return absl::OkStatus();
  }
  int64_t committed_size() const override {
    return decoding_->committed_size();
  }
  absl::Status Commit() override {
    if (absl::Status s = decoding_->Commit(); !s.ok()) {
      return s;
    }
    if (local_ != nullptr) {
      local_->Commit().IgnoreError();
      local_.reset();
    }
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<BlobWriter> decoding_;
  std::unique_ptr<BlobWriter> local_;  // Null when the local tier refused.
};

// Streams one blob from the bucket to its caller in ranged GETs of
// fetch_chunk bytes, appending each range to the local tier and hashing it;
// leads the digest's fetch (`flight_`), which it ends when the last byte has
// been checked, on an error, or when dropped unfinished (ABORTED: a waiting
// miss then fetches by itself).
class FillingReader final : public BlobReader {
 public:
  FillingReader(TieredStore* store, Digest digest, int64_t offset,
                std::unique_ptr<BlobWriter> local,
                std::shared_ptr<InFlight> flight)
      : store_(store),
        digest_(std::move(digest)),
        position_(offset),
        local_(std::move(local)),
        flight_(std::move(flight)) {}
  ~FillingReader() override;
  FillingReader(const FillingReader&) = delete;
  FillingReader& operator=(const FillingReader&) = delete;

  int64_t size() const override { return digest_.size_bytes(); }
  absl::StatusOr<size_t> Read(char* buf, size_t max) override;

 private:
  absl::Status FetchRange();
  // Ends the fetch with `s` (once) and returns it.
  absl::Status End(absl::Status s);

  TieredStore* const store_;
  const Digest digest_;
  int64_t position_;                   // Next byte handed to the caller.
  int64_t fetched_ = 0;                // Bytes fetched from the bucket.
  std::string range_;                  // Bytes [fetched_ - size, fetched_).
  std::unique_ptr<BlobWriter> local_;  // Null when the local tier refused.
  std::shared_ptr<InFlight> flight_;   // Null once ended.
  absl::Status final_;                 // The end's status once ended.
  Sha256Hasher hasher_;
};

class TieredStore final : public TieredBlobStore {
 public:
  TieredStore(std::unique_ptr<BlobStore> local, std::unique_ptr<S3Client> s3,
              const TieredBlobStoreOptions& options)
      : local_(std::move(local)),
        s3_(std::move(s3)),
        options_(options),
        known_(options.existence_cache_entries),
        known_entries_(options.existence_cache_entries) {}
  ~TieredStore() override {
    {
      absl::MutexLock lock(&backlog_mu_);
      stopping_ = true;
    }
    if (backlog_thread_.joinable()) {
      backlog_thread_.join();
    }
    absl::MutexLock lock(&backlog_mu_);
    if (backlog_out_ != nullptr) {
      std::fclose(backlog_out_);
    }
  }
  TieredStore(const TieredStore&) = delete;
  TieredStore& operator=(const TieredStore&) = delete;

  // Loads the backlog file and starts the backlog thread (degraded_local).
  absl::Status Start();

  std::vector<Digest> FindMissing(absl::Span<const Digest> digests) override {
    std::vector<Digest> missing;
    absl::StatusOr<std::vector<Digest>> checked = FindMissingChecked(digests);
    if (checked.ok()) {
      return *std::move(checked);
    }
    for (const Digest& d : digests) {  // Unconfirmed counts as missing.
      if (!d.IsEmpty() && !KnownPresent(d)) {
        missing.push_back(d);
      }
    }
    return missing;
  }

  absl::StatusOr<std::vector<Digest>> FindMissingChecked(
      absl::Span<const Digest> digests) override {
    return FindMissingImpl(digests, /*fetch_small=*/false);
  }

  absl::StatusOr<std::vector<Digest>> FindMissingForRead(
      absl::Span<const Digest> digests) override {
    return FindMissingImpl(digests, /*fetch_small=*/true);
  }

  bool Contains(const Digest& digest) override {
    absl::StatusOr<std::vector<Digest>> missing =
        FindMissingChecked(absl::MakeConstSpan(&digest, 1));
    return missing.ok() && missing->empty();
  }

  std::optional<std::vector<Digest>> TryFindMissing(
      absl::Span<const Digest> digests) override {
    for (const Digest& d : digests) {
      if (!d.IsEmpty() && !KnownPresent(d)) {
        return std::nullopt;
      }
    }
    return std::vector<Digest>();
  }

  absl::StatusOr<std::string> Read(const Digest& digest) override {
    return WithLocal(digest, [&] { return local_->Read(digest); });
  }

  absl::StatusOr<std::unique_ptr<BlobReader>> OpenRead(
      const Digest& digest, int64_t offset) override {
    if (offset < 0 || offset > digest.size_bytes()) {
      return absl::OutOfRangeError(absl::StrCat("cas blob ", digest.ToString(),
                                                ": read offset ", offset,
                                                " outside the blob"));
    }
    if (digest.size_bytes() <= options_.fetch_chunk) {
      return WithLocal(digest,
                       [&] { return local_->OpenRead(digest, offset); });
    }
    return OpenStreaming(digest, offset);
  }

  // As held by the local tier (frames when it keeps the blob compressed),
  // fetched into it first when absent.
  absl::StatusOr<StoredBlob> ReadAsStored(const Digest& digest) override {
    return WithLocal(digest, [&] { return local_->ReadAsStored(digest); });
  }

  absl::StatusOr<StoredBlobReader> OpenReadAsStored(
      const Digest& digest) override {
    if (digest.size_bytes() <= options_.fetch_chunk) {
      return WithLocal(digest,
                       [&] { return local_->OpenReadAsStored(digest); });
    }
    absl::StatusOr<StoredBlobReader> local = local_->OpenReadAsStored(digest);
    if (local.ok() || !absl::IsNotFound(local.status())) {
      return local;
    }
    absl::StatusOr<std::unique_ptr<BlobReader>> streamed =
        OpenStreaming(digest, 0);  // Plain, as the bucket holds it.
    if (!streamed.ok()) {
      return streamed.status();
    }
    return StoredBlobReader{*std::move(streamed), false};
  }

  // The rest of BlobStore, declared as every store declares it.
  absl::Status Write(const Digest& digest, absl::string_view data) override;

  absl::StatusOr<std::unique_ptr<BlobWriter>> OpenWrite(
      const Digest& digest) override;
  absl::StatusOr<std::unique_ptr<BlobWriter>> OpenWriteZstd(
      const Digest& digest) override;
  // OpenWrite() filling `local` (null: none) as the local tier's writer.
  absl::StatusOr<std::unique_ptr<BlobWriter>> OpenWriteWith(
      const Digest& digest, std::unique_ptr<BlobWriter> local);

  absl::StatusOr<std::string> GetEntry(absl::string_view key) override;
  absl::Status PutEntryImpl(absl::string_view key, absl::string_view value,
                            absl::Span<const Digest> blobs,
                            PutCallback* then) override {
    return Reply(PutEntryAndWait(key, value, blobs), then);
  }
  // PutEntry() returning once the bucket and the local tier hold the entry;
  // a callback, if any, is answered only after that (the bucket's PUT is the
  // durability point, there is no log sync to wait for off the caller).
  absl::Status PutEntryAndWait(absl::string_view key, absl::string_view value,
                               absl::Span<const Digest> blobs);

  std::optional<bool> TryHasEntry(absl::string_view key) override {
    std::optional<bool> local = local_->TryHasEntry(key);
    if (local == true &&
        (options_.retention <= absl::ZeroDuration() || EntryFresh(key))) {
      return true;
    }
    return std::nullopt;  // Another node may have written it.
  }

  std::optional<absl::StatusOr<std::string>> TryGetEntry(
      absl::string_view key) override {
    std::optional<absl::StatusOr<std::string>> local = local_->TryGetEntry(key);
    if (local.has_value() && local->ok() &&
        (options_.retention <= absl::ZeroDuration() || EntryFresh(key))) {
      return local;
    }
    return std::nullopt;  // Unknown, or its bucket copy's age is unknown.
  }

  StoreStats Stats() override { return local_->Stats(); }
  std::vector<OwnerEvictions> EvictionsByOwner() override {
    return local_->EvictionsByOwner();
  }

  TieredStats Counters() override {
    // One line per counter, in TieredStats' order: checked at a glance.
    TieredStats t;
    t.existence_cache_hits = existence_hits_.load();
    {
      absl::MutexLock lock(&cache_mu_);
      t.existence_cache_entries = static_cast<int64_t>(known_.size());
    }
    t.bucket_lookups = bucket_lookups_.load();
    t.refreshes = refreshes_.load();
    t.fetches = fetches_started_.load();
    t.fetch_shared = fetch_shared_.load();
    t.uploads = uploads_.load();
    t.upload_skipped = upload_skipped_.load();
    t.degraded_writes = degraded_writes_.load();
    t.corrupt_fetches = corrupt_fetches_.load();
    t.streamed_fetches = streamed_fetches_.load();
    t.check_fetches = check_fetches_.load();
    t.entry_refreshes = entry_refreshes_.load();
    t.entry_blobs_kept = entry_blobs_kept_.load();
    t.backlog_uploaded = backlog_uploaded_.load();
    t.backlog_lost = backlog_lost_.load();
    t.bucket_down = bucket_down_.load();
    {
      absl::MutexLock lock(&backlog_mu_);
      t.backlog = static_cast<int64_t>(backlog_.size());
    }
    return t;
  }

  // ---- Used by TieredWriter. ----
  S3Client* s3() { return s3_.get(); }
  const TieredBlobStoreOptions& options() const { return options_; }
  std::string CasKey(const Digest& d) const {
    return absl::StrCat(options_.prefix, "cas/", d.hash());
  }
  std::string AcKey(absl::string_view key) const {
    return absl::StrCat(options_.prefix, "ac/", key);
  }
  // Uploads a whole blob held in memory (verified by the caller).
  absl::Status UploadWhole(const Digest& d, absl::string_view data);
  // Records that the bucket now holds `d`, written just now.
  void Uploaded(const Digest& d) {
    uploads_.fetch_add(1);
    Remember(d, absl::Now());
    absl::MutexLock lock(&cache_mu_);
    corrupt_.erase(d.hash());
  }
  // Notes a bucket success or failure (for bucket_down and its callback).
  void NoteBucket(const absl::Status& s) {
    bool down = !s.ok() && s.code() != absl::StatusCode::kNotFound &&
                s.code() != absl::StatusCode::kAlreadyExists &&
                s.code() != absl::StatusCode::kOutOfRange;
    if (bucket_down_.exchange(down) == down) {
      return;
    }
    if (options_.on_bucket_state) {
      options_.on_bucket_state(down, s);
    }
    if (!down) {
      absl::MutexLock lock(&backlog_mu_);
      wake_backlog_ = true;  // Back: upload what is owed now.
    }
  }
  // Puts a write the bucket refused onto the backlog when degraded_local
  // allows it; false: answer the bucket's error.
  bool DegradedWrite(BacklogItem item);
  bool IsCorrupt(const Digest& d) {
    absl::MutexLock lock(&cache_mu_);
    return corrupt_.contains(d.hash());
  }
  // Checks one digest against the bucket: true when present (refreshed if
  // old), false when absent or corrupt there.
  absl::StatusOr<bool> CheckBucket(const Digest& d);
  BlobStore* local() { return local_.get(); }
  void MarkCorrupt(const Digest& d) {
    corrupt_fetches_.fetch_add(1);
    absl::MutexLock lock(&cache_mu_);
    known_.Erase(d.hash());
    corrupt_.insert(d.hash());
  }
  // Records the end of `flight` (status, then wakes the misses waiting).
  // The waiters get a Status of their own, not one sharing `s`'s reference
  // count: Debian's Abseil drops the last reference inside its library,
  // where TSan cannot see it order the free after this thread's copies.
  void EndFlight(const Digest& d, const std::shared_ptr<InFlight>& flight,
                 const absl::Status& s) {
    flight->status = absl::Status(s.code(), s.message());
    {
      absl::MutexLock lock(&fetch_mu_);
      auto it = fetches_.find(d.hash());
      if (it != fetches_.end() && it->second == flight) {
        fetches_.erase(it);
      }
    }
    flight->done.Notify();
  }

 private:
  bool Fresh(absl::Time last_modified) const {
    return options_.retention <= absl::ZeroDuration() ||
           absl::Now() - last_modified <
               options_.retention - options_.refresh_margin;
  }

  bool LocalHas(const Digest& d) {
    return local_->FindMissing(absl::MakeConstSpan(&d, 1)).empty();
  }

  bool KnownPresent(const Digest& d) {
    absl::MutexLock lock(&cache_mu_);
    const Known* k = known_.Find(d.hash());
    if (k == nullptr || k->size != d.size_bytes() || !Fresh(k->last_modified)) {
      return false;
    }
    existence_hits_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  void Remember(const Digest& d, absl::Time last_modified) {
    absl::MutexLock lock(&cache_mu_);
    known_.Put(d.hash(), Known{d.size_bytes(), last_modified});
  }

  // Evaluates a bucket HEAD (or whole GET) answer for `d`: present
  // (refreshing if old), absent, or an error.
  absl::StatusOr<bool> Evaluate(const Digest& d,
                                const absl::StatusOr<S3ObjectInfo>& info);

  // FindMissingChecked(); with `fetch_small`, the digests missing locally
  // are GET into the local tier instead of HEADed when they are few and
  // small (options_.check_fetch_*).
  absl::StatusOr<std::vector<Digest>> FindMissingImpl(
      absl::Span<const Digest> digests, bool fetch_small);
  bool FetchOnCheck(absl::Span<const Digest> not_local) const {
    const int64_t max_bytes =
        std::min(options_.check_fetch_max_bytes, options_.fetch_chunk);
    return !not_local.empty() &&
           static_cast<int64_t>(not_local.size()) <=
               options_.check_fetch_max_blobs &&
           absl::c_all_of(not_local, [max_bytes](const Digest& d) {
             return d.size_bytes() <= max_bytes;
           });
  }
  // What a completeness check's fetch tells about one digest.
  enum class Fetched { kPresent, kMissing, kAskBucket };
  // Fetches `digests` into the local tier, together (one GetMany), joining
  // fetches in progress: per digest present, missing (absent or corrupt in
  // the bucket), to be asked with HEAD (the local tier refused it; or,
  // with retention, fetched by another caller: age unknown), or the
  // bucket's error (UNAVAILABLE).
  std::vector<absl::StatusOr<Fetched>> FetchForCheck(
      absl::Span<const Digest> digests);
  // The sink of a whole-blob fetch into `writer`; sets `*refused` to the
  // writer's error when it refuses a chunk (INVALID_ARGUMENT: the object
  // has more bytes than the digest), which ends the GET with that error.
  static S3Sink FillSink(BlobWriter* writer, absl::Status* refused) {
    return [writer, refused](absl::string_view chunk) {
      *refused = writer->Append(chunk);
      return *refused;
    };
  }
  // Ends a whole-blob fetch of `digest` into `writer` whose GET answered
  // `got` (`refused`: the sink's error, see FillSink): commits (verifying
  // the SHA-256) and returns the object's info, or DATA_LOSS (corrupt:
  // marked), NOT_FOUND, the local tier's error, or UNAVAILABLE (the
  // bucket's). Only the bucket's own answers count for bucket_down.
  absl::StatusOr<S3ObjectInfo> EndFill(const Digest& digest, BlobWriter* writer,
                                       const absl::Status& refused,
                                       const absl::StatusOr<S3ObjectInfo>& got);

  // Makes sure the local tier holds `digest` (fetching it), then runs `op`;
  // once more if the item was evicted in between.
  template <typename Op>
  auto WithLocal(const Digest& digest, Op op) -> decltype(op()) {
    for (int attempt = 0;; ++attempt) {
      auto result = op();
      if (result.ok() ||
          result.status().code() != absl::StatusCode::kNotFound ||
          digest.IsEmpty() || attempt == 2) {
        return result;
      }
      if (absl::Status s = Fetch(digest); !s.ok()) {
        return s;
      }
    }
  }

  // Fetches `digest` from the bucket into the local tier; concurrent calls
  // for one digest share one fetch.
  absl::Status Fetch(const Digest& digest);
  absl::Status FetchOnce(const Digest& digest);
  // Returns the digest's fetch in progress (false) or a new one this caller
  // leads (true).
  std::pair<std::shared_ptr<InFlight>, bool> JoinFlight(const Digest& d);
  // OpenRead() of a blob bigger than fetch_chunk: local, or streamed.
  absl::StatusOr<std::unique_ptr<BlobReader>> OpenStreaming(
      const Digest& digest, int64_t offset);

  // Keyed entries in the bucket. PutEntryObject() keeps copies of those of
  // `blobs` the bucket is known to hold and the local tier has, within
  // options_.entry_blobs_max_bytes.
  absl::Status PutEntryObject(absl::string_view key, absl::string_view value,
                              absl::Span<const Digest> blobs = {});
  // Puts the blob copies of a fetched entry into the local tier, each only
  // if it matches its digest.
  void KeepEntryBlobs(absl::Span<const BlobWrite> blobs,
                      absl::Time entry_modified);
  absl::StatusOr<std::string> FetchEntry(absl::string_view key);
  // With retention: makes sure the bucket's copy of a locally found entry
  // stays alive (refresh, or upload `value` again); bucket errors ignored.
  void KeepEntryAlive(absl::string_view key, absl::string_view value);
  bool EntryFresh(absl::string_view key) {
    absl::MutexLock lock(&cache_mu_);
    const absl::Time* modified = known_entries_.Find(key);
    return modified != nullptr && Fresh(*modified);
  }
  void RememberEntry(absl::string_view key, absl::Time last_modified) {
    absl::MutexLock lock(&cache_mu_);
    known_entries_.Put(key, last_modified);
  }

  // The backlog thread: waits for work, uploads, repeats until stopping.
  void BacklogLoop();
  // Uploads the backlog's items in order until one fails on the bucket;
  // returns whether everything went up.
  bool DrainBacklog();
  // Uploads one backlog item from the local tier: OK, NOT_FOUND (evicted
  // locally: lost) or the bucket's error.
  absl::Status UploadOwed(const BacklogItem& item);
  absl::Status UploadFromLocal(const Digest& d);
  // Rewrites the backlog file with `backlog_` (after items went up).
  void RewriteBacklogFile() ABSL_EXCLUSIVE_LOCKS_REQUIRED(backlog_mu_);

  struct Known {
    int64_t size;
    absl::Time last_modified;
  };
  const std::unique_ptr<BlobStore> local_;
  const std::unique_ptr<S3Client> s3_;
  const TieredBlobStoreOptions options_;

  absl::Mutex cache_mu_;
  ExistenceCache<Known> known_ ABSL_GUARDED_BY(cache_mu_);
  absl::flat_hash_set<std::string> corrupt_ ABSL_GUARDED_BY(cache_mu_);

  ExistenceCache<absl::Time> known_entries_ ABSL_GUARDED_BY(cache_mu_);

  absl::Mutex fetch_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<InFlight>> fetches_
      ABSL_GUARDED_BY(fetch_mu_);

  mutable absl::Mutex backlog_mu_;
  std::deque<BacklogItem> backlog_ ABSL_GUARDED_BY(backlog_mu_);
  absl::flat_hash_set<std::string> backlog_keys_ ABSL_GUARDED_BY(backlog_mu_);
  std::FILE* backlog_out_ ABSL_GUARDED_BY(backlog_mu_) = nullptr;
  bool wake_backlog_ ABSL_GUARDED_BY(backlog_mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(backlog_mu_) = false;
  std::thread backlog_thread_;

  std::atomic<int64_t> existence_hits_{0}, bucket_lookups_{0}, refreshes_{0},
      fetches_started_{0}, fetch_shared_{0}, uploads_{0}, upload_skipped_{0},
      degraded_writes_{0}, corrupt_fetches_{0}, streamed_fetches_{0},
      check_fetches_{0}, entry_refreshes_{0}, backlog_uploaded_{0},
      backlog_lost_{0}, entry_blobs_kept_{0};
  std::atomic<bool> bucket_down_{false};
};

absl::StatusOr<bool> TieredStore::Evaluate(
    const Digest& d, const absl::StatusOr<S3ObjectInfo>& info) {
  NoteBucket(info.status());
  if (info.status().code() == absl::StatusCode::kNotFound) {
    return false;
  }
  if (!info.ok()) {
    return BucketError(absl::StrCat("cas blob ", d.ToString()), info.status());
  }
  if (info->size != d.size_bytes()) {
    MarkCorrupt(d);  // Wrong size: never served; the next upload replaces it.
    return false;
  }
  absl::Time modified = info->last_modified;
  if (!Fresh(modified)) {
    absl::Status s = s3_->Refresh(CasKey(d));
    NoteBucket(s);
    if (s.code() == absl::StatusCode::kNotFound) {
      return false;
    }
    if (!s.ok()) {
      return BucketError(absl::StrCat("refresh of cas blob ", d.ToString()), s);
    }
    refreshes_.fetch_add(1);
    modified = absl::Now();
  }
  Remember(d, modified);
  return true;
}

absl::StatusOr<bool> TieredStore::CheckBucket(const Digest& d) {
  bucket_lookups_.fetch_add(1);
  return Evaluate(d, s3_->Head(CasKey(d)));
}

absl::StatusOr<std::vector<Digest>> TieredStore::FindMissingImpl(
    absl::Span<const Digest> digests, bool fetch_small) {
  std::vector<Digest> missing;
  std::vector<Digest> unknown;
  for (const Digest& d : digests) {
    if (d.IsEmpty() || KnownPresent(d)) {
      continue;
    }
    if (IsCorrupt(d)) {
      missing.push_back(d);
    } else {
      unknown.push_back(d);
    }
  }
  if (unknown.empty()) {
    return missing;
  }
  const bool retention = options_.retention > absl::ZeroDuration();
  // Without retention, a local item is one the bucket had: trust it.
  std::vector<Digest> ask;
  std::vector<Digest> fetch;
  if (fetch_small) {
    std::vector<Digest> not_local = local_->FindMissing(unknown);
    if (FetchOnCheck(not_local)) {
      fetch = std::move(not_local);
      if (retention) {  // The local ones: their bucket age is unknown.
        absl::flat_hash_set<std::string> fetched;
        for (const Digest& d : fetch) {
          fetched.insert(d.hash());
        }
        for (const Digest& d : unknown) {
          if (!fetched.contains(d.hash())) {
            ask.push_back(d);
          }
        }
      }
    } else {
      ask = retention ? unknown : std::move(not_local);
    }
  } else {
    ask = retention ? unknown : local_->FindMissing(unknown);
  }
  absl::Status error;
  std::vector<absl::StatusOr<Fetched>> fetched = FetchForCheck(fetch);
  for (size_t i = 0; i < fetch.size(); ++i) {
    if (!fetched[i].ok()) {
      error = fetched[i].status();
    } else if (*fetched[i] == Fetched::kMissing) {
      missing.push_back(fetch[i]);
    } else if (*fetched[i] == Fetched::kAskBucket) {
      ask.push_back(fetch[i]);
    }
  }
  std::vector<std::string> keys;
  keys.reserve(ask.size());
  for (const Digest& d : ask) {
    keys.push_back(CasKey(d));
  }
  bucket_lookups_.fetch_add(static_cast<int64_t>(ask.size()));
  std::vector<absl::StatusOr<S3ObjectInfo>> infos = s3_->HeadMany(keys);
  for (size_t i = 0; i < ask.size(); ++i) {
    absl::StatusOr<bool> present = Evaluate(ask[i], infos[i]);
    if (!present.ok()) {
      error = present.status();
    } else if (!*present) {
      missing.push_back(ask[i]);
    }
  }
  if (error.ok()) {
    return missing;
  }
  if (!options_.degraded_local) {
    return error;
  }
  // Degraded: the local tier answers for what the bucket could not.
  std::vector<Digest> local_missing = local_->FindMissing(unknown);
  return local_missing;
}

std::vector<absl::StatusOr<TieredStore::Fetched>> TieredStore::FetchForCheck(
    absl::Span<const Digest> digests) {
  const size_t n = digests.size();
  std::vector<absl::StatusOr<Fetched>> out(n, Fetched::kAskBucket);
  std::vector<std::shared_ptr<InFlight>> joined(n);
  std::vector<std::unique_ptr<BlobWriter>> writers(n);
  std::vector<absl::Status> refused(n);  // Sized once: sinks point in.
  std::vector<size_t> led;
  std::vector<std::string> keys;
  std::vector<S3Sink> sinks;
  for (size_t i = 0; i < n; ++i) {
    auto [flight, leader] = JoinFlight(digests[i]);
    if (!leader) {
      joined[i] = std::move(flight);
      continue;
    }
    if (LocalHas(digests[i])) {  // A fetch that just ended filled it.
      EndFlight(digests[i], flight, absl::OkStatus());
      out[i] = options_.retention > absl::ZeroDuration() ? Fetched::kAskBucket
                                                         : Fetched::kPresent;
      continue;
    }
    absl::StatusOr<std::unique_ptr<BlobWriter>> w =
        local_->OpenWrite(digests[i]);
    if (!w.ok()) {  // The local tier refused: HEAD it instead.
      EndFlight(digests[i], flight, w.status());
      continue;
    }
    writers[i] = *std::move(w);
    led.push_back(i);
    keys.push_back(CasKey(digests[i]));
    sinks.push_back(FillSink(writers[i].get(), &refused[i]));
    joined[i] = std::move(flight);  // Ended below, by this caller.
  }
  check_fetches_.fetch_add(static_cast<int64_t>(led.size()));
  bucket_lookups_.fetch_add(static_cast<int64_t>(led.size()));
  std::vector<absl::StatusOr<S3ObjectInfo>> got = s3_->GetMany(keys, sinks);
  for (size_t k = 0; k < led.size(); ++k) {
    const size_t i = led[k];
    const Digest& d = digests[i];
    absl::StatusOr<S3ObjectInfo> info =
        EndFill(d, writers[i].get(), refused[i], got[k]);
    writers[i].reset();
    EndFlight(d, joined[i], info.status());
    joined[i] = nullptr;
    if (info.ok()) {
      info->size = d.size_bytes();  // Committed: size and hash checked.
    }
    absl::StatusOr<bool> present =
        info.ok() ? Evaluate(d, info) : absl::StatusOr<bool>(info.status());
    if (present.ok()) {
      out[i] = *present ? Fetched::kPresent : Fetched::kMissing;
    } else if (absl::IsNotFound(present.status()) ||
               absl::IsDataLoss(present.status())) {
      out[i] = Fetched::kMissing;
    } else if (absl::IsUnavailable(present.status())) {
      out[i] = present.status();
    }  // Else the local tier's error: kAskBucket.
  }
  // Fetches led by others (after ending ours, so no caller waits on
  // another that waits on it).
  for (size_t i = 0; i < n; ++i) {
    if (joined[i] == nullptr) {
      continue;
    }
    joined[i]->done.WaitForNotification();
    absl::Status s = joined[i]->status;
    if (absl::IsAborted(s)) {  // A streaming reader went away: fetch again.
      s = Fetch(digests[i]);
    }
    if (s.ok()) {  // Local now; with retention its bucket age is unknown.
      out[i] = options_.retention > absl::ZeroDuration() ? Fetched::kAskBucket
                                                         : Fetched::kPresent;
    } else if (absl::IsNotFound(s) || absl::IsDataLoss(s)) {
      out[i] = Fetched::kMissing;
    } else if (absl::IsUnavailable(s)) {
      out[i] = s;
    }
  }
  return out;
}

absl::Status TieredStore::UploadWhole(const Digest& d, absl::string_view data) {
  const std::string key = CasKey(d);
  absl::Status s;
  if (d.size_bytes() < options_.multipart_threshold) {
    s = s3_->Put(key, data, d.hash(), /*if_absent=*/!IsCorrupt(d));
    NoteBucket(s);
    if (s.code() == absl::StatusCode::kAlreadyExists) {
      upload_skipped_.fetch_add(1);
      absl::StatusOr<bool> present = CheckBucket(d);  // Refreshes if old.
      if (!present.ok()) {
        return present.status();
      }
      if (*present) {
        return absl::OkStatus();
      }
      s = s3_->Put(key, data, d.hash(), /*if_absent=*/false);
      NoteBucket(s);
    }
  } else {
    absl::StatusOr<bool> present = CheckBucket(d);
    if (present.ok() && *present && !IsCorrupt(d)) {
      upload_skipped_.fetch_add(1);
      return absl::OkStatus();
    }
    TieredWriter w(this, d, nullptr, /*multipart=*/true, false);
    for (size_t off = 0; off < data.size() && s.ok();
         off += static_cast<size_t>(options_.part_size)) {
      s = w.Append(data.substr(off, static_cast<size_t>(options_.part_size)));
    }
    return s.ok() ? w.Commit() : s;
  }
  if (!s.ok()) {
    return BucketError(absl::StrCat("upload of cas blob ", d.ToString()), s);
  }
  Uploaded(d);
  return absl::OkStatus();
}

absl::Status TieredStore::Write(const Digest& digest, absl::string_view data) {
  if (absl::Status s = CheckData(digest, data); !s.ok()) {
    return s;
  }
  if (digest.IsEmpty()) {
    return absl::OkStatus();
  }
  if (!KnownPresent(digest)) {
    absl::Status s = UploadWhole(digest, data);
    if (!s.ok() && !DegradedWrite(BacklogItem{false, digest.hash(),
                                              digest.size_bytes()})) {
      return s;
    }
  }
  local_->Write(digest, data).IgnoreError();  // A cache: the bucket has it.
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BlobWriter>> TieredStore::OpenWrite(
    const Digest& digest) {
  std::unique_ptr<BlobWriter> local;
  if (absl::StatusOr<std::unique_ptr<BlobWriter>> w = local_->OpenWrite(digest);
      w.ok()) {
    local = *std::move(w);
  }
  return OpenWriteWith(digest, std::move(local));
}

absl::StatusOr<std::unique_ptr<BlobWriter>> TieredStore::OpenWriteZstd(
    const Digest& digest) {
  if (digest.IsEmpty()) {
    return BlobStore::OpenWriteZstd(digest);
  }
  std::unique_ptr<BlobWriter> local;
  if (absl::StatusOr<std::unique_ptr<BlobWriter>> w =
          local_->OpenWriteZstd(digest);
      w.ok()) {
    local = *std::move(w);
  }
  absl::StatusOr<std::unique_ptr<BlobWriter>> tiered =
      OpenWriteWith(digest, nullptr);
  if (!tiered.ok()) {
    return tiered.status();
  }
  return std::make_unique<ZstdTeeWriter>(
      NewZstdDecodingWriter(digest, *std::move(tiered)), std::move(local));
}

absl::StatusOr<std::unique_ptr<BlobWriter>> TieredStore::OpenWriteWith(
    const Digest& digest, std::unique_ptr<BlobWriter> local) {
  const bool multipart = digest.size_bytes() >= options_.multipart_threshold;
  bool skip = digest.IsEmpty() || KnownPresent(digest);
  bool owed = false;
  if (multipart && !skip) {
    absl::StatusOr<bool> present = CheckBucket(digest);
    if (!present.ok() && !options_.degraded_local) {
      return present.status();
    }
    skip = present.ok() && *present;
    owed = !present.ok();  // Degraded: kept locally, uploaded later.
  }
  return std::make_unique<TieredWriter>(
      this, digest, std::move(local), multipart, skip, /*backlog=*/true, owed);
}

std::pair<std::shared_ptr<InFlight>, bool> TieredStore::JoinFlight(
    const Digest& d) {
  absl::MutexLock lock(&fetch_mu_);
  auto [it, inserted] = fetches_.try_emplace(d.hash());
  if (inserted) {
    it->second = std::make_shared<InFlight>();
    fetches_started_.fetch_add(1);
  } else {
    fetch_shared_.fetch_add(1);
  }
  return {it->second, inserted};
}

absl::Status TieredStore::Fetch(const Digest& digest) {
  for (int attempt = 0;; ++attempt) {
    auto [flight, leader] = JoinFlight(digest);
    if (leader) {
      EndFlight(digest, flight, FetchOnce(digest));
      return flight->status;
    }
    flight->done.WaitForNotification();
    // ABORTED: a streaming reader was dropped unfinished; fetch again.
    if (flight->status.code() != absl::StatusCode::kAborted || attempt == 2) {
      return flight->status;
    }
  }
}

absl::StatusOr<std::unique_ptr<BlobReader>> TieredStore::OpenStreaming(
    const Digest& digest, int64_t offset) {
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<std::unique_ptr<BlobReader>> local =
        local_->OpenRead(digest, offset);
    if (local.ok() || local.status().code() != absl::StatusCode::kNotFound) {
      return local;
    }
    auto [flight, leader] = JoinFlight(digest);
    if (!leader && attempt == 2) {
      // The local tier keeps losing it (full?): stream a private fetch.
      flight = std::make_shared<InFlight>();
      leader = true;
    }
    if (leader) {
      std::unique_ptr<BlobWriter> writer;
      if (auto w = local_->OpenWrite(digest); w.ok()) {
        writer = *std::move(w);
      }
      streamed_fetches_.fetch_add(1);
      return std::make_unique<FillingReader>(this, digest, offset,
                                             std::move(writer), flight);
    }
    flight->done.WaitForNotification();
    const absl::StatusCode code = flight->status.code();
    if (code != absl::StatusCode::kOk && code != absl::StatusCode::kAborted) {
      return flight->status;
    }
  }
}

absl::Status TieredStore::FetchOnce(const Digest& digest) {
  if (LocalHas(digest)) {  // A fetch that just ended filled it.
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<BlobWriter>> writer =
      local_->OpenWrite(digest);
  if (!writer.ok()) {
    return writer.status();
  }
  absl::Status refused;
  absl::StatusOr<S3ObjectInfo> got =
      s3_->Get(CasKey(digest), 0, -1, FillSink(writer->get(), &refused));
  absl::StatusOr<S3ObjectInfo> info =
      EndFill(digest, writer->get(), refused, got);
  if (info.ok()) {
    Remember(digest, info->last_modified);  // Seen there just now.
  }
  return info.status();
}

absl::StatusOr<S3ObjectInfo> TieredStore::EndFill(
    const Digest& digest, BlobWriter* writer, const absl::Status& refused,
    const absl::StatusOr<S3ObjectInfo>& got) {
  // A refused chunk ended the GET: the bucket was answering.
  NoteBucket(refused.ok() ? got.status() : absl::OkStatus());
  absl::Status s = refused.ok() ? got.status() : refused;
  bool corrupt = absl::IsInvalidArgument(refused);  // Longer than its digest.
  if (s.ok()) {
    s = writer->Commit();
    corrupt = absl::IsInvalidArgument(s);  // Shorter, or other bytes.
  }
  if (corrupt) {
    MarkCorrupt(digest);
    return absl::DataLossError(absl::StrCat(
        "cas blob ", digest.ToString(),
        ": the shared tier's copy does not match its digest; not served"));
  }
  if (!refused.ok()) {
    return refused;  // The local tier's error.
  }
  if (s.code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(
        absl::StrCat("cas blob ", digest.ToString(), " not found"));
  }
  if (!s.ok()) {
    return got.ok()
               ? s  // The local tier's error.
               : BucketError(
                     absl::StrCat("fetch of cas blob ", digest.ToString()), s);
  }
  return got;
}

absl::StatusOr<std::string> TieredStore::GetEntry(absl::string_view key) {
  absl::StatusOr<std::string> local = local_->GetEntry(key);
  if (local.ok()) {
    KeepEntryAlive(key, *local);
    return local;
  }
  if (local.status().code() != absl::StatusCode::kNotFound &&
      local.status().code() != absl::StatusCode::kDataLoss) {
    return local;
  }
  absl::StatusOr<std::string> value = FetchEntry(key);
  if (value.ok()) {
    local_->PutEntry(key, *value).IgnoreError();
  }
  return value;
}

absl::StatusOr<std::string> TieredStore::FetchEntry(absl::string_view key) {
  std::string object;
  bool too_large = false;
  S3Sink sink = [&object, &too_large](absl::string_view chunk) {
    if (object.size() + chunk.size() > kMaxEntryObject) {
      too_large = true;
      return absl::FailedPreconditionError("action cache object too large");
    }
    object.append(chunk.data(), chunk.size());
    return absl::OkStatus();
  };
  absl::StatusOr<S3ObjectInfo> info = s3_->Get(AcKey(key), 0, -1, sink);
  // An object too large to be an entry is a bad item, not a bucket outage:
  // the bucket was answering when the sink refused it.
  NoteBucket(too_large ? absl::OkStatus() : info.status());
  if (info.status().code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(
        absl::StrCat("action cache entry ", key, " not found"));
  }
  if (!info.ok() && !too_large) {
    return BucketError(absl::StrCat("action cache entry ", key), info.status());
  }
  std::optional<EntryObject> entry;
  if (info.ok()) {
    entry = ParseEntryObject(object);
  }
  if (!entry.has_value()) {
    return absl::DataLossError(
        absl::StrCat("action cache entry ", key, ": the shared tier's copy is ",
                     too_large ? "too large to be an entry" : "corrupt"));
  }
  std::string value(entry->value);
  KeepEntryBlobs(entry->blobs, info->last_modified);
  if (options_.retention <= absl::ZeroDuration()) {
    RememberEntry(key, info->last_modified);  // Seen there: never expires.
  } else {
    absl::Time modified = info->last_modified;
    if (!Fresh(modified)) {
      absl::Status s = s3_->Refresh(AcKey(key));
      NoteBucket(s);
      if (s.ok()) {
        entry_refreshes_.fetch_add(1);
        modified = absl::Now();
      }
    }
    if (Fresh(modified)) {
      RememberEntry(key, modified);
    }
  }
  return value;
}

void TieredStore::KeepEntryAlive(absl::string_view key,
                                 absl::string_view value) {
  if (options_.retention <= absl::ZeroDuration() || EntryFresh(key)) {
    return;
  }
  absl::StatusOr<S3ObjectInfo> info = s3_->Head(AcKey(key));
  NoteBucket(info.status());
  absl::Status s;
  if (info.status().code() == absl::StatusCode::kNotFound) {
    s = PutEntryObject(key, value);  // Expired there (or never went up).
  } else if (info.ok() && !Fresh(info->last_modified)) {
    s = s3_->Refresh(AcKey(key));
    NoteBucket(s);
  } else if (info.ok()) {
    RememberEntry(key, info->last_modified);
    return;
  } else {
    return;  // Bucket down: the local hit is served all the same.
  }
  if (s.ok()) {
    entry_refreshes_.fetch_add(1);
    RememberEntry(key, absl::Now());
  }
}

void TieredStore::KeepEntryBlobs(absl::Span<const BlobWrite> blobs,
                                 absl::Time entry_modified) {
  std::vector<BlobWrite> absent;
  std::deque<std::string> decoded;  // The plain bytes of compressed copies.
  int64_t decoded_bytes = 0;        // Bounded: frames may claim any size.
  for (const BlobWrite& b : blobs) {
    if (IsCorrupt(b.digest) || LocalHas(b.digest)) {
      continue;
    }
    if (b.zstd.empty()) {
      absent.push_back(b);
      continue;
    }
    decoded_bytes += b.digest.size_bytes();
    if (decoded_bytes > static_cast<int64_t>(kMaxEntryObject)) {
      break;  // Read from its own object if needed.
    }
    absl::StatusOr<std::string> plain =
        ZstdDecompressAll(b.zstd, b.digest.size_bytes());
    if (!plain.ok()) {
      corrupt_fetches_.fetch_add(1);
      continue;
    }
    decoded.push_back(*std::move(plain));
    // The local tier may keep the frames as they came (checked as `data`).
    absent.push_back(BlobWrite{b.digest, decoded.back(), b.zstd});
  }
  // Write() checks each copy against its digest: a bad one is not kept.
  std::vector<absl::Status> kept = local_->WriteBlobs(absent);
  for (size_t i = 0; i < absent.size(); ++i) {
    if (kept[i].ok()) {
      entry_blobs_kept_.fetch_add(1);
      // The writer saw the bucket hold it; without retention it stays.
      if (options_.retention <= absl::ZeroDuration()) {
        Remember(absent[i].digest, entry_modified);
      }
    } else if (absl::IsInvalidArgument(kept[i])) {
      corrupt_fetches_.fetch_add(1);
    }
  }
}

absl::Status TieredStore::PutEntryObject(absl::string_view key,
                                         absl::string_view value,
                                         absl::Span<const Digest> blobs) {
  std::string copies;
  // The budget counts the bytes carried (compressed copies as compressed);
  // the plain bytes are bounded too, as the reader decompresses them.
  int64_t budget = options_.entry_blobs_max_bytes;
  int64_t plain_budget = 4 * options_.entry_blobs_max_bytes;
  absl::flat_hash_set<absl::string_view> seen;
  for (const Digest& d : blobs) {
    if (d.IsEmpty() || d.size_bytes() > plain_budget ||
        (d.size_bytes() > budget && d.size_bytes() < kMinZstdCopy) ||
        !seen.insert(d.hash()).second || !KnownPresent(d)) {
      continue;  // Only blobs whose own object the bucket holds.
    }
    absl::StatusOr<StoredBlob> bytes = local_->ReadAsStored(d);
    if (!bytes.ok()) {
      continue;
    }
    if (!bytes->zstd && d.size_bytes() >= kMinZstdCopy) {
      if (std::optional<std::string> frames = CompressIfSmaller(bytes->data)) {
        *bytes = StoredBlob{*std::move(frames), true};
      }
    }
    const int64_t carried = static_cast<int64_t>(bytes->data.size());
    if (carried > budget) {
      continue;
    }
    budget -= carried;
    plain_budget -= d.size_bytes();
    if (bytes->zstd) {
      AppendEntryZstdCopy(d, bytes->data, &copies);
    } else {
      AppendEntryCopy(d, bytes->data, &copies);
    }
  }
  const std::string object = EncodeEntryObject(value, copies);
  absl::Status s = s3_->Put(AcKey(key), object, "", /*if_absent=*/false);
  NoteBucket(s);
  if (s.ok()) {
    RememberEntry(key, absl::Now());
  }
  return s;
}

absl::Status TieredStore::PutEntryAndWait(absl::string_view key,
                                          absl::string_view value,
                                          absl::Span<const Digest> blobs) {
  if (absl::Status s = ValidateSha256Hex(key); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("action cache key ", key, " is malformed"));
  }
  if (EntryFresh(key)) {  // The bucket holds an entry under `key`...
    absl::StatusOr<std::string> local = local_->GetEntry(key);
    if (local.ok() && *local == value) {
      return absl::OkStatus();  // ...and it is this one: no second PUT.
    }
  }
  absl::Status s = PutEntryObject(key, value, blobs);
  if (!s.ok() && !DegradedWrite(BacklogItem{true, std::string(key), 0})) {
    return BucketError(absl::StrCat("action cache entry ", key), s);
  }
  return local_->PutEntry(key, value);
}

// ---- TieredWriter ----------------------------------------------------------

TieredWriter::~TieredWriter() {
  if (!upload_id_.empty() && !committed_) {
    store_->s3()
        ->AbortMultipart(store_->CasKey(digest_), upload_id_)
        .IgnoreError();
  }
}

absl::Status TieredWriter::Append(absl::string_view data) {
  if (failed_ || committed_) {
    return WriterClosedError(digest_);
  }
  if (written_ + static_cast<int64_t>(data.size()) > digest_.size_bytes()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "cas blob ", digest_.ToString(), ": more bytes than its size")));
  }
  hasher_.Update(data);
  written_ += static_cast<int64_t>(data.size());
  if (local_ != nullptr && !local_->Append(data).ok()) {
    local_.reset();  // The local tier is a cache; the bucket is the record.
  }
  if (skip_upload_) {
    return absl::OkStatus();
  }
  buffer_.append(data.data(), data.size());
  if (multipart_) {
    while (static_cast<int64_t>(buffer_.size()) >=
           store_->options().part_size) {
      if (absl::Status s = FlushPart(); !s.ok()) {
        return Fail(s);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status TieredWriter::FlushPart() {
  S3Client* s3 = store_->s3();
  const std::string key = store_->CasKey(digest_);
  if (upload_id_.empty()) {
    absl::StatusOr<std::string> id = s3->CreateMultipart(key);
    store_->NoteBucket(id.status());
    if (!id.ok()) {
      return BucketError(
          absl::StrCat("upload of cas blob ", digest_.ToString()), id.status());
    }
    upload_id_ = *id;
  }
  const size_t n = std::min(buffer_.size(),
                            static_cast<size_t>(store_->options().part_size));
  absl::StatusOr<std::string> etag =
      s3->UploadPart(key, upload_id_, static_cast<int>(etags_.size()) + 1,
                     absl::string_view(buffer_).substr(0, n));
  store_->NoteBucket(etag.status());
  if (!etag.ok()) {
    return BucketError(absl::StrCat("upload of cas blob ", digest_.ToString()),
                       etag.status());
  }
  etags_.push_back(*etag);
  buffer_.erase(0, n);
  return absl::OkStatus();
}

absl::Status TieredWriter::Commit() {
  if (failed_ || committed_) {
    return WriterClosedError(digest_);
  }
  if (absl::Status s = CheckDigest(digest_, hasher_.FinishDigest()); !s.ok()) {
    failed_ = true;
    return s;
  }
  committed_ = true;
  absl::Status s;
  if (owed_ && !store_->DegradedWrite(
                   BacklogItem{false, digest_.hash(), digest_.size_bytes()})) {
    failed_ = true;
    return absl::UnavailableError(
        absl::StrCat("upload of cas blob ", digest_.ToString(),
                     ": shared tier unavailable and the backlog is full"));
  }
  if (!skip_upload_ && !digest_.IsEmpty()) {
    if (!multipart_) {
      s = store_->UploadWhole(digest_, buffer_);
    } else {
      if (!buffer_.empty() || etags_.empty()) {
        s = FlushPart();
      }
      if (s.ok()) {
        s = store_->s3()->CompleteMultipart(store_->CasKey(digest_), upload_id_,
                                            etags_);
        store_->NoteBucket(s);
        if (s.ok()) {
          store_->Uploaded(digest_);
        } else {
          s = BucketError(
              absl::StrCat("upload of cas blob ", digest_.ToString()), s);
        }
      }
    }
    if (s.ok()) {
      upload_id_.clear();  // Completed: nothing to abort.
    } else {
      committed_ = false;  // The destructor aborts the multipart upload.
      failed_ = true;
      if (!backlog_ || !store_->DegradedWrite(BacklogItem{
                           false, digest_.hash(), digest_.size_bytes()})) {
        return s;
      }
    }
  }
  if (local_ != nullptr) {
    local_->Commit().IgnoreError();
  }
  return absl::OkStatus();
}

// ---- FillingReader ---------------------------------------------------------

FillingReader::~FillingReader() {
  if (flight_ != nullptr) {
    End(absl::AbortedError(absl::StrCat("fetch of cas blob ",
                                        digest_.ToString(),
                                        " abandoned by its reader")))
        .IgnoreError();
  }
}

absl::Status FillingReader::End(absl::Status s) {
  if (flight_ != nullptr) {
    if (s.ok() && local_ != nullptr) {
      local_->Commit().IgnoreError();  // A cache: may refuse.
    }
    local_.reset();
    store_->EndFlight(digest_, flight_, s);
    flight_ = nullptr;
    final_ = s;
  }
  return final_;
}

absl::StatusOr<size_t> FillingReader::Read(char* buf, size_t max) {
  while (position_ >= fetched_) {
    if (flight_ == nullptr) {
      if (!final_.ok()) {
        return final_;
      }
      return 0;
    }
    if (fetched_ == digest_.size_bytes()) {
      if (hasher_.FinishDigest() != digest_) {
        store_->MarkCorrupt(digest_);
        return End(absl::DataLossError(absl::StrCat(
            "cas blob ", digest_.ToString(),
            ": the shared tier's copy does not match its digest; not kept")));
      }
      End(absl::OkStatus()).IgnoreError();
      return 0;
    }
    if (absl::Status s = FetchRange(); !s.ok()) {
      return End(s);
    }
  }
  const int64_t start = fetched_ - static_cast<int64_t>(range_.size());
  const size_t n = static_cast<size_t>(
      std::min<int64_t>(static_cast<int64_t>(max), fetched_ - position_));
  std::memcpy(buf, range_.data() + (position_ - start), n);
  position_ += static_cast<int64_t>(n);
  return n;
}

absl::Status FillingReader::FetchRange() {
  const int64_t want =
      std::min(store_->options().fetch_chunk, digest_.size_bytes() - fetched_);
  range_.clear();
  bool too_long = false;
  S3Sink sink = [&](absl::string_view chunk) {
    if (static_cast<int64_t>(range_.size() + chunk.size()) > want) {
      too_long = true;
      return absl::InvalidArgumentError("range longer than asked");
    }
    range_.append(chunk.data(), chunk.size());
    return absl::OkStatus();
  };
  absl::StatusOr<S3ObjectInfo> info =
      store_->s3()->Get(store_->CasKey(digest_), fetched_, want, sink);
  store_->NoteBucket(info.status());
  const bool wrong_size =
      info.status().code() == absl::StatusCode::kOutOfRange ||
      (info.ok() && (info->size != digest_.size_bytes() ||
                     static_cast<int64_t>(range_.size()) != want));
  if (too_long || wrong_size) {
    store_->MarkCorrupt(digest_);
    return absl::DataLossError(
        absl::StrCat("cas blob ", digest_.ToString(),
                     ": the shared tier's copy has the wrong size; not kept"));
  }
  if (info.status().code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(
        absl::StrCat("cas blob ", digest_.ToString(), " not found"));
  }
  if (!info.ok()) {
    return BucketError(absl::StrCat("fetch of cas blob ", digest_.ToString()),
                       info.status());
  }
  hasher_.Update(range_);
  if (local_ != nullptr && !local_->Append(range_).ok()) {
    local_.reset();  // The local tier is a cache: keep streaming without it.
  }
  fetched_ += want;
  return absl::OkStatus();
}

// ---- Backlog of degraded writes ---------------------------------------------

bool TieredStore::DegradedWrite(BacklogItem item) {
  if (!options_.degraded_local) {
    return false;
  }
  absl::MutexLock lock(&backlog_mu_);
  const std::string id = absl::StrCat(item.entry ? "ac/" : "cas/", item.key);
  if (backlog_keys_.contains(id)) {
    degraded_writes_.fetch_add(1);
    return true;
  }
  if (static_cast<int64_t>(backlog_.size()) >= options_.backlog_max) {
    return false;  // Bounded: beyond it, writes fail as without the option.
  }
  if (backlog_out_ != nullptr) {
    const std::string line = BacklogLine(item);
    std::fwrite(line.data(), 1, line.size(), backlog_out_);
    std::fflush(backlog_out_);  // Survives a crash of the process.
  }
  backlog_keys_.insert(id);
  backlog_.push_back(std::move(item));
  degraded_writes_.fetch_add(1);
  return true;
}

absl::Status TieredStore::Start() {
  if (!options_.degraded_local) {
    return absl::OkStatus();
  }
  absl::MutexLock lock(&backlog_mu_);
  if (!options_.backlog_file.empty()) {
    std::ifstream in(options_.backlog_file);
    std::string line;
    while (std::getline(in, line)) {
      std::optional<BacklogItem> item = ParseBacklogLine(line);
      if (item.has_value() &&
          backlog_keys_
              .insert(absl::StrCat(item->entry ? "ac/" : "cas/", item->key))
              .second) {
        backlog_.push_back(*std::move(item));
      }
    }
    RewriteBacklogFile();
    if (backlog_out_ == nullptr) {
      return absl::InternalError(
          absl::StrCat("tiered store: cannot write the backlog file ",
                       options_.backlog_file, ": ", std::strerror(errno)));
    }
  }
  wake_backlog_ = !backlog_.empty();
  backlog_thread_ = std::thread([this] { BacklogLoop(); });
  return absl::OkStatus();
}

void TieredStore::RewriteBacklogFile() {
  if (options_.backlog_file.empty()) {
    return;
  }
  if (backlog_out_ != nullptr) {
    std::fclose(backlog_out_);
    backlog_out_ = nullptr;
  }
  const std::string tmp = options_.backlog_file + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    return;
  }
  for (const BacklogItem& item : backlog_) {
    const std::string line = BacklogLine(item);
    std::fwrite(line.data(), 1, line.size(), f);
  }
  if (std::fflush(f) != 0 ||
      std::rename(tmp.c_str(), options_.backlog_file.c_str()) != 0) {
    std::fclose(f);
    return;
  }
  backlog_out_ = f;  // Appends go to the renamed file.
}

void TieredStore::BacklogLoop() {
  while (true) {
    {
      absl::MutexLock lock(&backlog_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(backlog_mu_) {
        return stopping_ || wake_backlog_;
      };
      backlog_mu_.AwaitWithTimeout(absl::Condition(&ready),
                                   options_.backlog_retry);
      if (stopping_) {
        return;
      }
      wake_backlog_ = false;
      if (backlog_.empty()) {
        continue;
      }
    }
    DrainBacklog();
  }
}

bool TieredStore::DrainBacklog() {
  while (true) {
    BacklogItem item;
    {
      absl::MutexLock lock(&backlog_mu_);
      if (backlog_.empty() || stopping_) {
        RewriteBacklogFile();
        return backlog_.empty();
      }
      item = backlog_.front();
    }
    absl::Status s = UploadOwed(item);
    if (!s.ok() && s.code() != absl::StatusCode::kNotFound &&
        s.code() != absl::StatusCode::kDataLoss) {
      absl::MutexLock lock(&backlog_mu_);
      RewriteBacklogFile();
      return false;  // The bucket is still down: try again later.
    }
    (s.ok() ? backlog_uploaded_ : backlog_lost_).fetch_add(1);
    absl::MutexLock lock(&backlog_mu_);
    backlog_keys_.erase(absl::StrCat(item.entry ? "ac/" : "cas/", item.key));
    backlog_.pop_front();
  }
}

absl::Status TieredStore::UploadOwed(const BacklogItem& item) {
  if (item.entry) {
    absl::StatusOr<std::string> value = local_->GetEntry(item.key);
    if (!value.ok()) {
      return value.status();
    }
    return PutEntryObject(item.key, *value);
  }
  absl::StatusOr<Digest> d = Digest::Create(item.key, item.size);
  if (!d.ok()) {
    return absl::NotFoundError(d.status().message());
  }
  return UploadFromLocal(*d);
}

absl::Status TieredStore::UploadFromLocal(const Digest& d) {
  if (KnownPresent(d)) {
    return absl::OkStatus();  // Went up meanwhile (a client uploaded again).
  }
  absl::StatusOr<std::unique_ptr<BlobReader>> reader = local_->OpenRead(d, 0);
  if (!reader.ok()) {
    return reader.status();
  }
  const bool multipart = d.size_bytes() >= options_.multipart_threshold;
  if (multipart) {
    absl::StatusOr<bool> present = CheckBucket(d);
    if (!present.ok() || *present) {
      return present.status();
    }
  }
  TieredWriter writer(this, d, nullptr, multipart, false, /*backlog=*/false);
  std::string buf(static_cast<size_t>(std::min<int64_t>(
                      std::max<int64_t>(d.size_bytes(), 1), int64_t{1} << 20)),
                  '\0');
  while (true) {
    absl::StatusOr<size_t> n = (*reader)->Read(buf.data(), buf.size());
    if (!n.ok()) {
      return n.status();
    }
    if (*n == 0) {
      break;
    }
    if (absl::Status s = writer.Append(absl::string_view(buf.data(), *n));
        !s.ok()) {
      return s;
    }
  }
  return writer.Commit();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TieredBlobStore>> NewTieredBlobStore(
    std::unique_ptr<BlobStore> local, std::unique_ptr<S3Client> s3,
    const TieredBlobStoreOptions& options) {
  if (local == nullptr || s3 == nullptr) {
    return absl::InvalidArgumentError("tiered store: no local tier or bucket");
  }
  if (!options.prefix.empty() &&
      (!S3KeyIsSafe(options.prefix) || options.prefix.back() != '/' ||
       options.prefix.front() == '/')) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tiered store: prefix must be [A-Za-z0-9._/-], not start with '/' "
        "and end with '/': ",
        options.prefix));
  }
  if (options.part_size < kMinPartSize ||
      options.multipart_threshold < options.part_size) {
    return absl::InvalidArgumentError(
        "tiered store: part_size must be >= 5 MiB and <= multipart_threshold");
  }
  if (options.retention > absl::ZeroDuration() &&
      options.refresh_margin >= options.retention) {
    return absl::InvalidArgumentError(
        "tiered store: refresh_margin must be shorter than retention");
  }
  if (options.existence_cache_entries < 0) {
    return absl::InvalidArgumentError(
        "tiered store: existence_cache_entries must be >= 0");
  }
  if (options.fetch_chunk < (int64_t{64} << 10)) {
    return absl::InvalidArgumentError(
        "tiered store: fetch_chunk must be >= 64 KiB");
  }
  if (options.check_fetch_max_blobs < 0 || options.check_fetch_max_bytes < 0) {
    return absl::InvalidArgumentError(
        "tiered store: check_fetch_max_blobs and _bytes must be >= 0");
  }
  if (options.entry_blobs_max_bytes < 0 ||
      options.entry_blobs_max_bytes > int64_t{32} << 20) {
    return absl::InvalidArgumentError(
        "tiered store: entry_blobs_max_bytes must be in [0, 32 MiB]");
  }
  if (options.backlog_max < 0) {
    return absl::InvalidArgumentError("tiered store: backlog_max must be >= 0");
  }
  auto store =
      std::make_unique<TieredStore>(std::move(local), std::move(s3), options);
  if (absl::Status s = store->Start(); !s.ok()) {
    return s;
  }
  return store;
}

}  // namespace cairn::cas
