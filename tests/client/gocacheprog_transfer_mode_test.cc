// TransferChooser: --zstd=auto decides from the network round trip its pings
// measured and the link rate its plain fetches measured.
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
  // 1 MiB in 160 ms each, all at once: 4 x 6.6 MB/s = 26 MB/s together.
  Feed(c, TransferChooser::kProbeSamples - 1, kBig, absl::Milliseconds(160));
  EXPECT_FALSE(c.Decided());
  c.Record(TransferMode::kPlain, kBig, absl::Milliseconds(160));
  EXPECT_TRUE(c.Decided());
  // The four fetches share one window of (at least) 160 ms.
  EXPECT_LE(c.EstimatedRate(), TransferChooser::kProbeSamples * kBig / 0.16);
  EXPECT_GT(c.EstimatedRate(), kBig / 0.16);
  EXPECT_EQ(c.Next(), TransferMode::kZstd);
  // Plain fetches still in flight after the decision are not the window's.
  c.Record(TransferMode::kPlain, kBig * 1000, absl::Milliseconds(1));
  EXPECT_EQ(c.Next(), TransferMode::kZstd);
  EXPECT_EQ(c.Changes(), 0);
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
  Feed(c, TransferChooser::kProbeSamples - 1, kBig, absl::Milliseconds(400));
  c.Record(TransferMode::kPlain, kBig, absl::Milliseconds(4));
  EXPECT_TRUE(c.Decided());
  EXPECT_EQ(c.Next(), TransferMode::kPlain);
}

TEST(TransferChooserTest, FetchesInFlightTogetherMeasureTheLinkTogether) {
  TransferChooser c(ZstdPolicy::kAuto);
  // Sixteen at once, each slow (1 MiB in 160 ms: 6.6 MB/s alone, what a
  // 50 Mbit/s link would give one fetch), together 65 MB/s: a fast link
  // shared, not a slow one.
  Feed(c, 12, kBig / 2, absl::Milliseconds(160));
  EXPECT_FALSE(c.Decided());
  Feed(c, TransferChooser::kProbeSamples, kBig, absl::Milliseconds(160));
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

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kWindow = TransferChooser::kWindowBytes;
constexpr int64_t kTrial = TransferChooser::kTrialBytes;
constexpr int64_t kGap = TransferChooser::kGapGrowth;
constexpr TransferMode kPlain = TransferMode::kPlain;
constexpr TransferMode kZstd = TransferMode::kZstd;

// `bytes` moved in `mode` at `rate` bytes/s, in 1 MiB bodies.
struct Phase {
  TransferMode mode;
  int64_t bytes;
  double rate;
};

// The probe, at 15 MB/s: the machine at its busiest; decides zstd.
constexpr Phase kSlowProbe{kPlain, TransferChooser::kProbeSamples* kMiB, 15e6};

// Fetches one after another (each starts when the last ended, the first at
// `now`) through the phases; each fetch asks the chooser first and expects its
// phase's mode. Returns the end time.
absl::Time RunPhases(TransferChooser& c, std::initializer_list<Phase> phases,
                     absl::Time now = absl::FromUnixSeconds(1000000)) {
  for (const Phase& p : phases) {
    for (int64_t moved = 0; moved < p.bytes; moved += kMiB) {
      EXPECT_EQ(c.Next(), p.mode) << moved << " bytes into a phase";
      const absl::Time start = now;
      now += absl::Seconds(kMiB / p.rate);
      c.Record(p.mode, kMiB, start, now);
    }
  }
  return now;
}

TEST(TransferChooserTest, StartUpMisjudgementIsRevised) {
  // Loopback on the loaded machine: compressed bodies arrive at 30 MB/s
  // (CPU-bound), plain ones at 150 MB/s; the plain trial wins.
  TransferChooser c(ZstdPolicy::kAuto);
  RunPhases(c, {kSlowProbe,
                {kZstd, kWindow, 30e6},
                {kPlain, kTrial, 150e6},
                {kPlain, 4 * kWindow, 150e6}});
  EXPECT_EQ(c.Next(), kPlain);
  EXPECT_EQ(c.Changes(), 1);
}

TEST(TransferChooserTest, SlowLinkKeepsZstdAndTriesPlainLessOften) {
  // 50 Mbit/s: plain 6 MB/s, compressed 20 MB/s of bodies. Each lost
  // trial makes the next wait kGapGrowth times as many windows.
  TransferChooser c(ZstdPolicy::kAuto);
  RunPhases(c, {kSlowProbe,
                {kZstd, kWindow, 20e6},
                {kPlain, kTrial, 6e6},
                {kZstd, kGap * kWindow, 20e6},
                {kPlain, kTrial, 6e6},
                {kZstd, kGap * kGap * kWindow, 20e6}});
  EXPECT_EQ(c.Next(), kPlain);  // The third trial.
  EXPECT_EQ(c.Changes(), 5);
}

TEST(TransferChooserTest, FastPlainStaysPlainWithoutTrials) {
  TransferChooser c(ZstdPolicy::kAuto);
  RunPhases(c, {{kPlain, 10 * kWindow, 100e6}});
  EXPECT_EQ(c.Next(), kPlain);
  EXPECT_EQ(c.Changes(), 0);
}

TEST(TransferChooserTest, PlainThatSlowsDownTriesZstd) {
  // Fast at first (the probe and one window), then the link (or the
  // machine) slows to 10 MB/s, where compressed bodies arrive at 30 MB/s:
  // the zstd trial wins; plain's trial a window later loses.
  TransferChooser c(ZstdPolicy::kAuto);
  RunPhases(c,
            {{kPlain, TransferChooser::kProbeSamples * kMiB + kWindow, 100e6},
             {kPlain, kWindow, 10e6},
             {kZstd, kTrial + kWindow, 30e6},
             {kPlain, kTrial, 10e6}});
  EXPECT_EQ(c.Next(), kZstd);
}

TEST(TransferChooserTest, FetchesBegunBeforeAWindowDoNotCountInIt) {
  TransferChooser c(ZstdPolicy::kAuto);
  const absl::Time decided = RunPhases(c, {kSlowProbe});
  ASSERT_EQ(c.Next(), kZstd);
  // A whole window of bytes in the window's mode, from a fetch that began
  // before it: ignored, or it would close the window and start a trial.
  c.Record(kZstd, kWindow, decided - absl::Milliseconds(1),
           decided + absl::Milliseconds(1));
  EXPECT_EQ(c.Next(), kZstd);
  EXPECT_EQ(c.Changes(), 0);
}

// Makes `n` pings of `rtt` each, one after another from `now`, each claimed
// first; returns when the last ended.
absl::Time Pings(TransferChooser& c, int n, absl::Duration rtt,
                 absl::Time now = absl::FromUnixSeconds(1000000)) {
  for (int i = 0; i < n; ++i) {
    EXPECT_TRUE(c.ClaimPing(now)) << "ping " << i;
    c.RecordPing(now, now + rtt);
    now += rtt;
  }
  return now;
}

constexpr int kPings = TransferChooser::kPingSamples;
constexpr absl::Duration kFar = TransferChooser::kFarRoundTrip;

TEST(TransferChooserTest, FarNetworkDecidesZstdBeforeTheFirstFetch) {
  // 5 ms each way: compressed from the first fetch, without a plain probe.
  TransferChooser c(ZstdPolicy::kAuto);
  const absl::Time before = Pings(c, kPings - 1, absl::Milliseconds(10));
  EXPECT_FALSE(c.Decided());
  const absl::Time end = Pings(c, 1, absl::Milliseconds(10), before);
  EXPECT_TRUE(c.Decided());
  EXPECT_EQ(c.Next(), kZstd);
  EXPECT_EQ(c.RoundTrip(), absl::Milliseconds(10));
  EXPECT_EQ(c.Changes(), 0);
  // The start-up pings are over; the next is due a kPingInterval later.
  EXPECT_FALSE(c.ClaimPing(end));
  EXPECT_TRUE(c.ClaimPing(end + TransferChooser::kPingInterval));
  EXPECT_FALSE(c.ClaimPing(end + TransferChooser::kPingInterval));
}

// Plain fetches one after another from `now`: `n` bodies of `bytes`, each
// `wait` (the server's own: a bucket GET, its queue) plus the bytes at
// `rate`. Returns the end time.
absl::Time Fetches(TransferChooser& c, int n, int64_t bytes,
                   absl::Duration wait, double rate, absl::Time now) {
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(c.Next(), kPlain) << "fetch " << i << " of " << bytes;
    const absl::Time start = now;
    now += wait + absl::Seconds(bytes / rate);
    c.Record(kPlain, bytes, start, now);
  }
  return now;
}

TEST(TransferChooserTest, SlowStorageOnANearNetworkStaysPlain) {
  // A node whose local tier is cold, on loopback: each fetch waits 10 ms
  // for the bucket (and its queue); the link carries 1 GB/s. 256 KiB
  // bodies then arrive at 24 MB/s, 1 MiB ones at 95 MB/s: the link is
  // fast, the wait is the server's.
  TransferChooser c(ZstdPolicy::kAuto);
  absl::Time now = Pings(c, 1, absl::Microseconds(200));
  EXPECT_FALSE(c.ClaimPing(now));  // Near: no more pings.
  EXPECT_FALSE(c.Decided());
  now = Fetches(c, 20, 256 << 10, absl::Milliseconds(10), 1e9, now);
  EXPECT_FALSE(c.Decided());
  Fetches(c, TransferChooser::kProbeSamples, kBig, absl::Milliseconds(10), 1e9,
          now);
  EXPECT_TRUE(c.Decided());
  EXPECT_EQ(c.Next(), kPlain);
}

TEST(TransferChooserTest, NearNetworkKeepsTheProbe) {
  // A LAN's round trip: the probe decides, and a slow link still goes zstd.
  TransferChooser c(ZstdPolicy::kAuto);
  const absl::Time now = Pings(c, 1, absl::Milliseconds(1));
  EXPECT_FALSE(c.Decided());
  EXPECT_FALSE(c.ClaimPing(now + 100 * TransferChooser::kPingInterval));
  Fetches(c, TransferChooser::kProbeSamples, kBig, absl::Milliseconds(1), 6e6,
          now);
  EXPECT_TRUE(c.Decided());
  EXPECT_EQ(c.Next(), kZstd);
  // Fixed policies never ping.
  TransferChooser never(ZstdPolicy::kNever), always(ZstdPolicy::kAlways);
  EXPECT_FALSE(never.ClaimPing(now));
  EXPECT_FALSE(always.ClaimPing(now));
}

TEST(TransferChooserTest, ABusyStartUpIsRevisedByALaterPing) {
  // All start-up pings slow (a busy machine, not a far link): zstd, until
  // a later ping answers fast; then the probe decides again.
  TransferChooser c(ZstdPolicy::kAuto);
  const absl::Time end = Pings(c, kPings, 3 * kFar);
  ASSERT_EQ(c.Next(), kZstd);
  const absl::Time later = end + TransferChooser::kPingInterval;
  Pings(c, 1, 2 * kFar, later);  // Still slow: still far.
  EXPECT_EQ(c.Next(), kZstd);
  Pings(c, 1, kFar / 8, later + 2 * TransferChooser::kPingInterval);
  EXPECT_FALSE(c.Decided());
  EXPECT_EQ(c.Next(), kPlain);
  EXPECT_EQ(c.Changes(), 1);
  EXPECT_EQ(c.RoundTrip(), kFar / 8);
  EXPECT_FALSE(c.ClaimPing(later + 100 * TransferChooser::kPingInterval));
  Feed(c, TransferChooser::kProbeSamples, kBig, absl::Milliseconds(5));
  EXPECT_TRUE(c.Decided());
  EXPECT_EQ(c.Next(), kPlain);
}

TEST(TransferChooserTest, AFailedPingLeavesItToTheProbe) {
  TransferChooser c(ZstdPolicy::kAuto);
  const absl::Time now = absl::FromUnixSeconds(1000000);
  ASSERT_TRUE(c.ClaimPing(now));
  c.PingFailed();
  EXPECT_FALSE(c.ClaimPing(now + 100 * TransferChooser::kPingInterval));
  EXPECT_EQ(c.RoundTrip(), absl::ZeroDuration());
  EXPECT_EQ(c.Next(), kPlain);
  // 1 MiB in 200 ms each, four at once: 21 MB/s.
  Feed(c, TransferChooser::kProbeSamples, kBig, absl::Milliseconds(200));
  EXPECT_TRUE(c.Decided());
  EXPECT_EQ(c.Next(), kZstd);
}

TEST(TransferChooserTest, FarRemoteTriesPlainOnlyWhenCompressedRunsFast) {
  // Compressed bodies at 20 MB/s through a far remote: no plain trial, not
  // even after many windows. At 150 MB/s the link might carry plain faster:
  // a trial, which wins here (a fast link with a long delay).
  TransferChooser c(ZstdPolicy::kAuto);
  const absl::Time decided = Pings(c, kPings, 10 * kFar);
  ASSERT_EQ(c.Next(), kZstd);
  RunPhases(c,
            {{kZstd, 20 * kWindow, 20e6},
             {kZstd, kWindow, 150e6},
             {kPlain, kTrial, 300e6},
             {kPlain, 4 * kWindow, 300e6}},
            decided);
  EXPECT_EQ(c.Next(), kPlain);
  EXPECT_EQ(c.Changes(), 1);
}

}  // namespace
}  // namespace cairn::client::gocacheprog
