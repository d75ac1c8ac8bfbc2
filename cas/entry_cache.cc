#include "cas/entry_cache.h"

#include <utility>

namespace cairn::cas {

std::shared_ptr<const std::string> EntryCache::Find(const ItemKey& key) {
  auto it = map_.find(key);
  if (it == map_.end()) {
    return nullptr;
  }
  lru_.splice(lru_.end(), lru_, it->second);
  return it->second->value;
}

void EntryCache::Put(const ItemKey& key, absl::string_view value) {
  Erase(key);
  const int64_t charge = static_cast<int64_t>(value.size()) + kOverheadBytes;
  if (charge > max_bytes_) {
    return;
  }
  while (used_bytes_ + charge > max_bytes_) {
    Entry& victim = lru_.front();
    used_bytes_ -= Charge(*victim.value);
    map_.erase(victim.key);
    lru_.pop_front();
  }
  lru_.push_back(Entry{key, std::make_shared<const std::string>(value)});
  map_[key] = std::prev(lru_.end());
  used_bytes_ += charge;
}

void EntryCache::Erase(const ItemKey& key) {
  auto it = map_.find(key);
  if (it == map_.end()) {
    return;
  }
  used_bytes_ -= Charge(*it->second->value);
  lru_.erase(it->second);
  map_.erase(it);
}

}  // namespace cairn::cas
