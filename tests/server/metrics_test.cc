#include "rpc/metrics.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "server/metrics_http.h"

namespace cairn::server {
namespace {

TEST(MetricsTest, RendersCountersWithLabelsAndHelp) {
  rpc::Registry r;
  rpc::Family<rpc::Counter>* c = r.NewCounter("x_total", "Things.", {"kind"});
  c->WithLabels({"a"})->Increment(3);
  c->WithLabels({"b\"q"})->Increment();
  std::string text = r.Render();
  EXPECT_TRUE(absl::StrContains(text, "# HELP x_total Things.\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "# TYPE x_total counter\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "x_total{kind=\"a\"} 3\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "x_total{kind=\"b\\\"q\"} 1\n")) << text;
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  rpc::Registry r;
  rpc::Histogram* h = r.NewHistogram("lat_seconds", "Latency.", {"m"}, {0.1, 1})
                          ->WithLabels({"get"});
  h->Observe(0.05);
  h->Observe(0.5);
  h->Observe(0.5);
  h->Observe(5);
  std::string text = r.Render();
  EXPECT_TRUE(
      absl::StrContains(text, "lat_seconds_bucket{m=\"get\",le=\"0.1\"} 1\n"))
      << text;
  EXPECT_TRUE(
      absl::StrContains(text, "lat_seconds_bucket{m=\"get\",le=\"1\"} 3\n"))
      << text;
  EXPECT_TRUE(
      absl::StrContains(text, "lat_seconds_bucket{m=\"get\",le=\"+Inf\"} 4\n"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "lat_seconds_count{m=\"get\"} 4\n"))
      << text;
  EXPECT_NEAR(h->sum(), 6.05, 1e-6);
}

TEST(MetricsTest, GaugesAndCallbackGauges) {
  rpc::Registry r;
  rpc::Gauge* g = r.NewGauge("q", "Queue.")->WithLabels({});
  g->Add(5);
  g->Add(-2);
  r.NewCallbackGauge("store_bytes", "Bytes.", [] { return 1234.0; });
  std::string text = r.Render();
  EXPECT_TRUE(absl::StrContains(text, "\nq 3\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "\nstore_bytes 1234\n")) << text;
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  rpc::Registry r;
  rpc::Family<rpc::Counter>* f = r.NewCounter("n_total", "N.", {"t"});
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([f] {
      for (int i = 0; i < 10000; ++i) f->WithLabels({"x"})->Increment();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(f->WithLabels({"x"})->value(), 80000);
}

TEST(MetricsHttpTest, ServesMetricsAndHealth) {
  rpc::Registry r;
  r.NewCounter("served_total", "S.")->WithLabels({})->Increment(7);
  auto server = StartMetricsHttpServer("127.0.0.1:0", &r);
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(absl::StrContains(res->body, "served_total 7\n")) << res->body;
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  (*server)->Stop();
}

TEST(MetricsHttpTest, RejectsBadAddress) {
  rpc::Registry r;
  EXPECT_EQ(StartMetricsHttpServer("nonsense", &r).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StartMetricsHttpServer("127.0.0.1:99999", &r).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace cairn::server
