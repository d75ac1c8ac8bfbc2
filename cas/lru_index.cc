// Implementation notes: a doubly linked list in access order (front = least
// recently used) plus a hash set of list iterators looked up by key, so each
// key is stored once. used_bytes_ and counts_ always equal the sums over lru_.
#include "cas/lru_index.h"

#include <array>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cas/digest.h"

namespace cairn::cas {
namespace {

// Maps a lowercase hex digit to its value and every other byte to 0x80.
constexpr std::array<uint8_t, 256> MakeHexTable() {
  std::array<uint8_t, 256> table{};
  for (int c = 0; c < 256; ++c) {
    table[c] = 0x80;
  }
  for (int c = '0'; c <= '9'; ++c) {
    table[c] = static_cast<uint8_t>(c - '0');
  }
  for (int c = 'a'; c <= 'f'; ++c) {
    table[c] = static_cast<uint8_t>(c - 'a' + 10);
  }
  return table;
}
constexpr std::array<uint8_t, 256> kHexTable = MakeHexTable();

}  // namespace

absl::StatusOr<ItemKey> ItemKey::FromHex(ItemKind kind, absl::string_view hex) {
  // One table-driven pass validates and decodes (a FindMissingBlobs hot
  // spot: every digest of a request goes through here).
  ItemKey key;
  key.kind = kind;
  uint8_t bad = hex.size() == 2 * key.id.size() ? 0 : 0x80;
  for (size_t i = 0; bad == 0 && i < key.id.size(); ++i) {
    uint8_t hi = kHexTable[static_cast<uint8_t>(hex[2 * i])];
    uint8_t lo = kHexTable[static_cast<uint8_t>(hex[2 * i + 1])];
    bad |= (hi | lo) & 0x80;
    key.id[i] = static_cast<uint8_t>(hi << 4 | (lo & 0x0f));
  }
  if (bad != 0) {
    return ValidateSha256Hex(hex);  // Not OK; it names the problem.
  }
  return key;
}

std::string ItemKey::HexId() const {
  return HexEncode(
      absl::string_view(reinterpret_cast<const char*>(id.data()), id.size()));
}

LruIndex::LruIndex(int64_t max_bytes) : max_bytes_(max_bytes) {}

std::optional<int64_t> LruIndex::Peek(const ItemKey& key) const {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    return std::nullopt;
  }
  return (*it)->size;
}

LruIndex::Item* LruIndex::Find(const ItemKey& key) {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : &**it;
}

std::optional<int64_t> LruIndex::Touch(const ItemKey& key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    return std::nullopt;
  }
  lru_.splice(lru_.end(), lru_, *it);
  return (*it)->size;
}

LruIndex::Item* LruIndex::FindAndTouch(const ItemKey& key, int64_t want_size) {
  auto it = by_key_.find(key);
  if (it == by_key_.end() || (want_size >= 0 && (*it)->size != want_size)) {
    return nullptr;
  }
  lru_.splice(lru_.end(), lru_, *it);
  return &**it;
}

void LruIndex::Insert(const ItemKey& key, int64_t size, int64_t stamp,
                      bool small) {
  auto it = by_key_.find(key);
  if (it != by_key_.end()) {
    used_bytes_ += size - (*it)->size;
    (*it)->size = size;
    (*it)->stamp = stamp;
    (*it)->verified = 0;
    (*it)->small = small;
    lru_.splice(lru_.end(), lru_, *it);
    return;
  }
  lru_.push_back(
      Item{.key = key, .small = small, .size = size, .stamp = stamp});
  by_key_.insert(std::prev(lru_.end()));
  used_bytes_ += size;
  ++counts_[Slot(key.kind)];
}

std::optional<int64_t> LruIndex::Erase(const ItemKey& key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    return std::nullopt;
  }
  Iter item = *it;
  int64_t size = item->size;
  by_key_.erase(it);
  used_bytes_ -= size;
  --counts_[Slot(item->key.kind)];
  lru_.erase(item);
  return size;
}

void LruIndex::EvictFront(std::vector<Item>* victims) {
  Item victim = lru_.front();
  Erase(victim.key);
  ++evictions_;
  evicted_bytes_ += victim.size;
  victims->push_back(victim);
}

absl::StatusOr<std::vector<LruIndex::Item>> LruIndex::Reserve(int64_t bytes) {
  if (bytes < 0 || bytes > max_bytes_ - reserved_bytes_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot reserve ", bytes, " bytes: budget ", max_bytes_,
                     ", ", reserved_bytes_, " reserved by writes in progress"));
  }
  std::vector<Item> victims;
  while (used_bytes_ + reserved_bytes_ + bytes > max_bytes_) {
    EvictFront(&victims);
  }
  reserved_bytes_ += bytes;
  return victims;
}

void LruIndex::Release(int64_t bytes) { reserved_bytes_ -= bytes; }

absl::StatusOr<std::vector<LruIndex::Item>> LruIndex::JoinWrite(
    const ItemKey& key, int64_t bytes) {
  auto it = writes_.find(key);
  if (it != writes_.end()) {
    ++it->second.writers;
    return std::vector<Item>();
  }
  absl::StatusOr<std::vector<Item>> victims = Reserve(bytes);
  if (victims.ok()) {
    writes_[key] = SharedWrite{1, bytes};
  }
  return victims;
}

int64_t LruIndex::TakeWriteReservation(const ItemKey& key) {
  auto it = writes_.find(key);
  return it == writes_.end() ? 0 : std::exchange(it->second.reserved, 0);
}

void LruIndex::LeaveWrite(const ItemKey& key) {
  auto it = writes_.find(key);
  if (it == writes_.end()) {
    return;
  }
  if (--it->second.writers == 0) {
    Release(it->second.reserved);
    writes_.erase(it);
  }
}

std::vector<LruIndex::Item> LruIndex::EvictToFit() {
  std::vector<Item> victims;
  while (!lru_.empty() && used_bytes_ + reserved_bytes_ > max_bytes_) {
    EvictFront(&victims);
  }
  return victims;
}

std::vector<LruIndex::Item> LruIndex::ItemsForTest() const {
  return std::vector<Item>(lru_.begin(), lru_.end());
}

}  // namespace cairn::cas
