// The BlobStore conformance suite: every implementation (memory, disk) must
// pass every test here. Sizes are chosen so that per-item overhead of a
// store's keyed entries (e.g. a checksum header) does not change outcomes.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "cas/blob_store.h"
#include "cas/disk_blob_store.h"
#include "cas/memory_blob_store.h"
#include "cas/zstd_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace cairn::cas {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// kDisk: the disk store as configured by default (small items in its
// database, larger ones in files); kDiskFiles: every item in a file.
enum class StoreType { kMemory, kDisk, kDiskFiles };

std::string Bytes(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>((i * 31 + seed * 7 + i / 97) & 0xff);
  }
  return s;
}

std::string Key(int i) {
  return Digest::OfData("key" + std::to_string(i)).hash();
}

// Reads everything left in `reader` in chunks of `chunk` bytes.
absl::StatusOr<std::string> Drain(BlobReader& reader, size_t chunk = 7) {
  std::string out;
  std::string buf(chunk, '\0');
  for (;;) {
    absl::StatusOr<size_t> n = reader.Read(buf.data(), buf.size());
    if (!n.ok()) {
      return n.status();
    }
    if (*n == 0) {
      return out;
    }
    out.append(buf.data(), *n);
  }
}

class BlobStoreTest : public testing::TestWithParam<StoreType> {
 protected:
  std::unique_ptr<BlobStore> Make(int64_t max_bytes) {
    if (GetParam() == StoreType::kMemory) {
      return NewMemoryBlobStore({.max_size_bytes = max_bytes});
    }
    DiskBlobStoreOptions options;
    options.root = dir_.path() + "/store" + std::to_string(++stores_);
    options.max_size_bytes = max_bytes;
    options.fsync = false;
    if (GetParam() == StoreType::kDiskFiles) {
      options.small_item_max_bytes = 0;
    }
    absl::StatusOr<std::unique_ptr<BlobStore>> store =
        NewDiskBlobStore(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  void SetUp() override { store_ = Make(10000); }

  // Stores `data` and returns its digest.
  Digest Put(BlobStore& store, const std::string& data) {
    Digest d = Digest::OfData(data);
    EXPECT_TRUE(store.Write(d, data).ok());
    return d;
  }

  testutil::TempDir dir_;
  int stores_ = 0;
  std::unique_ptr<BlobStore> store_;
};

TEST_P(BlobStoreTest, WriteThenRead) {
  std::string data = Bytes(1000, 1);
  Digest d = Digest::OfData(data);
  EXPECT_FALSE(store_->Contains(d));
  EXPECT_EQ(store_->Read(d).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->Write(d, data).ok());
  EXPECT_TRUE(store_->Contains(d));
  absl::StatusOr<std::string> got = store_->Read(d);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, data);
  EXPECT_TRUE(store_->Write(d, data).ok());  // Present: cheap success.
  // Each test checks the counters it is about, one EXPECT per field (a
  // failure names the field), rather than a helper comparing whole structs.
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.cas_entries, 1);
  EXPECT_EQ(stats.used_bytes, 1000);
  EXPECT_EQ(stats.reserved_bytes, 0);
  EXPECT_EQ(stats.max_bytes, 10000);
}

TEST_P(BlobStoreTest, WrongSizeIsNotFound) {
  Digest d = Put(*store_, Bytes(100, 2));
  Digest wrong = *Digest::Create(d.hash(), 99);
  EXPECT_FALSE(store_->Contains(wrong));
  EXPECT_EQ(store_->Read(wrong).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->OpenRead(wrong, 0).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(BlobStoreTest, FindMissingReturnsOnlyMissing) {
  Digest a = Put(*store_, Bytes(10, 1));
  Digest b = Digest::OfData(Bytes(10, 2));
  Digest c = Put(*store_, Bytes(10, 3));
  EXPECT_THAT(store_->FindMissing({a, b, Digest::Empty(), c}), ElementsAre(b));
  EXPECT_THAT(store_->FindMissing({}), IsEmpty());
}

// Fresh items need no I/O to look up (the disk store refreshes mtimes at most
// once per minute by default), so both stores answer without blocking.
TEST_P(BlobStoreTest, NonBlockingLookupsAnswerLikeBlockingOnes) {
  store_ = Make(1000);
  Digest a = Put(*store_, Bytes(300, 1));
  Digest b = Put(*store_, Bytes(300, 2));
  Digest missing = Digest::OfData(Bytes(10, 3));
  Digest wrong_size = *Digest::Create(a.hash(), 299);
  std::optional<std::vector<Digest>> got =
      store_->TryFindMissing({a, missing, Digest::Empty(), wrong_size});
  ASSERT_TRUE(got.has_value());
  EXPECT_THAT(*got, ElementsAre(missing, wrong_size));
  // It touched a, so b is the least recently used now.
  Put(*store_, Bytes(300, 4));
  Put(*store_, Bytes(300, 5));
  EXPECT_TRUE(store_->Contains(a));
  EXPECT_FALSE(store_->Contains(b));

  ASSERT_TRUE(store_->PutEntry(Key(1), "value").ok());
  EXPECT_EQ(store_->TryHasEntry(Key(1)), std::optional<bool>(true));
  EXPECT_EQ(store_->TryHasEntry(Key(2)), std::optional<bool>(false));
  EXPECT_EQ(store_->TryHasEntry("not a key"), std::nullopt);
  // The entry was just written, so both stores have its bytes in memory.
  std::optional<absl::StatusOr<std::string>> entry =
      store_->TryGetEntry(Key(1));
  ASSERT_TRUE(entry.has_value());
  ASSERT_TRUE(entry->ok()) << entry->status();
  EXPECT_EQ(**entry, "value");
  entry = store_->TryGetEntry(Key(2));
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->TryGetEntry("not a key"), std::nullopt);
}

TEST_P(BlobStoreTest, EmptyBlobAlwaysExistsAndIsNeverStored) {
  const Digest& e = Digest::Empty();
  EXPECT_TRUE(store_->Contains(e));
  EXPECT_EQ(*store_->Read(e), "");
  EXPECT_TRUE(store_->Write(e, "").ok());
  absl::StatusOr<std::unique_ptr<BlobWriter>> w = store_->OpenWrite(e);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE((*w)->Commit().ok());
  absl::StatusOr<std::unique_ptr<BlobReader>> r = store_->OpenRead(e, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->size(), 0);
  EXPECT_EQ(*Drain(**r), "");
  EXPECT_EQ(store_->OpenRead(e, 1).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_->Stats().cas_entries, 0);
  EXPECT_EQ(store_->Stats().used_bytes, 0);
}

TEST_P(BlobStoreTest, MismatchedDataIsRejectedAndNotStored) {
  std::string data = Bytes(100, 4);
  Digest d = Digest::OfData(data);
  EXPECT_EQ(store_->Write(d, Bytes(100, 5)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Write(d, data.substr(1)).code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<BlobWriter>> w = store_->OpenWrite(d);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(Bytes(100, 5)).ok());
  EXPECT_EQ((*w)->Commit().code(), absl::StatusCode::kInvalidArgument);
  w->reset();
  w = store_->OpenWrite(d);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->Append(data + "x").code(),
            absl::StatusCode::kInvalidArgument);
  w->reset();
  EXPECT_FALSE(store_->Contains(d));
  EXPECT_EQ(store_->Stats().reserved_bytes, 0);
  EXPECT_EQ(store_->Stats().used_bytes, 0);
}

TEST_P(BlobStoreTest, StreamingWriteCommitsInChunks) {
  std::string data = Bytes(5000, 6);
  Digest d = Digest::OfData(data);
  absl::StatusOr<std::unique_ptr<BlobWriter>> w = store_->OpenWrite(d);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(store_->Stats().reserved_bytes, 5000);
  for (size_t i = 0; i < data.size(); i += 999) {
    ASSERT_TRUE((*w)->Append(absl::string_view(data).substr(i, 999)).ok());
  }
  EXPECT_EQ((*w)->committed_size(), 5000);
  EXPECT_FALSE(store_->Contains(d));  // Nothing visible before Commit().
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_FALSE((*w)->Commit().ok());  // At most once.
  w->reset();
  EXPECT_EQ(*store_->Read(d), data);
  EXPECT_EQ(store_->Stats().reserved_bytes, 0);
  EXPECT_EQ(store_->Stats().used_bytes, 5000);
}

TEST_P(BlobStoreTest, OffsetReads) {
  std::string data = Bytes(3000, 7);
  Digest d = Put(*store_, data);
  for (int64_t offset : {0, 1, 1000, 2999, 3000}) {
    absl::StatusOr<std::unique_ptr<BlobReader>> r = store_->OpenRead(d, offset);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)->size(), 3000);
    absl::StatusOr<std::string> got = Drain(**r, 256);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, data.substr(offset)) << offset;
  }
  EXPECT_EQ(store_->OpenRead(d, 3001).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_->OpenRead(d, -1).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_->OpenRead(Digest::OfData("absent"), 0).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(BlobStoreTest, EvictsLeastRecentlyUsedFirst) {
  store_ = Make(1000);
  Digest a = Put(*store_, Bytes(300, 1));
  Digest b = Put(*store_, Bytes(300, 2));
  Digest c = Put(*store_, Bytes(300, 3));
  EXPECT_TRUE(store_->Contains(a));  // a is now more recent than b.
  Digest d = Put(*store_, Bytes(300, 4));
  EXPECT_THAT(store_->FindMissing({a, b, c, d}), ElementsAre(b));
  // FindMissing touched a, c, d in that order, so a is the oldest now.
  Digest e = Put(*store_, Bytes(300, 5));
  EXPECT_THAT(store_->FindMissing({a, c, d, e}), ElementsAre(a));
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.evictions, 2);
  EXPECT_EQ(stats.evicted_bytes, 600);
  EXPECT_EQ(stats.used_bytes, 900);
}

TEST_P(BlobStoreTest, ReadsMarkRecentlyUsed) {
  store_ = Make(1000);
  Digest a = Put(*store_, Bytes(400, 1));
  Digest b = Put(*store_, Bytes(400, 2));
  ASSERT_TRUE(store_->Read(a).ok());
  Put(*store_, Bytes(400, 3));
  EXPECT_TRUE(store_->Contains(a));
  EXPECT_FALSE(store_->Contains(b));
}

TEST_P(BlobStoreTest, TooLargeIsResourceExhausted) {
  store_ = Make(1000);
  std::string big = Bytes(1001, 1);
  Digest d = Digest::OfData(big);
  EXPECT_EQ(store_->Write(d, big).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store_->OpenWrite(d).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store_->Stats().reserved_bytes, 0);
}

TEST_P(BlobStoreTest, ReservationsAreNotEvictedAndAreReleased) {
  store_ = Make(1000);
  Digest kept = Put(*store_, Bytes(300, 9));
  std::string data = Bytes(600, 1);
  Digest d = Digest::OfData(data);
  absl::StatusOr<std::unique_ptr<BlobWriter>> w1 = store_->OpenWrite(d);
  ASSERT_TRUE(w1.ok());
  EXPECT_TRUE(store_->Contains(kept));  // 300 + 600 fit.
  Digest other = Digest::OfData(Bytes(600, 2));
  EXPECT_EQ(store_->OpenWrite(other).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(store_->Contains(kept));  // A failed reservation evicts nothing.
  w1->reset();  // Abandoned: its reservation is released.
  EXPECT_EQ(store_->Stats().reserved_bytes, 0);
  absl::StatusOr<std::unique_ptr<BlobWriter>> w2 = store_->OpenWrite(other);
  EXPECT_TRUE(w2.ok()) << w2.status();
}

TEST_P(BlobStoreTest, Entries) {
  EXPECT_EQ(store_->GetEntry(Key(1)).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->PutEntry(Key(1), "one").ok());
  ASSERT_TRUE(store_->PutEntry(Key(2), "").ok());
  EXPECT_EQ(*store_->GetEntry(Key(1)), "one");
  EXPECT_EQ(*store_->GetEntry(Key(2)), "");
  ASSERT_TRUE(store_->PutEntry(Key(1), "uno").ok());
  EXPECT_EQ(*store_->GetEntry(Key(1)), "uno");
  EXPECT_EQ(store_->Stats().ac_entries, 2);
  EXPECT_EQ(store_->Stats().cas_entries, 0);
  for (const std::string& bad :
       {std::string(""), std::string("../x"), std::string(64, 'A'),
        "../" + Key(1).substr(3)}) {
    EXPECT_EQ(store_->PutEntry(bad, "v").code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->GetEntry(bad).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST_P(BlobStoreTest, PutEntryWithCallbackReportsEachWriteOnce) {
  absl::Mutex mu;
  std::vector<absl::StatusCode> codes;
  auto record = [&](absl::Status s) {
    absl::MutexLock lock(&mu);
    codes.push_back(s.code());
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 8; ++i) {
        EXPECT_TRUE(
            store_->PutEntry(Key(t * 8 + i), Bytes(40, t * 8 + i), {}, record)
                .ok());
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_TRUE(store_->PutEntry("../x", "v", {}, record).ok());
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(
      +[](std::vector<absl::StatusCode>* c) { return c->size() >= 33; },
      &codes));
  EXPECT_EQ(std::count(codes.begin(), codes.end(), absl::StatusCode::kOk), 32);
  EXPECT_EQ(codes.size(), 33);
  EXPECT_EQ(std::count(codes.begin(), codes.end(),
                       absl::StatusCode::kInvalidArgument),
            1);
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(*store_->GetEntry(Key(i)), Bytes(40, i));
  }
}

TEST_P(BlobStoreTest, EntriesShareTheLruWithBlobs) {
  store_ = Make(1000);
  ASSERT_TRUE(store_->PutEntry(Key(1), Bytes(400, 1)).ok());
  Digest a = Put(*store_, Bytes(400, 2));
  ASSERT_TRUE(store_->GetEntry(Key(1)).ok());  // Entry newer than a.
  Put(*store_, Bytes(400, 3));
  EXPECT_FALSE(store_->Contains(a));
  EXPECT_TRUE(store_->GetEntry(Key(1)).ok());
  Put(*store_, Bytes(400, 4));
  Put(*store_, Bytes(400, 5));
  EXPECT_EQ(store_->GetEntry(Key(1)).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(BlobStoreTest, ConcurrentWritersOfOneDigest) {
  // Open writers of one digest share one reservation: 8 x 4000 bytes would
  // not fit in 10000.
  std::string data = Bytes(4000, 8);
  Digest d = Digest::OfData(data);
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      absl::StatusOr<std::unique_ptr<BlobWriter>> w = store_->OpenWrite(d);
      if (!w.ok()) {
        results[t] = w.status();
        return;
      }
      for (size_t i = 0; i < data.size() && results[t].ok(); i += 1000) {
        results[t] = (*w)->Append(absl::string_view(data).substr(i, 1000));
      }
      results[t].Update((*w)->Commit());
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  for (const absl::Status& s : results) {
    EXPECT_TRUE(s.ok()) << s;
  }
  EXPECT_EQ(*store_->Read(d), data);
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.cas_entries, 1);
  EXPECT_EQ(stats.used_bytes, 4000);
  EXPECT_EQ(stats.reserved_bytes, 0);
  EXPECT_EQ(stats.evictions, 0);
}

TEST_P(BlobStoreTest, WritersOfOneDigestShareTheirReservation) {
  store_ = Make(1000);
  Digest kept = Put(*store_, Bytes(300, 1));
  std::string data = Bytes(600, 2);
  Digest d = Digest::OfData(data);
  std::vector<std::unique_ptr<BlobWriter>> writers;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::unique_ptr<BlobWriter>> w = store_->OpenWrite(d);
    ASSERT_TRUE(w.ok()) << w.status();
    writers.push_back(*std::move(w));
  }
  EXPECT_EQ(store_->Stats().reserved_bytes, 600);
  EXPECT_TRUE(store_->Contains(kept));  // Nothing evicted for the others.
  // The first writer fails; the others still hold the reservation.
  ASSERT_TRUE(writers[0]->Append(Bytes(600, 3)).ok());
  EXPECT_FALSE(writers[0]->Commit().ok());
  writers[0].reset();
  EXPECT_EQ(store_->Stats().reserved_bytes, 600);
  ASSERT_TRUE(writers[1]->Append(data).ok());
  ASSERT_TRUE(writers[1]->Commit().ok());
  EXPECT_EQ(store_->Stats().reserved_bytes, 0);
  ASSERT_TRUE(writers[2]->Append(data).ok());
  ASSERT_TRUE(writers[2]->Commit().ok());  // Already stored: a success.
  writers.clear();
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.reserved_bytes, 0);
  EXPECT_EQ(stats.used_bytes, 900);
  EXPECT_EQ(stats.evictions, 0);
  EXPECT_EQ(*store_->Read(d), data);
}

TEST_P(BlobStoreTest, ConcurrentMixedWritesAndReads) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        std::string data = Bytes(100 + i, t * 1000 + i);
        Digest d = Digest::OfData(data);
        EXPECT_TRUE(store_->Write(d, data).ok());
        absl::StatusOr<std::string> got = store_->Read(d);
        // Another thread may have evicted it; if present it is intact.
        if (got.ok()) {
          EXPECT_EQ(*got, data);
        } else {
          EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
        }
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  StoreStats stats = store_->Stats();
  EXPECT_LE(stats.used_bytes, stats.max_bytes);
  EXPECT_EQ(stats.reserved_bytes, 0);
}

TEST_P(BlobStoreTest, OpenReaderSurvivesEviction) {
  store_ = Make(1000);
  std::string data = Bytes(600, 1);
  Digest d = Put(*store_, data);
  absl::StatusOr<std::unique_ptr<BlobReader>> r = store_->OpenRead(d, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  std::string head(100, '\0');
  ASSERT_EQ(*(*r)->Read(head.data(), head.size()), 100u);
  Put(*store_, Bytes(600, 2));  // Evicts d.
  EXPECT_FALSE(store_->Contains(d));
  absl::StatusOr<std::string> rest = Drain(**r, 64);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(head + *rest, data);
}

TEST_P(BlobStoreTest, LargeBlobStreamsBothWays) {
  store_ = Make(8 << 20);
  std::string data = Bytes(3 << 20, 11);
  Digest d = Digest::OfData(data);
  absl::StatusOr<std::unique_ptr<BlobWriter>> w = store_->OpenWrite(d);
  ASSERT_TRUE(w.ok()) << w.status();
  for (size_t i = 0; i < data.size(); i += 64 << 10) {
    ASSERT_TRUE((*w)->Append(absl::string_view(data).substr(i, 64 << 10)).ok());
  }
  ASSERT_TRUE((*w)->Commit().ok());
  absl::StatusOr<std::unique_ptr<BlobReader>> r =
      store_->OpenRead(d, (1 << 20) + 3);
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<std::string> got = Drain(**r, 1 << 20);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == data.substr((1 << 20) + 3));
  EXPECT_EQ(store_->Stats().used_bytes, 3 << 20);
}

TEST_P(BlobStoreTest, WriteBlobsAnswersOneStatusPerBlob) {
  const std::string small = Bytes(300, 1);
  const std::string large = Bytes(5000, 2);  // A file in the disk store.
  const std::string present = Bytes(200, 3);
  const Digest bad = Digest::OfData(Bytes(100, 4));
  const std::string huge = Bytes(20000, 5);  // Over the budget.
  const Digest too_big = Digest::OfData(huge);
  const Digest kept = Put(*store_, present);
  const std::string other = Bytes(100, 6);
  std::vector<BlobWrite> blobs = {
      {Digest::OfData(small), small},
      {Digest::OfData(large), large},
      {bad, other},
      {Digest::Empty(), ""},
      {Digest::OfData(small), small},
      {kept, present},
      {too_big, huge},
  };
  std::vector<absl::Status> got = store_->WriteBlobs(blobs);
  ASSERT_EQ(got.size(), blobs.size());
  EXPECT_TRUE(got[0].ok()) << got[0];
  EXPECT_TRUE(got[1].ok()) << got[1];
  EXPECT_EQ(got[2].code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(got[3].ok()) << got[3];
  EXPECT_TRUE(got[4].ok()) << got[4];  // The same blob twice in one batch.
  EXPECT_TRUE(got[5].ok()) << got[5];
  EXPECT_EQ(got[6].code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(*store_->Read(Digest::OfData(small)), small);
  EXPECT_EQ(*store_->Read(Digest::OfData(large)), large);
  EXPECT_FALSE(store_->Contains(bad));
  EXPECT_FALSE(store_->Contains(too_big));
  EXPECT_THAT(store_->WriteBlobs({}), IsEmpty());
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.cas_entries, 3);
  EXPECT_EQ(stats.used_bytes, 300 + 5000 + 200);
  EXPECT_EQ(stats.reserved_bytes, 0);
}

// Batches of overlapping digests in different orders, from several threads,
// alongside single writes of the same digests: every write succeeds, each
// blob is stored once, and no reservation is left behind.
TEST_P(BlobStoreTest, ConcurrentOverlappingBatches) {
  store_ = Make(1 << 20);
  std::vector<std::string> data;
  std::vector<Digest> digests;
  for (int i = 0; i < 24; ++i) {
    data.push_back(Bytes(50 + 37 * i, 100 + i));
    digests.push_back(Digest::OfData(data.back()));
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        std::vector<BlobWrite> blobs;
        for (int k = 0; k < 8; ++k) {
          const int i = (t * 5 + round * 3 + k * (t + 1)) % 24;
          blobs.push_back({digests[i], data[i]});
        }
        for (const absl::Status& s : store_->WriteBlobs(blobs)) {
          EXPECT_TRUE(s.ok()) << s;
        }
        const int i = (round + t) % 24;
        EXPECT_TRUE(store_->Write(digests[i], data[i]).ok());
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  int64_t stored = 0;
  for (size_t i = 0; i < digests.size(); ++i) {
    if (store_->Contains(digests[i])) {
      EXPECT_EQ(*store_->Read(digests[i]), data[i]);
      stored += static_cast<int64_t>(data[i].size());
    }
  }
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.used_bytes, stored);
  EXPECT_EQ(stats.reserved_bytes, 0);
  EXPECT_EQ(stats.evictions, 0);
}

// Blobs that arrive as zstd frames: whatever a store keeps, plain reads
// answer the blob and reads as stored answer frames of it (or the blob).
TEST_P(BlobStoreTest, CompressedUploadsReadBackInBothForms) {
  for (size_t size : {size_t{0}, size_t{50}, size_t{3000}}) {
    const std::string data = Bytes(size, 9);
    const Digest d = Digest::OfData(data);
    std::string frames;
    ASSERT_TRUE(ZstdCompressor().Compress(data, true, &frames).ok());
    auto w = store_->OpenWriteZstd(d);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE((*w)->Append(frames.substr(0, 5)).ok());
    ASSERT_TRUE((*w)->Append(frames.substr(5)).ok());
    EXPECT_EQ((*w)->committed_size(), static_cast<int64_t>(frames.size()));
    ASSERT_TRUE((*w)->Commit().ok());
    EXPECT_EQ(*store_->Read(d), data);
    auto reader = store_->OpenRead(d, 0);
    ASSERT_TRUE(reader.ok());
    EXPECT_EQ(*Drain(**reader), data);
    absl::StatusOr<StoredBlob> stored = store_->ReadAsStored(d);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(stored->zstd ? *ZstdDecompressAll(stored->data, 1 << 20)
                           : stored->data,
              data);
    auto stream = store_->OpenReadAsStored(d);
    ASSERT_TRUE(stream.ok()) << stream.status();
    absl::StatusOr<std::string> got = Drain(*stream->reader, 100);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(stream->zstd ? *ZstdDecompressAll(*got, 1 << 20) : *got, data);
  }
  // Frames of other content, or cut short, store nothing.
  const std::string data = Bytes(3000, 10);
  const Digest d = Digest::OfData(data);
  std::string wrong, frames;
  ASSERT_TRUE(ZstdCompressor().Compress(Bytes(3000, 11), true, &wrong).ok());
  ASSERT_TRUE(ZstdCompressor().Compress(data, true, &frames).ok());
  for (const std::string& bad : {wrong, frames.substr(0, frames.size() - 2)}) {
    auto w = store_->OpenWriteZstd(d);
    ASSERT_TRUE(w.ok());
    absl::Status s = (*w)->Append(bad);
    if (s.ok()) {
      s = (*w)->Commit();
    }
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_FALSE(store_->Contains(d));
  EXPECT_EQ(store_->Stats().reserved_bytes, 0);
}

INSTANTIATE_TEST_SUITE_P(Stores, BlobStoreTest,
                         testing::Values(StoreType::kMemory, StoreType::kDisk,
                                         StoreType::kDiskFiles),
                         [](const testing::TestParamInfo<StoreType>& info) {
                           switch (info.param) {
                             case StoreType::kMemory:
                               return "Memory";
                             case StoreType::kDisk:
                               return "Disk";
                             case StoreType::kDiskFiles:
                               return "DiskFiles";
                           }
                           return "Unknown";
                         });

}  // namespace
}  // namespace cairn::cas
