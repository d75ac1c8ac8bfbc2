// The tiered store. Invariants:
//  - The local tier only ever receives an item after the bucket has it (or
//    confirmed having it), except degraded writes (options_.degraded_local).
//  - `known_` holds positive bucket confirmations only (hash -> size and the
//    object's Last-Modified); a digest is removed when a fetch finds its
//    object corrupt, and put in `corrupt_`, which makes FindMissing report it
//    missing and the next upload overwrite it (no If-None-Match).
//  - `fetches_` has one entry per digest being fetched; later misses wait on
//    it. No lock is held across a bucket request or local I/O.
// Lock order: cache_mu_ and fetch_mu_ are never held together.
#include "cas/tiered_blob_store.h"

#include <algorithm>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace cairn::cas {
namespace {

constexpr absl::string_view kEntryMagic = "CAIRNAC1";
constexpr int64_t kMinPartSize = int64_t{5} << 20;

std::string Sha256Raw(absl::string_view data) {
  Sha256Hasher h;
  h.Update(data);
  return h.FinishRaw();
}

// A bucket failure as the client of the store sees it: the shared tier is
// unavailable (clients treat it as a miss), whatever the engine said.
absl::Status BucketError(absl::string_view what, const absl::Status& s) {
  return absl::UnavailableError(
      absl::StrCat(what, ": shared tier unavailable: ", s.message()));
}

class TieredStore;

// Streams a blob to the local tier and, for big blobs, to the bucket in
// parts; small blobs are kept in memory and PUT at Commit().
class TieredWriter final : public BlobWriter {
 public:
  TieredWriter(TieredStore* store, Digest digest,
               std::unique_ptr<BlobWriter> local, bool multipart,
               bool skip_upload)
      : store_(store),
        digest_(std::move(digest)),
        local_(std::move(local)),
        multipart_(multipart),
        skip_upload_(skip_upload) {}
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
  Sha256Hasher hasher_;
  int64_t written_ = 0;
  bool failed_ = false;
  bool committed_ = false;
  std::string buffer_;  // Small blob, or the current part.
  std::string upload_id_;
  std::vector<std::string> etags_;
};

class TieredStore final : public TieredBlobStore {
 public:
  TieredStore(std::unique_ptr<BlobStore> local, std::unique_ptr<S3Client> s3,
              const TieredBlobStoreOptions& options)
      : local_(std::move(local)), s3_(std::move(s3)), options_(options) {}

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
      absl::Span<const Digest> digests) override;

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
    return WithLocal(digest, [&] { return local_->OpenRead(digest, offset); });
  }

  // The rest of BlobStore, declared as every store declares it.
  absl::Status Write(const Digest& digest, absl::string_view data) override;

  absl::StatusOr<std::unique_ptr<BlobWriter>> OpenWrite(
      const Digest& digest) override;

  absl::StatusOr<std::string> GetEntry(absl::string_view key) override;
  absl::Status PutEntry(absl::string_view key,
                        absl::string_view value) override;

  std::optional<bool> TryHasEntry(absl::string_view key) override {
    std::optional<bool> local = local_->TryHasEntry(key);
    if (local == true) {
      return true;
    }
    return std::nullopt;  // Another node may have written it.
  }

  std::optional<absl::StatusOr<std::string>> TryGetEntry(
      absl::string_view key) override {
    std::optional<absl::StatusOr<std::string>> local = local_->TryGetEntry(key);
    if (local.has_value() && local->ok()) {
      return local;
    }
    return std::nullopt;
  }

  StoreStats Stats() override { return local_->Stats(); }

  TieredStats Counters() override {
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
    t.bucket_down = bucket_down_.load();
    return t;
  }

  // ---- Used by TieredWriter. ----
  S3Client* s3() { return s3_.get(); }
  const TieredBlobStoreOptions& options() const { return options_; }
  std::string CasKey(const Digest& d) const {
    return absl::StrCat(options_.prefix, "cas/", d.hash());
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
                s.code() != absl::StatusCode::kAlreadyExists;
    if (bucket_down_.exchange(down) != down && options_.on_bucket_state) {
      options_.on_bucket_state(down, s);
    }
  }
  bool DegradedWrite() {
    if (!options_.degraded_local) {
      return false;
    }
    degraded_writes_.fetch_add(1);
    return true;
  }
  bool IsCorrupt(const Digest& d) {
    absl::MutexLock lock(&cache_mu_);
    return corrupt_.contains(d.hash());
  }
  // Checks one digest against the bucket: true when present (refreshed if
  // old), false when absent or corrupt there.
  absl::StatusOr<bool> CheckBucket(const Digest& d);
  BlobStore* local() { return local_.get(); }

 private:
  bool Fresh(absl::Time last_modified) const {
    return options_.retention <= absl::ZeroDuration() ||
           absl::Now() - last_modified <
               options_.retention - options_.refresh_margin;
  }

  bool KnownPresent(const Digest& d) {
    absl::MutexLock lock(&cache_mu_);
    auto it = known_.find(d.hash());
    if (it == known_.end() || it->second.size != d.size_bytes() ||
        !Fresh(it->second.last_modified)) {
      return false;
    }
    existence_hits_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  void Remember(const Digest& d, absl::Time last_modified) {
    if (options_.existence_cache_entries == 0) {
      return;
    }
    absl::MutexLock lock(&cache_mu_);
    if (static_cast<int64_t>(known_.size()) >=
            options_.existence_cache_entries &&
        !known_.empty()) {
      known_.erase(known_.begin());
    }
    known_[d.hash()] = Known{d.size_bytes(), last_modified};
  }

  void MarkCorrupt(const Digest& d) {
    corrupt_fetches_.fetch_add(1);
    absl::MutexLock lock(&cache_mu_);
    known_.erase(d.hash());
    corrupt_.insert(d.hash());
  }

  // Evaluates a bucket HEAD answer for `d`: present (refreshing if old),
  // absent, or an error.
  absl::StatusOr<bool> Evaluate(const Digest& d,
                                const absl::StatusOr<S3ObjectInfo>& info);

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

  struct Known {
    int64_t size;
    absl::Time last_modified;
  };
  struct InFlight {
    absl::Notification done;
    absl::Status status;
  };

  const std::unique_ptr<BlobStore> local_;
  const std::unique_ptr<S3Client> s3_;
  const TieredBlobStoreOptions options_;

  absl::Mutex cache_mu_;
  absl::flat_hash_map<std::string, Known> known_ ABSL_GUARDED_BY(cache_mu_);
  absl::flat_hash_set<std::string> corrupt_ ABSL_GUARDED_BY(cache_mu_);

  absl::Mutex fetch_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<InFlight>> fetches_
      ABSL_GUARDED_BY(fetch_mu_);

  std::atomic<int64_t> existence_hits_{0}, bucket_lookups_{0}, refreshes_{0},
      fetches_started_{0}, fetch_shared_{0}, uploads_{0}, upload_skipped_{0},
      degraded_writes_{0}, corrupt_fetches_{0};
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

absl::StatusOr<std::vector<Digest>> TieredStore::FindMissingChecked(
    absl::Span<const Digest> digests) {
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
  // Without retention, a local item is one the bucket had: trust it.
  std::vector<Digest> ask = options_.retention > absl::ZeroDuration()
                                ? unknown
                                : local_->FindMissing(unknown);
  std::vector<std::string> keys;
  keys.reserve(ask.size());
  for (const Digest& d : ask) {
    keys.push_back(CasKey(d));
  }
  bucket_lookups_.fetch_add(static_cast<int64_t>(ask.size()));
  std::vector<absl::StatusOr<S3ObjectInfo>> infos = s3_->HeadMany(keys);
  absl::Status error;
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
  if (static_cast<int64_t>(data.size()) != digest.size_bytes() ||
      Digest::OfData(data) != digest) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cas blob ", digest.ToString(), ": data does not match its digest"));
  }
  if (digest.IsEmpty()) {
    return absl::OkStatus();
  }
  if (!KnownPresent(digest)) {
    absl::Status s = UploadWhole(digest, data);
    if (!s.ok() && !DegradedWrite()) {
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
  const bool multipart = digest.size_bytes() >= options_.multipart_threshold;
  bool skip = digest.IsEmpty() || KnownPresent(digest);
  if (multipart && !skip) {
    absl::StatusOr<bool> present = CheckBucket(digest);
    if (!present.ok() && !options_.degraded_local) {
      return present.status();
    }
    skip = present.ok() && *present;
  }
  return std::make_unique<TieredWriter>(this, digest, std::move(local),
                                        multipart, skip);
}

absl::Status TieredStore::Fetch(const Digest& digest) {
  std::shared_ptr<InFlight> flight;
  bool leader = false;
  {
    absl::MutexLock lock(&fetch_mu_);
    auto [it, inserted] = fetches_.try_emplace(digest.hash());
    if (inserted) {
      it->second = std::make_shared<InFlight>();
      leader = true;
    }
    flight = it->second;
  }
  if (!leader) {
    fetch_shared_.fetch_add(1);
    flight->done.WaitForNotification();
    return flight->status;
  }
  fetches_started_.fetch_add(1);
  flight->status = FetchOnce(digest);
  {
    absl::MutexLock lock(&fetch_mu_);
    fetches_.erase(digest.hash());
  }
  flight->done.Notify();
  return flight->status;
}

absl::Status TieredStore::FetchOnce(const Digest& digest) {
  absl::StatusOr<std::unique_ptr<BlobWriter>> writer =
      local_->OpenWrite(digest);
  if (!writer.ok()) {
    return writer.status();
  }
  bool too_long = false;
  S3Sink sink = [&](absl::string_view chunk) {
    absl::Status s = (*writer)->Append(chunk);
    too_long = s.code() == absl::StatusCode::kInvalidArgument;
    return s;
  };
  absl::StatusOr<int64_t> got = s3_->Get(CasKey(digest), 0, -1, sink);
  NoteBucket(got.status());
  absl::Status s = got.status();
  if (s.ok()) {
    s = (*writer)->Commit();
    too_long = s.code() == absl::StatusCode::kInvalidArgument;
  }
  if (too_long) {
    MarkCorrupt(digest);
    return absl::DataLossError(absl::StrCat(
        "cas blob ", digest.ToString(),
        ": the shared tier's copy does not match its digest; not served"));
  }
  if (s.code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(
        absl::StrCat("cas blob ", digest.ToString(), " not found"));
  }
  if (!s.ok() && got.ok()) {
    return s;  // The local tier's error.
  }
  return s.ok() ? s
                : BucketError(
                      absl::StrCat("fetch of cas blob ", digest.ToString()), s);
}

absl::StatusOr<std::string> TieredStore::GetEntry(absl::string_view key) {
  absl::StatusOr<std::string> local = local_->GetEntry(key);
  if (local.ok() || (local.status().code() != absl::StatusCode::kNotFound &&
                     local.status().code() != absl::StatusCode::kDataLoss)) {
    return local;
  }
  absl::StatusOr<std::string> object =
      s3_->GetAll(absl::StrCat(options_.prefix, "ac/", key));
  NoteBucket(object.status());
  if (object.status().code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(
        absl::StrCat("action cache entry ", key, " not found"));
  }
  if (!object.ok()) {
    return BucketError(absl::StrCat("action cache entry ", key),
                       object.status());
  }
  absl::string_view o = *object;
  const size_t header = kEntryMagic.size() + 32;
  if (o.size() < header || o.substr(0, kEntryMagic.size()) != kEntryMagic ||
      Sha256Raw(o.substr(header)) != o.substr(kEntryMagic.size(), 32)) {
    return absl::DataLossError(absl::StrCat(
        "action cache entry ", key, ": the shared tier's copy is corrupt"));
  }
  std::string value(o.substr(header));
  local_->PutEntry(key, value).IgnoreError();
  return value;
}

absl::Status TieredStore::PutEntry(absl::string_view key,
                                   absl::string_view value) {
  if (absl::Status s = ValidateSha256Hex(key); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("action cache key ", key, " is malformed"));
  }
  std::string object = absl::StrCat(kEntryMagic, Sha256Raw(value), value);
  absl::Status s = s3_->Put(absl::StrCat(options_.prefix, "ac/", key), object,
                            "", /*if_absent=*/false);
  NoteBucket(s);
  if (!s.ok() && !DegradedWrite()) {
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
    return absl::FailedPreconditionError("cas write: writer is finished");
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
    return absl::FailedPreconditionError("cas write: writer is finished");
  }
  if (written_ != digest_.size_bytes() || hasher_.FinishDigest() != digest_) {
    failed_ = true;
    return absl::InvalidArgumentError(absl::StrCat(
        "cas blob ", digest_.ToString(), ": data does not match its digest"));
  }
  committed_ = true;
  absl::Status s;
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
      if (!store_->DegradedWrite()) {
        return s;
      }
    }
  }
  if (local_ != nullptr) {
    local_->Commit().IgnoreError();
  }
  return absl::OkStatus();
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
  return std::make_unique<TieredStore>(std::move(local), std::move(s3),
                                       options);
}

}  // namespace cairn::cas
