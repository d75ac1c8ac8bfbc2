// Prefetch bundles: index wire form and its rules, part layout, AC key.
#include "client/gocacheprog/bundle.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cas/digest.h"
#include "client/gocacheprog/manifest.h"
#include "gtest/gtest.h"

namespace cairn::client::gocacheprog {
namespace {

std::string Sha(absl::string_view data) {
  cas::Sha256Hasher h;
  h.Update(data);
  return h.FinishRaw();
}

std::string Id(int n) { return Sha(absl::StrCat("id ", n)); }

BundleEntry E(int id, absl::string_view body) {
  return BundleEntry{Id(id), Sha(body), static_cast<int64_t>(body.size()),
                     absl::FromUnixSeconds(1700000000 + id)};
}

// A plan with its parts' blob fields filled in as plain parts.
BundleIndex Plain(BundleIndex index) {
  for (BundlePart& p : index.parts) {
    p.encoding = PartEncoding::kPlain;
    p.blob_size = p.content_size;
    p.hash = Sha(absl::StrCat("part of ", p.content_size));
  }
  return index;
}

TEST(BundleTest, PlanDeduplicatesBodiesAndRoundTrips) {
  const std::vector<BundleEntry> entries = {E(1, "aaa"), E(2, "bb"),
                                            E(3, "aaa"), E(4, ""),
                                            E(5, "c")};
  BundleIndex index = Plain(PlanBundle(entries, 1 << 20, 1 << 20));
  ASSERT_EQ(index.parts.size(), 1u);
  EXPECT_EQ(index.parts[0].content_size, 6);  // aaa bb c: "aaa" once.
  ASSERT_EQ(index.records.size(), 5u);
  EXPECT_EQ(index.records[2].offset, index.records[0].offset);
  EXPECT_EQ(index.records[3].part, kNoPart);  // Empty: no part.
  const std::string blob = EncodeBundleIndex(index);
  auto decoded = DecodeBundleIndex(blob);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(EncodeBundleIndex(*decoded), blob);
  EXPECT_EQ(decoded->records[4].time, absl::FromUnixSeconds(1700000005));
  const auto bodies = BodiesByPart(*decoded);
  ASSERT_EQ(bodies[0].size(), 3u);
  EXPECT_EQ(bodies[0][0].records, (std::vector<size_t>{0, 2}));
}

TEST(BundleTest, PlanLeavesBodiesPastTheCapOut) {
  const std::vector<BundleEntry> entries = {E(1, "1234"), E(2, "5678"),
                                            E(3, "9")};
  BundleIndex index = PlanBundle(entries, 5, 1 << 20);
  EXPECT_EQ(index.records[0].part, 0u);
  EXPECT_EQ(index.records[1].part, kNoPart);  // Would make 8 > 5.
  EXPECT_EQ(index.records[2].part, 0u);       // Still fits.
  EXPECT_TRUE(DecodeBundleIndex(EncodeBundleIndex(Plain(index))).ok());
}

// Parts end where the content says: removing one entry from the middle
// leaves every part before it, and most after it, as they were.
TEST(BundleTest, PartsStayPutWhenTheListChangesALittle) {
  std::vector<BundleEntry> entries;
  std::vector<std::string> bodies;
  for (int i = 0; i < 400; ++i) {
    bodies.push_back(std::string(1000 + (i * 37) % 3000, 'a' + i % 26) +
                     std::to_string(i));
  }
  for (int i = 0; i < 400; ++i) {
    entries.push_back(E(i, bodies[i]));
  }
  const BundleIndex before = PlanBundle(entries, 1 << 30, 64 << 10);
  entries.erase(entries.begin() + 200);
  const BundleIndex after = PlanBundle(entries, 1 << 30, 64 << 10);
  ASSERT_GT(before.parts.size(), 6u);
  // Part content sizes stand in for their bodies: count equal ones.
  std::vector<int64_t> a, b;
  for (const BundlePart& p : before.parts) a.push_back(p.content_size);
  for (const BundlePart& p : after.parts) b.push_back(p.content_size);
  size_t same = 0;
  for (int64_t x : a) {
    same += std::count(b.begin(), b.end(), x) > 0 ? 1 : 0;
  }
  EXPECT_GE(same, a.size() - 2) << a.size() << " parts";
  for (const BundlePart& p : before.parts) {
    EXPECT_LE(p.content_size, 2 * (64 << 10) + 4000);
  }
}

TEST(BundleTest, KeyIsDomainSeparatedFromTheManifest) {
  EXPECT_NE(BundleKey("s").hash(), ManifestKey("s").hash());
  EXPECT_NE(BundleKey("s").hash(), BundleKey("t").hash());
  EXPECT_EQ(BundleKey("s").size_bytes(), 28 + 1);
}

// Each broken rule is refused whole.
TEST(BundleTest, RefusesBrokenIndexes) {
  const BundleIndex good = Plain(PlanBundle(
      {E(1, "aaa"), E(2, "bb"), E(3, "")}, 1 << 20, 1 << 20));
  const std::string blob = EncodeBundleIndex(good);
  ASSERT_TRUE(DecodeBundleIndex(blob).ok());
  std::vector<std::pair<std::string, std::string>> bad;
  bad.push_back({"no magic", blob.substr(1)});
  bad.push_back({"truncated", blob.substr(0, blob.size() - 1)});
  bad.push_back({"trailing", blob + "x"});
  bad.push_back({"empty", ""});
  auto mutate = [&](const char* what, auto f) {
    BundleIndex i = good;
    f(i);
    bad.push_back({what, EncodeBundleIndex(i)});
  };
  mutate("gap", [](BundleIndex& i) { i.records[1].offset += 1; });
  mutate("overlap", [](BundleIndex& i) { i.records[1].offset -= 1; });
  mutate("past the end", [](BundleIndex& i) { i.parts[0].content_size -= 1; });
  mutate("bodies short", [](BundleIndex& i) {
    i.parts[0].content_size += 1;
    i.parts[0].blob_size += 1;
  });
  mutate("plain blob size", [](BundleIndex& i) { i.parts[0].blob_size += 1; });
  mutate("no such part", [](BundleIndex& i) { i.records[0].part = 7; });
  mutate("duplicate id", [](BundleIndex& i) {
    i.records[1].action_id = i.records[0].action_id;
  });
  mutate("two bodies in one place", [](BundleIndex& i) {
    i.records[1].offset = 0;
    i.records[1].size = 3;
  });
  mutate("bodiless with an offset", [](BundleIndex& i) {
    i.records[2].offset = 1;
  });
  mutate("empty body in a part", [](BundleIndex& i) {
    i.records[2].part = 0;
    i.records[2].offset = 5;
  });
  mutate("encoding", [](BundleIndex& i) {
    i.parts[0].encoding = static_cast<PartEncoding>(2);
  });
  mutate("huge size", [](BundleIndex& i) {
    i.records[0].size = kMaxBundleBodyBytes + 1;
  });
  for (const auto& [what, b] : bad) {
    auto d = DecodeBundleIndex(b);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << what;
  }
}

}  // namespace
}  // namespace cairn::client::gocacheprog
