// Implementation notes: a doubly linked list of nodes in access order
// (front_ = least recently used), linked by node number, plus a hash set of
// node numbers looked up by key, so each key is stored once. Nodes live in
// chunks that never move (Item pointers stay valid); erased nodes go on a
// free list. used_bytes_ and counts_ always equal the sums over the list.
#include "cas/lru_index.h"

#include <algorithm>
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

LruIndex::LruIndex(int64_t max_bytes)
    : max_bytes_(max_bytes),
      chunks_(std::make_unique<Chunks>()),
      by_key_(0, NodeHash{chunks_.get()}, NodeEq{chunks_.get()}) {}

uint32_t LruIndex::NewNode() {
  if (free_ != kNil) {
    uint32_t n = free_;
    free_ = N(n).next;
    return n;
  }
  if ((nodes_ >> kChunkBits) == chunks_->size()) {
    chunks_->push_back(std::make_unique<Node[]>(size_t{1} << kChunkBits));
  }
  return nodes_++;
}

void LruIndex::Unlink(uint32_t n) {
  Node& node = N(n);
  (node.prev == kNil ? front_ : N(node.prev).next) = node.next;
  (node.next == kNil ? back_ : N(node.next).prev) = node.prev;
}

void LruIndex::PushBack(uint32_t n) {
  Node& node = N(n);
  node.prev = back_;
  node.next = kNil;
  (back_ == kNil ? front_ : N(back_).next) = n;
  back_ = n;
}

void LruIndex::PushFront(uint32_t n) {
  if (front_ == kNil) {
    PushBack(n);  // The only item.
    return;
  }
  N(n).prev = kNil;
  N(n).next = std::exchange(front_, n);
  N(N(n).next).prev = n;
}

void LruIndex::MoveToBack(uint32_t n) {
  if (n != back_) {
    Unlink(n);
    PushBack(n);
  }
}

void LruIndex::ReserveItems(size_t n) {
  by_key_.reserve(n);
  const size_t chunks = (n >> kChunkBits) + 1;
  chunks_->reserve(chunks);
  while (chunks_->size() < chunks) {
    chunks_->push_back(std::make_unique<Node[]>(size_t{1} << kChunkBits));
  }
}

std::optional<int64_t> LruIndex::Peek(const ItemKey& key) const {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    return std::nullopt;
  }
  return N(*it).item.content_size;
}

LruIndex::Item* LruIndex::Find(const ItemKey& key) {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : &N(*it).item;
}

std::optional<int64_t> LruIndex::Touch(const ItemKey& key) {
  Item* item = FindAndTouch(key);
  return item == nullptr ? std::nullopt : std::optional<int64_t>(item->size);
}

LruIndex::Item* LruIndex::FindAndTouch(const ItemKey& key, int64_t want_size) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    return nullptr;
  }
  Item& item = N(*it).item;
  if (want_size >= 0 && item.content_size != want_size) {
    return nullptr;
  }
  MoveToBack(*it);
  return &item;
}

std::pair<uint32_t, bool> LruIndex::FindOrAdd(const ItemKey& key, int64_t size,
                                              int64_t stamp, bool small,
                                              bool oldest) {
  // One probe finds the key or the slot for it (a start-up hot spot).
  bool added = false;
  auto it = by_key_.lazy_emplace(key, [&](const auto& construct) {
    const uint32_t n = NewNode();
    N(n).item = Item{.key = key,
                     .small = small,
                     .size = size,
                     .content_size = size,
                     .stamp = stamp};
    construct(n);
    added = true;
  });
  if (added) {
    oldest ? PushFront(*it) : PushBack(*it);
    used_bytes_ += size;
    ++counts_[Slot(key.kind)];
  }
  return {*it, added};
}

std::pair<LruIndex::Item*, bool> LruIndex::InsertNew(const ItemKey& key,
                                                     int64_t size,
                                                     int64_t stamp,
                                                     bool small) {
  auto [n, inserted] = FindOrAdd(key, size, stamp, small);
  return {&N(n).item, inserted};
}

std::pair<LruIndex::Item*, bool> LruIndex::InsertNewOldest(const ItemKey& key,
                                                           int64_t size,
                                                           int64_t stamp,
                                                           bool small) {
  auto [n, inserted] = FindOrAdd(key, size, stamp, small, /*oldest=*/true);
  return {&N(n).item, inserted};
}

void LruIndex::Insert(const ItemKey& key, int64_t size, int64_t stamp,
                      bool small, uint32_t writer) {
  auto [n, inserted] = FindOrAdd(key, size, stamp, small);
  Item& item = N(n).item;
  if (writer != 0) {
    item.writer = writer;
  }
  if (inserted) {
    return;
  }
  used_bytes_ += size - item.size;
  item.size = size;
  item.content_size = size;
  item.stamp = stamp;
  item.verified = 0;
  item.small = small;
  item.zstd = false;
  MoveToBack(n);
}

bool LruIndex::Resize(const ItemKey& key, int64_t size) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    return false;
  }
  Item& item = N(*it).item;
  used_bytes_ += size - item.size;
  item.size = size;
  return true;
}

std::optional<int64_t> LruIndex::Erase(const ItemKey& key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    return std::nullopt;
  }
  const uint32_t n = *it;
  by_key_.erase(it);
  Node& node = N(n);
  const int64_t size = node.item.size;
  used_bytes_ -= size;
  --counts_[Slot(node.item.key.kind)];
  Unlink(n);
  node.next = free_;
  free_ = n;
  return size;
}

void LruIndex::SortByStamp() {
  using Entry = std::pair<uint64_t, uint32_t>;  // Biased stamp, node.
  std::vector<Entry> order;
  order.reserve(by_key_.size());
  for (uint32_t n = front_; n != kNil; n = N(n).next) {
    // Flipping the sign bit orders signed stamps as unsigned numbers.
    order.emplace_back(static_cast<uint64_t>(N(n).item.stamp) ^ (1ull << 63),
                       n);
  }
  // LSD radix sort, 16 bits a pass (stable, so equal stamps keep the list
  // order); passes where every entry has the same digit are skipped.
  constexpr int kDigits = 4;
  std::vector<std::array<uint32_t, 1 << 16>> counts(kDigits);
  for (const Entry& e : order) {
    for (int d = 0; d < kDigits; ++d) {
      ++counts[d][(e.first >> (16 * d)) & 0xffff];
    }
  }
  std::vector<Entry> sorted(order.size());
  for (int d = 0; d < kDigits; ++d) {
    std::array<uint32_t, 1 << 16>& count = counts[d];
    if (std::find(count.begin(), count.end(), order.size()) != count.end()) {
      continue;  // One digit value for all.
    }
    uint32_t sum = 0;
    for (uint32_t& c : count) {
      sum += std::exchange(c, sum);
    }
    for (const Entry& e : order) {
      sorted[count[(e.first >> (16 * d)) & 0xffff]++] = e;
    }
    order.swap(sorted);
  }
  front_ = back_ = kNil;
  for (const Entry& e : order) {
    PushBack(e.second);
  }
}

void LruIndex::EvictFront(std::vector<Item>* victims) {
  Item victim = N(front_).item;
  Erase(victim.key);
  ++evictions_;
  evicted_bytes_ += victim.size;
  OwnerEvictions& mine = by_writer_[victim.writer];
  mine.owner = victim.writer;
  ++mine.items;
  mine.bytes += victim.size;
  victims->push_back(victim);
}

std::vector<OwnerEvictions> LruIndex::EvictionsByWriter() const {
  std::vector<OwnerEvictions> out;
  out.reserve(by_writer_.size());
  for (const auto& [writer, evicted] : by_writer_) {
    out.push_back(evicted);
  }
  return out;
}

absl::StatusOr<std::vector<LruIndex::Item>> LruIndex::Reserve(int64_t bytes) {
  if (bytes < 0 || bytes > max_bytes_ - reserved_bytes_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot reserve ", bytes, " bytes: budget ", max_bytes_,
                     ", ", reserved_bytes_, " reserved by writes in progress"));
  }
  std::vector<Item> victims;
  while (!defer_eviction_ &&
         used_bytes_ + reserved_bytes_ + bytes > max_bytes_) {
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
  while (front_ != kNil && used_bytes_ + reserved_bytes_ > max_bytes_) {
    EvictFront(&victims);
  }
  return victims;
}

std::vector<LruIndex::Item> LruIndex::ItemsForTest() const {
  std::vector<Item> items;
  for (uint32_t n = front_; n != kNil; n = N(n).next) {
    items.push_back(N(n).item);
  }
  return items;
}

}  // namespace cairn::cas
