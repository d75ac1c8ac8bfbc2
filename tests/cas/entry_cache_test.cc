#include "cas/entry_cache.h"

#include <string>

#include "cas/digest.h"
#include "gtest/gtest.h"

namespace cairn::cas {
namespace {

ItemKey K(int i) {
  return *ItemKey::FromHex(ItemKind::kAc, Digest::OfData(std::to_string(i)).hash());
}

// Returns the value kept for `key`, or "<none>".
std::string Get(EntryCache& cache, int key) {
  auto v = cache.Find(K(key));
  return v == nullptr ? "<none>" : *v;
}

constexpr int64_t kOver = EntryCache::kOverheadBytes;

TEST(EntryCacheTest, KeepsAndReplacesValues) {
  EntryCache cache(1 << 20);
  EXPECT_EQ(Get(cache, 1), "<none>");
  cache.Put(K(1), "one");
  cache.Put(K(2), "");
  EXPECT_EQ(Get(cache, 1), "one");
  EXPECT_EQ(Get(cache, 2), "");
  cache.Put(K(1), "uno!");
  EXPECT_EQ(Get(cache, 1), "uno!");
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.used_bytes(), 4 + 0 + 2 * kOver);
}

TEST(EntryCacheTest, EraseDropsTheValue) {
  EntryCache cache(1 << 20);
  cache.Put(K(1), "one");
  cache.Erase(K(1));
  cache.Erase(K(2));  // Absent: no effect.
  EXPECT_EQ(Get(cache, 1), "<none>");
  EXPECT_EQ(cache.used_bytes(), 0);
}

TEST(EntryCacheTest, BoundIsRespectedDroppingLeastRecentlyUsed) {
  const std::string v(100, 'x');
  EntryCache cache(3 * (100 + kOver));
  cache.Put(K(1), v);
  cache.Put(K(2), v);
  cache.Put(K(3), v);
  EXPECT_EQ(cache.used_bytes(), cache.max_bytes());
  EXPECT_EQ(Get(cache, 1), v);  // Now 2 is the least recently used.
  cache.Put(K(4), v);
  EXPECT_EQ(Get(cache, 2), "<none>");
  EXPECT_EQ(Get(cache, 1), v);
  EXPECT_EQ(Get(cache, 3), v);
  EXPECT_EQ(Get(cache, 4), v);
  // A bigger value drops as many as it needs.
  cache.Put(K(5), std::string(150, 'y'));
  EXPECT_LE(cache.used_bytes(), cache.max_bytes());
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(Get(cache, 5), std::string(150, 'y'));
}

TEST(EntryCacheTest, ValueLargerThanTheBudgetIsNotKept) {
  EntryCache cache(200 + kOver);
  cache.Put(K(1), "small");
  cache.Put(K(1), std::string(201, 'z'));  // Replaces, so the old one goes.
  EXPECT_EQ(Get(cache, 1), "<none>");
  EXPECT_EQ(cache.used_bytes(), 0);
  EntryCache off(0);
  off.Put(K(1), "");
  EXPECT_EQ(Get(off, 1), "<none>");
}

TEST(EntryCacheTest, FoundValueOutlivesItsEntry) {
  EntryCache cache(1 << 20);
  cache.Put(K(1), "one");
  auto v = cache.Find(K(1));
  cache.Erase(K(1));
  EXPECT_EQ(*v, "one");
}

}  // namespace
}  // namespace cairn::cas
