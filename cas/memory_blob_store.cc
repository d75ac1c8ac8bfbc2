// Implementation notes: items live in a hash map of shared, immutable strings
// next to an LruIndex; both change together under mu_. Readers hold their own
// reference to the bytes, so eviction never breaks them. Evicted bytes are
// freed after mu_ is released. The open writers of one digest share one
// reservation of its size, made at the first OpenWrite(); the first Commit()
// hands it over to the item.
#include "cas/memory_blob_store.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "cas/lru_index.h"

namespace cairn::cas {
namespace {

using Bytes = std::shared_ptr<const std::string>;

ItemKey CasKey(const Digest& digest) {
  return *ItemKey::FromHex(ItemKind::kCas, digest.hash());
}

absl::Status NotFound(const Digest& digest) {
  return absl::NotFoundError(
      absl::StrCat("cas blob ", digest.ToString(), " not found"));
}

class MemoryBlobReader final : public BlobReader {
 public:
  MemoryBlobReader(Bytes bytes, int64_t offset)
      : bytes_(std::move(bytes)), pos_(static_cast<size_t>(offset)) {}

  int64_t size() const override { return static_cast<int64_t>(bytes_->size()); }

  absl::StatusOr<size_t> Read(char* buf, size_t max) override {
    size_t n = std::min(max, bytes_->size() - pos_);
    if (n > 0) {
      memcpy(buf, bytes_->data() + pos_, n);
    }
    pos_ += n;
    return n;
  }

 private:
  const Bytes bytes_;
  size_t pos_;
};

class MemoryBlobStore;

class MemoryBlobWriter final : public BlobWriter {
 public:
  // A writer of a non-empty blob has joined the store's writes of `digest`
  // (see LruIndex::JoinWrite) and leaves them on destruction.
  MemoryBlobWriter(MemoryBlobStore* store, Digest digest)
      : store_(store), digest_(std::move(digest)) {}
  ~MemoryBlobWriter() override;

  absl::Status Append(absl::string_view data) override;
  int64_t committed_size() const override {
    return static_cast<int64_t>(data_.size());
  }
  absl::Status Commit() override;

 private:
  MemoryBlobStore* const store_;  // Not owned.
  const Digest digest_;
  std::string data_;
  bool failed_ = false;
  bool committed_ = false;
};

class MemoryBlobStore final : public BlobStore {
 public:
  explicit MemoryBlobStore(const MemoryBlobStoreOptions& options)
      : index_(options.max_size_bytes) {}

  std::vector<Digest> FindMissing(absl::Span<const Digest> digests) override {
    std::vector<Digest> missing;
    absl::MutexLock lock(&mu_);
    for (const Digest& d : digests) {
      if (!TouchLocked(d)) {
        missing.push_back(d);
      }
    }
    return missing;
  }

  bool Contains(const Digest& digest) override {
    absl::MutexLock lock(&mu_);
    return TouchLocked(digest);
  }

  // Never does I/O, so the non-blocking lookups always answer.
  std::optional<std::vector<Digest>> TryFindMissing(
      absl::Span<const Digest> digests) override {
    return FindMissing(digests);
  }

  std::optional<bool> TryHasEntry(absl::string_view key) override {
    absl::StatusOr<ItemKey> k = ItemKey::FromHex(ItemKind::kAc, key);
    if (!k.ok()) {
      return std::nullopt;
    }
    absl::MutexLock lock(&mu_);
    return index_.Peek(*k).has_value();
  }

  std::optional<absl::StatusOr<std::string>> TryGetEntry(
      absl::string_view key) override {
    if (!ItemKey::FromHex(ItemKind::kAc, key).ok()) {
      return std::nullopt;
    }
    return GetEntry(key);
  }

  absl::StatusOr<std::string> Read(const Digest& digest) override {
    absl::StatusOr<Bytes> bytes = Lookup(digest);
    if (!bytes.ok()) {
      return bytes.status();
    }
    return std::string(**bytes);
  }

  // The rest of BlobStore, declared as every store declares it.
  absl::StatusOr<std::unique_ptr<BlobReader>> OpenRead(const Digest& digest,
                                                       int64_t offset) override;
  absl::Status Write(const Digest& digest, absl::string_view data) override;
  absl::StatusOr<std::unique_ptr<BlobWriter>> OpenWrite(
      const Digest& digest) override;
  absl::StatusOr<std::string> GetEntry(absl::string_view key) override;
  absl::Status PutEntryImpl(absl::string_view key, absl::string_view value,
                            absl::Span<const Digest> blobs,
                            PutCallback* then) override;
  StoreStats Stats() override;
  std::vector<OwnerEvictions> EvictionsByOwner() override {
    absl::MutexLock lock(&mu_);
    return index_.EvictionsByWriter();
  }

  // Stores verified `data` under `key`, taking over `reserved` bytes that
  // the caller had reserved. RESOURCE_EXHAUSTED when it cannot fit.
  absl::Status Insert(const ItemKey& key, Bytes data, int64_t reserved);
  int64_t TakeWriteReservation(const ItemKey& key) {
    absl::MutexLock lock(&mu_);
    return index_.TakeWriteReservation(key);
  }
  void LeaveWrite(const ItemKey& key) {
    absl::MutexLock lock(&mu_);
    index_.LeaveWrite(key);
  }

 private:
  bool TouchLocked(const Digest& digest) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (digest.IsEmpty()) {
      return true;
    }
    std::optional<int64_t> size = index_.Peek(CasKey(digest));
    if (!size.has_value() || *size != digest.size_bytes()) {
      return false;
    }
    index_.Touch(CasKey(digest));
    return true;
  }

  absl::StatusOr<Bytes> Lookup(const Digest& digest) {
    if (digest.IsEmpty()) {
      return std::make_shared<const std::string>();
    }
    absl::MutexLock lock(&mu_);
    if (!TouchLocked(digest)) {
      return NotFound(digest);
    }
    return items_.at(CasKey(digest));
  }

  // Drops the evicted items' bytes; the caller frees them after unlocking.
  std::vector<Bytes> Forget(const std::vector<LruIndex::Item>& victims)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<Bytes> freed;
    for (const LruIndex::Item& v : victims) {
      auto it = items_.find(v.key);
      freed.push_back(std::move(it->second));
      items_.erase(it);
    }
    return freed;
  }

  absl::Mutex mu_;
  LruIndex index_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ItemKey, Bytes> items_ ABSL_GUARDED_BY(mu_);
};

MemoryBlobWriter::~MemoryBlobWriter() {
  if (!digest_.IsEmpty()) {
    store_->LeaveWrite(CasKey(digest_));
  }
}

absl::Status MemoryBlobWriter::Append(absl::string_view data) {
  if (failed_ || committed_) {
    return WriterClosedError(digest_);
  }
  if (static_cast<int64_t>(data_.size() + data.size()) > digest_.size_bytes()) {
    failed_ = true;
    return absl::InvalidArgumentError(absl::StrCat(
        "cas blob ", digest_.ToString(), ": more data than its size"));
  }
  data_.append(data.data(), data.size());
  return absl::OkStatus();
}

absl::Status MemoryBlobWriter::Commit() {
  if (failed_ || committed_) {
    return WriterClosedError(digest_);
  }
  committed_ = true;
  if (absl::Status s = CheckData(digest_, data_); !s.ok()) {
    return s;
  }
  if (digest_.IsEmpty()) {
    return absl::OkStatus();
  }
  int64_t reserved = store_->TakeWriteReservation(CasKey(digest_));
  return store_->Insert(CasKey(digest_),
                        std::make_shared<const std::string>(std::move(data_)),
                        reserved);
}

absl::Status MemoryBlobStore::Insert(const ItemKey& key, Bytes data,
                                     int64_t reserved) {
  std::vector<Bytes> freed;
  absl::MutexLock lock(&mu_);
  index_.Release(reserved);
  if (key.kind == ItemKind::kCas && index_.Touch(key).has_value()) {
    return absl::OkStatus();  // Stored meanwhile by another writer.
  }
  if (key.kind == ItemKind::kAc && index_.Erase(key).has_value()) {
    freed.push_back(std::move(items_[key]));  // Replaced below.
  }
  int64_t size = static_cast<int64_t>(data->size());
  absl::StatusOr<std::vector<LruIndex::Item>> victims = index_.Reserve(size);
  if (!victims.ok()) {
    return victims.status();
  }
  for (Bytes& b : Forget(*victims)) {
    freed.push_back(std::move(b));
  }
  index_.Release(size);
  index_.Insert(key, size, 0, false, WriteOwnerScope::Current());
  items_[key] = std::move(data);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BlobReader>> MemoryBlobStore::OpenRead(
    const Digest& digest, int64_t offset) {
  if (offset < 0) {
    return absl::OutOfRangeError(absl::StrCat(
        "cas blob ", digest.ToString(), ": negative read offset ", offset));
  }
  absl::StatusOr<Bytes> bytes = Lookup(digest);
  if (!bytes.ok()) {
    return bytes.status();
  }
  if (offset > digest.size_bytes()) {
    return absl::OutOfRangeError(absl::StrCat("cas blob ", digest.ToString(),
                                              ": read offset ", offset,
                                              " past the end"));
  }
  return std::make_unique<MemoryBlobReader>(*std::move(bytes), offset);
}

absl::Status MemoryBlobStore::Write(const Digest& digest,
                                    absl::string_view data) {
  if (absl::Status s = CheckData(digest, data); !s.ok()) {
    return s;
  }
  if (digest.IsEmpty() || Contains(digest)) {
    return absl::OkStatus();
  }
  return Insert(CasKey(digest), std::make_shared<const std::string>(data), 0);
}

absl::StatusOr<std::unique_ptr<BlobWriter>> MemoryBlobStore::OpenWrite(
    const Digest& digest) {
  if (digest.IsEmpty()) {
    return std::make_unique<MemoryBlobWriter>(this, digest);
  }
  std::vector<Bytes> freed;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<std::vector<LruIndex::Item>> victims =
        index_.JoinWrite(CasKey(digest), digest.size_bytes());
    if (!victims.ok()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "cas blob ", digest.ToString(), ": ", victims.status().message()));
    }
    freed = Forget(*victims);
  }
  return std::make_unique<MemoryBlobWriter>(this, digest);
}

absl::StatusOr<std::string> MemoryBlobStore::GetEntry(absl::string_view key) {
  absl::StatusOr<ItemKey> k = ItemKey::FromHex(ItemKind::kAc, key);
  if (!k.ok()) {
    return k.status();
  }
  Bytes value;
  {
    absl::MutexLock lock(&mu_);
    if (!index_.Touch(*k).has_value()) {
      return absl::NotFoundError(absl::StrCat("entry ", key, " not found"));
    }
    value = items_.at(*k);
  }
  return std::string(*value);
}

absl::Status MemoryBlobStore::PutEntryImpl(absl::string_view key,
                                           absl::string_view value,
                                           absl::Span<const Digest> /*blobs*/,
                                           PutCallback* then) {
  absl::StatusOr<ItemKey> k = ItemKey::FromHex(ItemKind::kAc, key);
  if (!k.ok()) {
    return Reply(k.status(), then);
  }
  return Reply(Insert(*k, std::make_shared<const std::string>(value), 0), then);
}

StoreStats MemoryBlobStore::Stats() {
  absl::MutexLock lock(&mu_);
  StoreStats s = index_.Stats();
  return s;
}

}  // namespace

std::unique_ptr<BlobStore> NewMemoryBlobStore(
    const MemoryBlobStoreOptions& options) {
  return std::make_unique<MemoryBlobStore>(options);
}

}  // namespace cairn::cas
