// TransferChooser: the --zstd=auto probe decides from the link rate its
// plain fetches measured.
#include "client/gocacheprog/transfer_mode.h"
#include "gtest/gtest.h"

namespace cairn::client::gocacheprog {
namespace {

constexpr int64_t kBig = TransferChooser::kMinSampleBytes;

// Records `n` plain fetches of `bytes` taking `each`.
void Feed(TransferChooser& c, int n, int64_t bytes, absl::Duration each) {
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(c.Next(), TransferMode::kPlain);
    c.Record(TransferMode::kPlain, bytes, each);
  }
}

TEST(TransferChooserTest, ParsesPolicies) {
  EXPECT_EQ(*ParseZstdPolicy("auto"), ZstdPolicy::kAuto);
  EXPECT_EQ(*ParseZstdPolicy("AUTO"), ZstdPolicy::kAuto);
  for (const char* t : {"always", "true", "1"}) {
    EXPECT_EQ(*ParseZstdPolicy(t), ZstdPolicy::kAlways) << t;
  }
  for (const char* t : {"never", "false", "0"}) {
    EXPECT_EQ(*ParseZstdPolicy(t), ZstdPolicy::kNever) << t;
  }
  for (const char* t : {"", "yes", "zstd", "auto "}) {
    EXPECT_EQ(ParseZstdPolicy(t).status().code(),
              absl::StatusCode::kInvalidArgument)
        << t;
  }
}

TEST(TransferChooserTest, FixedPoliciesNeverProbe) {
  TransferChooser always(ZstdPolicy::kAlways), never(ZstdPolicy::kNever);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(always.Next(), TransferMode::kZstd);
    EXPECT_EQ(never.Next(), TransferMode::kPlain);
    never.Record(TransferMode::kPlain, kBig, absl::Seconds(10));
  }
  EXPECT_TRUE(always.Decided());
  EXPECT_EQ(never.Next(),
            TransferMode::kPlain);  // A slow link changes nothing.
}

TEST(TransferChooserTest, SlowLinkSwitchesToZstd) {
  TransferChooser c(ZstdPolicy::kAuto);
  // 128 KiB in 20 ms each, all at once: 4 x 6.6 MB/s = 26 MB/s together.
  Feed(c, TransferChooser::kProbeSamples - 1, kBig, absl::Milliseconds(20));
  EXPECT_FALSE(c.Decided());
  c.Record(TransferMode::kPlain, kBig, absl::Milliseconds(20));
  EXPECT_TRUE(c.Decided());
  // The four fetches share one window of (at least) 20 ms.
  EXPECT_LE(c.EstimatedRate(), TransferChooser::kProbeSamples * kBig / 0.02);
  EXPECT_GT(c.EstimatedRate(), kBig / 0.02);
  EXPECT_EQ(c.Next(), TransferMode::kZstd);
  // Decided once: later samples change nothing.
  c.Record(TransferMode::kPlain, kBig * 100, absl::Milliseconds(1));
  EXPECT_EQ(c.Next(), TransferMode::kZstd);
}

TEST(TransferChooserTest, FastLinkStaysPlain) {
  TransferChooser c(ZstdPolicy::kAuto);
  // 1 MiB in 5 ms: 210 MB/s.
  Feed(c, TransferChooser::kProbeSamples, 1 << 20, absl::Milliseconds(5));
  EXPECT_TRUE(c.Decided());
  EXPECT_EQ(c.Next(), TransferMode::kPlain);
}

TEST(TransferChooserTest, BestSampleIsTheEstimate) {
  TransferChooser c(ZstdPolicy::kAuto);
  // Contended fetches are slow; one that ran alone shows the link: fast.
  Feed(c, TransferChooser::kProbeSamples - 1, kBig, absl::Milliseconds(50));
  c.Record(TransferMode::kPlain, 1 << 20, absl::Milliseconds(4));
  EXPECT_TRUE(c.Decided());
  EXPECT_EQ(c.Next(), TransferMode::kPlain);
}

TEST(TransferChooserTest, FetchesInFlightTogetherMeasureTheLinkTogether) {
  TransferChooser c(ZstdPolicy::kAuto);
  // Sixteen at once, each slow (128 KiB in 20 ms: 6.6 MB/s alone, what a
  // 50 Mbit/s link would give one fetch), together 105 MB/s: a fast link
  // shared, not a slow one.
  Feed(c, 12, kBig / 2, absl::Milliseconds(20));
  EXPECT_FALSE(c.Decided());
  Feed(c, TransferChooser::kProbeSamples, kBig, absl::Milliseconds(20));
  EXPECT_TRUE(c.Decided());
  EXPECT_GT(c.EstimatedRate(), TransferChooser::kZstdBelowBytesPerSecond);
  EXPECT_EQ(c.Next(), TransferMode::kPlain);
}

TEST(TransferChooserTest, SmallBodiesAndMissesDoNotCount) {
  TransferChooser c(ZstdPolicy::kAuto);
  // Slow small fetches measure the round trip, not the link.
  Feed(c, 100, kBig - 1, absl::Milliseconds(100));
  Feed(c, 100, 0, absl::Milliseconds(100));
  EXPECT_FALSE(c.Decided());
  EXPECT_EQ(c.EstimatedRate(), 0);
  // Fetches made compressed are not link samples either.
  for (int i = 0; i < 10; ++i) {
    c.Record(TransferMode::kZstd, kBig, absl::Milliseconds(100));
  }
  EXPECT_FALSE(c.Decided());
  EXPECT_EQ(c.Next(), TransferMode::kPlain);
}

}  // namespace
}  // namespace cairn::client::gocacheprog
