// Metrics through a running server: traffic moves the right counters, and
// /metrics serves them over HTTP.
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "httplib.h"
#include "rpc/metrics.h"
#include "server/log.h"
#include "server/metrics_http.h"
#include "tests/testutil/service_fixture.h"

namespace cairn::servertest {
namespace {

using ::grpc::ClientContext;

class MetricsServiceTest : public ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    server::ServerOptions options;
    options.metrics = &registry_;
    StartServer(options, /*tcp=*/true);
  }

  // Stops the server before registry_ goes: its metrics interceptors update
  // registry_'s gauges until the last call's context is destroyed (ASan found
  // a use after free when the base class stopped it after registry_ was gone).
  void TearDown() override {
    if (http_ != nullptr) http_->Stop();
    server_.reset();
  }

  // Returns the value on the line starting with `series` (-1 if absent).
  // Returns cairn_cache_requests_total of `cache` (cas, ac) and `result`
  // (hit, miss) in `text`.
  double CacheRequests(const std::string& text, const char* cache,
                       const char* result) {
    return Value(text, absl::StrCat("cairn_cache_requests_total{cache=\"",
                                    cache, "\",result=\"", result, "\"}"));
  }

  double Value(const std::string& text, const std::string& series) {
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (absl::StartsWith(line, series + " ")) {
        double v = 0;
        if (absl::SimpleAtod(line.substr(series.size() + 1), &v)) return v;
      }
    }
    return -1;
  }

  std::string Scrape() {
    if (http_ == nullptr) {
      auto started = server::StartMetricsHttpServer("127.0.0.1:0", &registry_);
      EXPECT_TRUE(started.ok()) << started.status();
      http_ = *std::move(started);
    }
    httplib::Client client("127.0.0.1", http_->port());
    auto res = client.Get("/metrics");
    EXPECT_TRUE(res) << "no answer from /metrics";
    return res ? res->body : "";
  }

  rpc::Registry registry_;
  std::unique_ptr<server::MetricsHttpServer> http_;
};

TEST_F(MetricsServiceTest, CountsCallsCodesCacheHitsAndStore) {
  cas::Digest present = Put("present blob");
  {
    ClientContext context;
    v2::FindMissingBlobsRequest request;
    *request.add_blob_digests() = ProtoDigest(present);
    *request.add_blob_digests() = ProtoDigestOf("absent one");
    *request.add_blob_digests() = ProtoDigestOf("absent two");
    v2::FindMissingBlobsResponse response;
    ASSERT_TRUE(cas_->FindMissingBlobs(&context, request, &response).ok());
    EXPECT_EQ(response.missing_blob_digests_size(), 2);
  }
  for (int i = 0; i < 3; ++i) {
    ClientContext context;
    v2::GetActionResultRequest request;
    *request.mutable_action_digest() = ProtoDigestOf(absl::StrCat("a", i));
    v2::ActionResult result;
    EXPECT_EQ(ac_->GetActionResult(&context, request, &result).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    ClientContext context;
    v2::FindMissingBlobsRequest request;
    request.add_blob_digests()->set_hash("NOT-HEX");
    v2::FindMissingBlobsResponse response;
    EXPECT_EQ(cas_->FindMissingBlobs(&context, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  std::string text = Scrape();
  EXPECT_EQ(CacheRequests(text, "cas", "hit"), 1) << text;
  EXPECT_EQ(CacheRequests(text, "cas", "miss"), 2);
  EXPECT_EQ(CacheRequests(text, "ac", "miss"), 3);
  EXPECT_EQ(Value(text,
                  "cairn_grpc_requests_total{service=\"ActionCache\","
                  "method=\"GetActionResult\",code=\"NOT_FOUND\"}"),
            3);
  EXPECT_EQ(
      Value(text,
            "cairn_grpc_requests_total{service=\"ContentAddressableStorage\","
            "method=\"FindMissingBlobs\",code=\"OK\"}"),
      1);
  EXPECT_EQ(
      Value(text,
            "cairn_grpc_requests_total{service=\"ContentAddressableStorage\","
            "method=\"FindMissingBlobs\",code=\"INVALID_ARGUMENT\"}"),
      1);
  EXPECT_EQ(Value(text,
                  "cairn_grpc_request_duration_seconds_count{service="
                  "\"ActionCache\",method=\"GetActionResult\"}"),
            3);
  EXPECT_GT(Value(text,
                  "cairn_grpc_received_bytes_total{service="
                  "\"ContentAddressableStorage\",method=\"FindMissingBlobs\"}"),
            3 * 64);
  EXPECT_EQ(Value(text, "cairn_store_cas_entries"), 1);
  EXPECT_EQ(Value(text, "cairn_store_bytes"), present.size_bytes());
  EXPECT_EQ(Value(text, "cairn_store_corruptions_total"), 0);
  EXPECT_EQ(Value(text, "cairn_io_queue_depth"), 0);
  EXPECT_TRUE(
      absl::StrContains(text, "# TYPE cairn_store_evictions_total counter"));
  EXPECT_TRUE(
      absl::StrContains(text, "# TYPE cairn_store_read_hashes_total counter"));
}

TEST_F(MetricsServiceTest, ByteStreamReadsCountAsCasHitsAndMisses) {
  cas::Digest d = Put("streamed");
  for (const auto& [digest, ok] :
       {std::pair{d, true}, std::pair{cas::Digest::OfData("nope"), false}}) {
    ClientContext context;
    google::bytestream::ReadRequest request;
    request.set_resource_name(
        absl::StrCat("blobs/", digest.hash(), "/", digest.size_bytes()));
    auto reader = bytestream_->Read(&context, request);
    google::bytestream::ReadResponse response;
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().ok(), ok);
  }
  std::string text = Scrape();
  EXPECT_EQ(CacheRequests(text, "cas", "hit"), 1) << text;
  EXPECT_EQ(CacheRequests(text, "cas", "miss"), 1);
  // The server counts a call out when gRPC reports it done on the server
  // side, which may come just after the client has seen its status: wait
  // (bounded) for the gauge to return to 0.
  const std::string in_flight =
      "cairn_grpc_in_flight{service=\"ByteStream\",method=\"Read\"}";
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (Value(text, in_flight) != 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    text = Scrape();
  }
  EXPECT_EQ(Value(text, in_flight), 0) << text;
}

// GetActionResult and UpdateActionResult record their own metrics (the
// interceptor skips them, so gRPC runs no interception hooks): every series
// must read as the interceptor would have it, each call counted once.
TEST_F(MetricsServiceTest, ActionCacheCallsCountAsIfIntercepted) {
  cas::Digest output = Put("output bytes");
  v2::UpdateActionResultRequest update;
  *update.mutable_action_digest() = ProtoDigestOf("action");
  v2::OutputFile* file = update.mutable_action_result()->add_output_files();
  file->set_path("out");
  *file->mutable_digest() = ProtoDigest(output);
  v2::ActionResult stored;
  {
    ClientContext context;
    ASSERT_TRUE(ac_->UpdateActionResult(&context, update, &stored).ok());
  }
  v2::UpdateActionResultRequest bad;
  bad.mutable_action_digest()->set_hash("NOT-HEX");
  bad.mutable_action_result()->set_exit_code(1);
  {
    ClientContext context;
    v2::ActionResult unused;
    EXPECT_EQ(ac_->UpdateActionResult(&context, bad, &unused).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  v2::GetActionResultRequest get;
  *get.mutable_action_digest() = update.action_digest();
  v2::ActionResult got;
  {
    ClientContext context;
    ASSERT_TRUE(ac_->GetActionResult(&context, get, &got).ok());
  }
  auto series = [](const char* metric, const char* method,
                   const char* code = nullptr) {
    return absl::StrCat(metric, "{service=\"ActionCache\",method=\"", method,
                        "\"", code == nullptr ? "" : ",code=\"",
                        code == nullptr ? "" : code,
                        code == nullptr ? "" : "\"", "}");
  };
  const std::string text = Scrape();
  EXPECT_EQ(Value(text, series("cairn_grpc_requests_total",
                               "UpdateActionResult", "OK")),
            1)
      << text;
  EXPECT_EQ(Value(text, series("cairn_grpc_requests_total",
                               "UpdateActionResult", "INVALID_ARGUMENT")),
            1);
  EXPECT_EQ(Value(text, series("cairn_grpc_requests_total", "GetActionResult",
                               "OK")),
            1);
  EXPECT_EQ(CacheRequests(text, "ac", "hit"), 1);
  EXPECT_EQ(CacheRequests(text, "ac", "miss"), 0);
  EXPECT_EQ(Value(text, series("cairn_grpc_request_duration_seconds_count",
                               "UpdateActionResult")),
            2);
  EXPECT_EQ(Value(text, series("cairn_grpc_received_bytes_total",
                               "UpdateActionResult")),
            update.ByteSizeLong() + bad.ByteSizeLong());
  EXPECT_EQ(
      Value(text, series("cairn_grpc_sent_bytes_total", "UpdateActionResult")),
      stored.ByteSizeLong());
  EXPECT_EQ(Value(text, series("cairn_grpc_received_bytes_total",
                               "GetActionResult")),
            get.ByteSizeLong());
  EXPECT_EQ(
      Value(text, series("cairn_grpc_sent_bytes_total", "GetActionResult")),
      got.ByteSizeLong());
  EXPECT_EQ(Value(text, series("cairn_grpc_in_flight", "GetActionResult")), 0);
  EXPECT_EQ(Value(text, series("cairn_grpc_in_flight", "UpdateActionResult")),
            0);
}

// With the access log on, the interceptor records and logs every call,
// including the methods that otherwise record their own metrics.
TEST_F(MetricsServiceTest, AccessLogNamesActionCacheCalls) {
  const std::string path =
      ::testing::TempDir() + "/cairn_metrics_service_access.log";
  std::remove(path.c_str());
  ASSERT_TRUE(server::InitLogging("info", path).ok());
  rpc::Registry registry;
  server::ServerOptions options;
  options.metrics = &registry;
  StartServer(options);
  {
    ClientContext context;
    v2::GetActionResultRequest request;
    *request.mutable_action_digest() = ProtoDigestOf("never stored");
    v2::ActionResult result;
    EXPECT_EQ(ac_->GetActionResult(&context, request, &result).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  server_.reset();  // Before `registry` goes.
  ASSERT_TRUE(server::InitLogging("info", "").ok());
  std::ifstream in(path);
  std::stringstream log;
  log << in.rdbuf();
  EXPECT_TRUE(absl::StrContains(
      log.str(), "method=ActionCache/GetActionResult code=NOT_FOUND"))
      << log.str();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace cairn::servertest
