// rpc::WriteQuota (per-principal bytes per hour, as token buckets) and the
// google.rpc.RetryInfo its refusals carry through ToGrpcStatus/ToRpcStatus.
#include "rpc/write_quota.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "google/rpc/error_details.pb.h"
#include "rpc/grpc_status.h"
#include "rpc/metrics.h"

namespace cairn::rpc {
namespace {

// 3600 bytes per hour: one byte per second, so delays are easy to read.
class WriteQuotaTest : public ::testing::Test {
 protected:
  WriteQuotaTest()
      : quota_(WriteQuotaOptions{3600, [this] { return now_; }}, &metrics_) {}

  // Returns the retry delay `status` carries once mapped for gRPC.
  static std::optional<absl::Duration> DelayOf(const absl::Status& status) {
    return RetryDelayOf(ToGrpcStatus(status).error_details());
  }

  absl::Time now_ = absl::FromUnixSeconds(1000000);
  Registry metrics_;
  WriteQuota quota_;
};

TEST_F(WriteQuotaTest, AnHoursBurstThenRefusedWithTheRefillTime) {
  EXPECT_TRUE(quota_.Charge("token:aaaa", 3000, "Write").ok());
  absl::Status refused = quota_.Charge("token:aaaa", 1000, "Write");
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.message().find("token:aaaa"), absl::string_view::npos);
  EXPECT_NE(refused.message().find("--write_quota_per_hour"),
            absl::string_view::npos);
  // 600 bytes left, 1000 wanted: 400 s at one byte per second.
  EXPECT_EQ(DelayOf(refused), absl::Seconds(400));
  now_ += absl::Seconds(399);
  EXPECT_FALSE(quota_.Charge("token:aaaa", 1000, "Write").ok());
  now_ += absl::Seconds(1);
  EXPECT_TRUE(quota_.Charge("token:aaaa", 1000, "Write").ok());
  // Another principal has its own bucket.
  EXPECT_TRUE(quota_.Charge("token:bbbb", 3600, "Write").ok());
  EXPECT_EQ(quota_.RefusalsForTest("token:aaaa"), 2);
  EXPECT_EQ(quota_.RefusalsForTest("token:bbbb"), 0);
  EXPECT_EQ(quota_.refusals(), 2);
  EXPECT_NE(metrics_.Render().find(
                "cairn_principal_quota_refused_total{principal=\"token:aaaa\"} "
                "2"),
            std::string::npos)
      << metrics_.Render();
}

TEST_F(WriteQuotaTest, AFullBucketAdmitsOneOversizedWrite) {
  EXPECT_TRUE(quota_.Charge("cert:ci", 10000, "Write").ok());
  absl::Status refused = quota_.Charge("cert:ci", 1, "Write");
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  // The bucket is at 3600 - 10000: it needs 6401 s to hold one byte.
  EXPECT_EQ(DelayOf(refused), absl::Seconds(6401));
  now_ += absl::Hours(3);  // Refills to full again, never beyond.
  EXPECT_TRUE(quota_.Charge("cert:ci", 3600, "Write").ok());
  EXPECT_FALSE(quota_.Charge("cert:ci", 1, "Write").ok());
}

TEST_F(WriteQuotaTest, RefundsGiveBackWhatWasNotWritten) {
  ASSERT_TRUE(quota_.Charge("token:aaaa", 3600, "Write").ok());
  EXPECT_FALSE(quota_.Charge("token:aaaa", 100, "Write").ok());
  quota_.Refund("token:aaaa", 100);
  EXPECT_TRUE(quota_.Charge("token:aaaa", 100, "Write").ok());
  // A refund never lifts a bucket above the hour's allowance.
  quota_.Refund("token:aaaa", 1000000);
  EXPECT_TRUE(quota_.Charge("token:aaaa", 3600, "Write").ok());
  EXPECT_FALSE(quota_.Charge("token:aaaa", 1, "Write").ok());
}

TEST_F(WriteQuotaTest, WrittenBytesAreCountedPerPrincipalWithPeersPooled) {
  quota_.Written("token:aaaa", 10);
  quota_.Written("token:aaaa", 5);
  quota_.Written("peer:ipv4:10.0.0.1", 7);
  quota_.Written("peer:ipv4:10.0.0.2", 3);
  EXPECT_EQ(quota_.WrittenBytesForTest("token:aaaa"), 15);
  EXPECT_EQ(quota_.WrittenBytesForTest("peer"), 10);
  const std::string text = metrics_.Render();
  EXPECT_NE(
      text.find("cairn_principal_written_bytes_total{principal=\"token:aaaa\"} "
                "15"),
      std::string::npos)
      << text;
  EXPECT_NE(
      text.find("cairn_principal_written_bytes_total{principal=\"peer\"} 10"),
      std::string::npos)
      << text;
}

TEST(WriteQuotaOffTest, ZeroMeansNoQuotaButWritesAreCounted) {
  WriteQuota quota(WriteQuotaOptions{}, nullptr);
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(quota.Charge("token:aaaa", int64_t{1} << 40, "Write").ok());
  }
  quota.Written("token:aaaa", 42);
  EXPECT_EQ(quota.WrittenBytesForTest("token:aaaa"), 42);
  EXPECT_EQ(quota.refusals(), 0);
}

TEST(RetryInfoTest, RichStatusCarriesTheDelayForCallsAndBatchItems) {
  const absl::Status status = WithRetryDelay(
      absl::ResourceExhaustedError("over"), absl::Milliseconds(1500));
  const grpc::Status call = ToGrpcStatus(status);
  EXPECT_EQ(call.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(call.error_message(), "over");
  EXPECT_EQ(RetryDelayOf(call.error_details()), absl::Milliseconds(1500));
  const google::rpc::Status item = ToRpcStatus(status);
  ASSERT_EQ(item.details_size(), 1);
  EXPECT_EQ(item.details(0).type_url(), kRetryInfoTypeUrl);
  google::rpc::RetryInfo info;
  ASSERT_TRUE(info.ParseFromString(item.details(0).value()));
  EXPECT_EQ(info.retry_delay().seconds(), 1);
  EXPECT_EQ(info.retry_delay().nanos(), 500000000);
  // Statuses without a payload carry no details; OK stays OK.
  EXPECT_TRUE(ToGrpcStatus(absl::NotFoundError("x")).error_details().empty());
  EXPECT_EQ(ToRpcStatus(absl::NotFoundError("x")).details_size(), 0);
  EXPECT_TRUE(WithRetryDelay(absl::OkStatus(), absl::Seconds(1)).ok());
  EXPECT_EQ(RetryDelayOf("not a status"), std::nullopt);
}

}  // namespace
}  // namespace cairn::rpc
