// EntryCache: a byte-bounded least-recently-used map from item keys to the
// verified bytes of keyed (action cache) entries, so that a hit can be
// answered from memory without opening the entry's file. It holds copies
// only; the store decides what goes in (bytes it wrote or verified) and
// removes a key whenever the stored item changes or leaves the store.
//
// Charge: each entry costs its value's size plus kOverheadBytes; the total
// never exceeds max_bytes(). A value too big to fit alone is not kept.
//
// Thread safety: none. The owner serialises all calls (the disk store calls
// it under its own mutex).
#ifndef CAIRN_CAS_ENTRY_CACHE_H_
#define CAIRN_CAS_ENTRY_CACHE_H_

#include <cstdint>
#include <list>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "cas/lru_index.h"

namespace cairn::cas {

class EntryCache {
 public:
  // Bookkeeping charged per entry on top of its value's bytes.
  static constexpr int64_t kOverheadBytes = 128;

  // `max_bytes` <= 0 keeps nothing.
  explicit EntryCache(int64_t max_bytes) : max_bytes_(max_bytes) {}

  EntryCache(const EntryCache&) = delete;
  EntryCache& operator=(const EntryCache&) = delete;

  // Returns the value kept for `key` and marks it most recently used; null
  // when absent. The value is shared and immutable, so it may be read after
  // the owner's lock is released.
  std::shared_ptr<const std::string> Find(const ItemKey& key);

  // Keeps `value` for `key` (replacing what was kept) as most recently used,
  // dropping least recently used entries until it fits. A value larger than
  // the whole budget is not kept (and any older value for `key` is dropped).
  void Put(const ItemKey& key, absl::string_view value);

  // Drops what is kept for `key`, if anything.
  void Erase(const ItemKey& key);

  int64_t max_bytes() const { return max_bytes_; }
  int64_t used_bytes() const { return used_bytes_; }
  size_t size() const { return map_.size(); }

 private:
  struct Entry {
    ItemKey key;
    std::shared_ptr<const std::string> value;
  };
  using List = std::list<Entry>;  // Front: least recently used.

  static int64_t Charge(const std::string& value) {
    return static_cast<int64_t>(value.size()) + kOverheadBytes;
  }

  const int64_t max_bytes_;
  int64_t used_bytes_ = 0;
  List lru_;
  absl::flat_hash_map<ItemKey, List::iterator> map_;
};

}  // namespace cairn::cas

#endif  // CAIRN_CAS_ENTRY_CACHE_H_
