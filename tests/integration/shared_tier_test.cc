// Two real cairn-server processes over one bucket of a throwaway Ceph RGW
// (tools/rgw.sh): what one node acknowledges, the other serves, through
// node kills, a stopped and a killed gateway, and corruption in the bucket.
// Label "engine"; skipped with the reason when Ceph is not installed.
#include <curl/curl.h>
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cas/s3_client.h"
#include "gtest/gtest.h"
#include "tests/testutil/rgw_cluster.h"
#include "tests/testutil/server_process.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_client.h"

namespace cairn::testutil {
namespace {

class SharedTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CAIRN_REQUIRE_RGW();
    SetCredentials(RgwCluster::Get().secret_key());
    prefix_ = absl::StrCat(
        "nodes/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name(), "/");
  }

  static void SetCredentials(const std::string& secret) {
    setenv("AWS_ACCESS_KEY_ID", RgwCluster::Get().access_key().c_str(), 1);
    setenv("AWS_SECRET_ACCESS_KEY", secret.c_str(), 1);
  }

  // A node with an empty local tier of its own.
  std::unique_ptr<ServerProcess> Node(std::vector<std::string> extra = {}) {
    dirs_.push_back(std::make_unique<testutil::TempDir>());
    RgwCluster& rgw = RgwCluster::Get();
    std::vector<std::string> flags = {"--dir=" + dirs_.back()->path(),
                                      "--max_size=1GiB",
                                      "--fsync=false",
                                      "--s3_endpoint=" + rgw.endpoint(),
                                      "--s3_bucket=" + rgw.bucket(),
                                      "--s3_prefix=" + prefix_,
                                      "--s3_path_style",
                                      "--s3_timeout=2s"};
    flags.insert(flags.end(), extra.begin(), extra.end());
    auto node = std::make_unique<ServerProcess>(flags);
    EXPECT_FALSE(node->address().empty()) << node->log();
    return node;
  }

  std::unique_ptr<cas::S3Client> Raw() {
    return *cas::NewS3Client(RgwCluster::Get().ClientOptions());
  }

  // A cold node's action-cache hit; defined below.
  std::pair<double, double> ColdHit(std::vector<std::string> a_flags,
                                    absl::string_view name);

  std::string prefix_;
  std::vector<std::unique_ptr<testutil::TempDir>> dirs_;
};

grpc::Status UpdateResult(Client& c, const cas::Digest& action,
                          const cas::Digest& output) {
  v2::UpdateActionResultRequest request;
  *request.mutable_action_digest() = Client::ToProto(action);
  auto* file = request.mutable_action_result()->add_output_files();
  file->set_path("out/file");
  *file->mutable_digest() = Client::ToProto(output);
  v2::ActionResult response;
  grpc::ClientContext context;
  c.Prepare(&context);
  return c.ac()->UpdateActionResult(&context, request, &response);
}

grpc::Status GetResult(Client& c, const cas::Digest& action,
                       v2::ActionResult* result) {
  v2::GetActionResultRequest request;
  *request.mutable_action_digest() = Client::ToProto(action);
  grpc::ClientContext context;
  c.Prepare(&context);
  return c.ac()->GetActionResult(&context, request, result);
}

TEST_F(SharedTierTest, SecondNodeServesWhatTheFirstAcknowledged) {
  auto a = Node();
  auto b = Node();
  Client ca(a->address()), cb(b->address());
  std::vector<cas::Digest> written, absent;
  std::vector<std::string> blobs;
  for (int i = 0; i < 30; ++i) {
    blobs.push_back(TestBlob(i, 100 + i * 3000));
    written.push_back(cas::Digest::OfData(blobs.back()));
    absent.push_back(cas::Digest::OfData(TestBlob(i + 1000, 10)));
  }
  for (int i = 0; i < 15; ++i) {
    ASSERT_TRUE(ca.Write(blobs[i], 4096).ok());
  }
  std::vector<int> codes;
  ASSERT_TRUE(ca.BatchUpdate({blobs.begin() + 15, blobs.end()}, &codes).ok());
  for (int code : codes) {
    ASSERT_EQ(code, 0);
  }
  const cas::Digest action = cas::Digest::OfData("action");
  const cas::Digest broken = cas::Digest::OfData("action with a lost output");
  ASSERT_TRUE(UpdateResult(ca, action, written[3]).ok());
  ASSERT_TRUE(UpdateResult(ca, broken, absent[0]).ok());

  std::vector<cas::Digest> all = written, missing;
  all.insert(all.end(), absent.begin(), absent.end());
  ASSERT_TRUE(cb.FindMissing(all, &missing).ok());
  EXPECT_EQ(missing, absent);  // Exact on a node that has none of them.
  for (int i = 0; i < 30; ++i) {
    std::string got;
    grpc::Status s = cb.Read(written[i], &got);
    ASSERT_TRUE(s.ok()) << i << " " << s.error_message();
    EXPECT_EQ(got, blobs[i]);
  }
  v2::ActionResult result;
  grpc::Status hit = GetResult(cb, action, &result);
  ASSERT_TRUE(hit.ok()) << hit.error_message();
  EXPECT_EQ(result.output_files(0).digest().hash(), written[3].hash());
  EXPECT_EQ(GetResult(cb, broken, &result).error_code(),
            grpc::StatusCode::NOT_FOUND);  // Its output is in no tier.
  std::string none;
  EXPECT_EQ(cb.Read(absent[1], &none).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

// Returns the sum of cairn_s3_requests_total{kind="KIND",...} on the
// metrics endpoint at `port` (all outcomes), or -1 when unreadable.
double BucketRequests(int port, absl::string_view kind) {
  std::string body;
  CURL* curl = curl_easy_init();
  const std::string url = absl::StrCat("http://127.0.0.1:", port, "/metrics");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION,
      +[](char* data, size_t size, size_t n, void* out) -> size_t {
        static_cast<std::string*>(out)->append(data, size * n);
        return size * n;
      });
  long http_status = 0;
  const CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK || http_status != 200) {
    return -1;
  }
  const std::string prefix =
      absl::StrCat("cairn_s3_requests_total{kind=\"", kind, "\"");
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    double v = 0;
    size_t space = line.rfind(' ');
    if (absl::StartsWith(line, prefix) && space != absl::string_view::npos &&
        absl::SimpleAtod(line.substr(space + 1), &v)) {
      sum += v;
    }
  }
  return sum;
}

// A cold node's action-cache hit with the outputs' copies in the result's
// object (as A wrote it, given `a_flags`): gets the result, its outputs and
// serves the client's reads of them; returns the bucket GETs and HEADs it
// took ({-1, -1} after a failure).
std::pair<double, double> SharedTierTest::ColdHit(
    std::vector<std::string> a_flags, absl::string_view name) {
  auto a = Node(std::move(a_flags));
  auto b = Node({"--metrics_listen=127.0.0.1:0"});
  const int port = b->LoggedPort("metrics on http://127.0.0.1:");
  EXPECT_GT(port, 0) << b->log();
  Client ca(a->address()), cb(b->address());
  v2::UpdateActionResultRequest update;
  const cas::Digest action = cas::Digest::OfData(name);
  *update.mutable_action_digest() = Client::ToProto(action);
  std::vector<std::string> outputs;
  for (int i = 0; i < 3; ++i) {
    outputs.push_back(TestBlob(40 + i, 2000 + i * 5000));
    EXPECT_TRUE(ca.Write(outputs.back()).ok());
    auto* file = update.mutable_action_result()->add_output_files();
    file->set_path(absl::StrCat("out/f", i));
    *file->mutable_digest() =
        Client::ToProto(cas::Digest::OfData(outputs.back()));
  }
  v2::ActionResult stored;
  grpc::ClientContext context;
  ca.Prepare(&context);
  EXPECT_TRUE(ca.ac()->UpdateActionResult(&context, update, &stored).ok());
  const double gets = BucketRequests(port, "get");
  const double heads = BucketRequests(port, "head");
  v2::ActionResult result;
  grpc::Status hit = GetResult(cb, action, &result);
  EXPECT_TRUE(hit.ok()) << hit.error_message();
  if (!hit.ok() || result.output_files_size() != 3) {
    return {-1, -1};
  }
  for (int i = 0; i < 3; ++i) {
    std::string got;
    EXPECT_TRUE(cb.Read(cas::Digest::OfData(outputs[i]), &got).ok());
    EXPECT_TRUE(got == outputs[i]) << i;
  }
  return {BucketRequests(port, "get") - gets,
          BucketRequests(port, "head") - heads};
}

// The result's GET brings copies of its small outputs (each checked), and
// the client's reads of them are answered from the local tier.
TEST_F(SharedTierTest, ColdHitGetsResultAndOutputsInOneRequest) {
  EXPECT_EQ(ColdHit({}, "cold hit, copies"),
            std::make_pair(1.0, 0.0));
}

// Without copies (--s3_entry_blobs_max_bytes=0): the entry's GET, then its
// small outputs fetched by the completeness check (GETs together, no HEAD;
// before fetch-on-check: 3 HEADs, then 1 + 3 GETs).
TEST_F(SharedTierTest, ColdHitWithoutCopiesFetchesOutputsOnceWithTheCheck) {
  EXPECT_EQ(ColdHit({"--s3_entry_blobs_max_bytes=0"}, "cold hit"),
            std::make_pair(4.0, 0.0));
}

TEST_F(SharedTierTest, LargeBlobThroughMultipartWithFlatMemory) {
  auto a = Node();
  auto b = Node();
  Client ca(a->address()), cb(b->address());
  const std::string big = TestBlob(7, 120 << 20);
  const cas::Digest d = cas::Digest::OfData(big);
  const int64_t rss_a_before = a->RssKb();
  ASSERT_TRUE(ca.Write(big, 1 << 20).ok());
  const int64_t rss_a = a->RssKb() - rss_a_before;
  std::string got;
  ASSERT_TRUE(cb.Read(d, &got).ok());
  EXPECT_TRUE(got == big);
  std::cout << "RSS growth of node A after a 120 MiB upload: " << rss_a / 1024
            << " MiB; node B after serving it: " << b->RssKb() / 1024
            << " MiB total\n";
  EXPECT_LT(rss_a, 80 * 1024);  // Parts of 16 MiB, not the 120 MiB blob.
}

TEST_F(SharedTierTest, NodeKilledDuringUploadsLosesNothingAcknowledged) {
  auto a = Node();
  auto b = Node();
  std::mutex mu;
  std::vector<std::string> acknowledged;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Client c(a->address());
      for (int i = 0; !stop && i < 1000; ++i) {
        std::string blob = TestBlob(t * 100000 + i, 1000 + (i % 7) * 20000);
        if (c.Write(blob, 8192).ok()) {
          std::lock_guard<std::mutex> lock(mu);
          acknowledged.push_back(std::move(blob));
        }
      }
    });
  }
  absl::SleepFor(absl::Seconds(2));  // Uploads in full swing.
  a->Kill9();
  stop = true;
  for (auto& t : threads) {
    t.join();
  }
  ASSERT_GT(acknowledged.size(), 10u);
  Client cb(b->address());
  std::vector<cas::Digest> digests, missing;
  for (const std::string& blob : acknowledged) {
    digests.push_back(cas::Digest::OfData(blob));
  }
  ASSERT_TRUE(cb.FindMissing(digests, &missing).ok());
  EXPECT_TRUE(missing.empty())
      << missing.size() << " of " << acknowledged.size() << " lost";
  for (size_t i = 0; i < acknowledged.size(); i += 7) {
    std::string got;
    ASSERT_TRUE(cb.Read(digests[i], &got).ok());
    EXPECT_TRUE(got == acknowledged[i]);
  }
  std::cout << acknowledged.size()
            << " uploads acknowledged before kill -9, all served by B\n";
}

TEST_F(SharedTierTest, BucketStoppedAndResumedMidLoad) {
  auto a = Node();
  auto b = Node();
  RgwCluster& rgw = RgwCluster::Get();
  std::mutex mu;
  std::vector<std::string> acknowledged;
  std::atomic<int> unavailable{0}, other_errors{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      Client c(a->address());
      for (int i = 0; !stop; ++i) {
        std::string blob = TestBlob(t * 100000 + i + 7, 2000 + i % 5000);
        grpc::Status s = c.Write(blob, 8192);
        std::lock_guard<std::mutex> lock(mu);
        if (s.ok()) {
          acknowledged.push_back(std::move(blob));
        } else if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
          unavailable++;
        } else {
          other_errors++;
        }
      }
    });
  }
  absl::SleepFor(absl::Seconds(1));
  ASSERT_TRUE(rgw.SignalGateway(SIGSTOP));
  absl::SleepFor(absl::Seconds(4));
  size_t during_stop;
  {
    std::lock_guard<std::mutex> lock(mu);
    during_stop = acknowledged.size();
  }
  ASSERT_TRUE(rgw.SignalGateway(SIGCONT));
  absl::SleepFor(absl::Seconds(3));  // Recovers by itself.
  stop = true;
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_GT(unavailable.load(), 0);
  EXPECT_EQ(other_errors.load(), 0);
  EXPECT_GT(acknowledged.size(), during_stop);  // Writes again after resume.
  Client cb(b->address());
  std::vector<cas::Digest> digests, missing;
  for (const std::string& blob : acknowledged) {
    digests.push_back(cas::Digest::OfData(blob));
  }
  ASSERT_TRUE(cb.FindMissing(digests, &missing).ok());
  EXPECT_TRUE(missing.empty()) << missing.size() << " acknowledged lost";
  std::cout << acknowledged.size() << " acknowledged, " << unavailable
            << " UNAVAILABLE while the gateway was stopped\n";
}

TEST_F(SharedTierTest, GatewayKilledAndRestarted) {
  auto a = Node();
  RgwCluster& rgw = RgwCluster::Get();
  Client ca(a->address());
  const std::string before = TestBlob(1, 5000), during = TestBlob(2, 5000);
  ASSERT_TRUE(ca.Write(before).ok());
  ASSERT_TRUE(rgw.SignalGateway(SIGKILL));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(ca.Write(during).error_code(), grpc::StatusCode::UNAVAILABLE);
  std::string got;
  EXPECT_TRUE(ca.Read(cas::Digest::OfData(before), &got).ok());  // Local hit.
  std::vector<cas::Digest> missing;
  EXPECT_EQ(
      ca.FindMissing({cas::Digest::OfData(during)}, &missing).error_code(),
      grpc::StatusCode::UNAVAILABLE);
  ASSERT_TRUE(rgw.RestartGateway());
  EXPECT_TRUE(ca.Write(during).ok()) << a->log();
  auto b = Node();
  Client cb(b->address());
  EXPECT_TRUE(cb.Read(cas::Digest::OfData(during), &got).ok());
  EXPECT_NE(a->log().find("shared tier (bucket"), std::string::npos);
}

TEST_F(SharedTierTest, CorruptObjectIsNeverServed) {
  auto a = Node();
  auto b = Node();
  Client ca(a->address()), cb(b->address());
  const std::string blob = TestBlob(3, 70000);
  const cas::Digest d = cas::Digest::OfData(blob);
  ASSERT_TRUE(ca.Write(blob).ok());
  std::string bad = blob;
  bad[100] ^= 0x40;
  ASSERT_TRUE(Raw()->Put(prefix_ + "cas/" + d.hash(), bad, "", false).ok());
  std::string got;
  grpc::Status s = cb.Read(d, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
  EXPECT_NE(got, bad);
  std::vector<cas::Digest> missing;
  ASSERT_TRUE(cb.FindMissing({d}, &missing).ok());
  EXPECT_EQ(missing, std::vector<cas::Digest>{d});
  ASSERT_TRUE(cb.Write(blob).ok());  // The client's re-upload repairs it.
  auto c = Node();
  Client cc(c->address());
  ASSERT_TRUE(cc.Read(d, &got).ok());
  EXPECT_TRUE(got == blob);
}

TEST_F(SharedTierTest, WrongCredentialsFailAtStartUp) {
  SetCredentials("not-the-secret");
  ServerProcess bad(
      {"--memory", "--s3_endpoint=" + RgwCluster::Get().endpoint(),
       "--s3_bucket=" + RgwCluster::Get().bucket(), "--s3_path_style"});
  SetCredentials(RgwCluster::Get().secret_key());
  EXPECT_TRUE(bad.address().empty());
  EXPECT_NE(bad.Terminate(), 0);
  EXPECT_NE(bad.log().find("access denied; check the credentials"),
            std::string::npos)
      << bad.log();
  ServerProcess no_bucket({"--memory",
                           "--s3_endpoint=" + RgwCluster::Get().endpoint(),
                           "--s3_bucket=no-such-bucket", "--s3_path_style"});
  EXPECT_TRUE(no_bucket.address().empty());
  EXPECT_NE(no_bucket.log().find("no such bucket"), std::string::npos)
      << no_bucket.log();
}

}  // namespace
}  // namespace cairn::testutil
