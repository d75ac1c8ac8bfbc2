#include "cas/lru_index.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cas/digest.h"
#include "gtest/gtest.h"

namespace cairn::cas {
namespace {

ItemKey K(int i, ItemKind kind = ItemKind::kCas) {
  return *ItemKey::FromHex(kind, Digest::OfData(std::to_string(i)).hash());
}

// Returns the order of the items (by test number) from LRU to MRU.
std::vector<int> Order(const LruIndex& index, int n) {
  std::vector<int> out;
  for (const LruIndex::Item& item : index.ItemsForTest()) {
    for (int i = 0; i < n; ++i) {
      if (item.key == K(i, item.key.kind)) {
        out.push_back(item.key.kind == ItemKind::kAc ? 100 + i : i);
      }
    }
  }
  return out;
}

TEST(ItemKeyTest, HexRoundTrip) {
  std::string hex = Digest::OfData("x").hash();
  absl::StatusOr<ItemKey> k = ItemKey::FromHex(ItemKind::kAc, hex);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->HexId(), hex);
  EXPECT_EQ(k->kind, ItemKind::kAc);
  EXPECT_NE(*k, *ItemKey::FromHex(ItemKind::kCas, hex));
}

TEST(ItemKeyTest, DecodesEveryDigit) {
  std::string hex;
  for (int i = 0; i < 4; ++i) {
    hex += "0123456789abcdef";
  }
  absl::StatusOr<ItemKey> k = ItemKey::FromHex(ItemKind::kCas, hex);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->id[0], 0x01);
  EXPECT_EQ(k->id[7], 0xef);
  EXPECT_EQ(k->HexId(), hex);
}

TEST(ItemKeyTest, RejectsBadHex) {
  std::string good = Digest::OfData("x").hash();
  for (std::string bad :
       {std::string(""), std::string(64, 'G'), std::string(63, 'a'),
        std::string(64, 'A'), good + "0", good.substr(0, 63) + "g",
        good.substr(0, 31) + "/" + good.substr(32),
        good.substr(0, 10) + std::string(1, '\0') + good.substr(11),
        good.substr(0, 63) + "\xff"}) {
    EXPECT_EQ(ItemKey::FromHex(ItemKind::kCas, bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(LruIndexTest, InsertPeekTouchErase) {
  LruIndex index(1000);
  index.Insert(K(1), 10);
  index.Insert(K(2), 20);
  index.Insert(K(3, ItemKind::kAc), 30);
  EXPECT_EQ(index.used_bytes(), 60);
  EXPECT_EQ(index.count(ItemKind::kCas), 2);
  EXPECT_EQ(index.count(ItemKind::kAc), 1);
  EXPECT_EQ(Order(index, 4), (std::vector<int>{1, 2, 103}));
  EXPECT_EQ(index.Peek(K(1)), 10);
  EXPECT_EQ(Order(index, 4), (std::vector<int>{1, 2, 103}));  // Peek: no move.
  EXPECT_EQ(index.Touch(K(1)), 10);
  EXPECT_EQ(Order(index, 4), (std::vector<int>{2, 103, 1}));
  EXPECT_EQ(index.Touch(K(3)), std::nullopt);  // Kind is part of the key.
  EXPECT_EQ(index.Erase(K(2)), 20);
  EXPECT_EQ(index.Erase(K(2)), std::nullopt);
  EXPECT_EQ(index.used_bytes(), 40);
  EXPECT_EQ(index.size(), 2u);
  EXPECT_EQ(index.evictions(), 0);
}

TEST(LruIndexTest, InsertReplacesAndRefreshes) {
  LruIndex index(1000);
  index.Insert(K(1), 10);
  index.Insert(K(2), 20);
  index.Insert(K(1), 15);
  EXPECT_EQ(index.used_bytes(), 35);
  EXPECT_EQ(index.size(), 2u);
  EXPECT_EQ(Order(index, 3), (std::vector<int>{2, 1}));
}

TEST(LruIndexTest, ReserveEvictsLeastRecentlyUsed) {
  LruIndex index(100);
  for (int i = 0; i < 5; ++i) {
    index.Insert(K(i), 20);
  }
  index.Touch(K(0));
  absl::StatusOr<std::vector<LruIndex::Item>> victims = index.Reserve(30);
  ASSERT_TRUE(victims.ok());
  ASSERT_EQ(victims->size(), 2u);
  EXPECT_EQ((*victims)[0].key, K(1));
  EXPECT_EQ((*victims)[1].key, K(2));
  EXPECT_EQ(index.reserved_bytes(), 30);
  EXPECT_EQ(index.used_bytes(), 60);
  EXPECT_EQ(index.evictions(), 2);
  EXPECT_EQ(index.evicted_bytes(), 40);
  EXPECT_EQ(Order(index, 5), (std::vector<int>{3, 4, 0}));
}

TEST(LruIndexTest, EvictionsAreCountedByWriter) {
  LruIndex index(100);
  index.Insert(K(0), 10, 0, false, /*writer=*/7);
  index.Insert(K(1), 20, 0, false, /*writer=*/8);
  index.Insert(K(2), 30, 0, false, /*writer=*/7);
  index.Insert(K(3), 5);                // Writer unknown.
  index.Insert(K(1), 25, 0, false);     // Rewritten, writer unknown: keeps 8.
  index.Insert(K(2), 30, 0, false, 9);  // Rewritten by 9: now 9's.
  // LRU order 0, 3, 1, 2: room for 60 evicts 0 (10), 3 (5) and 1 (25).
  ASSERT_TRUE(index.Reserve(60).ok());
  std::vector<OwnerEvictions> by = index.EvictionsByWriter();
  std::sort(by.begin(), by.end(),
            [](const OwnerEvictions& a, const OwnerEvictions& b) {
              return a.owner < b.owner;
            });
  ASSERT_EQ(by.size(), 3u);
  EXPECT_EQ(by[0].owner, 0u);
  EXPECT_EQ(by[0].items, 1);
  EXPECT_EQ(by[0].bytes, 5);
  EXPECT_EQ(by[1].owner, 7u);
  EXPECT_EQ(by[1].bytes, 10);
  EXPECT_EQ(by[2].owner, 8u);
  EXPECT_EQ(by[2].items, 1);
  EXPECT_EQ(by[2].bytes, 25);
  EXPECT_EQ(index.evictions(), 3);
}

TEST(LruIndexTest, ReserveWithinBudgetEvictsNothing) {
  LruIndex index(100);
  index.Insert(K(1), 50);
  absl::StatusOr<std::vector<LruIndex::Item>> victims = index.Reserve(50);
  ASSERT_TRUE(victims.ok());
  EXPECT_TRUE(victims->empty());
  EXPECT_TRUE(index.Reserve(0).ok());
}

TEST(LruIndexTest, ReservationsPinBytes) {
  LruIndex index(100);
  index.Insert(K(1), 40);
  ASSERT_TRUE(index.Reserve(60).ok());
  // 60 reserved: 41 more can never fit, and nothing is evicted trying.
  EXPECT_EQ(index.Reserve(41).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(index.Peek(K(1)), 40);
  // 40 fits by evicting the item.
  absl::StatusOr<std::vector<LruIndex::Item>> victims = index.Reserve(40);
  ASSERT_TRUE(victims.ok());
  EXPECT_EQ(victims->size(), 1u);
  EXPECT_EQ(index.reserved_bytes(), 100);
  index.Release(60);
  index.Release(40);
  EXPECT_EQ(index.reserved_bytes(), 0);
}

TEST(LruIndexTest, TooLargeOrNegativeIsResourceExhausted) {
  LruIndex index(100);
  index.Insert(K(1), 10);
  EXPECT_EQ(index.Reserve(101).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(index.Reserve(-1).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(index.size(), 1u);
}

TEST(LruIndexTest, EvictToFitAfterOverfullLoad) {
  LruIndex index(50);
  for (int i = 0; i < 4; ++i) {
    index.Insert(K(i), 20);
  }
  std::vector<LruIndex::Item> victims = index.EvictToFit();
  ASSERT_EQ(victims.size(), 2u);
  EXPECT_EQ(victims[0].key, K(0));
  EXPECT_EQ(victims[1].key, K(1));
  EXPECT_EQ(index.used_bytes(), 40);
  EXPECT_TRUE(index.EvictToFit().empty());
}

TEST(LruIndexTest, ManyItems) {
  LruIndex index(int64_t{1} << 40);
  for (int i = 0; i < 100000; ++i) {
    index.Insert(K(i), i);
  }
  EXPECT_EQ(index.size(), 100000u);
  for (int i = 0; i < 100000; i += 2) {
    ASSERT_TRUE(index.Erase(K(i)).has_value());
  }
  EXPECT_EQ(index.size(), 50000u);
  EXPECT_EQ(index.Peek(K(99999)), 99999);
}

TEST(LruIndexTest, ErasedNodesAreReusedAndPointersStayValid) {
  LruIndex index(int64_t{1} << 40);
  index.ReserveItems(10);
  index.Insert(K(0), 1, 7);
  LruIndex::Item* first = index.Find(K(0));
  // Far more items than reserved: new chunks must not move old items.
  for (int i = 1; i < 20000; ++i) {
    index.Insert(K(i), 1);
  }
  EXPECT_EQ(first, index.Find(K(0)));
  EXPECT_EQ(first->stamp, 7);
  for (int i = 1; i < 20000; ++i) {
    ASSERT_EQ(index.Erase(K(i)), 1);
  }
  for (int i = 1; i < 20000; ++i) {  // Refills the freed nodes.
    index.Insert(K(i), 2);
  }
  EXPECT_EQ(index.size(), 20000u);
  EXPECT_EQ(index.used_bytes(), 1 + 2 * 19999);
  EXPECT_EQ(first, index.Find(K(0)));
  EXPECT_EQ(Order(index, 3), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(index.ItemsForTest().size(), 20000u);
}

TEST(LruIndexTest, InsertNewKeepsWhatIsHeld) {
  LruIndex index(1000);
  auto [item, inserted] = index.InsertNew(K(1), 10, 111, /*small=*/true);
  ASSERT_TRUE(inserted);
  EXPECT_TRUE(item->small);
  index.Insert(K(2), 20);
  auto [again, inserted_again] = index.InsertNew(K(1), 99, 999, false);
  EXPECT_FALSE(inserted_again);
  EXPECT_EQ(again, item);
  EXPECT_EQ(again->size, 10);
  EXPECT_EQ(again->stamp, 111);
  EXPECT_EQ(index.used_bytes(), 30);
  EXPECT_EQ(Order(index, 3), (std::vector<int>{1, 2}));  // Not touched.
}

TEST(LruIndexTest, SortByStampOrdersLeastRecentFirstAndKeepsTies) {
  LruIndex index(1000);
  const int stamps[] = {50, 10, 40, 10, 30};
  for (int i = 0; i < 5; ++i) {
    index.Insert(K(i), 1, stamps[i]);
  }
  index.SortByStamp();
  EXPECT_EQ(Order(index, 5), (std::vector<int>{1, 3, 4, 2, 0}));
  std::vector<LruIndex::Item> victims = *index.Reserve(998);
  ASSERT_EQ(victims.size(), 3u);
  EXPECT_EQ(victims[0].key, K(1));
  EXPECT_EQ(victims[2].key, K(4));
  index.Touch(K(0));
  EXPECT_EQ(Order(index, 5), (std::vector<int>{2, 0}));
}

TEST(LruIndexTest, FindExposesTheStampWithoutMoving) {
  LruIndex index(1000);
  index.Insert(K(1), 10, 111);
  index.Insert(K(2), 20, 222);
  LruIndex::Item* item = index.Find(K(1));
  ASSERT_NE(item, nullptr);
  EXPECT_EQ(item->stamp, 111);
  item->stamp = 333;
  EXPECT_EQ(Order(index, 3), (std::vector<int>{1, 2}));
  index.Touch(K(1));
  EXPECT_EQ(index.Find(K(1))->stamp, 333);
  EXPECT_EQ(index.Find(K(3)), nullptr);
  index.Insert(K(1), 12, 444);  // Replacing sets the new stamp.
  EXPECT_EQ(index.Find(K(1))->stamp, 444);
}

TEST(LruIndexTest, FindAndTouchMovesOnlyAMatchingItem) {
  LruIndex index(1000);
  index.Insert(K(1), 10, 111);
  index.Insert(K(2), 20, 222);
  index.Insert(K(3), 30, 333);
  EXPECT_EQ(index.FindAndTouch(K(1), 11), nullptr);  // Other size.
  EXPECT_EQ(index.FindAndTouch(K(4)), nullptr);
  EXPECT_EQ(Order(index, 4), (std::vector<int>{1, 2, 3}));
  LruIndex::Item* item = index.FindAndTouch(K(1), 10);
  ASSERT_NE(item, nullptr);
  EXPECT_EQ(item->stamp, 111);
  EXPECT_EQ(Order(index, 4), (std::vector<int>{2, 3, 1}));
  item = index.FindAndTouch(K(2));  // Any size.
  ASSERT_NE(item, nullptr);
  EXPECT_EQ(item->size, 20);
  EXPECT_EQ(Order(index, 4), (std::vector<int>{3, 1, 2}));
}

TEST(LruIndexTest, WritersOfOneKeyShareOneReservation) {
  LruIndex index(100);
  index.Insert(K(9), 30);
  ASSERT_TRUE(index.JoinWrite(K(1), 60).ok());
  absl::StatusOr<std::vector<LruIndex::Item>> again = index.JoinWrite(K(1), 60);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  EXPECT_EQ(index.reserved_bytes(), 60);
  EXPECT_EQ(index.Peek(K(9)), 30);  // Not evicted for the second writer.
  // Another key cannot fit next to the shared 60 without evicting K(9).
  absl::StatusOr<std::vector<LruIndex::Item>> other = index.JoinWrite(K(2), 40);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->size(), 1u);
  EXPECT_EQ(index.reserved_bytes(), 100);
  EXPECT_EQ(index.TakeWriteReservation(K(1)), 60);
  EXPECT_EQ(index.TakeWriteReservation(K(1)), 0);  // Taken once.
  index.Release(60);
  index.Insert(K(1), 60);
  index.LeaveWrite(K(1));
  index.LeaveWrite(K(1));
  EXPECT_EQ(index.reserved_bytes(), 40);
  index.LeaveWrite(K(2));  // The last writer out releases the rest.
  EXPECT_EQ(index.reserved_bytes(), 0);
  index.LeaveWrite(K(3));  // Unknown keys are ignored.
  EXPECT_EQ(index.JoinWrite(K(4), 101).status().code(),
            absl::StatusCode::kResourceExhausted);
  index.LeaveWrite(K(4));
  EXPECT_EQ(index.reserved_bytes(), 0);
}

TEST(LruIndexTest, InsertNewOldestGoesBehindTheOthers) {
  LruIndex index(1000);
  index.Insert(K(1), 10);
  index.Insert(K(2), 10);
  auto [item, added] = index.InsertNewOldest(K(3), 10, 0, false);
  EXPECT_TRUE(added);
  index.InsertNewOldest(K(4), 10, 0, false);
  EXPECT_FALSE(index.InsertNewOldest(K(1), 99, 0, false).second);  // Held.
  EXPECT_EQ(Order(index, 5), (std::vector<int>{4, 3, 1, 2}));
  EXPECT_EQ(index.used_bytes(), 40);
  auto victims = index.Reserve(970);
  ASSERT_TRUE(victims.ok());
  ASSERT_EQ(victims->size(), 1u);
  EXPECT_EQ((*victims)[0].key, K(4));
}

TEST(LruIndexTest, DeferredEvictionWaitsForEvictToFit) {
  LruIndex index(100);
  index.Insert(K(1), 40);
  index.Insert(K(2), 40);
  index.DeferEviction(true);
  auto victims = index.Reserve(60);  // Over the budget, evicting nothing.
  ASSERT_TRUE(victims.ok());
  EXPECT_TRUE(victims->empty());
  EXPECT_EQ(index.reserved_bytes(), 60);
  EXPECT_EQ(index.Reserve(41).status().code(),  // More than the budget left.
            absl::StatusCode::kResourceExhausted);
  index.Release(60);
  index.Insert(K(3), 60);
  index.DeferEviction(false);
  std::vector<LruIndex::Item> evicted = index.EvictToFit();
  ASSERT_EQ(evicted.size(), 1u);
  EXPECT_EQ(evicted[0].key, K(1));
  EXPECT_EQ(index.used_bytes(), 100);
}

}  // namespace
}  // namespace cairn::cas
