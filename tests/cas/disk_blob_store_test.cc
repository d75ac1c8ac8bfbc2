// Disk-only behaviour of NewDiskBlobStore(): restart and recovery,
// corruption detection, fault injection, read-only directories. The shared
// contract is covered by blob_store_conformance_test.
#include "cas/disk_blob_store.h"

#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "cas/small_item_store.h"
#include "cas/zstd_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/perf_context.h"
#include "tests/testutil/temp_dir.h"

namespace cairn::cas {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

std::string Bytes(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>((i * 13 + seed * 101 + i / 89) & 0xff);
  }
  return s;
}

// An entry as the store keeps it: magic, SHA-256 of the value, the value.
std::string AcFileForTest(const std::string& value) {
  Sha256Hasher hasher;
  hasher.Update(value);
  return absl::StrCat("CAIRNAC1", hasher.FinishRaw(), value);
}

// Takes the write permission off `root` and every directory below it.
void MakeReadOnly(const std::string& root) {
  std::vector<fs::path> dirs = {root};
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(root)) {
    if (e.is_directory()) {
      dirs.push_back(e.path());
    }
  }
  for (const fs::path& dir : dirs) {
    fs::permissions(dir, fs::perms::all, fs::perm_options::remove);
    fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec,
                    fs::perm_options::add);
  }
}

std::string Key(int i) {
  return Digest::OfData("key" + std::to_string(i)).hash();
}

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> out;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) {
      out.push_back(e.path().filename().string());
    }
  }
  return out;
}

class DiskBlobStoreTest : public testing::Test {
 protected:
  DiskBlobStoreTest() {
    options_.root = dir_.path() + "/store";
    options_.max_size_bytes = 1000;
    options_.fsync = false;
    options_.touch_interval = absl::ZeroDuration();
    // These tests cover the files; SmallItemTest below the database.
    options_.small_item_max_bytes = 0;
  }

  std::unique_ptr<BlobStore> Open() {
    absl::StatusOr<std::unique_ptr<BlobStore>> store =
        NewDiskBlobStore(options_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  Digest Put(BlobStore& store, const std::string& data) {
    Digest d = Digest::OfData(data);
    absl::Status s = store.Write(d, data);
    EXPECT_TRUE(s.ok()) << s;
    return d;
  }

  // The files that hold items or writes in progress (not the small-item
  // database's own files, nor the layout version).
  std::vector<std::string> ItemFiles() const {
    std::vector<std::string> out;
    for (const char* sub : {"/cas", "/ac", "/tmp"}) {
      if (fs::exists(options_.root + sub)) {
        for (const std::string& f : FilesIn(options_.root + sub)) {
          out.push_back(f);
        }
      }
    }
    return out;
  }

  std::string CasPath(const Digest& d) const {
    return absl::StrCat(options_.root, "/cas/", d.hash().substr(0, 2), "/",
                        d.hash());
  }
  std::string AcPath(const std::string& key) const {
    return absl::StrCat(options_.root, "/ac/", key.substr(0, 2), "/", key);
  }

  // Stores Bytes(300, 1), Bytes(300, 2) and Bytes(300, 3) in that order
  // and returns their digests.
  std::tuple<Digest, Digest, Digest> PutThree(BlobStore& store) {
    Digest a = Put(store, Bytes(300, 1));
    Digest b = Put(store, Bytes(300, 2));
    return {a, b, Put(store, Bytes(300, 3))};
  }

  // Stores a `size`-byte blob, makes the store's directory read-only and
  // opens the store again: the blob is served, writes are refused
  // (UNAVAILABLE) and nothing stays reserved. Skips the test when this user
  // can write there anyway (root with its capabilities).
  void CheckReadOnlyDirectory(size_t size);

  // Flips one byte of the file at `path`, keeping its size.
  static void FlipByte(const std::string& path, int64_t pos) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(pos);
    char c = static_cast<char>(f.get());
    f.seekp(pos);
    f.put(static_cast<char>(c ^ 0x20));
  }

  testutil::TempDir dir_;
  DiskBlobStoreOptions options_;
};

TEST_F(DiskBlobStoreTest, RejectsBadOptions) {
  options_.root = "";
  EXPECT_EQ(NewDiskBlobStore(options_).status().code(),
            absl::StatusCode::kInvalidArgument);
  options_.root = dir_.path();
  options_.max_size_bytes = 0;
  EXPECT_EQ(NewDiskBlobStore(options_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(DiskBlobStoreTest, LayoutIsShardedByHashPrefix) {
  auto store = Open();
  Digest d = Put(*store, Bytes(10, 1));
  ASSERT_TRUE(store->PutEntry(Key(1), "value").ok());
  EXPECT_TRUE(fs::is_regular_file(CasPath(d)));
  EXPECT_EQ(fs::file_size(CasPath(d)), 10u);
  EXPECT_TRUE(fs::is_regular_file(AcPath(Key(1))));
  EXPECT_EQ(fs::file_size(AcPath(Key(1))), 40u + 5u);  // Header + value.
  EXPECT_EQ(store->Stats().used_bytes, 10 + 45);
  EXPECT_THAT(FilesIn(options_.root + "/tmp"), IsEmpty());
}

TEST_F(DiskBlobStoreTest, EmptyBlobNeverTouchesDisk) {
  options_.fault_injector_for_test = [](absl::string_view) { return EIO; };
  auto store = Open();
  const Digest& e = Digest::Empty();
  EXPECT_TRUE(store->Write(e, "").ok());
  EXPECT_TRUE(store->Contains(e));
  EXPECT_EQ(*store->Read(e), "");
  EXPECT_TRUE(store->OpenRead(e, 0).ok());
  auto w = store->OpenWrite(e);
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE((*w)->Commit().ok());
  EXPECT_THAT(ItemFiles(), IsEmpty());
}

TEST_F(DiskBlobStoreTest, RestartRebuildsIndexInAccessOrder) {
  Digest a, b, c;
  {
    auto store = Open();
    std::tie(a, b, c) = PutThree(*store);
    ASSERT_TRUE(store->PutEntry(Key(1), Bytes(20, 4)).ok());
    EXPECT_TRUE(store->Contains(a));  // Order now: b, c, entry, a.
  }
  auto store = Open();
  StoreStats stats = store->Stats();
  EXPECT_EQ(stats.cas_entries, 3);
  EXPECT_EQ(stats.ac_entries, 1);
  EXPECT_EQ(stats.used_bytes, 960);
  EXPECT_GT(stats.index_load_seconds, 0);
  Digest d = Put(*store, Bytes(300, 5));  // Evicts b only.
  EXPECT_EQ(store->Stats().evictions, 1);
  EXPECT_FALSE(fs::exists(CasPath(b)));
  Put(*store, Bytes(60, 6));  // Evicts c next, not the entry or a.
  EXPECT_THAT(store->FindMissing({a, b, c, d}), ElementsAre(b, c));
  EXPECT_EQ(*store->GetEntry(Key(1)), Bytes(20, 4));
  EXPECT_EQ(*store->Read(a), Bytes(300, 1));
}

TEST_F(DiskBlobStoreTest, RestartRemovesStrayTempFilesAndIgnoresForeignFiles) {
  { auto store = Open(); }
  std::ofstream(options_.root + "/tmp/abandoned.tmp") << "partial";
  std::ofstream(options_.root + "/cas/00/not-a-hash") << "x";
  std::ofstream(options_.root + "/cas/00/" + std::string(64, 'f'))
      << "wrong shard";
  auto store = Open();
  EXPECT_THAT(FilesIn(options_.root + "/tmp"), IsEmpty());
  EXPECT_EQ(store->Stats().cas_entries, 0);
  EXPECT_EQ(store->Stats().used_bytes, 0);
}

TEST_F(DiskBlobStoreTest, RestartTrimsAnOverfullStore) {
  Digest a, b, c;
  {
    auto store = Open();
    std::tie(a, b, c) = PutThree(*store);
  }
  options_.max_size_bytes = 650;
  auto store = Open();
  EXPECT_THAT(store->FindMissing({a, b, c}), ElementsAre(a));
  EXPECT_FALSE(fs::exists(CasPath(a)));
  EXPECT_EQ(store->Stats().used_bytes, 600);
}

TEST_F(DiskBlobStoreTest, ManyFilesLoadInParallel) {
  std::vector<Digest> digests;
  options_.max_size_bytes = 1 << 20;
  {
    auto store = Open();
    for (int i = 0; i < 2000; ++i) {
      digests.push_back(Put(*store, "blob" + std::to_string(i)));
    }
  }
  options_.load_threads = 4;
  auto store = Open();
  EXPECT_EQ(store->Stats().cas_entries, 2000);
  EXPECT_THAT(store->FindMissing(digests), IsEmpty());
}

TEST_F(DiskBlobStoreTest, TouchRefreshesMtimeAtMostOncePerInterval) {
  options_.touch_interval = absl::Hours(1);
  auto store = Open();
  Digest d = Put(*store, Bytes(10, 1));
  fs::file_time_type before = fs::last_write_time(CasPath(d));
  EXPECT_TRUE(store->Contains(d));
  EXPECT_EQ(fs::last_write_time(CasPath(d)), before);  // Written just now.
  store.reset();
  options_.touch_interval = absl::ZeroDuration();
  store = Open();
  EXPECT_TRUE(store->Contains(d));
  EXPECT_GT(fs::last_write_time(CasPath(d)), before);
}

TEST_F(DiskBlobStoreTest, FlippedByteIsDataLossRemovedAndCounted) {
  auto store = Open();
  std::string data = Bytes(500, 1);
  Digest d = Put(*store, data);
  FlipByte(CasPath(d), 250);
  absl::StatusOr<std::string> got = store->Read(d);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(store->Contains(d));
  EXPECT_FALSE(fs::exists(CasPath(d)));
  StoreStats stats = store->Stats();
  EXPECT_EQ(stats.corruptions, 1);
  EXPECT_EQ(stats.used_bytes, 0);
  EXPECT_EQ(store->Read(d).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store->Write(d, data).ok());  // A re-upload heals it.
  EXPECT_EQ(*store->Read(d), data);
}

// Reads `reader` to the end in `chunk`-byte steps; returns the status that
// ended it and the bytes received.
std::pair<absl::Status, std::string> Stream(BlobReader& reader, size_t chunk) {
  std::string out, buf(chunk, '\0');
  for (;;) {
    absl::StatusOr<size_t> n = reader.Read(buf.data(), buf.size());
    if (!n.ok() || *n == 0) {
      return {n.status(), out};
    }
    out.append(buf.data(), *n);
  }
}

// The sizes a churn uses: round i of thread t writes a blob of
// min_blob + (i * 37 + t * 11) % blob_spread bytes, reads it back from
// offset i % read_offsets and replaces an entry of i % entry_sizes bytes.
struct ChurnSizes {
  size_t min_blob;
  size_t blob_spread;
  int64_t read_offsets;
  size_t entry_sizes;
};

// Four threads, 150 rounds each, on one store: write a blob (streamed in
// every third round), read it back from an offset, replace one of five
// entries and read another. Then checks that no reservation or corruption
// is left and the store is within its size, and returns its stats.
StoreStats Churn(BlobStore& store, const ChurnSizes& sizes) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&store, &sizes, t] {
      for (int i = 0; i < 150; ++i) {
        std::string data = Bytes(
            sizes.min_blob + (i * 37 + t * 11) % sizes.blob_spread, i % 40);
        Digest d = Digest::OfData(data);
        if (i % 3 == 0) {
          auto w = store.OpenWrite(d);
          if (w.ok() && (*w)->Append(data).ok()) {
            EXPECT_TRUE((*w)->Commit().ok());
          }
        } else {
          absl::Status s = store.Write(d, data);
          EXPECT_TRUE(s.ok() || absl::IsResourceExhausted(s)) << s;
        }
        const int64_t offset = i % sizes.read_offsets;
        auto r = store.OpenRead(d, offset);
        if (r.ok()) {
          auto [status, got] = Stream(**r, 64);
          EXPECT_TRUE(status.ok()) << status;
          EXPECT_EQ(got, data.substr(offset));
        }
        ASSERT_TRUE(
            store.PutEntry(Key(i % 5), Bytes(i % sizes.entry_sizes, t)).ok());
        absl::StatusOr<std::string> e = store.GetEntry(Key((i + 1) % 5));
        EXPECT_TRUE(e.ok() || absl::IsNotFound(e.status())) << e.status();
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  StoreStats stats = store.Stats();
  EXPECT_EQ(stats.reserved_bytes, 0);
  EXPECT_EQ(stats.corruptions, 0);
  EXPECT_LE(stats.used_bytes, stats.max_bytes);
  return stats;
}

TEST_F(DiskBlobStoreTest, StreamingReadEndsInDataLossNotEof) {
  auto store = Open();
  std::string data = Bytes(900, 2);
  Digest d = Put(*store, data);
  FlipByte(CasPath(d), 899);
  auto reader = store->OpenRead(d, 0);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto [status, got] = Stream(**reader, 100);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(got, data.substr(0, 800));  // The bad final chunk is withheld.
  EXPECT_FALSE(store->Contains(d));
  EXPECT_EQ(store->Stats().corruptions, 1);
}

TEST_F(DiskBlobStoreTest, OffsetReadHashesTheSkippedPrefix) {
  auto store = Open();
  std::string data = Bytes(900, 3);
  Digest d = Put(*store, data);
  FlipByte(CasPath(d), 10);
  absl::StatusOr<std::unique_ptr<BlobReader>> reader = store->OpenRead(d, 500);
  absl::Status status = reader.status();
  if (reader.ok()) {
    status = Stream(**reader, 1000).first;
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(store->Contains(d));
  // Offset == size verifies the whole blob too.
  Digest e = Put(*store, Bytes(100, 4));
  FlipByte(CasPath(e), 0);
  EXPECT_EQ(store->OpenRead(e, 100).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->Stats().corruptions, 2);
}

TEST_F(DiskBlobStoreTest, TruncationIsDataLoss) {
  auto store = Open();
  Digest a = Put(*store, Bytes(400, 1));
  Digest b = Put(*store, Bytes(400, 2));
  fs::resize_file(CasPath(a), 100);
  fs::resize_file(CasPath(b), 399);
  EXPECT_EQ(store->Read(a).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->OpenRead(b, 0).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(store->FindMissing({a, b}), ElementsAre(a, b));
  EXPECT_EQ(store->Stats().corruptions, 2);
  EXPECT_EQ(store->Stats().used_bytes, 0);
}

TEST_F(DiskBlobStoreTest, GrownFileIsDataLoss) {
  auto store = Open();
  Digest a = Put(*store, Bytes(100, 1));
  std::ofstream(CasPath(a), std::ios::app) << "tail";
  EXPECT_EQ(store->Read(a).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->Stats().corruptions, 1);
}

TEST_F(DiskBlobStoreTest, CorruptEntryIsDataLoss) {
  auto store = Open();
  ASSERT_TRUE(store->PutEntry(Key(1), "the value").ok());
  ASSERT_TRUE(store->PutEntry(Key(2), "other value").ok());
  FlipByte(AcPath(Key(1)), 42);  // In the value.
  FlipByte(AcPath(Key(2)), 3);   // In the magic.
  EXPECT_EQ(store->GetEntry(Key(1)).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->GetEntry(Key(2)).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->GetEntry(Key(1)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Stats().corruptions, 2);
  EXPECT_EQ(store->Stats().ac_entries, 0);
}

// Returns the value TryGetEntry() answers, "<would block>" or the status code.
std::string TryGet(BlobStore& store, const std::string& key) {
  std::optional<absl::StatusOr<std::string>> got = store.TryGetEntry(key);
  if (!got.has_value()) {
    return "<would block>";
  }
  return got->ok() ? **got : absl::StatusCodeToString(got->status().code());
}

// An entry written (or read) is answered from memory without opening its
// file; GetEntry() still reads the file.
TEST_F(DiskBlobStoreTest, EntryHitIsAnsweredFromMemory) {
  options_.touch_interval = absl::Hours(1);
  std::atomic<bool> fail_open{false};
  options_.fault_injector_for_test = [&](absl::string_view op) {
    return fail_open && op == "open" ? EIO : 0;
  };
  auto store = Open();
  ASSERT_TRUE(store->PutEntry(Key(1), "the value").ok());
  fail_open = true;
  EXPECT_EQ(TryGet(*store, Key(1)), "the value");
  EXPECT_EQ(TryGet(*store, Key(2)), "NOT_FOUND");
  EXPECT_EQ(store->GetEntry(Key(1)).status().code(),
            absl::StatusCode::kInternal);
}

TEST_F(DiskBlobStoreTest, EntryInMemoryFollowsUpdates) {
  options_.touch_interval = absl::Hours(1);
  auto store = Open();
  ASSERT_TRUE(store->PutEntry(Key(1), "first").ok());
  EXPECT_EQ(TryGet(*store, Key(1)), "first");
  ASSERT_TRUE(store->PutEntry(Key(1), "second").ok());
  EXPECT_EQ(TryGet(*store, Key(1)), "second");
}

// Entries found on disk at start-up are kept in memory once a read has
// verified them.
TEST_F(DiskBlobStoreTest, EntryReadIsKeptInMemory) {
  options_.touch_interval = absl::Hours(1);
  {
    auto store = Open();
    ASSERT_TRUE(store->PutEntry(Key(1), "the value").ok());
  }
  auto store = Open();
  EXPECT_EQ(TryGet(*store, Key(1)), "<would block>");
  ASSERT_TRUE(store->GetEntry(Key(1)).ok());
  EXPECT_EQ(TryGet(*store, Key(1)), "the value");
}

TEST_F(DiskBlobStoreTest, EvictedEntryIsNotAnsweredFromMemory) {
  options_.touch_interval = absl::Hours(1);
  auto store = Open();
  ASSERT_TRUE(store->PutEntry(Key(1), Bytes(200, 1)).ok());
  EXPECT_EQ(TryGet(*store, Key(1)), Bytes(200, 1));
  for (int i = 0; i < 4; ++i) {
    Put(*store, Bytes(300, 10 + i));  // Evicts the entry.
  }
  EXPECT_EQ(store->Stats().ac_entries, 0);
  EXPECT_EQ(TryGet(*store, Key(1)), "NOT_FOUND");
}

TEST_F(DiskBlobStoreTest, CorruptEntryLeavesMemoryToo) {
  options_.touch_interval = absl::Hours(1);
  auto store = Open();
  ASSERT_TRUE(store->PutEntry(Key(1), "the value").ok());
  FlipByte(AcPath(Key(1)), 42);
  EXPECT_EQ(TryGet(*store, Key(1)), "the value");  // The bytes stored.
  EXPECT_EQ(store->GetEntry(Key(1)).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(TryGet(*store, Key(1)), "NOT_FOUND");
}

// A read that overlaps a replacement of its entry must not put the old
// bytes in memory.
TEST_F(DiskBlobStoreTest, ReadRacingAnUpdateDoesNotKeepOldBytes) {
  options_.touch_interval = absl::Hours(1);
  std::atomic<bool> replace_on_read{false};
  BlobStore* self = nullptr;
  options_.fault_injector_for_test = [&](absl::string_view op) {
    if (op == "read" && replace_on_read.exchange(false)) {
      EXPECT_TRUE(self->PutEntry(Key(1), "new").ok());
    }
    return 0;
  };
  {
    auto store = Open();
    ASSERT_TRUE(store->PutEntry(Key(1), "old").ok());
  }
  auto store = Open();  // Not in memory yet.
  self = store.get();
  replace_on_read = true;
  absl::StatusOr<std::string> got = store->GetEntry(Key(1));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "old");  // The file it had opened.
  EXPECT_EQ(TryGet(*store, Key(1)), "new");
}

TEST_F(DiskBlobStoreTest, EntryInMemoryWaitsForDueRefreshAndCanBeOff) {
  auto store = Open();  // touch_interval 0: every access refreshes the mtime.
  ASSERT_TRUE(store->PutEntry(Key(1), "v").ok());
  EXPECT_EQ(TryGet(*store, Key(1)), "<would block>");
  options_.touch_interval = absl::Hours(1);
  options_.entry_cache_bytes = 0;
  options_.root = dir_.path() + "/other";
  store = Open();
  ASSERT_TRUE(store->PutEntry(Key(1), "v").ok());
  ASSERT_TRUE(store->GetEntry(Key(1)).ok());
  EXPECT_EQ(TryGet(*store, Key(1)), "<would block>");
  EXPECT_EQ(TryGet(*store, Key(2)), "NOT_FOUND");
}

TEST_F(DiskBlobStoreTest, CorruptionFoundAfterRestart) {
  Digest d;
  {
    auto store = Open();
    d = Put(*store, Bytes(200, 1));
  }
  FlipByte(CasPath(d), 0);
  auto store = Open();
  EXPECT_TRUE(store->Contains(d));  // Not checked until read...
  EXPECT_EQ(store->Read(d).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(store->Contains(d));  // ...and then never served again.
}

// A fault hook that fails the `n`th call of `op` with `err`.
struct FailNth {
  std::string op;
  int n;
  int err;
  std::shared_ptr<std::atomic<int>> calls =
      std::make_shared<std::atomic<int>>(0);
  int operator()(absl::string_view o) const {
    return o == op && ++*calls == n ? err : 0;
  }
};

TEST_F(DiskBlobStoreTest, FailedWriteLeavesNoPartialBlobAndReleasesQuota) {
  std::string data = Bytes(900, 7);
  Digest d = Digest::OfData(data);
  for (int n = 1; n <= 3; ++n) {
    options_.root = dir_.path() + "/store" + std::to_string(n);
    options_.fault_injector_for_test = FailNth{"write", n, EIO};
    auto store = Open();
    auto w = store->OpenWrite(d);
    ASSERT_TRUE(w.ok());
    absl::Status s;
    for (size_t i = 0; i < data.size() && s.ok(); i += 300) {
      s = (*w)->Append(absl::string_view(data).substr(i, 300));
    }
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << n;
    EXPECT_FALSE((*w)->Commit().ok());
    EXPECT_THAT(ItemFiles(), IsEmpty()) << n;
    EXPECT_EQ(store->Stats().reserved_bytes, 0);
    w->reset();
    EXPECT_FALSE(store->Contains(d));
    EXPECT_TRUE(store->Write(d, data).ok());  // The next try succeeds.
    EXPECT_EQ(*store->Read(d), data);
  }
}

TEST_F(DiskBlobStoreTest, FailuresAtEachStepCleanUp) {
  options_.fsync = true;
  for (std::string op : {"open_tmp", "write", "fsync", "rename"}) {
    options_.root = dir_.path() + "/store-" + op;
    options_.fault_injector_for_test = FailNth{op, 1, EIO};
    auto store = Open();
    std::string data = Bytes(100, 1);
    Digest d = Digest::OfData(data);
    EXPECT_EQ(store->Write(d, data).code(), absl::StatusCode::kInternal) << op;
    EXPECT_THAT(ItemFiles(), IsEmpty()) << op;
    StoreStats stats = store->Stats();
    EXPECT_EQ(stats.reserved_bytes, 0) << op;
    EXPECT_EQ(stats.used_bytes, 0) << op;
    EXPECT_FALSE(store->Contains(d)) << op;
  }
}

// With fsync on, a write past 8 MiB starts the file's write-back early
// (sync_file_range); the blob must still be whole and durable in one piece.
TEST_F(DiskBlobStoreTest, LargeFsyncedStreamingWriteIsWhole) {
  options_.fsync = true;
  options_.max_size_bytes = 64 << 20;
  std::string data = Bytes(20 << 20, 3);
  Digest d = Digest::OfData(data);
  {
    auto store = Open();
    auto w = store->OpenWrite(d);
    ASSERT_TRUE(w.ok()) << w.status();
    for (size_t i = 0; i < data.size(); i += 1 << 20) {
      ASSERT_TRUE(
          (*w)->Append(absl::string_view(data).substr(i, 1 << 20)).ok());
    }
    ASSERT_TRUE((*w)->Commit().ok());
  }
  auto store = Open();  // Found on disk: hashed on this read.
  absl::StatusOr<std::string> got = store->Read(d);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == data);
  EXPECT_EQ(store->Stats().read_hashes, 1);
}

TEST_F(DiskBlobStoreTest, DiskFullIsResourceExhausted) {
  options_.fault_injector_for_test = FailNth{"write", 1, ENOSPC};
  auto store = Open();
  std::string data = Bytes(100, 1);
  EXPECT_EQ(store->Write(Digest::OfData(data), data).code(),
            absl::StatusCode::kResourceExhausted);
  options_.root = dir_.path() + "/store2";
  options_.fault_injector_for_test = FailNth{"write", 1, ENOSPC};
  store = Open();
  EXPECT_EQ(store->PutEntry(Key(1), "v").code(),
            absl::StatusCode::kResourceExhausted);
  options_.root = dir_.path() + "/store3";
  options_.fault_injector_for_test = FailNth{"write", 1, EDQUOT};
  store = Open();
  auto w = store->OpenWrite(Digest::OfData(data));
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->Append(data).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store->Stats().reserved_bytes, 0);
  EXPECT_THAT(ItemFiles(), IsEmpty());
}

// Items this process wrote or already found intact are not hashed again
// while their file is unchanged (StoreStats::read_hashes counts the hashes).
TEST_F(DiskBlobStoreTest, VerifiedItemIsNotHashedAgain) {
  options_.touch_interval = absl::Hours(1);  // No mtime refresh in between.
  std::string data = Bytes(900, 5);
  Digest d;
  {
    auto store = Open();
    d = Put(*store, data);
    ASSERT_TRUE(store->PutEntry(Key(1), "the value").ok());
    EXPECT_EQ(*store->Read(d), data);
    EXPECT_EQ(*store->GetEntry(Key(1)), "the value");
    auto reader = store->OpenRead(d, 0);
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_EQ(Stream(**reader, 100), std::make_pair(absl::OkStatus(), data));
    EXPECT_EQ(store->Stats().read_hashes, 0);  // Hashed when written.
  }
  auto store = Open();  // Found on disk: hashed on first read only.
  EXPECT_EQ(*store->Read(d), data);
  EXPECT_EQ(*store->GetEntry(Key(1)), "the value");
  EXPECT_EQ(store->Stats().read_hashes, 2);
  EXPECT_EQ(*store->Read(d), data);
  EXPECT_EQ(*store->GetEntry(Key(1)), "the value");
  auto reader = store->OpenRead(d, 500);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(Stream(**reader, 100),
            std::make_pair(absl::OkStatus(), data.substr(500)));
  auto at_end = store->OpenRead(d, 900);
  ASSERT_TRUE(at_end.ok()) << at_end.status();
  EXPECT_EQ(Stream(**at_end, 100),
            std::make_pair(absl::OkStatus(), std::string()));
  EXPECT_EQ(store->Stats().read_hashes, 2);
  EXPECT_EQ(store->Stats().corruptions, 0);
}

// A file changed through the file system after it was verified (new mtime,
// ctime or size) is hashed again, so the change is still caught.
TEST_F(DiskBlobStoreTest, CorruptionAfterVerificationIsStillCaught) {
  options_.touch_interval = absl::Hours(1);
  Digest a, b, c;
  {
    auto store = Open();
    std::tie(a, b, c) = PutThree(*store);
    ASSERT_TRUE(store->PutEntry(Key(1), "the value").ok());
  }
  auto store = Open();
  ASSERT_TRUE(store->Read(a).ok());  // Verified by a read...
  ASSERT_TRUE(store->Read(b).ok());
  ASSERT_TRUE(store->GetEntry(Key(1)).ok());
  Digest d = Put(*store, Bytes(50, 4));  // ...or by its write.
  EXPECT_EQ(store->Stats().read_hashes, 3);
  FlipByte(CasPath(a), 299);
  FlipByte(CasPath(b), 0);
  FlipByte(AcPath(Key(1)), 42);
  FlipByte(CasPath(d), 7);
  fs::resize_file(CasPath(c), 299);
  EXPECT_EQ(store->Read(a).status().code(), absl::StatusCode::kDataLoss);
  auto reader = store->OpenRead(b, 10);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(Stream(**reader, 100).first.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->GetEntry(Key(1)).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->Read(d).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->OpenRead(c, 0).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->Stats().corruptions, 5);
  EXPECT_THAT(store->FindMissing({a, b, c, d}), ElementsAre(a, b, c, d));
}

// TryFindMissing() gives up, touching nothing, when answering would need an
// mtime refresh (I/O); a lookup of absent blobs still answers.
TEST_F(DiskBlobStoreTest, TryFindMissingWouldBlockWhenATouchIsDue) {
  auto store = Open();  // touch_interval 0: every hit refreshes the mtime.
  Digest a = Put(*store, Bytes(100, 1));
  Digest absent = Digest::OfData(Bytes(100, 2));
  EXPECT_EQ(store->TryFindMissing({absent, a}), std::nullopt);
  std::optional<std::vector<Digest>> got = store->TryFindMissing({absent});
  ASSERT_TRUE(got.has_value());
  EXPECT_THAT(*got, ElementsAre(absent));
  EXPECT_THAT(store->FindMissing({absent, a}), ElementsAre(absent));
}

TEST_F(DiskBlobStoreTest, ReadErrorIsNotCorruption) {
  auto store = Open();
  Digest d = Put(*store, Bytes(100, 1));
  store.reset();
  options_.fault_injector_for_test = FailNth{"read", 1, EIO};
  store = Open();
  EXPECT_EQ(store->Read(d).status().code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(store->Contains(d));
  EXPECT_EQ(store->Stats().corruptions, 0);
  EXPECT_TRUE(store->Read(d).ok());
}

TEST_F(DiskBlobStoreTest, ReadOnlyFileSystemRefusesWritesButServesReads) {
  Digest d;
  {
    auto store = Open();
    d = Put(*store, Bytes(100, 1));
  }
  options_.fault_injector_for_test = [](absl::string_view op) {
    return op == "open_tmp" ? EROFS : 0;
  };
  auto store = Open();
  std::string data = Bytes(100, 2);
  EXPECT_EQ(store->Write(Digest::OfData(data), data).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(store->OpenWrite(Digest::OfData(data)).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(store->PutEntry(Key(1), "v").code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(store->Stats().reserved_bytes, 0);
  EXPECT_EQ(*store->Read(d), Bytes(100, 1));
}

// Drops the capabilities that let root ignore permission bits from the
// calling thread (threads it starts inherit this) and restores them on
// destruction, so that root too sees a read-only directory as read-only.
class DacCapabilitiesDropped {
 public:
  DacCapabilitiesDropped() {
    header_.version = _LINUX_CAPABILITY_VERSION_3;
    header_.pid = 0;
    ok_ = syscall(SYS_capget, &header_, saved_) == 0;
    if (!ok_) {
      return;
    }
    __user_cap_data_struct dropped[2];
    memcpy(dropped, saved_, sizeof(dropped));
    for (int cap : {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER}) {
      dropped[cap / 32].effective &= ~(1u << (cap % 32));
    }
    ok_ = syscall(SYS_capset, &header_, dropped) == 0;
  }
  ~DacCapabilitiesDropped() {
    if (ok_) {
      syscall(SYS_capset, &header_, saved_);
    }
  }
  bool ok() const { return ok_; }

 private:
  __user_cap_header_struct header_;
  __user_cap_data_struct saved_[2];
  bool ok_ = false;
};

void DiskBlobStoreTest::CheckReadOnlyDirectory(size_t size) {
  Digest d;
  {
    auto store = Open();
    d = Put(*store, Bytes(size, 1));
  }
  MakeReadOnly(options_.root);
  DacCapabilitiesDropped dropped;
  if (!dropped.ok() || std::ofstream(options_.root + "/tmp/probe").is_open()) {
    GTEST_SKIP() << "cannot make the directory read-only for this user";
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->Read(d), Bytes(size, 1));
  std::string data = Bytes(size, 2);
  EXPECT_EQ(store->Write(Digest::OfData(data), data).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(store->PutEntry(Key(1), "v").code(),
            absl::StatusCode::kUnavailable);
  StoreStats stats = store->Stats();
  EXPECT_EQ(stats.reserved_bytes, 0);
  EXPECT_EQ(stats.used_bytes, static_cast<int64_t>(size));
}

TEST_F(DiskBlobStoreTest, ReadOnlyDirectory) { CheckReadOnlyDirectory(100); }

TEST_F(DiskBlobStoreTest, UncreatableRootFails) {
  std::ofstream(dir_.path() + "/file") << "x";
  options_.root = dir_.path() + "/file/store";
  EXPECT_FALSE(NewDiskBlobStore(options_).ok());
}

TEST_F(DiskBlobStoreTest, ReplacedEntryKeepsOpenReadersAndAccounting) {
  auto store = Open();
  ASSERT_TRUE(store->PutEntry(Key(1), std::string(100, 'a')).ok());
  ASSERT_TRUE(store->PutEntry(Key(1), std::string(10, 'b')).ok());
  EXPECT_EQ(*store->GetEntry(Key(1)), std::string(10, 'b'));
  EXPECT_EQ(store->Stats().used_bytes, 50);
  EXPECT_EQ(store->Stats().ac_entries, 1);
  EXPECT_THAT(ItemFiles(), UnorderedElementsAre(Key(1)));
}

// Many threads writing, reading, streaming and replacing entries in a small
// store: afterwards the index must agree with the files on disk.
TEST_F(DiskBlobStoreTest, ConcurrentChurnKeepsIndexAndDiskConsistent) {
  options_.max_size_bytes = 5000;
  auto store = Open();
  StoreStats stats = Churn(*store, {.min_blob = 100,
                                    .blob_spread = 500,
                                    .read_offsets = 50,
                                    .entry_sizes = 70});
  int64_t on_disk = 0, files = 0;
  for (const char* sub : {"/cas", "/ac"}) {
    for (const fs::directory_entry& e :
         fs::recursive_directory_iterator(options_.root + sub)) {
      if (e.is_regular_file()) {
        on_disk += static_cast<int64_t>(e.file_size());
        ++files;
      }
    }
  }
  EXPECT_EQ(on_disk, stats.used_bytes);
  EXPECT_EQ(files, stats.cas_entries + stats.ac_entries);
  EXPECT_THAT(FilesIn(options_.root + "/tmp"), IsEmpty());
}

// The small-item database: items of at most small_item_max_bytes.
class SmallItemTest : public DiskBlobStoreTest {
 protected:
  SmallItemTest() {
    options_.small_item_max_bytes = 100;
    options_.touch_interval = absl::ZeroDuration();
  }

  // Replaces the value of `key`'s small item behind the store's back (the
  // store must be closed), as corruption that passes the database's own
  // checks would.
  void PlantSmall(ItemKind kind, const std::string& hex,
                  const std::string& bytes) {
    auto db = OpenSmallItemStore({.dir = options_.root + "/small"});
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)
                    ->Put(*ItemKey::FromHex(kind, hex),
                          absl::GetCurrentTimeNanos(), bytes)
                    .ok());
  }

  std::string LayoutFile() const {
    std::ifstream in(options_.root + "/LAYOUT");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
};

TEST_F(SmallItemTest, SmallItemsHaveNoFileAndSurviveRestart) {
  Digest small, large;
  {
    auto store = Open();
    small = Put(*store, Bytes(100, 1));
    large = Put(*store, Bytes(101, 2));
    ASSERT_TRUE(store->PutEntry(Key(1), Bytes(60, 3)).ok());  // 100 bytes.
    ASSERT_TRUE(store->PutEntry(Key(2), Bytes(61, 4)).ok());  // 101 bytes.
    EXPECT_THAT(ItemFiles(), UnorderedElementsAre(large.hash(), Key(2)));
    EXPECT_EQ(store->Stats().used_bytes, 100 + 101 + 100 + 101);
  }
  EXPECT_EQ(LayoutFile(), "cairn-store-layout 3\n");
  auto store = Open();
  StoreStats stats = store->Stats();
  EXPECT_EQ(stats.cas_entries, 2);
  EXPECT_EQ(stats.ac_entries, 2);
  EXPECT_EQ(stats.used_bytes, 402);
  EXPECT_EQ(*store->Read(small), Bytes(100, 1));
  EXPECT_EQ(*store->Read(large), Bytes(101, 2));
  EXPECT_EQ(*store->GetEntry(Key(1)), Bytes(60, 3));
  EXPECT_EQ(*store->GetEntry(Key(2)), Bytes(61, 4));
  auto [status, got] = Stream(**store->OpenRead(small, 30), 7);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(got, Bytes(100, 1).substr(30));
  EXPECT_EQ(store->OpenRead(small, 101).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST_F(SmallItemTest, StreamedSmallBlobIsVerifiedBeforeItIsStored) {
  auto store = Open();
  std::string data = Bytes(80, 1);
  Digest d = Digest::OfData(data);
  auto w = store->OpenWrite(d);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(data.substr(0, 30)).ok());
  ASSERT_TRUE((*w)->Append(std::string(50, 'x')).ok());
  EXPECT_EQ((*w)->committed_size(), 80);
  EXPECT_EQ((*w)->Commit().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(store->Contains(d));
  EXPECT_EQ(store->Stats().reserved_bytes, 0);
  auto w2 = store->OpenWrite(d);
  ASSERT_TRUE(w2.ok());
  EXPECT_EQ((*w2)->Append(data + "!").code(),
            absl::StatusCode::kInvalidArgument);
  w2->reset();
  EXPECT_EQ(store->Stats().reserved_bytes, 0);
  auto w3 = store->OpenWrite(d);
  ASSERT_TRUE((*w3)->Append(data).ok());
  ASSERT_TRUE((*w3)->Commit().ok());
  EXPECT_EQ(*store->Read(d), data);
  EXPECT_THAT(ItemFiles(), IsEmpty());
}

TEST_F(SmallItemTest, RestartKeepsOneAccessOrderAcrossBothKinds) {
  options_.max_size_bytes = 1000;
  Digest a, b, c, d;
  {
    auto store = Open();
    a = Put(*store, Bytes(80, 1));    // Small.
    b = Put(*store, Bytes(300, 2));   // File.
    c = Put(*store, Bytes(80, 3));    // Small.
    d = Put(*store, Bytes(300, 4));   // File.
    EXPECT_TRUE(store->Contains(a));  // Order now: b, c, d, a.
  }
  auto store = Open();
  EXPECT_EQ(store->Stats().used_bytes, 760);
  Digest e = Put(*store, Bytes(500, 5));  // Evicts b only.
  EXPECT_EQ(store->Stats().evictions, 1);
  EXPECT_FALSE(fs::exists(CasPath(b)));
  Digest f = Put(*store, Bytes(300, 6));  // Evicts c (small), then d.
  EXPECT_THAT(store->FindMissing({a, b, c, d, e, f}), ElementsAre(b, c, d));
  EXPECT_EQ(*store->Read(a), Bytes(80, 1));
  store.reset();
  store = Open();  // The evicted small item stays gone after a restart.
  EXPECT_THAT(store->FindMissing({a, b, c, d, e, f}), ElementsAre(b, c, d));
  EXPECT_EQ(store->Stats().used_bytes, 880);
}

// The small-item store's calls leave RocksDB's per-thread perf counts off
// (left on, counting was a third of a memtable insert's instructions).
TEST_F(SmallItemTest, CallsCountNoRocksDbPerfStats) {
  auto db = OpenSmallItemStore({.dir = dir_.path() + "/db", .sync = false});
  ASSERT_TRUE(db.ok()) << db.status();
  uint64_t comparisons = 1, gets = 1;
  std::thread worker([&] {  // A thread of its own: the level is per thread.
    rocksdb::get_perf_context()->Reset();
    for (int i = 0; i < 50; ++i) {
      const ItemKey key =
          *ItemKey::FromHex(ItemKind::kCas, Digest::OfData(Bytes(i, 1)).hash());
      ASSERT_TRUE((*db)->Put(key, i, "value").ok());
      ASSERT_TRUE((*db)->Get(key).ok());
    }
    comparisons = rocksdb::get_perf_context()->user_key_comparison_count;
    gets = rocksdb::get_perf_context()->get_from_memtable_count;
  });
  worker.join();
  EXPECT_EQ(comparisons, 0);
  EXPECT_EQ(gets, 0);
}

TEST_F(SmallItemTest, ScanPartsCoverEveryItemOnce) {
  auto db = OpenSmallItemStore({.dir = dir_.path() + "/db", .sync = false});
  ASSERT_TRUE(db.ok()) << db.status();
  std::set<std::pair<int, std::string>> want;
  for (int i = 0; i < 300; ++i) {
    std::string hex = Digest::OfData(std::to_string(i)).hash();
    if (i < 4) {  // The edges of the id space.
      hex.replace(0, 2, i % 2 == 0 ? "00" : "ff");
    }
    ItemKind kind = i % 3 == 0 ? ItemKind::kAc : ItemKind::kCas;
    ASSERT_TRUE((*db)->Put(*ItemKey::FromHex(kind, hex), i, "v").ok());
    want.emplace(static_cast<int>(kind), hex);
  }
  for (int parts : {1, 2, 3, 8, 256}) {
    std::multiset<std::pair<int, std::string>> got;
    for (int part = 0; part < parts; ++part) {
      ASSERT_TRUE((*db)
                      ->ForEachInPart(part, parts,
                                      [&](const SmallItemMeta& m) {
                                        got.emplace(
                                            static_cast<int>(m.key.kind),
                                            m.key.HexId());
                                      })
                      .ok());
    }
    EXPECT_EQ(got.size(), want.size()) << parts << " parts";
    EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin(), want.end()))
        << parts << " parts";
  }
  EXPECT_EQ((*db)->ForEachInPart(2, 2, [](const SmallItemMeta&) {}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SmallItemTest, ParallelLoadKeepsTheAccessOrder) {
  options_.max_size_bytes = 100 * 50;
  std::vector<Digest> digests;
  {
    auto store = Open();
    for (int i = 0; i < 100; ++i) {
      digests.push_back(Put(*store, Bytes(50, i)));
    }
    for (int i = 0; i < 100; i += 2) {  // Odd ones are now the oldest.
      EXPECT_TRUE(store->Contains(digests[i]));
    }
  }
  options_.load_threads = 5;
  auto store = Open();
  EXPECT_EQ(store->Stats().cas_entries, 100);
  Put(*store, Bytes(50 * 50, 200));  // Evicts the 50 oldest: the odd ones.
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(store->Contains(digests[i]), i % 2 == 0) << i;
  }
}

TEST_F(SmallItemTest, CorruptSmallItemsAreDataLossRemovedAndCounted) {
  std::string blob = Bytes(90, 1);
  Digest d = Digest::OfData(blob);
  Digest d2 = Digest::OfData(Bytes(50, 2));
  {
    auto store = Open();
    Put(*store, blob);
    Put(*store, Bytes(50, 2));
    ASSERT_TRUE(store->PutEntry(Key(1), "value").ok());
  }
  std::string flipped = blob;
  flipped[45] ^= 0x20;
  PlantSmall(ItemKind::kCas, d.hash(), flipped);
  PlantSmall(ItemKind::kCas, d2.hash(), Bytes(50, 3));
  std::string entry = AcFileForTest("value");
  entry.back() ^= 0x20;  // The header no longer matches.
  PlantSmall(ItemKind::kAc, Key(1), entry);
  auto store = Open();
  EXPECT_EQ(store->Read(d).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(store->Contains(d));
  EXPECT_EQ(store->OpenRead(d2, 10).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->GetEntry(Key(1)).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->GetEntry(Key(1)).status().code(),
            absl::StatusCode::kNotFound);
  StoreStats stats = store->Stats();
  EXPECT_EQ(stats.corruptions, 3);
  EXPECT_EQ(stats.used_bytes, 0);
  EXPECT_EQ(stats.cas_entries + stats.ac_entries, 0);
  store.reset();
  store = Open();
  EXPECT_THAT(store->FindMissing({d, d2}), ElementsAre(d, d2));
  Put(*store, blob);  // A client uploads it again.
  EXPECT_EQ(*store->Read(d), blob);
}

TEST_F(SmallItemTest, EntryMovesBetweenDatabaseAndFile) {
  {
    auto store = Open();
    ASSERT_TRUE(store->PutEntry(Key(1), Bytes(20, 1)).ok());
    EXPECT_THAT(ItemFiles(), IsEmpty());
    ASSERT_TRUE(store->PutEntry(Key(1), Bytes(500, 2)).ok());  // Grows.
    EXPECT_THAT(ItemFiles(), ElementsAre(Key(1)));
    EXPECT_EQ(*store->GetEntry(Key(1)), Bytes(500, 2));
    ASSERT_TRUE(store->PutEntry(Key(1), Bytes(10, 3)).ok());  // Shrinks.
    EXPECT_THAT(ItemFiles(), IsEmpty());
    EXPECT_EQ(*store->GetEntry(Key(1)), Bytes(10, 3));
    EXPECT_EQ(store->Stats().used_bytes, 50);
  }
  auto store = Open();
  EXPECT_EQ(*store->GetEntry(Key(1)), Bytes(10, 3));
  EXPECT_EQ(store->Stats().ac_entries, 1);
  EXPECT_EQ(store->Stats().used_bytes, 50);
}

TEST_F(SmallItemTest, EntriesPutThenAreDurableWhenReportedAndOnClose) {
  options_.fsync = true;  // Callbacks come from the syncing thread.
  options_.max_size_bytes = 1 << 20;
  std::atomic<int> ok{0};
  {
    auto store = Open();
    ASSERT_TRUE(store->PutEntry(Key(1), Bytes(500, 1)).ok());  // A file.
    absl::Notification moved;
    EXPECT_TRUE(store
                    ->PutEntry(Key(1), Bytes(10, 2), {},
                               [&](absl::Status s) {
                                 EXPECT_TRUE(s.ok()) << s;
                                 moved.Notify();
                               })
                    .ok());
    moved.WaitForNotification();
    EXPECT_THAT(ItemFiles(), IsEmpty());  // Removed once durable.
    for (int i = 2; i < 50; ++i) {
      EXPECT_TRUE(store
                      ->PutEntry(Key(i), Bytes(20, i), {},
                                 [&](absl::Status s) { ok += s.ok() ? 1 : 0; })
                      .ok());
    }
    // Destroying the store answers the calls still waiting.
  }
  EXPECT_EQ(ok.load(), 48);
  auto store = Open();
  EXPECT_EQ(*store->GetEntry(Key(1)), Bytes(10, 2));
  for (int i = 2; i < 50; ++i) {
    EXPECT_EQ(*store->GetEntry(Key(i)), Bytes(20, i));
  }
  EXPECT_EQ(store->Stats().ac_entries, 49);
}

TEST_F(SmallItemTest, CrashBetweenTheStepsOfAMoveKeepsTheNewer) {
  {
    auto store = Open();
    ASSERT_TRUE(store->PutEntry(Key(1), "in the database").ok());
    ASSERT_TRUE(store->PutEntry(Key(2), "in the database").ok());
  }
  // As if killed after writing the file and before deleting the record
  // (Key(1): the file is newer), or the other way round (Key(2)).
  for (int i : {1, 2}) {
    fs::create_directories(fs::path(AcPath(Key(i))).parent_path());
    std::ofstream(AcPath(Key(i)), std::ios::binary)
        << AcFileForTest("in a file");
  }
  const auto now = fs::file_time_type::clock::now();
  fs::last_write_time(AcPath(Key(1)), now + std::chrono::hours(1));
  fs::last_write_time(AcPath(Key(2)), now - std::chrono::hours(1));
  auto store = Open();
  EXPECT_EQ(*store->GetEntry(Key(1)), "in a file");
  EXPECT_EQ(*store->GetEntry(Key(2)), "in the database");
  EXPECT_THAT(ItemFiles(), ElementsAre(Key(1)));
  EXPECT_EQ(store->Stats().ac_entries, 2);
  store.reset();
  store = Open();
  EXPECT_EQ(*store->GetEntry(Key(1)), "in a file");
  EXPECT_EQ(*store->GetEntry(Key(2)), "in the database");
}

TEST_F(SmallItemTest, NewerLayoutIsRefusedWithAClearMessage) {
  { auto store = Open(); }
  std::ofstream(options_.root + "/LAYOUT", std::ios::trunc)
      << "cairn-store-layout 4\n";
  absl::StatusOr<std::unique_ptr<BlobStore>> store = NewDiskBlobStore(options_);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(store.status().message()),
              ::testing::HasSubstr("layout version 4, newer than this "
                                   "cairn-server understands (3)"));
  std::ofstream(options_.root + "/LAYOUT", std::ios::trunc) << "garbage";
  EXPECT_EQ(NewDiskBlobStore(options_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SmallItemTest, StoreOfTheFirstLayoutOpensAndIsNeverServedUnverified) {
  // What a release before layout 2 leaves: files only, no LAYOUT, no small/.
  Digest good, bad;
  {
    options_.small_item_max_bytes = 0;
    auto store = Open();
    good = Put(*store, Bytes(40, 1));
    bad = Put(*store, Bytes(40, 2));
    ASSERT_TRUE(store->PutEntry(Key(1), "old entry").ok());
  }
  fs::remove_all(options_.root + "/small");
  fs::remove(options_.root + "/LAYOUT");
  FlipByte(CasPath(bad), 20);
  options_.small_item_max_bytes = 100;
  auto store = Open();
  EXPECT_EQ(LayoutFile(), "cairn-store-layout 3\n");
  EXPECT_EQ(store->Stats().cas_entries, 2);
  EXPECT_EQ(*store->Read(good), Bytes(40, 1));
  EXPECT_EQ(store->Read(bad).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(*store->GetEntry(Key(1)), "old entry");
  // New small items go to the database; a replaced old entry leaves its file.
  Digest fresh = Put(*store, Bytes(40, 3));
  EXPECT_FALSE(fs::exists(CasPath(fresh)));
  ASSERT_TRUE(store->PutEntry(Key(1), "new entry").ok());
  EXPECT_FALSE(fs::exists(AcPath(Key(1))));
  store.reset();
  store = Open();
  EXPECT_EQ(*store->GetEntry(Key(1)), "new entry");
  EXPECT_THAT(store->FindMissing({good, bad, fresh}), ElementsAre(bad));
}

TEST_F(SmallItemTest, FailedSmallWritesStoreNothingAndReleaseQuota) {
  options_.fault_injector_for_test = FailNth{"write", 1, ENOSPC};
  auto store = Open();
  std::string data = Bytes(50, 1);
  EXPECT_EQ(store->Write(Digest::OfData(data), data).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(store->Contains(Digest::OfData(data)));
  EXPECT_EQ(store->Stats().reserved_bytes, 0);
  EXPECT_EQ(store->Stats().used_bytes, 0);
  Put(*store, data);  // The next write works.
  EXPECT_EQ(*store->Read(Digest::OfData(data)), data);
}

TEST_F(SmallItemTest, BatchOfSmallBlobsSurvivesRestart) {
  std::vector<std::string> data;
  std::vector<BlobWrite> blobs;
  for (int i = 0; i < 6; ++i) {
    data.push_back(Bytes(i < 5 ? 40 + i : 150, i));  // The last is a file.
  }
  for (const std::string& d : data) {
    blobs.push_back({Digest::OfData(d), d});
  }
  {
    auto store = Open();
    for (const absl::Status& s : store->WriteBlobs(blobs)) {
      EXPECT_TRUE(s.ok()) << s;
    }
    EXPECT_THAT(ItemFiles(), ElementsAre(blobs[5].digest.hash()));
  }
  auto store = Open();
  for (size_t i = 0; i < data.size(); ++i) {
    EXPECT_EQ(*store->Read(blobs[i].digest), data[i]) << i;
  }
  EXPECT_EQ(store->Stats().cas_entries, 6);
}

TEST_F(SmallItemTest, FailedBatchStoresNothingAndReleasesQuota) {
  options_.fault_injector_for_test = FailNth{"write", 1, EIO};
  auto store = Open();
  const std::string a = Bytes(30, 1), b = Bytes(40, 2);
  std::vector<BlobWrite> blobs = {{Digest::OfData(a), a},
                                  {Digest::OfData(b), b}};
  for (const absl::Status& s : store->WriteBlobs(blobs)) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  }
  EXPECT_FALSE(store->Contains(blobs[0].digest));
  EXPECT_FALSE(store->Contains(blobs[1].digest));
  EXPECT_EQ(store->Stats().reserved_bytes, 0);
  EXPECT_EQ(store->Stats().used_bytes, 0);
  for (const absl::Status& s : store->WriteBlobs(blobs)) {
    EXPECT_TRUE(s.ok()) << s;  // The next batch works.
  }
  EXPECT_EQ(*store->Read(blobs[1].digest), b);
}

TEST_F(SmallItemTest, ReadOnlyDirectoryServesSmallItemsAndRefusesWrites) {
  CheckReadOnlyDirectory(50);
}

// Entries that move between the database and files while many threads
// write, read and replace them: a restart must find what the store held.
TEST_F(SmallItemTest, ConcurrentChurnAcrossBothPlacesSurvivesRestart) {
  options_.max_size_bytes = 5000;
  StoreStats before;
  {
    auto store = Open();
    // Entries of a 40-byte header + 0..119 bytes: both sides of the
    // threshold.
    before = Churn(*store, {.min_blob = 30,
                            .blob_spread = 150,
                            .read_offsets = 30,
                            .entry_sizes = 120});
  }
  auto store = Open();
  StoreStats after = store->Stats();
  EXPECT_EQ(after.used_bytes, before.used_bytes);
  EXPECT_EQ(after.cas_entries, before.cas_entries);
  EXPECT_EQ(after.ac_entries, before.ac_entries);
  for (int k = 0; k < 5; ++k) {
    absl::StatusOr<std::string> e = store->GetEntry(Key(k));
    EXPECT_TRUE(e.ok() || absl::IsNotFound(e.status())) << e.status();
  }
  EXPECT_EQ(store->Stats().corruptions, 0);
  EXPECT_THAT(FilesIn(options_.root + "/tmp"), IsEmpty());
}

// Compressed at rest: blobs that arrive as zstd frames and go to a file.
class ZstdAtRestTest : public SmallItemTest {
 protected:
  ZstdAtRestTest() {
    options_.max_size_bytes = 1 << 20;
    options_.touch_interval = absl::Hours(1);  // Verified stays verified.
  }

  static std::string Frames(const std::string& data) {
    std::string out;
    EXPECT_TRUE(ZstdCompressor().Compress(data, /*last=*/true, &out).ok());
    return out;
  }
  // Uploads `frames` of `data` through OpenWriteZstd() in 1000-byte pieces.
  static absl::Status PutZstd(BlobStore& store, const std::string& data,
                              const std::string& frames) {
    auto w = store.OpenWriteZstd(Digest::OfData(data));
    if (!w.ok()) {
      return w.status();
    }
    for (size_t off = 0; off < frames.size(); off += 1000) {
      if (absl::Status s = (*w)->Append(frames.substr(off, 1000)); !s.ok()) {
        return s;
      }
    }
    EXPECT_EQ((*w)->committed_size(), static_cast<int64_t>(frames.size()));
    return (*w)->Commit();
  }
  std::string ZstdPath(const Digest& d) const {
    return absl::StrCat(CasPath(d), ".", d.size_bytes(), ".zst");
  }
  static std::string Noise(size_t n) {
    std::string out(n, '\0');
    std::mt19937 gen(11);
    for (char& c : out) {
      c = static_cast<char>(gen());
    }
    return out;
  }
  // Checks every way of reading `d` (plain whole, plain from an offset,
  // as stored whole and streamed) against `data` held as `frames`.
  static void ExpectServedBothWays(BlobStore& store, const std::string& data,
                                   const std::string& frames) {
    const Digest d = Digest::OfData(data);
    EXPECT_EQ(*store.Read(d), data);
    auto plain = store.OpenRead(d, 1234);
    ASSERT_TRUE(plain.ok()) << plain.status();
    EXPECT_EQ((*plain)->size(), d.size_bytes());
    EXPECT_EQ(Stream(**plain, 700),
              std::make_pair(absl::OkStatus(), data.substr(1234)));
    absl::StatusOr<StoredBlob> stored = store.ReadAsStored(d);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_TRUE(stored->zstd);
    EXPECT_EQ(stored->data, frames);
    auto as_stored = store.OpenReadAsStored(d);
    ASSERT_TRUE(as_stored.ok()) << as_stored.status();
    EXPECT_TRUE(as_stored->zstd);
    EXPECT_EQ(as_stored->reader->size(), static_cast<int64_t>(frames.size()));
    EXPECT_EQ(Stream(*as_stored->reader, 333),
              std::make_pair(absl::OkStatus(), frames));
  }
};

TEST_F(ZstdAtRestTest, CompressedUploadIsKeptCompressedAndCharged) {
  const std::string data = Bytes(50000, 1);
  const std::string frames = Frames(data);
  ASSERT_LT(frames.size(), data.size() / 4);
  const Digest d = Digest::OfData(data);
  {
    auto store = Open();
    ASSERT_TRUE(PutZstd(*store, data, frames).ok());
    EXPECT_TRUE(fs::exists(ZstdPath(d)));
    EXPECT_FALSE(fs::exists(CasPath(d)));
    EXPECT_EQ(fs::file_size(ZstdPath(d)), frames.size());
    EXPECT_EQ(store->Stats().used_bytes, static_cast<int64_t>(frames.size()));
    EXPECT_THAT(store->FindMissing({d}), IsEmpty());
    ExpectServedBothWays(*store, data, frames);
    EXPECT_EQ(store->Stats().read_hashes, 0);  // Hashed when written.
    // Present in any form: a plain upload changes nothing.
    EXPECT_TRUE(store->Write(d, data).ok());
    EXPECT_FALSE(fs::exists(CasPath(d)));
  }
  EXPECT_EQ(LayoutFile(), "cairn-store-layout 3\n");
  auto store = Open();  // Found on disk: the name gives the blob's size.
  EXPECT_EQ(store->Stats().used_bytes, static_cast<int64_t>(frames.size()));
  EXPECT_THAT(store->FindMissing({d, Digest::Create(d.hash(), 7).value()}),
              ElementsAre(Digest::Create(d.hash(), 7).value()));
  ExpectServedBothWays(*store, data, frames);
  EXPECT_GE(store->Stats().read_hashes, 1);
  EXPECT_EQ(store->Stats().corruptions, 0);
}

TEST_F(ZstdAtRestTest, BatchWriteKeepsFramesOfFileSizedBlobsOnly) {
  auto store = Open();
  const std::string big = Bytes(20000, 2), small = Bytes(90, 3);
  const std::string big_frames = Frames(big), small_frames = Frames(small);
  const BlobWrite writes[] = {
      {Digest::OfData(big), big, big_frames},
      {Digest::OfData(small), small, small_frames}};
  for (const absl::Status& s : store->WriteBlobs(writes)) {
    EXPECT_TRUE(s.ok()) << s;
  }
  EXPECT_THAT(ItemFiles(), ElementsAre(absl::StrCat(
                               Digest::OfData(big).hash(), ".20000.zst")));
  ExpectServedBothWays(*store, big, big_frames);
  absl::StatusOr<StoredBlob> s = store->ReadAsStored(Digest::OfData(small));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->zstd);
  EXPECT_EQ(s->data, small);
}

TEST_F(ZstdAtRestTest, FramesThatSaveTooLittleAreStoredPlain) {
  auto store = Open();
  const std::string noise = Noise(30000);
  const std::string frames = Frames(noise);
  ASSERT_GE(frames.size(), noise.size());
  ASSERT_TRUE(PutZstd(*store, noise, frames).ok());
  const Digest d = Digest::OfData(noise);
  EXPECT_THAT(ItemFiles(), ElementsAre(d.hash()));
  EXPECT_EQ(store->Stats().used_bytes, 30000);
  EXPECT_EQ(store->Stats().reserved_bytes, 0);
  absl::StatusOr<StoredBlob> s = store->ReadAsStored(d);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->zstd);
  EXPECT_EQ(s->data, noise);
}

// Frames that do not shrink the first 256 KiB (zstd's raw blocks of random
// bytes) are decoded as they arrive into a plain file: the upload is not
// written as frames and read back at the end to be decoded.
TEST_F(ZstdAtRestTest, IncompressibleFramesAreDecodedAsTheyArrive) {
  options_.max_size_bytes = 16 << 20;
  std::atomic<int> reads{0};
  options_.fault_injector_for_test = [&reads](absl::string_view op) {
    if (op == "read") {
      ++reads;
    }
    return 0;
  };
  auto store = Open();
  const std::string noise = Noise(4 << 20);
  const std::string frames = Frames(noise);
  ASSERT_GE(frames.size(), noise.size());
  const Digest d = Digest::OfData(noise);
  auto w = store->OpenWriteZstd(d);
  ASSERT_TRUE(w.ok()) << w.status();
  for (size_t off = 0; off < frames.size(); off += 64 << 10) {
    ASSERT_TRUE((*w)->Append(absl::string_view(frames).substr(off, 64 << 10))
                    .ok());
  }
  EXPECT_EQ((*w)->committed_size(), static_cast<int64_t>(frames.size()));
  ASSERT_TRUE((*w)->Commit().ok());
  // The probe's frames (about 256 KiB) read back once, and end of file.
  EXPECT_LE(reads.load(), 2);
  EXPECT_THAT(ItemFiles(), ElementsAre(d.hash()));
  EXPECT_EQ(store->Stats().used_bytes, d.size_bytes());
  EXPECT_EQ(store->Stats().reserved_bytes, 0);
  EXPECT_THAT(FilesIn(options_.root + "/tmp"), IsEmpty());
  absl::StatusOr<StoredBlob> stored = store->ReadAsStored(d);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_FALSE(stored->zstd);
  EXPECT_EQ(stored->data, noise);
}

// On the decoded path too: wrong content, frames cut short, or a failed
// write store nothing and give the reservation back.
TEST_F(ZstdAtRestTest, DecodedPathStoresNothingOnError) {
  options_.max_size_bytes = 16 << 20;
  const std::string noise = Noise(1 << 20);
  const Digest d = Digest::OfData(noise);
  std::string other = noise;
  other[700000] ^= 1;
  const std::string frames = Frames(noise);
  struct Case {
    std::string name, frames;
    absl::StatusCode code;
    std::function<int(absl::string_view)> fault;
  };
  const Case cases[] = {
      {"wrong", Frames(other), absl::StatusCode::kInvalidArgument, nullptr},
      {"cut", frames.substr(0, frames.size() - 3),
       absl::StatusCode::kInvalidArgument, nullptr},
      // While decoding the probe's frames, and after.
      {"write6", frames, absl::StatusCode::kInternal, FailNth{"write", 6, EIO}},
      {"write12", frames, absl::StatusCode::kInternal,
       FailNth{"write", 12, EIO}},
  };
  for (const Case& c : cases) {
    options_.root = dir_.path() + "/store-" + c.name;
    options_.fault_injector_for_test = c.fault;
    auto store = Open();
    auto w = store->OpenWriteZstd(d);
    ASSERT_TRUE(w.ok()) << w.status();
    absl::Status s;
    for (size_t off = 0; off < c.frames.size() && s.ok(); off += 64 << 10) {
      s = (*w)->Append(absl::string_view(c.frames).substr(off, 64 << 10));
    }
    if (s.ok()) {
      s = (*w)->Commit();
    }
    EXPECT_EQ(s.code(), c.code) << c.name << ": " << s;
    w->reset();
    EXPECT_FALSE(store->Contains(d)) << c.name;
    EXPECT_THAT(ItemFiles(), IsEmpty()) << c.name;
    EXPECT_THAT(FilesIn(options_.root + "/tmp"), IsEmpty()) << c.name;
    EXPECT_EQ(store->Stats().reserved_bytes, 0) << c.name;
    EXPECT_EQ(store->Stats().used_bytes, 0) << c.name;
  }
}

TEST_F(ZstdAtRestTest, BadFramesStoreNothingAndReleaseTheReservation) {
  auto store = Open();
  const std::string data = Bytes(20000, 4);
  const std::string frames = Frames(data);
  const Digest d = Digest::OfData(data);
  auto wrong = store->OpenWriteZstd(d);
  ASSERT_TRUE(wrong.ok());
  ASSERT_TRUE((*wrong)->Append(Frames(Bytes(20000, 5))).ok());
  EXPECT_EQ((*wrong)->Commit().code(), absl::StatusCode::kInvalidArgument);
  auto cut = store->OpenWriteZstd(d);
  ASSERT_TRUE((*cut)->Append(frames.substr(0, frames.size() - 3)).ok());
  EXPECT_EQ((*cut)->Commit().code(), absl::StatusCode::kInvalidArgument);
  auto garbage = store->OpenWriteZstd(d);
  EXPECT_EQ((*garbage)->Append("not zstd at all").code(),
            absl::StatusCode::kInvalidArgument);
  auto too_long = store->OpenWriteZstd(d);
  EXPECT_EQ((*too_long)->Append(Frames(data + data)).code(),
            absl::StatusCode::kInvalidArgument);
  wrong->reset();
  cut->reset();
  garbage->reset();
  too_long->reset();
  EXPECT_FALSE(store->Contains(d));
  EXPECT_THAT(ItemFiles(), IsEmpty());
  EXPECT_EQ(store->Stats().reserved_bytes, 0);
  EXPECT_EQ(store->Stats().used_bytes, 0);
}

TEST_F(ZstdAtRestTest, CorruptFramesAreDataLossRemovedAndCounted) {
  const std::string a = Bytes(40000, 6), b = Bytes(40000, 7),
                    c = Bytes(40000, 8);
  const std::string fa = Frames(a), fb = Frames(b), fc = Frames(c);
  {
    auto store = Open();
    for (const auto& [data, frames] :
         {std::pair(a, fa), std::pair(b, fb), std::pair(c, fc)}) {
      ASSERT_TRUE(PutZstd(*store, data, frames).ok());
    }
  }
  // Bytes that still decode, to other content (a literal), and bytes that
  // no longer decode.
  const Digest da = Digest::OfData(a), db = Digest::OfData(b),
               dc = Digest::OfData(c);
  FlipByte(ZstdPath(da), static_cast<int64_t>(fa.size()) - 10);
  FlipByte(ZstdPath(db), 6);
  FlipByte(ZstdPath(dc), static_cast<int64_t>(fc.size()) / 2);
  auto store = Open();
  EXPECT_EQ(store->Read(da).status().code(), absl::StatusCode::kDataLoss);
  // Served as stored: the end is never reported for bad frames.
  auto stored = store->OpenReadAsStored(db);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(Stream(*stored->reader, 1000).first.code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->ReadAsStored(dc).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_THAT(store->FindMissing({da, db, dc}), ElementsAre(da, db, dc));
  EXPECT_THAT(ItemFiles(), IsEmpty());
  EXPECT_EQ(store->Stats().corruptions, 3);
  EXPECT_EQ(store->Stats().used_bytes, 0);
  // A file changed after it was verified is checked again.
  ASSERT_TRUE(PutZstd(*store, a, fa).ok());
  EXPECT_EQ(*store->Read(da), a);
  FlipByte(ZstdPath(da), static_cast<int64_t>(fa.size()) - 10);
  auto plain = store->OpenRead(da, 0);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(Stream(**plain, 1000).first.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->Stats().corruptions, 4);
}

TEST_F(ZstdAtRestTest, StoreWrittenPlainOpensAndMixesBothForms) {
  const std::string old_data = Bytes(30000, 9), new_data = Bytes(30000, 10);
  const std::string old_frames = Frames(old_data);
  options_.keep_zstd = false;  // As a release of layout 2 writes.
  {
    auto store = Open();
    ASSERT_TRUE(PutZstd(*store, old_data, old_frames).ok());
  }
  EXPECT_EQ(LayoutFile(), "cairn-store-layout 2\n");
  EXPECT_THAT(ItemFiles(), ElementsAre(Digest::OfData(old_data).hash()));
  options_.keep_zstd = true;
  auto store = Open();
  EXPECT_EQ(LayoutFile(), "cairn-store-layout 3\n");
  const std::string new_frames = Frames(new_data);
  ASSERT_TRUE(PutZstd(*store, new_data, new_frames).ok());
  ExpectServedBothWays(*store, new_data, new_frames);
  EXPECT_EQ(*store->Read(Digest::OfData(old_data)), old_data);
  absl::StatusOr<StoredBlob> s = store->ReadAsStored(Digest::OfData(old_data));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->zstd);
  EXPECT_EQ(s->data, old_data);
  EXPECT_EQ(store->Stats().used_bytes,
            static_cast<int64_t>(30000 + new_frames.size()));
  // Without keep_zstd again: the zstd file is still served, the layout stays.
  store.reset();
  options_.keep_zstd = false;
  store = Open();
  EXPECT_EQ(LayoutFile(), "cairn-store-layout 3\n");
  ExpectServedBothWays(*store, new_data, new_frames);
}

TEST_F(ZstdAtRestTest, EvictionFreesTheCompressedBytes) {
  std::vector<std::string> frames;
  std::vector<Digest> digests;
  for (int i = 0; i < 6; ++i) {
    const std::string data = Bytes(200000, 20 + i);
    frames.push_back(Frames(data));
    digests.push_back(Digest::OfData(data));
  }
  // Room for about four compressed blobs, not one plain one.
  options_.max_size_bytes =
      static_cast<int64_t>(frames[0].size() * 4 + frames[0].size() / 2);
  ASSERT_LT(options_.max_size_bytes, 200000);
  auto store = Open();
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(PutZstd(*store, Bytes(200000, 20 + i), frames[i]).ok());
  }
  const StoreStats stats = store->Stats();
  EXPECT_GE(stats.evictions, 2);
  EXPECT_LE(stats.used_bytes, stats.max_bytes);
  int64_t on_disk = 0;
  for (const std::string& f : ItemFiles()) {
    on_disk += static_cast<int64_t>(
        fs::file_size(absl::StrCat(options_.root, "/cas/", f.substr(0, 2), "/", f)));
  }
  EXPECT_EQ(on_disk, stats.used_bytes);
  EXPECT_THAT(store->FindMissing({digests[5]}), IsEmpty());
  EXPECT_THAT(store->FindMissing({digests[0]}), ElementsAre(digests[0]));
}

// Recompression at rest (rest_zstd_level): blobs written plain or as fast
// zstd frames are re-encoded at a high level in the background.
class RestRecompressTest : public ZstdAtRestTest {
 protected:
  RestRecompressTest() {
    options_.rest_zstd_level = 19;
    options_.rest_hook_for_test = [this](absl::string_view point) {
      absl::MutexLock lock(&idle_mu_);
      ++idle_calls_;
    };
  }
  ~RestRecompressTest() override { store_.reset(); }

  // Text of words: level 19 saves markedly more than level 1 on it.
  static std::string Words(size_t n, int seed) {
    static const char* const kWords[] = {
        "cache",   "blob",    "digest",  "action", "remote", "build",
        "link",    "object",  "package", "import", "symbol", "export",
        "runtime", "compile", "archive", "section"};
    std::mt19937 gen(seed);
    std::string out;
    while (out.size() < n) {
      absl::StrAppend(&out, kWords[gen() % 16], gen() % 7 == 0 ? "\n" : " ",
                      gen() % 1000);
    }
    out.resize(n);
    return out;
  }
  static std::string Frames19(const std::string& data) {
    std::string out;
    EXPECT_TRUE(ZstdCompressor(19).Compress(data, true, &out).ok());
    return out;
  }
  // Waits until the recompressing thread has nothing left to do.
  void WaitIdle() {
    absl::MutexLock lock(&idle_mu_);
    idle_mu_.Await(absl::Condition(
        +[](RestRecompressTest* t) {
          return t->store_->Stats().recompress_pending == 0 &&
                 t->idle_calls_ > 0;
        },
        this));
  }
  int64_t OnDisk() const {
    int64_t n = 0;
    for (const fs::directory_entry& e :
         fs::recursive_directory_iterator(options_.root + "/cas")) {
      if (e.is_regular_file()) {
        n += static_cast<int64_t>(e.file_size());
      }
    }
    return n;
  }

  std::unique_ptr<BlobStore> store_;
  absl::Mutex idle_mu_;
  int idle_calls_ ABSL_GUARDED_BY(idle_mu_) = 0;
};

TEST_F(RestRecompressTest, PlainAndFastBlobsAreReencodedSmallerAndServed) {
  const std::string plain = Words(60000, 1), fast = Words(80000, 2);
  const std::string fast_frames = Frames(fast);
  const std::string plain19 = Frames19(plain), fast19 = Frames19(fast);
  ASSERT_LT(fast19.size(), fast_frames.size() - fast_frames.size() / 64);
  const Digest p = Digest::OfData(plain), f = Digest::OfData(fast);
  const Digest tiny = Digest::OfData(Words(90, 3));  // A small item.
  store_ = Open();
  ASSERT_TRUE(store_->Write(p, plain).ok());
  ASSERT_TRUE(PutZstd(*store_, fast, fast_frames).ok());
  ASSERT_TRUE(store_->Write(tiny, Words(90, 3)).ok());
  WaitIdle();
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.recompressed_blobs, 2);
  EXPECT_EQ(stats.recompressed_saved_bytes,
            static_cast<int64_t>(plain.size() - plain19.size() +
                                 fast_frames.size() - fast19.size()));
  EXPECT_FALSE(fs::exists(CasPath(p)));
  EXPECT_EQ(fs::file_size(ZstdPath(p)), plain19.size());
  EXPECT_EQ(fs::file_size(ZstdPath(f)), fast19.size());
  EXPECT_EQ(stats.used_bytes, OnDisk() + 90);  // + the small item.
  ExpectServedBothWays(*store_, plain, plain19);
  ExpectServedBothWays(*store_, fast, fast19);
  EXPECT_EQ(store_->Stats().read_hashes, 0);  // Verified before the rename.
  store_.reset();
  options_.rest_zstd_level = 0;
  store_ = Open();  // Found on disk as re-encoded.
  EXPECT_EQ(store_->Stats().used_bytes, OnDisk() + 90);
  ExpectServedBothWays(*store_, plain, plain19);
  ExpectServedBothWays(*store_, fast, fast19);
  EXPECT_EQ(store_->Stats().corruptions, 0);
}

TEST_F(RestRecompressTest, AnEncodingThatDoesNotVerifyIsNeverKept) {
  options_.fault_injector_for_test = [](absl::string_view op) {
    return op == "rest_encode" ? EIO : 0;
  };
  const std::string plain = Words(60000, 4);
  const Digest p = Digest::OfData(plain);
  store_ = Open();
  ASSERT_TRUE(store_->Write(p, plain).ok());
  WaitIdle();
  EXPECT_EQ(store_->Stats().recompressed_blobs, 0);
  EXPECT_EQ(store_->Stats().recompress_skipped, 1);
  EXPECT_TRUE(fs::exists(CasPath(p)));
  EXPECT_FALSE(fs::exists(ZstdPath(p)));
  EXPECT_THAT(FilesIn(options_.root + "/tmp"), IsEmpty());
  absl::StatusOr<std::string> read = store_->Read(p);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, plain);
  EXPECT_EQ(store_->Stats().used_bytes, static_cast<int64_t>(plain.size()));
}

// A plain blob whose samples do not shrink at the fastest level is not
// encoded at the high one (seconds of CPU for nothing); one that is random
// only at the start still is.
TEST_F(RestRecompressTest, IncompressibleBlobsAreNotEncodedAtTheHighLevel) {
  std::atomic<int> full_encodes{0};
  options_.fault_injector_for_test = [&full_encodes](absl::string_view op) {
    if (op == "rest_full_encode") {
      ++full_encodes;
    }
    return 0;
  };
  std::mt19937 gen(7);
  std::string random(420 << 10, '\0');  // Over 3 samples: start, middle, end.
  for (char& c : random) {
    c = static_cast<char>(gen());
  }
  const std::string mixed = random.substr(0, 100 << 10) + Words(320 << 10, 8);
  const Digest r = Digest::OfData(random), m = Digest::OfData(mixed);
  store_ = Open();
  ASSERT_TRUE(store_->Write(r, random).ok());
  WaitIdle();
  EXPECT_EQ(full_encodes.load(), 0);
  EXPECT_EQ(store_->Stats().recompress_skipped, 1);
  EXPECT_TRUE(fs::exists(CasPath(r)));
  ASSERT_TRUE(store_->Write(m, mixed).ok());
  WaitIdle();
  EXPECT_EQ(full_encodes.load(), 1);
  EXPECT_EQ(store_->Stats().recompressed_blobs, 1);
  EXPECT_TRUE(fs::exists(ZstdPath(m)));
  absl::StatusOr<std::string> read = store_->Read(r);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, random);
}

// The guesses reuse one sample buffer and compressor: a small compressible
// blob probed after a larger random one, or the other way round, is judged
// on its own bytes only.
TEST_F(RestRecompressTest, EachGuessSeesOnlyItsOwnBlob) {
  std::atomic<int> full_encodes{0};
  options_.fault_injector_for_test = [&full_encodes](absl::string_view op) {
    if (op == "rest_full_encode") {
      ++full_encodes;
    }
    return 0;
  };
  std::mt19937 gen(5);
  auto random = [&gen](size_t size) {
    std::string out(size, '\0');
    for (char& c : out) {
      c = static_cast<char>(gen());
    }
    return out;
  };
  // Whole-blob samples (up to 384 KiB) of falling and rising sizes, then
  // three-piece ones.
  const std::vector<std::pair<std::string, bool>> blobs = {
      {random(300 << 10), false}, {Words(20 << 10, 1), true},
      {random(10 << 10), false},  {Words(200 << 10, 2), true},
      {random(500 << 10), false}, {Words(8 << 10, 3), true},
      {Words(700 << 10, 4), true}, {random(50 << 10), false}};
  store_ = Open();
  int encodes = 0;
  for (size_t i = 0; i < blobs.size(); ++i) {
    SCOPED_TRACE(i);
    const auto& [data, compressible] = blobs[i];
    const Digest d = Digest::OfData(data);
    ASSERT_TRUE(store_->Write(d, data).ok());
    WaitIdle();
    encodes += compressible ? 1 : 0;
    EXPECT_EQ(full_encodes.load(), encodes);
    EXPECT_EQ(fs::exists(ZstdPath(d)), compressible);
    EXPECT_EQ(*store_->Read(d), data);
  }
}

TEST_F(RestRecompressTest, FailuresBeforeTheRenameLeaveTheBlobAsItWas) {
  for (const char* op : {"rest_open", "open_tmp", "fsync", "rename"}) {
    SCOPED_TRACE(op);
    options_.fsync = true;
    // Only the recompressing thread's operations fail.
    options_.fault_injector_for_test = [main = std::this_thread::get_id(),
                                        op](absl::string_view o) {
      return std::this_thread::get_id() != main && o == op ? EIO : 0;
    };
    store_ = Open();
    const std::string plain = Words(60000, 5);
    const Digest p = Digest::OfData(plain);
    ASSERT_TRUE(store_->Write(p, plain).ok());
    WaitIdle();
    EXPECT_EQ(store_->Stats().recompress_skipped, 1);
    EXPECT_TRUE(fs::exists(CasPath(p)));
    EXPECT_EQ(store_->Stats().recompressed_blobs, 0);
    EXPECT_THAT(FilesIn(options_.root + "/tmp"), IsEmpty());
    EXPECT_EQ(store_->Stats().used_bytes, OnDisk());
    EXPECT_EQ(*store_->Read(p), plain);
    store_.reset();
    fs::remove_all(options_.root);
    absl::MutexLock lock(&idle_mu_);
    idle_calls_ = 0;
  }
}

TEST_F(RestRecompressTest, CrashAfterTheRenameKeepsOneVerifiedCopy) {
  options_.fault_injector_for_test = [](absl::string_view op) {
    return op == "rest_crash" ? EIO : 0;
  };
  const std::string plain = Words(60000, 6);
  const Digest p = Digest::OfData(plain);
  store_ = Open();
  ASSERT_TRUE(store_->Write(p, plain).ok());
  WaitIdle();
  EXPECT_TRUE(fs::exists(CasPath(p)));  // Both files, as after a crash.
  EXPECT_TRUE(fs::exists(ZstdPath(p)));
  store_.reset();
  options_.fault_injector_for_test = nullptr;
  options_.rest_zstd_level = 0;
  store_ = Open();
  EXPECT_NE(fs::exists(CasPath(p)), fs::exists(ZstdPath(p)));
  EXPECT_EQ(store_->Stats().cas_entries, 1);
  EXPECT_EQ(store_->Stats().used_bytes, OnDisk());
  EXPECT_EQ(*store_->Read(p), plain);
  EXPECT_EQ(store_->Stats().read_hashes, 1);  // Found on disk: hashed.
  EXPECT_EQ(store_->Stats().corruptions, 0);
}

TEST_F(RestRecompressTest, ReadThatFindsThePlainFileGoneLooksAgain) {
  absl::Notification reader_at_open, reencoded;
  std::atomic<bool> armed{false};
  options_.fault_injector_for_test = [&](absl::string_view op) {
    if (op == "rest_open") {
      reader_at_open.WaitForNotification();
    } else if (op == "open" && armed.exchange(false)) {
      reader_at_open.Notify();  // Looked up as plain; opens once re-encoded.
      reencoded.WaitForNotification();
    }
    return 0;
  };
  options_.rest_hook_for_test = [&](absl::string_view) {
    if (reader_at_open.HasBeenNotified() && !reencoded.HasBeenNotified()) {
      reencoded.Notify();
    }
    absl::MutexLock lock(&idle_mu_);
    ++idle_calls_;
  };
  const std::string plain = Words(60000, 7);
  const Digest p = Digest::OfData(plain);
  store_ = Open();
  ASSERT_TRUE(store_->Write(p, plain).ok());
  armed = true;
  absl::StatusOr<std::string> read = store_->Read(p);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, plain);
  EXPECT_FALSE(fs::exists(CasPath(p)));
  EXPECT_EQ(store_->Stats().recompressed_blobs, 1);
}

TEST_F(RestRecompressTest, BlobEvictedDuringTheReplacementLeavesNoFile) {
  options_.max_size_bytes = 150000;
  const std::string plain = Words(60000, 8);
  const Digest p = Digest::OfData(plain);
  BlobStore* store = nullptr;
  std::atomic<bool> once{true};
  options_.fault_injector_for_test = [&](absl::string_view op) {
    if (op == "rest_crash" && once.exchange(false)) {
      // Renamed in, index not updated yet: evict it now.
      for (int i = 0; i < 3; ++i) {
        EXPECT_TRUE(store
                        ->Write(Digest::OfData(Words(60000, 20 + i)),
                                Words(60000, 20 + i))
                        .ok());
      }
    }
    return 0;
  };
  store_ = Open();
  store = store_.get();
  ASSERT_TRUE(store_->Write(p, plain).ok());
  WaitIdle();
  EXPECT_THAT(store_->FindMissing({p}), ElementsAre(p));
  EXPECT_FALSE(fs::exists(CasPath(p)));
  EXPECT_FALSE(fs::exists(ZstdPath(p)));
  EXPECT_EQ(store_->Stats().used_bytes, OnDisk());
  EXPECT_THAT(FilesIn(options_.root + "/tmp"), IsEmpty());
}

TEST_F(RestRecompressTest, LevelOutOfRangeIsRefused) {
  options_.rest_zstd_level = 20;
  EXPECT_EQ(NewDiskBlobStore(options_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// The index loaded in the background (as cairn-server opens the store):
// requests made while it loads, held at the point where the disk has been
// scanned and nothing is indexed yet.
class BackgroundLoadTest : public SmallItemTest {
 protected:
  // Opens the store with its loader held until Release(); the old
  // notifications must be used up (a store opened before was destroyed).
  std::unique_ptr<BlobStore> OpenLoading() {
    gate_ = std::make_unique<absl::Notification>();
    loaded_ = std::make_unique<absl::Notification>();
    DiskBlobStoreOptions options = options_;
    options.load_index_in_background = true;
    options.index_load_hook_for_test =
        [gate = gate_.get()](absl::string_view point) {
          if (point == "scanned") {
            gate->WaitForNotification();
          }
        };
    options.on_index_loaded = [this, loaded = loaded_.get()](
                                  const absl::Status& s, const StoreStats&) {
      load_status_ = s;
      loaded->Notify();
    };
    absl::StatusOr<std::unique_ptr<BlobStore>> store =
        NewDiskBlobStore(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // Lets the loader go on and waits until the load has ended.
  void Release() {
    gate_->Notify();
    loaded_->WaitForNotification();
    EXPECT_TRUE(load_status_.ok()) << load_status_;
  }

  std::unique_ptr<absl::Notification> gate_;
  std::unique_ptr<absl::Notification> loaded_;
  absl::Status load_status_;
};

TEST_F(BackgroundLoadTest, RequestsDuringTheLoadAnswerExactly) {
  options_.max_size_bytes = 1 << 20;
  Digest small, file, gone = Digest::OfData("never stored");
  {
    auto store = Open();
    small = Put(*store, Bytes(80, 1));
    file = Put(*store, Bytes(300, 2));
    ASSERT_TRUE(store->PutEntry(Key(1), Bytes(20, 3)).ok());   // Small.
    ASSERT_TRUE(store->PutEntry(Key(2), Bytes(200, 4)).ok());  // A file.
    ASSERT_TRUE(store->PutEntry(Key(3), Bytes(20, 5)).ok());
  }
  auto store = OpenLoading();
  EXPECT_TRUE(store->Stats().index_loading);
  EXPECT_EQ(store->Stats().cas_entries, 0);  // Nothing indexed yet.
  EXPECT_EQ(store->TryFindMissing({small}), std::nullopt);
  EXPECT_EQ(store->TryGetEntry(Key(1)), std::nullopt);
  EXPECT_EQ(store->TryHasEntry(Key(1)), std::nullopt);
  EXPECT_THAT(store->FindMissing({small, gone, file}), ElementsAre(gone));
  EXPECT_EQ(*store->Read(small), Bytes(80, 1));
  EXPECT_EQ(*store->Read(file), Bytes(300, 2));
  EXPECT_EQ(*store->GetEntry(Key(1)), Bytes(20, 3));
  EXPECT_EQ(*store->GetEntry(Key(2)), Bytes(200, 4));
  EXPECT_EQ(store->GetEntry(Key(9)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Read(gone).status().code(), absl::StatusCode::kNotFound);
  // Writes: new items, an entry replaced (growing into a file), a blob
  // written again; each must be counted once.
  Digest added_small = Put(*store, Bytes(90, 6));
  Digest added_file = Put(*store, Bytes(400, 7));
  Put(*store, Bytes(80, 1));
  ASSERT_TRUE(store->PutEntry(Key(3), Bytes(150, 8)).ok());
  const std::string fifty = Bytes(50, 9), eighty = Bytes(80, 1);
  std::vector<BlobWrite> batch = {{Digest::OfData(fifty), fifty},
                                  {small, eighty}};
  for (const absl::Status& s : store->WriteBlobs(batch)) {
    EXPECT_TRUE(s.ok()) << s;
  }
  EXPECT_EQ(*store->GetEntry(Key(3)), Bytes(150, 8));
  Release();
  StoreStats stats = store->Stats();
  EXPECT_FALSE(stats.index_loading);
  EXPECT_GT(stats.index_load_seconds, 0);
  EXPECT_EQ(stats.cas_entries, 5);
  EXPECT_EQ(stats.ac_entries, 3);
  const int64_t want =
      80 + 300 + 90 + 400 + 50 + (40 + 20) + (40 + 200) + (40 + 150);
  EXPECT_EQ(stats.used_bytes, want);
  EXPECT_EQ(stats.reserved_bytes, 0);
  EXPECT_EQ(stats.evictions, 0);
  EXPECT_THAT(store->FindMissing({small, file, added_small, added_file, gone}),
              ElementsAre(gone));
  EXPECT_EQ(*store->GetEntry(Key(3)), Bytes(150, 8));
  store.reset();
  store = Open();  // What the disk holds agrees.
  EXPECT_EQ(store->Stats().used_bytes, want);
  EXPECT_EQ(store->Stats().cas_entries, 5);
  EXPECT_EQ(*store->GetEntry(Key(3)), Bytes(150, 8));
  EXPECT_EQ(*store->GetEntry(Key(2)), Bytes(200, 4));
}

TEST_F(BackgroundLoadTest, BudgetAndOrderHoldOnceLoaded) {
  options_.max_size_bytes = 1000;
  Digest a, b, x;
  {
    auto store = Open();
    a = Put(*store, Bytes(300, 1));  // Oldest.
    b = Put(*store, Bytes(300, 2));
    x = Put(*store, Bytes(300, 3));
  }
  FlipByte(CasPath(x), 7);
  auto store = OpenLoading();
  EXPECT_TRUE(store->Contains(a));  // Now the most recently used.
  EXPECT_EQ(store->Read(x).status().code(), absl::StatusCode::kDataLoss);
  Digest c = Put(*store, Bytes(300, 4));
  Digest d = Put(*store, Bytes(300, 5));  // 1200 bytes: no eviction yet.
  EXPECT_EQ(store->Stats().evictions, 0);
  Release();
  StoreStats stats = store->Stats();
  EXPECT_EQ(stats.evictions, 1);  // b: the least recently used.
  EXPECT_EQ(stats.corruptions, 1);
  EXPECT_EQ(stats.used_bytes, 900);
  EXPECT_THAT(store->FindMissing({a, b, c, d, x}), ElementsAre(b, x));
  EXPECT_THAT(ItemFiles(), UnorderedElementsAre(a.hash(), c.hash(), d.hash()));
  store.reset();
  store = Open();
  EXPECT_EQ(store->Stats().used_bytes, 900);
  EXPECT_THAT(store->FindMissing({a, b, c, d, x}), ElementsAre(b, x));
}

TEST_F(BackgroundLoadTest, AnItemHeldTwiceIsResolvedByALookupOrByTheLoad) {
  {
    auto store = Open();
    ASSERT_TRUE(store->PutEntry(Key(1), "in the database").ok());
    ASSERT_TRUE(store->PutEntry(Key(2), "in the database").ok());
  }
  // As if killed between the two steps of a move: both keys are held in the
  // database and (newer) as a file.
  const auto later = fs::file_time_type::clock::now() + std::chrono::hours(1);
  for (int i : {1, 2}) {
    fs::create_directories(fs::path(AcPath(Key(i))).parent_path());
    std::ofstream(AcPath(Key(i)), std::ios::binary)
        << AcFileForTest("in a file");
    fs::last_write_time(AcPath(Key(i)), later);
  }
  auto store = OpenLoading();
  EXPECT_EQ(*store->GetEntry(Key(1)), "in a file");  // Found by a lookup.
  Release();                                         // Key(2) by the load.
  EXPECT_EQ(*store->GetEntry(Key(2)), "in a file");
  EXPECT_EQ(store->Stats().ac_entries, 2);
  EXPECT_EQ(store->Stats().used_bytes, 2 * (40 + 9));
  store.reset();
  store = Open();  // The older copies were deleted.
  EXPECT_EQ(store->Stats().used_bytes, 2 * (40 + 9));
  EXPECT_EQ(*store->GetEntry(Key(1)), "in a file");
  EXPECT_EQ(*store->GetEntry(Key(2)), "in a file");
}

TEST_F(BackgroundLoadTest, ManyRequestsRaceTheLoad) {
  // Many items, so that the loader takes several holds of the lock while
  // readers and writers run (run under TSan: tools/sanitize.sh thread).
  options_.max_size_bytes = 1 << 20;
  std::vector<std::string> blobs;
  {
    auto store = Open();
    for (int i = 0; i < 10000; ++i) {
      blobs.push_back(absl::StrCat("blob ", i));
      Put(*store, blobs.back());
    }
  }
  auto store = OpenLoading();
  gate_->Notify();
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < 10000; i += 40) {
        const Digest d = Digest::OfData(blobs[i]);
        if (!store->FindMissing({d}).empty() || *store->Read(d) != blobs[i]) {
          ++wrong;
        }
        Put(*store, absl::StrCat("new ", i));
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  loaded_->WaitForNotification();
  EXPECT_EQ(wrong.load(), 0);
  const StoreStats stats = store->Stats();
  EXPECT_EQ(stats.cas_entries, 10000 + 1000);
  int64_t want = 0;
  for (int i = 0; i < 10000; ++i) {
    want +=
        static_cast<int64_t>(blobs[i].size()) +
        (i % 40 < 4 ? static_cast<int64_t>(absl::StrCat("new ", i).size()) : 0);
  }
  EXPECT_EQ(stats.used_bytes, want);
}

}  // namespace
}  // namespace cairn::cas
