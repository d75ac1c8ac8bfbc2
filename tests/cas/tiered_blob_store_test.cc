// The tiered store against a real engine (Ceph RGW from tools/rgw.sh): two
// "nodes" (two stores with their own local tier) over one bucket. Label
// "engine"; skipped with the reason when Ceph is not installed.
#include "cas/tiered_blob_store.h"

#include <signal.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "cas/digest.h"
#include "cas/disk_blob_store.h"
#include "cas/entry_object.h"
#include "cas/memory_blob_store.h"
#include "cas/zstd_codec.h"
#include "gtest/gtest.h"
#include "tests/testutil/rgw_cluster.h"
#include "tests/testutil/temp_dir.h"

namespace cairn::cas {
namespace {

using testutil::RgwCluster;

// Bucket requests seen by one node, by kind and outcome.
struct Requests {
  std::atomic<int> head{0}, put_ok{0}, put_refused{0}, get{0}, parts{0},
      refresh{0}, writes{0}, total{0};
};

S3ClientOptions ClientOptions(Requests* seen) {
  S3ClientOptions o = RgwCluster::Get().ClientOptions();
  o.on_request = [seen](const S3RequestRecord& r) {
    if (seen == nullptr) {
      return;
    }
    seen->total++;
    if (r.kind == "head") seen->head++;
    if (r.kind == "put" || r.kind == "multipart_complete") seen->writes++;
    if (r.kind == "get") seen->get++;
    if (r.kind == "multipart_part") seen->parts++;
    if (r.kind == "refresh") seen->refresh++;
    if (r.kind == "put" && r.code == absl::StatusCode::kOk) seen->put_ok++;
    if (r.kind == "put" && r.code == absl::StatusCode::kAlreadyExists) {
      seen->put_refused++;
    }
  };
  return o;
}

std::string Blob(int i, size_t size = 100) {
  std::string s = absl::StrCat("blob-", i, "-");
  s.resize(size, static_cast<char>('a' + i % 26));
  return s;
}

// `size` bytes zstd cannot shrink.
std::string Noise(size_t size) {
  std::string s(size, '\0');
  uint64_t x = 88172645463325252u;
  for (char& c : s) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return s;
}

class TieredTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CAIRN_REQUIRE_RGW();
    options_.prefix = absl::StrCat(
        "tiered/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name(), "/");
    options_.part_size = 5 << 20;
    options_.multipart_threshold = 8 << 20;
  }

  // A node whose local tier is in memory (or on disk under `dir`).
  std::unique_ptr<TieredBlobStore> Node(Requests* seen,
                                        const std::string& dir = "") {
    std::unique_ptr<BlobStore> local;
    if (dir.empty()) {
      local = NewMemoryBlobStore({int64_t{256} << 20});
    } else {
      DiskBlobStoreOptions d;
      d.root = dir;
      d.max_size_bytes = int64_t{512} << 20;
      d.fsync = false;
      local = *NewDiskBlobStore(d);
    }
    auto s3 = NewS3Client(ClientOptions(seen));
    EXPECT_TRUE(s3.ok()) << s3.status();
    auto store = NewTieredBlobStore(std::move(local), *std::move(s3), options_);
    EXPECT_TRUE(store.ok()) << store.status();
    return *std::move(store);
  }

  std::unique_ptr<S3Client> Raw() {
    return *NewS3Client(ClientOptions(nullptr));
  }

  // Writes Blob(first + i, size + i * step) for i < n through `node`;
  // returns their digests.
  std::vector<Digest> WriteBlobs(TieredBlobStore* node, int first, int n,
                                 size_t size, size_t step = 0) {
    std::vector<Digest> digests;
    for (int i = 0; i < n; ++i) {
      const std::string data = Blob(first + i, size + i * step);
      digests.push_back(Digest::OfData(data));
      EXPECT_TRUE(node->Write(digests.back(), data).ok());
    }
    return digests;
  }

  // Writes `data` through `node`, then replaces its object in the bucket by
  // a copy with byte `at` flipped; returns its digest.
  Digest WriteThenCorrupt(TieredBlobStore* node, const std::string& data,
                          size_t at) {
    const Digest d = Digest::OfData(data);
    EXPECT_TRUE(node->Write(d, data).ok());
    std::string bad = data;
    bad[at] ^= 1;
    EXPECT_TRUE(
        Raw()->Put(options_.prefix + "cas/" + d.hash(), bad, "", false).ok());
    return d;
  }

  TieredBlobStoreOptions options_;
};

TEST_F(TieredTest, SecondNodeSeesWhatTheFirstAcknowledged) {
  Requests seen_a, seen_b;
  auto a = Node(&seen_a);
  auto b = Node(&seen_b);
  std::vector<Digest> written, absent;
  for (int i = 0; i < 20; ++i) {
    std::string data = Blob(i);
    written.push_back(Digest::OfData(data));
    ASSERT_TRUE(a->Write(written.back(), data).ok());
    absent.push_back(Digest::OfData(Blob(i + 1000)));
  }
  // Streamed through a writer, too.
  std::string streamed = Blob(77, 300000);
  Digest sd = Digest::OfData(streamed);
  auto w = a->OpenWrite(sd);
  ASSERT_TRUE(w.ok());
  for (size_t off = 0; off < streamed.size(); off += 65536) {
    ASSERT_TRUE(
        (*w)->Append(absl::string_view(streamed).substr(off, 65536)).ok());
  }
  ASSERT_TRUE((*w)->Commit().ok());
  written.push_back(sd);
  std::string key(64, 'c');
  ASSERT_TRUE(a->PutEntry(key, "an action result").ok());

  std::vector<Digest> all = written;
  all.insert(all.end(), absent.begin(), absent.end());
  auto missing = b->FindMissingChecked(all);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(*missing, absent);  // Exact: every acknowledged one is present.
  EXPECT_EQ(b->Stats().cas_entries, 0);  // B's local tier is empty.
  for (int i = 0; i < 20; ++i) {
    auto got = b->Read(written[i]);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, Blob(i));
  }
  auto reader = b->OpenRead(sd, 1000);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::string rest(streamed.size(), '\0');
  size_t n = 0;
  while (true) {
    auto r = (*reader)->Read(rest.data() + n, rest.size() - n);
    ASSERT_TRUE(r.ok()) << r.status();
    if (*r == 0) break;
    n += *r;
  }
  EXPECT_EQ(rest.substr(0, n), streamed.substr(1000));
  auto entry = b->GetEntry(key);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(*entry, "an action result");
  EXPECT_EQ(b->GetEntry(std::string(64, 'd')).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(b->Read(absent[0]).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TieredTest, KnownDigestsCostNoBucketRequest) {
  Requests seen_a, seen_b;
  auto a = Node(&seen_a);
  auto b = Node(&seen_b);
  const std::vector<Digest> digests = WriteBlobs(a.get(), 0, 200, 100);
  int before = seen_a.total;
  auto missing = a->FindMissingChecked(digests);
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(missing->empty());
  EXPECT_EQ(seen_a.total - before, 0);
  EXPECT_TRUE(a->TryFindMissing(digests).has_value());

  EXPECT_FALSE(b->TryFindMissing(digests).has_value());
  ASSERT_TRUE(b->FindMissingChecked(digests)->empty());
  EXPECT_EQ(seen_b.head, 200);  // One HEAD each the first time...
  ASSERT_TRUE(b->FindMissingChecked(digests)->empty());
  EXPECT_EQ(seen_b.head, 200);  // ...then none.
  EXPECT_EQ(b->Counters().existence_cache_hits, 200);
}

// Fetch-on-check: a cold node's completeness check GETs a hit's few small
// outputs into its local tier (one request each, together) instead of
// HEADing them, so the client's reads that follow cost the bucket nothing.
TEST_F(TieredTest, CheckForReadFetchesFewSmallOutputsInsteadOfHeading) {
  Requests seen_a, seen_b;
  auto a = Node(&seen_a);
  auto b = Node(&seen_b);
  const std::vector<Digest> outputs = WriteBlobs(a.get(), 0, 3, 1000, 20000);
  const Digest absent = Digest::OfData(Blob(99));
  std::vector<Digest> ask = outputs;
  ask.push_back(absent);
  auto missing = b->FindMissingForRead(ask);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(*missing, std::vector<Digest>{absent});
  EXPECT_EQ(seen_b.head, 0);
  EXPECT_EQ(seen_b.get, 4);  // One GET each, the absent one a 404.
  EXPECT_EQ(b->Stats().cas_entries, 3);
  EXPECT_EQ(b->Counters().check_fetches, 4);
  const int before = seen_b.total;
  for (int i = 0; i < 3; ++i) {
    auto got = b->Read(outputs[i]);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, Blob(i, 1000 + i * 20000));
  }
  EXPECT_EQ(seen_b.total, before);                      // The reads were local.
  EXPECT_TRUE(b->TryFindMissing(outputs).has_value());  // Remembered.

  // More digests than the limit, or a bigger one: HEADed, nothing fetched.
  options_.check_fetch_max_blobs = 2;
  auto c = Node(&seen_b);
  ASSERT_TRUE(c->FindMissingForRead(outputs)->empty());
  EXPECT_EQ(seen_b.head, 3);
  options_.check_fetch_max_blobs = 4;
  options_.check_fetch_max_bytes = 10000;
  auto d = Node(&seen_b);
  ASSERT_TRUE(d->FindMissingForRead(outputs)->empty());
  EXPECT_EQ(seen_b.head, 6);
  EXPECT_EQ(d->Stats().cas_entries + c->Stats().cas_entries, 0);
  // FindMissingChecked (FindMissingBlobs) never fetches.
  auto e = Node(&seen_b);
  ASSERT_TRUE(e->FindMissingChecked(outputs)->empty());
  EXPECT_EQ(e->Stats().cas_entries, 0);
}

// Entries with their blobs: a cold node gets an action result and copies of
// its small outputs in one GET, checks each copy, and reads them locally.
TEST_F(TieredTest, EntryCarriesItsSmallOutputsToAColdNode) {
  options_.entry_blobs_max_bytes = 100000;
  Requests seen_a, seen_b;
  auto a = Node(&seen_a);
  std::vector<Digest> outputs = WriteBlobs(a.get(), 0, 3, 1000, 20000);
  // Incompressible: over the budget compressed too.
  const std::string noise = Noise(200000);
  const std::vector<Digest> big = {Digest::OfData(noise)};
  ASSERT_TRUE(a->Write(big[0], noise).ok());
  const Digest unknown = Digest::OfData(Blob(9));  // Not in the bucket.
  std::vector<Digest> refs = outputs;
  refs.insert(refs.begin() + 1, big[0]);  // Over the budget: no copy.
  refs.push_back(unknown);
  refs.push_back(outputs[0]);  // Twice: one copy.
  const std::string key(64, 'e');
  ASSERT_TRUE(a->PutEntry(key, "result", refs).ok());

  auto b = Node(&seen_b);
  auto entry = b->GetEntry(key);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(*entry, "result");
  EXPECT_EQ(seen_b.total, 1);  // One GET: the entry with its copies.
  EXPECT_EQ(b->Stats().cas_entries, 3);
  EXPECT_EQ(b->Counters().entry_blobs_kept, 3);
  auto missing = b->FindMissingForRead(outputs);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_TRUE(missing->empty());
  for (int i = 0; i < 3; ++i) {
    auto got = b->Read(outputs[i]);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, Blob(i, 1000 + i * 20000));
  }
  EXPECT_EQ(seen_b.total, 1);  // All local.
  // The big one and the unknown one came without copies: asked as before.
  missing = b->FindMissingForRead({big[0], unknown});
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(*missing, std::vector<Digest>{unknown});
  EXPECT_EQ(seen_b.total, 3);

  // Without copies (budget 0) the object is the plain kind.
  options_.entry_blobs_max_bytes = 0;
  auto c = Node(nullptr);
  const std::string plain_key(64, 'a');
  ASSERT_TRUE(c->PutEntry(plain_key, "plain", outputs).ok());
  auto plain = Raw()->GetAll(options_.prefix + "ac/" + plain_key);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_TRUE(absl::StartsWith(*plain, "CAIRNAC1"));
}

// A copy goes into the entry compressed when zstd shrinks it (the budget
// counts the bytes carried), and a cold node keeps the frames as they came
// (its disk tier keeps zstd at rest) after checking them: compressed reads
// cost no recompression there. A compressed copy that does not decompress to
// its digest's bytes is dropped like any bad copy.
TEST_F(TieredTest, EntryCarriesCompressedCopiesKeptCompressed) {
  options_.entry_blobs_max_bytes = 100000;
  auto a = Node(nullptr);
  const std::string data = Blob(4, 300000);  // Over the budget uncompressed.
  const Digest d = Digest::OfData(data);
  ASSERT_TRUE(a->Write(d, data).ok());
  const std::string key(64, 'c');
  ASSERT_TRUE(a->PutEntry(key, "result", {d}).ok());
  auto object = Raw()->GetAll(options_.prefix + "ac/" + key);
  ASSERT_TRUE(object.ok()) << object.status();
  EXPECT_LT(object->size(), 100000u);
  EXPECT_TRUE(absl::StrContains(*object, absl::StrCat(d.hash(), " 300000 ")));

  testutil::TempDir dir_b;
  Requests seen_b;
  auto b = Node(&seen_b, dir_b.path());
  ASSERT_TRUE(b->GetEntry(key).ok());
  EXPECT_EQ(b->Counters().entry_blobs_kept, 1);
  auto stored = b->ReadAsStored(d);
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_TRUE(stored->zstd);
  EXPECT_LT(stored->data.size(), 100000u);
  absl::StatusOr<std::string> unpacked =
      ZstdDecompressAll(stored->data, d.size_bytes());
  ASSERT_TRUE(unpacked.ok()) << unpacked.status();
  EXPECT_EQ(*unpacked, data);
  EXPECT_EQ(*b->Read(d), data);
  EXPECT_EQ(seen_b.total, 1);  // The entry's GET only.

  // Frames of other bytes of the same size, or no frames at all.
  std::string other = data;
  other[1000] ^= 1;
  std::string frames;
  ASSERT_TRUE(ZstdCompressor().Compress(other, true, &frames).ok());
  for (const std::string& bad : {frames, std::string("not zstd frames")}) {
    std::string copies;
    AppendEntryZstdCopy(d, bad, &copies);
    ASSERT_TRUE(Raw()
                    ->Put(options_.prefix + "ac/" + key,
                          EncodeEntryObject("result", copies), "", false)
                    .ok());
    auto c = Node(nullptr);
    auto entry = c->GetEntry(key);
    ASSERT_TRUE(entry.ok()) << entry.status();
    EXPECT_EQ(*entry, "result");
    EXPECT_EQ(c->Stats().cas_entries, 0);
    EXPECT_EQ(c->Counters().corrupt_fetches, 1);
    EXPECT_EQ(c->Counters().entry_blobs_kept, 0);
  }
}

// A compressed upload is kept compressed by the writer's local tier (served
// as stored without recompressing) while the bucket gets the plain bytes,
// which any node reads; bytes that do not match the digest go nowhere.
TEST_F(TieredTest, CompressedUploadStaysCompressedLocallyAndPlainInTheBucket) {
  testutil::TempDir dir_a;
  auto a = Node(nullptr, dir_a.path());
  const std::string data = Blob(6, 200000);
  const Digest d = Digest::OfData(data);
  std::string frames;
  ASSERT_TRUE(ZstdCompressor().Compress(data, true, &frames).ok());
  auto w = a->OpenWriteZstd(d);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->Append(frames.substr(0, 10)).ok());
  ASSERT_TRUE((*w)->Append(frames.substr(10)).ok());
  ASSERT_TRUE((*w)->Commit().ok());
  auto stored = a->ReadAsStored(d);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(stored->zstd);
  EXPECT_EQ(stored->data, frames);
  absl::StatusOr<std::string> in_bucket =
      Raw()->GetAll(options_.prefix + "cas/" + d.hash());
  ASSERT_TRUE(in_bucket.ok()) << in_bucket.status();
  EXPECT_EQ(*in_bucket, data);
  absl::StatusOr<std::string> on_other_node = Node(nullptr)->Read(d);
  ASSERT_TRUE(on_other_node.ok()) << on_other_node.status();
  EXPECT_EQ(*on_other_node, data);

  std::string other = data;
  other[5] ^= 1;
  std::string bad;
  ASSERT_TRUE(ZstdCompressor().Compress(other, true, &bad).ok());
  const Digest e = Digest::OfData(Blob(7, 200000));
  w = a->OpenWriteZstd(e);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->Append(bad).ok());
  EXPECT_EQ((*w)->Commit().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a->ReadAsStored(e).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Raw()->Head(options_.prefix + "cas/" + e.hash()).status().code(),
            absl::StatusCode::kNotFound);
}

// A copy that does not match its digest is never kept or served; the entry
// is still a hit and the output comes from its own object.
TEST_F(TieredTest, BadCopyInAnEntryIsDroppedAndTheBlobFetched) {
  auto a = Node(nullptr);
  const std::string data = Blob(3, 5000);
  const Digest d = Digest::OfData(data);
  ASSERT_TRUE(a->Write(d, data).ok());
  std::string bad = data;
  bad[10] ^= 1;
  const std::string value = "result";
  Sha256Hasher h;
  h.Update(value);
  const std::string object =
      absl::StrCat("CAIRNAC2", h.FinishRaw(), value.size(), "\n", value,
                   d.hash(), " ", d.size_bytes(), "\n", bad);
  const std::string key(64, 'b');
  ASSERT_TRUE(
      Raw()->Put(options_.prefix + "ac/" + key, object, "", false).ok());
  Requests seen;
  auto b = Node(&seen);
  auto entry = b->GetEntry(key);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(*entry, value);
  EXPECT_EQ(b->Stats().cas_entries, 0);
  EXPECT_EQ(b->Counters().corrupt_fetches, 1);
  EXPECT_EQ(b->Counters().entry_blobs_kept, 0);
  ASSERT_TRUE(b->FindMissingForRead({d})->empty());  // Fetched: the real one.
  EXPECT_EQ(*b->Read(d), data);
  // A torn copy section: the entry stays good, nothing is kept.
  const std::string torn = object.substr(0, object.size() - 100);
  ASSERT_TRUE(Raw()->Put(options_.prefix + "ac/" + key, torn, "", false).ok());
  auto c = Node(nullptr);
  entry = c->GetEntry(key);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(*entry, value);
  EXPECT_EQ(c->Stats().cas_entries, 0);
  // A bad value is still a corrupt entry, copies or not.
  std::string wrong = object;
  wrong[8 + 32 + 2] ^= 1;
  ASSERT_TRUE(Raw()->Put(options_.prefix + "ac/" + key, wrong, "", false).ok());
  auto e = Node(nullptr);
  EXPECT_EQ(e->GetEntry(key).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(e->Stats().cas_entries, 0);
}

// An action-cache object too large to be an entry (over 64 MiB) is a bad
// item, a miss for its key only: the bucket answered, so it is not down.
TEST_F(TieredTest, OversizedEntryObjectIsAnItemErrorNotABucketOutage) {
  const std::string key(64, 'c');
  const std::string huge((size_t{64} << 20) + 1, 'x');
  ASSERT_TRUE(Raw()->Put(options_.prefix + "ac/" + key, huge, "", false).ok());
  std::atomic<int> went_down{0};
  options_.on_bucket_state = [&went_down](bool down, const absl::Status&) {
    went_down += down ? 1 : 0;
  };
  auto b = Node(nullptr);
  auto entry = b->GetEntry(key);
  EXPECT_EQ(entry.status().code(), absl::StatusCode::kDataLoss)
      << entry.status();
  EXPECT_FALSE(b->Counters().bucket_down);
  EXPECT_EQ(went_down, 0);
  // The node goes on answering from the bucket.
  const std::string other(64, 'd');
  ASSERT_TRUE(b->PutEntry(other, "result").ok());
  auto c = Node(nullptr);
  auto fetched = c->GetEntry(other);
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(*fetched, "result");
}

TEST_F(TieredTest, CheckForReadOfACorruptObjectIsMissingAndKeepsNothing) {
  auto a = Node(nullptr);
  const std::string data = Blob(6, 3000);
  const Digest d = WriteThenCorrupt(a.get(), data, 100);
  auto b = Node(nullptr);
  auto missing = b->FindMissingForRead({d});
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(*missing, std::vector<Digest>{d});
  EXPECT_EQ(b->Stats().cas_entries, 0);
  EXPECT_EQ(b->Counters().corrupt_fetches, 1);
  // The client uploads again; that repairs it for every node.
  ASSERT_TRUE(b->Write(d, data).ok());
  auto c = Node(nullptr);
  EXPECT_TRUE(c->FindMissingForRead({d})->empty());
  EXPECT_EQ(*c->Read(d), data);
}

TEST_F(TieredTest, CheckForReadWithTheBucketStoppedIsUnavailable) {
  RgwCluster& cluster = RgwCluster::Get();
  auto a = Node(nullptr);
  std::string data = Blob(7);
  Digest d = Digest::OfData(data);
  ASSERT_TRUE(a->Write(d, data).ok());
  auto b = Node(nullptr);
  ASSERT_TRUE(cluster.SignalGateway(SIGSTOP));
  auto checked = b->FindMissingForRead({d, Digest::OfData(Blob(8))});
  ASSERT_TRUE(cluster.SignalGateway(SIGCONT));
  EXPECT_EQ(checked.status().code(), absl::StatusCode::kUnavailable)
      << checked.status();  // Never "missing".
  EXPECT_EQ(b->Stats().cas_entries, 0);
  auto again = b->FindMissingForRead({d});  // Recovers by itself.
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->empty());
}

// A local tier (in memory) whose writers refuse every byte, as a full disk
// does.
class FullLocalTier final : public BlobStore {
 public:
  std::vector<Digest> FindMissing(absl::Span<const Digest> d) override {
    return mem_->FindMissing(d);
  }
  bool Contains(const Digest& d) override { return mem_->Contains(d); }
  absl::StatusOr<std::string> Read(const Digest& d) override {
    return mem_->Read(d);
  }
  absl::StatusOr<std::unique_ptr<BlobReader>> OpenRead(const Digest& d,
                                                       int64_t o) override {
    return mem_->OpenRead(d, o);
  }
  absl::Status Write(const Digest& d, absl::string_view data) override {
    return Full();
  }
  absl::StatusOr<std::unique_ptr<BlobWriter>> OpenWrite(
      const Digest& d) override {
    return std::make_unique<Refusing>();
  }
  absl::StatusOr<std::string> GetEntry(absl::string_view k) override {
    return mem_->GetEntry(k);
  }
  absl::Status PutEntryImpl(absl::string_view k, absl::string_view v,
                            absl::Span<const Digest> blobs,
                            PutCallback* then) override {
    return Reply(mem_->PutEntry(k, v, blobs), then);
  }
  StoreStats Stats() override { return mem_->Stats(); }

 private:
  static absl::Status Full() {
    return absl::ResourceExhaustedError("local tier full");
  }
  struct Refusing final : BlobWriter {
    absl::Status Append(absl::string_view) override { return Full(); }
    int64_t committed_size() const override { return 0; }
    absl::Status Commit() override { return Full(); }
  };
  std::unique_ptr<BlobStore> mem_ = NewMemoryBlobStore({int64_t{1} << 20});
};

// A fetch the local tier refuses is the local tier's error, never the
// bucket's: the check HEADs instead, a read answers RESOURCE_EXHAUSTED, and
// the bucket is not reported down. An object longer than its digest is
// corrupt (missing), and the bucket that served it is not down either.
TEST_F(TieredTest, AFetchTheLocalTierRefusesIsNotABucketError) {
  auto a = Node(nullptr);
  const std::vector<Digest> outputs = WriteBlobs(a.get(), 20, 2, 1000);
  Requests seen;
  auto b = *NewTieredBlobStore(std::make_unique<FullLocalTier>(),
                               *NewS3Client(ClientOptions(&seen)), options_);
  auto missing = b->FindMissingForRead(outputs);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_TRUE(missing->empty());
  EXPECT_EQ(seen.head, 2);
  EXPECT_FALSE(b->Counters().bucket_down);
  EXPECT_EQ(b->Read(outputs[0]).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(b->Counters().bucket_down);

  const std::string data = Blob(22, 1000);
  const Digest d = Digest::OfData(data);
  ASSERT_TRUE(
      Raw()
          ->Put(options_.prefix + "cas/" + d.hash(), data + "x", "", false)
          .ok());
  auto c = Node(nullptr);
  EXPECT_EQ(*c->FindMissingForRead({d}), std::vector<Digest>{d});
  EXPECT_EQ(c->Counters().corrupt_fetches, 1);
  EXPECT_FALSE(c->Counters().bucket_down);
}

TEST_F(TieredTest, ConcurrentChecksAndReadsFetchEachBlobOnce) {
  Requests seen_a, seen_b;
  auto a = Node(&seen_a);
  auto b = Node(&seen_b);
  const std::vector<Digest> outputs = WriteBlobs(a.get(), 10, 3, 50000);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      if (t % 2 == 0) {
        auto missing = b->FindMissingForRead(outputs);
        failures += !missing.ok() || !missing->empty();
      }
      for (const Digest& d : outputs) {
        failures += !b->Read(d).ok();
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_EQ(failures, 0);
  // Every miss joined the digest's fetch or found the local copy it left.
  EXPECT_EQ(seen_b.get, 3);
  EXPECT_EQ(seen_b.head, 0);
}

TEST_F(TieredTest, EachObjectIsUploadedOnce) {
  Requests seen_a, seen_b;
  auto a = Node(&seen_a);
  auto b = Node(&seen_b);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 10; ++i) {
      std::string data = Blob(i);
      ASSERT_TRUE(a->Write(Digest::OfData(data), data).ok());
      ASSERT_TRUE(b->Write(Digest::OfData(data), data).ok());
    }
  }
  EXPECT_EQ(seen_a.put_ok + seen_b.put_ok, 10);
  EXPECT_EQ(seen_b.put_refused, 10);  // B's first attempt, refused at once.
  // An action result is PUT again only when its value changes.
  const std::string key(64, '3');
  ASSERT_TRUE(a->PutEntry(key, "same result").ok());
  ASSERT_TRUE(a->PutEntry(key, "same result").ok());
  ASSERT_TRUE(b->GetEntry(key).ok());
  ASSERT_TRUE(b->PutEntry(key, "same result").ok());
  EXPECT_EQ(seen_a.put_ok + seen_b.put_ok, 10 + 1);
  ASSERT_TRUE(b->PutEntry(key, "new result").ok());
  EXPECT_EQ(seen_a.put_ok + seen_b.put_ok, 10 + 2);
  auto c = Node(nullptr);
  auto latest = c->GetEntry(key);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(*latest, "new result");
}

TEST_F(TieredTest, CorruptObjectIsNeverServedAndIsRepaired) {
  auto a = Node(nullptr);
  auto b = Node(nullptr);
  const std::string data = Blob(5, 5000);
  const Digest d = WriteThenCorrupt(a.get(), data, 4000);
  auto got = b->Read(d);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_EQ(b->Stats().cas_entries, 0);  // Not kept.
  EXPECT_EQ(*b->FindMissingChecked({d}), std::vector<Digest>{d});
  // A client told "missing" uploads again; that upload replaces the object.
  ASSERT_TRUE(b->Write(d, data).ok());
  auto c = Node(nullptr);
  auto fixed = c->Read(d);
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_EQ(*fixed, data);
  // A truncated object is reported missing as well.
  ASSERT_TRUE(
      Raw()->Put(options_.prefix + "cas/" + d.hash(), "short", "", false).ok());
  auto e = Node(nullptr);
  EXPECT_EQ(*e->FindMissingChecked({d}), std::vector<Digest>{d});
  // A corrupt action-cache object is DATA_LOSS, not a hit.
  std::string key(64, 'e');
  ASSERT_TRUE(
      Raw()
          ->Put(options_.prefix + "ac/" + key, "CAIRNAC1garbage", "", false)
          .ok());
  EXPECT_EQ(e->GetEntry(key).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(TieredTest, WrongBytesAreRefusedBeforeUpload) {
  Requests seen;
  auto a = Node(&seen);
  Digest d = Digest::OfData("right");
  EXPECT_EQ(a->Write(d, "wrong").code(), absl::StatusCode::kInvalidArgument);
  auto w = a->OpenWrite(d);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append("wrong").ok());
  EXPECT_EQ((*w)->Commit().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->Append("x"), WriterClosedError(d));  // As every store.
  EXPECT_EQ(seen.put_ok, 0);
  EXPECT_EQ(Raw()->Head(options_.prefix + "cas/" + d.hash()).status().code(),
            absl::StatusCode::kNotFound);
}

int64_t PeakRssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "VmHWM:")) {
      int64_t kb = 0;
      absl::SimpleAtoi(
          absl::StripAsciiWhitespace(absl::StripSuffix(line.substr(6), "kB")),
          &kb);
      return kb;
    }
  }
  return -1;
}

TEST_F(TieredTest, LargeBlobGoesUpInPartsWithFlatMemory) {
  constexpr int64_t kSize = int64_t{100} << 20;
  testutil::TempDir dir_a, dir_b;
  Requests seen_a;
  auto a = Node(&seen_a, dir_a.path());
  auto b = Node(nullptr, dir_b.path());
  // 100 MiB generated chunk by chunk (never held whole).
  std::string chunk(1 << 20, '\0');
  auto fill = [&](int i) {
    for (size_t j = 0; j < chunk.size(); j += 8) {
      uint64_t v = (static_cast<uint64_t>(i) << 32) ^ j * 0x9E3779B97F4A7C15ULL;
      std::memcpy(chunk.data() + j, &v, 8);
    }
  };
  Sha256Hasher h;
  for (int i = 0; i < kSize / static_cast<int64_t>(chunk.size()); ++i) {
    fill(i);
    h.Update(chunk);
  }
  const Digest d = h.FinishDigest();
  const int64_t rss_before = PeakRssKb();
  auto w = a->OpenWrite(d);
  ASSERT_TRUE(w.ok()) << w.status();
  for (int i = 0; i < kSize / static_cast<int64_t>(chunk.size()); ++i) {
    fill(i);
    ASSERT_TRUE((*w)->Append(chunk).ok());
  }
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_EQ(seen_a.parts, 20);  // 100 MiB in 5 MiB parts.
  EXPECT_EQ(seen_a.put_ok, 0);
  // Node B streams it from the bucket into its disk tier and verifies it.
  auto r = b->OpenRead(d, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  Sha256Hasher check;
  std::string buf(1 << 20, '\0');
  while (true) {
    auto n = (*r)->Read(buf.data(), buf.size());
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0) break;
    check.Update(absl::string_view(buf.data(), *n));
  }
  EXPECT_EQ(check.FinishDigest(), d);
  const int64_t growth_kb = PeakRssKb() - rss_before;
  std::cout << "peak RSS growth for a 100 MiB blob up and down: "
            << growth_kb / 1024 << " MiB\n";
  EXPECT_LT(growth_kb, 48 * 1024);  // Flat: a few parts, not the blob.
}

TEST_F(TieredTest, StoppedBucketServesLocalHitsAndRefusesTheRest) {
  RgwCluster& c = RgwCluster::Get();
  auto a = Node(nullptr);
  std::string kept = Blob(1);
  ASSERT_TRUE(a->Write(Digest::OfData(kept), kept).ok());
  std::string key(64, 'a');
  ASSERT_TRUE(a->PutEntry(key, "result").ok());
  ASSERT_TRUE(c.SignalGateway(SIGSTOP));
  std::string fresh = Blob(2);
  absl::Status write = a->Write(Digest::OfData(fresh), fresh);
  auto lookup = a->FindMissingChecked({Digest::OfData(Blob(3))});
  auto local_hit = a->Read(Digest::OfData(kept));
  auto known = a->FindMissingChecked({Digest::OfData(kept)});
  auto entry = a->GetEntry(key);
  absl::Status put_entry = a->PutEntry(std::string(64, 'b'), "x");
  const bool down = a->Counters().bucket_down;
  ASSERT_TRUE(c.SignalGateway(SIGCONT));
  EXPECT_EQ(write.code(), absl::StatusCode::kUnavailable) << write;
  EXPECT_EQ(lookup.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(put_entry.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(down);
  ASSERT_TRUE(local_hit.ok()) << local_hit.status();
  EXPECT_EQ(*local_hit, kept);
  ASSERT_TRUE(known.ok());
  EXPECT_TRUE(known->empty());
  ASSERT_TRUE(entry.ok());
  // Recovers by itself.
  EXPECT_TRUE(a->Write(Digest::OfData(fresh), fresh).ok());
  EXPECT_FALSE(a->Counters().bucket_down);
  auto b = Node(nullptr);
  EXPECT_TRUE(b->Read(Digest::OfData(fresh)).ok());
}

TEST_F(TieredTest, DegradedLocalKeepsWritingWhileTheBucketIsDown) {
  RgwCluster& c = RgwCluster::Get();
  options_.degraded_local = true;
  auto a = Node(nullptr);
  std::string data = Blob(9);
  Digest d = Digest::OfData(data);
  ASSERT_TRUE(c.SignalGateway(SIGSTOP));
  absl::Status write = a->Write(d, data);
  auto missing = a->FindMissingChecked({d});
  ASSERT_TRUE(c.SignalGateway(SIGCONT));
  EXPECT_TRUE(write.ok()) << write;
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_TRUE(missing->empty());
  EXPECT_EQ(a->Counters().degraded_writes, 1);
}

TEST_F(TieredTest, OldObjectsAreRefreshedWhenLookedUp) {
  options_.retention = absl::Seconds(20);
  options_.refresh_margin = absl::Seconds(19);  // Refresh after 1 s.
  Requests seen;
  auto a = Node(nullptr);
  std::string data = Blob(4);
  Digest d = Digest::OfData(data);
  ASSERT_TRUE(a->Write(d, data).ok());
  auto raw = Raw();
  auto before = raw->Head(options_.prefix + "cas/" + d.hash());
  ASSERT_TRUE(before.ok());
  absl::SleepFor(absl::Milliseconds(2100));
  auto b = Node(&seen);
  ASSERT_TRUE(b->FindMissingChecked({d})->empty());
  EXPECT_EQ(seen.refresh, 1);
  EXPECT_EQ(b->Counters().refreshes, 1);
  auto after = raw->Head(options_.prefix + "cas/" + d.hash());
  ASSERT_TRUE(after.ok());
  EXPECT_GT(after->last_modified, before->last_modified);
  ASSERT_TRUE(b->FindMissingChecked({d})->empty());
  EXPECT_EQ(seen.refresh, 1);  // Fresh now: no second copy.
}

TEST_F(TieredTest, KilledGatewayThenRestarted) {
  RgwCluster& c = RgwCluster::Get();
  auto a = Node(nullptr);
  std::string before = Blob(11);
  ASSERT_TRUE(a->Write(Digest::OfData(before), before).ok());
  ASSERT_TRUE(c.SignalGateway(SIGKILL));
  absl::SleepFor(absl::Milliseconds(300));  // Let the kernel reap the port.
  std::string during = Blob(12);
  EXPECT_EQ(a->Write(Digest::OfData(during), during).code(),
            absl::StatusCode::kUnavailable);
  ASSERT_TRUE(c.RestartGateway());
  EXPECT_TRUE(a->Write(Digest::OfData(during), during).ok());
  auto b = Node(nullptr);
  EXPECT_TRUE(b->Read(Digest::OfData(before)).ok());
  EXPECT_TRUE(b->Read(Digest::OfData(during)).ok());
}

// A blob of `size` pseudo-random bytes (fast to make, no repeats).
std::string BigBlob(int seed, int64_t size) {
  std::string s(static_cast<size_t>(size), '\0');
  uint64_t v = 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(seed + 1);
  for (size_t j = 0; j + 8 <= s.size(); j += 8) {
    v ^= v << 13;
    v ^= v >> 7;
    v ^= v << 17;
    std::memcpy(s.data() + j, &v, 8);
  }
  return s;
}

// Reads `r` to its end; the error of the first failing Read() otherwise.
absl::StatusOr<std::string> Drain(BlobReader* r) {
  std::string out, buf(256 << 10, '\0');
  while (true) {
    absl::StatusOr<size_t> n = r->Read(buf.data(), buf.size());
    if (!n.ok()) {
      return n.status();
    }
    if (*n == 0) {
      return out;
    }
    out.append(buf.data(), *n);
  }
}

// Waits (bounded, 20 s) until `done` holds; returns whether it did.
template <typename Pred>
bool Eventually(Pred done) {
  for (absl::Time end = absl::Now() + absl::Seconds(20); absl::Now() < end;
       absl::SleepFor(absl::Milliseconds(20))) {
    if (done()) {
      return true;
    }
  }
  return done();
}

TEST_F(TieredTest, BigBlobStreamsToTheReaderWhileFillingAndIsFetchedOnce) {
  options_.fetch_chunk = 1 << 20;
  testutil::TempDir dir_b;
  Requests seen_b;
  auto a = Node(nullptr);
  auto b = Node(&seen_b, dir_b.path());
  const std::string data = BigBlob(1, 12 << 20);
  const Digest d = Digest::OfData(data);
  ASSERT_TRUE(a->Write(d, data).ok());

  auto leader = b->OpenRead(d, 0);
  ASSERT_TRUE(leader.ok()) << leader.status();
  std::string first(64 << 10, '\0');
  auto n = (*leader)->Read(first.data(), first.size());
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, first.size());
  EXPECT_EQ(first, data.substr(0, first.size()));
  // Streaming: the first bytes came after one 1 MiB range, not 12.
  EXPECT_EQ(seen_b.get, 1);
  EXPECT_EQ(b->Stats().cas_entries, 0);

  // A second miss of the same digest joins this fetch.
  absl::StatusOr<std::string> follower_got;
  std::thread follower([&] {
    auto r = b->OpenRead(d, 5);
    follower_got = r.ok() ? Drain(r->get()) : r.status();
  });
  ASSERT_TRUE(Eventually([&] { return b->Counters().fetch_shared == 1; }));
  auto rest = Drain(leader->get());
  follower.join();
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_TRUE(first + *rest == data);
  ASSERT_TRUE(follower_got.ok()) << follower_got.status();
  EXPECT_TRUE(*follower_got == data.substr(5));
  EXPECT_EQ(seen_b.get, 12);  // One GET per range; none for the follower.
  EXPECT_EQ(b->Counters().streamed_fetches, 1);
  EXPECT_EQ(b->Stats().cas_entries, 1);  // Filled while streaming.
}

TEST_F(TieredTest, AbandonedStreamLetsAWaitingMissFetch) {
  options_.fetch_chunk = 1 << 20;
  auto a = Node(nullptr);
  auto b = Node(nullptr);
  const std::string data = BigBlob(2, 10 << 20);
  const Digest d = Digest::OfData(data);
  ASSERT_TRUE(a->Write(d, data).ok());
  auto leader = b->OpenRead(d, 0);
  ASSERT_TRUE(leader.ok());
  char c;
  ASSERT_TRUE((*leader)->Read(&c, 1).ok());
  absl::StatusOr<std::string> follower_got;
  std::thread follower([&] {
    auto r = b->OpenRead(d, 0);
    follower_got = r.ok() ? Drain(r->get()) : r.status();
  });
  ASSERT_TRUE(Eventually([&] { return b->Counters().fetch_shared == 1; }));
  leader->reset();  // The client went away mid-stream.
  follower.join();
  ASSERT_TRUE(follower_got.ok()) << follower_got.status();
  EXPECT_TRUE(*follower_got == data);
  EXPECT_EQ(b->Counters().streamed_fetches, 2);
}

TEST_F(TieredTest, CorruptBigObjectIsDataLossAtTheEndAndNotKept) {
  options_.fetch_chunk = 1 << 20;
  testutil::TempDir dir_b;
  auto a = Node(nullptr);
  auto b = Node(nullptr, dir_b.path());
  std::string data = BigBlob(3, 6 << 20);
  const Digest d = Digest::OfData(data);
  ASSERT_TRUE(a->Write(d, data).ok());
  data[5 << 20] ^= 1;  // Same size, one bit off, in the last range.
  ASSERT_TRUE(
      Raw()->Put(options_.prefix + "cas/" + d.hash(), data, "", false).ok());
  auto r = b->OpenRead(d, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  auto got = Drain(r->get());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  r->reset();
  EXPECT_EQ(b->Stats().cas_entries, 0);
  EXPECT_EQ(b->Counters().corrupt_fetches, 1);
  EXPECT_EQ(*b->FindMissingChecked({d}), std::vector<Digest>{d});
  // A truncated object fails on its size at once.
  ASSERT_TRUE(Raw()
                  ->Put(options_.prefix + "cas/" + d.hash(),
                        data.substr(0, 3 << 20), "", false)
                  .ok());
  auto c = Node(nullptr);
  auto short_reader = c->OpenRead(d, 0);
  ASSERT_TRUE(short_reader.ok());
  EXPECT_EQ(Drain(short_reader->get()).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(TieredTest, OldActionResultsAreRefreshedWhenLookedUp) {
  options_.retention = absl::Seconds(20);
  options_.refresh_margin = absl::Seconds(19);  // Refresh after 1 s.
  Requests seen;
  auto a = Node(nullptr);
  const std::string key(64, 'f');
  ASSERT_TRUE(a->PutEntry(key, "result").ok());
  auto raw = Raw();
  auto age = [&] { return raw->Head(options_.prefix + "ac/" + key); };
  auto written = age();
  ASSERT_TRUE(written.ok());
  absl::SleepFor(absl::Milliseconds(2100));
  auto b = Node(&seen);
  ASSERT_TRUE(b->GetEntry(key).ok());  // From the bucket: old, refreshed.
  EXPECT_EQ(seen.refresh, 1);
  auto refreshed = age();
  ASSERT_TRUE(refreshed.ok());
  EXPECT_GT(refreshed->last_modified, written->last_modified);
  absl::SleepFor(absl::Milliseconds(2100));
  ASSERT_TRUE(b->GetEntry(key).ok());  // A local hit, old in the bucket.
  EXPECT_EQ(seen.refresh, 2);
  EXPECT_FALSE(b->TryGetEntry(key) == std::nullopt);  // Known fresh now.
  const int requests = seen.total;
  ASSERT_TRUE(b->GetEntry(key).ok());
  EXPECT_EQ(seen.total, requests);  // Fresh: no request.
  EXPECT_EQ(b->Counters().entry_refreshes, 2);
  auto again = age();
  ASSERT_TRUE(again.ok());
  EXPECT_GT(again->last_modified, refreshed->last_modified);
  // Without a known age, a reactor thread is sent to the blocking path.
  auto c = Node(nullptr);
  ASSERT_TRUE(c->PutEntry(std::string(64, '1'), "x").ok());
  EXPECT_FALSE(c->TryGetEntry(std::string(64, '1')) == std::nullopt);
}

TEST_F(TieredTest, DegradedWritesAreUploadedWhenTheBucketReturns) {
  RgwCluster& c = RgwCluster::Get();
  options_.degraded_local = true;
  options_.backlog_retry = absl::Milliseconds(200);
  testutil::TempDir dir;
  options_.backlog_file = dir.path() + "/backlog";
  const std::string small = Blob(21);
  const std::string big = BigBlob(4, 9 << 20);  // Multipart (threshold 8).
  const std::string key(64, '2');
  {
    auto a = Node(nullptr, dir.path() + "/local");
    ASSERT_TRUE(c.SignalGateway(SIGSTOP));
    absl::Status w1 = a->Write(Digest::OfData(small), small);
    absl::Status w2;
    auto w = a->OpenWrite(Digest::OfData(big));
    w2 = w.status();
    if (w.ok()) {
      w2 = (*w)->Append(big);
      if (w2.ok()) w2 = (*w)->Commit();
    }
    absl::Status w3 = a->PutEntry(key, "degraded result");
    const int64_t owed = a->Counters().backlog;
    a.reset();  // The node stops before the bucket returns.

    ASSERT_TRUE(c.SignalGateway(SIGCONT));
    ASSERT_TRUE(w1.ok()) << w1;
    ASSERT_TRUE(w2.ok()) << w2;
    ASSERT_TRUE(w3.ok()) << w3;
    EXPECT_EQ(owed, 3);
  }
  // (Requests a stopped engine timed out on may still land once it
  // resumes, so whether another node sees them now is not tested.)
  TieredBlobStoreOptions degraded = options_;
  options_ = TieredBlobStoreOptions{};  // A plain node, no backlog file.
  options_.prefix = degraded.prefix;
  auto b = Node(nullptr);
  options_ = degraded;
  // The node restarts over the same directory and uploads what it owes.
  auto a = Node(nullptr, dir.path() + "/local");
  ASSERT_TRUE(Eventually([&] { return a->Counters().backlog == 0; }));
  EXPECT_EQ(a->Counters().backlog_uploaded, 3);
  EXPECT_EQ(a->Counters().backlog_lost, 0);
  auto got_small = b->Read(Digest::OfData(small));
  ASSERT_TRUE(got_small.ok()) << got_small.status();
  EXPECT_EQ(*got_small, small);
  auto big_reader = b->OpenRead(Digest::OfData(big), 0);
  ASSERT_TRUE(big_reader.ok()) << big_reader.status();
  auto got_big = Drain(big_reader->get());
  ASSERT_TRUE(got_big.ok()) << got_big.status();
  EXPECT_TRUE(*got_big == big);
  auto entry = b->GetEntry(key);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(*entry, "degraded result");
  std::ifstream file(options_.backlog_file);
  std::string line;
  EXPECT_FALSE(std::getline(file, line)) << line;  // Emptied.
}

TEST_F(TieredTest, DegradedBacklogIsBounded) {
  RgwCluster& c = RgwCluster::Get();
  options_.degraded_local = true;
  options_.backlog_max = 1;
  auto a = Node(nullptr);
  ASSERT_TRUE(c.SignalGateway(SIGSTOP));
  absl::Status first = a->Write(Digest::OfData(Blob(31)), Blob(31));
  absl::Status second = a->Write(Digest::OfData(Blob(32)), Blob(32));
  ASSERT_TRUE(c.SignalGateway(SIGCONT));
  EXPECT_TRUE(first.ok()) << first;
  EXPECT_EQ(second.code(), absl::StatusCode::kUnavailable) << second;
}

}  // namespace
}  // namespace cairn::cas
