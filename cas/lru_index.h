// LruIndex: the size-bounded least-recently-used index behind the blob
// stores. It tracks items (CAS blobs and action-cache entries, keyed by kind
// and a 32-byte id) with their sizes in access order, plus bytes reserved by
// writes in progress, and picks the victims to evict when room is needed.
// It owns no data and does no I/O: the store deletes the victims' bytes.
//
// Invariant: used_bytes() is the sum of the sizes of the items held. Reserve()
// keeps used_bytes() + reserved_bytes() <= max_bytes() unless eviction is
// deferred (DeferEviction()); Insert() may exceed it only when the caller
// inserts without a reservation (e.g. while loading).
//
// Costs: Peek, Touch, Insert, Erase and the write bookkeeping are O(1)
// expected; Reserve and JoinWrite are O(victims); SortByStamp is
// O(n log n). Items live in fixed-size chunks of nodes linked by 32-bit
// indices, so an insert allocates nothing once ReserveItems() has made room
// (start-up loads a million items this way).
//
// Thread safety: none. The owner serialises all calls (the stores call it
// under their own mutex).
#ifndef CAIRN_CAS_LRU_INDEX_H_
#define CAIRN_CAS_LRU_INDEX_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cas/blob_store.h"

namespace cairn::cas {

// What an item is: a CAS blob or a keyed (action cache) entry.
enum class ItemKind : uint8_t { kCas = 0, kAc = 1 };

// Identifies one item: its kind and the 32 raw bytes of its hash or key.
struct ItemKey {
  ItemKind kind = ItemKind::kCas;
  std::array<uint8_t, 32> id{};

  // Returns the key for a 64-character lowercase hex id, or INVALID_ARGUMENT.
  static absl::StatusOr<ItemKey> FromHex(ItemKind kind, absl::string_view hex);
  // Returns the id as 64 lowercase hex characters.
  std::string HexId() const;

  friend bool operator==(const ItemKey& a, const ItemKey& b) {
    return a.kind == b.kind && a.id == b.id;
  }
  friend bool operator!=(const ItemKey& a, const ItemKey& b) {
    return !(a == b);
  }
  // Hashes the id as four words (absl mixes each with a per-process
  // seed): cheaper than hashing it as a byte string, and every byte counts,
  // so keys a client picks (action-cache keys) cannot be made to collide.
  template <typename H>
  friend H AbslHashValue(H h, const ItemKey& k) {
    uint64_t w[4];
    std::memcpy(w, k.id.data(), sizeof(w));
    return H::combine(std::move(h), k.kind, w[0], w[1], w[2], w[3]);
  }
};

class LruIndex {
 public:
  struct Item {
    ItemKey key;
    // Opaque to the index; the owner's note, set by Insert() (the disk store
    // marks the items kept in its small-item database).
    bool small = false;
    // Opaque to the index; the owner's note, reset to false by Insert() (the
    // disk store marks the CAS blobs it keeps as zstd frames).
    bool zstd = false;
    // Who wrote the item (WriteOwnerScope; 0: unknown), set by Insert();
    // evictions are counted per writer.
    uint32_t writer = 0;
    // The bytes the item is charged (against the budget), e.g. on disk.
    int64_t size = 0;
    // The size of the item's content (a blob's digest size), which Peek()
    // answers and FindAndTouch() matches; set to `size` by Insert(), and
    // changed by an owner that stores items encoded (compressed).
    int64_t content_size = 0;
    // Opaque to the index; the owner's per-item note (the disk store keeps
    // the last access time it wrote to the file system here).
    int64_t stamp = 0;
    // Opaque to the index; another owner's note, reset to 0 by Insert() (the
    // disk store keeps the fingerprint of the file it last verified here).
    uint64_t verified = 0;
  };

  // `max_bytes` is the budget for held items plus reservations.
  explicit LruIndex(int64_t max_bytes);

  LruIndex(const LruIndex&) = delete;
  LruIndex& operator=(const LruIndex&) = delete;

  // Returns the item's content size without changing its position; nullopt
  // if absent.
  std::optional<int64_t> Peek(const ItemKey& key) const;

  // Returns the item without changing its position, or nullptr if absent.
  // The pointer is valid until the item is erased or evicted; callers may
  // change only its `stamp`, `verified`, `small`, `zstd` and
  // `content_size`.
  Item* Find(const ItemKey& key);

  // Marks the item most recently used and returns its size; nullopt if absent.
  std::optional<int64_t> Touch(const ItemKey& key);

  // Find() and Touch() in one lookup: returns the item, marked most recently
  // used, if it is held with content size `want_size` (any if negative);
  // nullptr (touching nothing) otherwise. The pointer is as Find()'s.
  Item* FindAndTouch(const ItemKey& key, int64_t want_size = -1);

  // Inserts the item as most recently used, or replaces its size, stamp and
  // `small` note (resetting `verified`, `zstd` and `content_size`) and
  // marks it most recently used if present. `writer` (0: unknown, keeping a
  // present item's) is noted on it. Never evicts (see Reserve()).
  void Insert(const ItemKey& key, int64_t size, int64_t stamp = 0,
              bool small = false, uint32_t writer = 0);

  // Inserts the item as most recently used if absent and returns {item,
  // true}; returns {the item held, false}, changing nothing, if present.
  // The pointer is as Find()'s. Never evicts.
  std::pair<Item*, bool> InsertNew(const ItemKey& key, int64_t size,
                                   int64_t stamp, bool small);

  // InsertNew(), but an item added goes in as least recently used (used to
  // load a store behind items already touched, newest first).
  std::pair<Item*, bool> InsertNewOldest(const ItemKey& key, int64_t size,
                                         int64_t stamp, bool small);

  // Makes room for `n` items in all, so that inserting up to that many
  // allocates nothing more (used before loading a store).
  void ReserveItems(size_t n);

  // Reorders all items by increasing `stamp` (least recently used first;
  // equal stamps keep their order). Used after loading items in another
  // order.
  void SortByStamp();

  // Changes the size the item is charged to `size`, keeping its place in the
  // access order (an owner that re-encodes an item in place). False if
  // absent. Never evicts: callers shrink items, or reserved the growth.
  bool Resize(const ItemKey& key, int64_t size);

  // Removes the item and returns its size; nullopt if absent. Not counted as
  // an eviction.
  std::optional<int64_t> Erase(const ItemKey& key);

  // Reserves `bytes` for a write in progress, first evicting least recently
  // used items until they fit. Returns the evicted items (the caller deletes
  // their data). RESOURCE_EXHAUSTED, evicting nothing, when `bytes` cannot fit
  // even with every item evicted.
  absl::StatusOr<std::vector<Item>> Reserve(int64_t bytes);

  // While `defer` (set while a store loads its index), Reserve() and
  // JoinWrite() evict nothing, so used + reserved may exceed the budget until
  // EvictToFit() runs; they still refuse more than the budget at once.
  void DeferEviction(bool defer) { defer_eviction_ = defer; }

  // Returns `bytes` previously reserved.
  void Release(int64_t bytes);

  // Joins the writes in progress of item `key`. The first writer reserves
  // `bytes` as Reserve() does and returns the evicted items; later writers
  // of the same key share that one reservation, so concurrent uploads of one
  // blob neither multiply the reserved bytes nor evict more. Every joined
  // writer calls LeaveWrite() exactly once. RESOURCE_EXHAUSTED (not joined)
  // when the first reservation cannot fit.
  absl::StatusOr<std::vector<Item>> JoinWrite(const ItemKey& key,
                                              int64_t bytes);

  // Hands the shared reservation of `key`'s writes to a writer about to
  // commit and returns its size; 0 when another writer took it already. The
  // taker gives it back with Release().
  int64_t TakeWriteReservation(const ItemKey& key);

  // Leaves `key`'s writes; the last writer out releases what is still
  // reserved for them.
  void LeaveWrite(const ItemKey& key);

  // Evicts least recently used items until used + reserved <= max and
  // returns them. Used after loading an over-full store.
  std::vector<Item> EvictToFit();

  int64_t max_bytes() const { return max_bytes_; }
  int64_t used_bytes() const { return used_bytes_; }
  int64_t reserved_bytes() const { return reserved_bytes_; }
  int64_t count(ItemKind kind) const { return counts_[Slot(kind)]; }
  size_t size() const { return by_key_.size(); }
  int64_t evictions() const { return evictions_; }
  int64_t evicted_bytes() const { return evicted_bytes_; }
  // Returns the evictions per writer of the evicted items (see Item).
  std::vector<OwnerEvictions> EvictionsByWriter() const;

  // Returns the store counters this index keeps (sizes, entries, evictions);
  // the store adds its own (corruptions, load time).
  StoreStats Stats() const {
    StoreStats s;
    s.max_bytes = max_bytes();
    s.used_bytes = used_bytes();
    s.reserved_bytes = reserved_bytes();
    s.cas_entries = count(ItemKind::kCas);
    s.ac_entries = count(ItemKind::kAc);
    s.evictions = evictions();
    s.evicted_bytes = evicted_bytes();
    return s;
  }

  // Returns all items from least to most recently used.
  std::vector<Item> ItemsForTest() const;

 private:
  // Node numbers: kNil ends the list; the free nodes are chained by `next`.
  static constexpr uint32_t kNil = 0xffffffff;
  static constexpr int kChunkBits = 12;
  struct Node {
    Item item;
    uint32_t prev = kNil;  // Towards the least recently used.
    uint32_t next = kNil;
  };
  using Chunks = std::vector<std::unique_ptr<Node[]>>;

  // The hash set holds node numbers and finds them by key, through the
  // chunks (held by pointer, so the functors stay valid).
  struct NodeHash {
    using is_transparent = void;
    const Chunks* chunks;
    size_t operator()(const ItemKey& k) const {
      return absl::Hash<ItemKey>()(k);
    }
    size_t operator()(uint32_t n) const { return (*this)(At(*chunks, n)); }
  };
  struct NodeEq {
    using is_transparent = void;
    const Chunks* chunks;
    const ItemKey& K(const ItemKey& k) const { return k; }
    const ItemKey& K(uint32_t n) const { return At(*chunks, n); }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return K(a) == K(b);
    }
  };
  static const ItemKey& At(const Chunks& chunks, uint32_t n) {
    return chunks[n >> kChunkBits][n & ((1u << kChunkBits) - 1)].item.key;
  }

  static size_t Slot(ItemKind kind) { return static_cast<size_t>(kind); }
  Node& N(uint32_t n) const {
    return (*chunks_)[n >> kChunkBits][n & ((1u << kChunkBits) - 1)];
  }
  uint32_t NewNode();
  // Returns the node of `key` and false, or adds it as InsertNew() does.
  std::pair<uint32_t, bool> FindOrAdd(const ItemKey& key, int64_t size,
                                      int64_t stamp, bool small,
                                      bool oldest = false);
  void Unlink(uint32_t n);
  void PushBack(uint32_t n);
  void PushFront(uint32_t n);
  void MoveToBack(uint32_t n);
  void EvictFront(std::vector<Item>* victims);

  const int64_t max_bytes_;
  const std::unique_ptr<Chunks> chunks_;
  uint32_t nodes_ = 0;     // Nodes ever handed out.
  uint32_t free_ = kNil;   // First free node.
  uint32_t front_ = kNil;  // Least recently used.
  uint32_t back_ = kNil;   // Most recently used.
  absl::flat_hash_set<uint32_t, NodeHash, NodeEq> by_key_;
  int64_t used_bytes_ = 0;
  int64_t reserved_bytes_ = 0;
  bool defer_eviction_ = false;
  int64_t counts_[2] = {0, 0};
  int64_t evictions_ = 0;
  int64_t evicted_bytes_ = 0;
  absl::flat_hash_map<uint32_t, OwnerEvictions> by_writer_;  // Evictions.

  struct SharedWrite {
    int writers = 0;
    int64_t reserved = 0;  // Included in reserved_bytes_.
  };
  absl::flat_hash_map<ItemKey, SharedWrite> writes_;
};

}  // namespace cairn::cas

#endif  // CAIRN_CAS_LRU_INDEX_H_
