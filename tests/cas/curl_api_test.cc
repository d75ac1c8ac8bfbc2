// libcurl is loaded on first use (cas/curl_api.h): a binary with the S3
// client and the origin fetcher in it does not map libcurl until one of them
// is made; when the library cannot be loaded both factories answer
// FAILED_PRECONDITION naming it; once loaded, both work through the table.
// One test, so that "not mapped yet" holds however the binary is run.
#include "cas/curl_api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "asset/origin_fetcher.h"
#include "cas/digest.h"
#include "cas/memory_blob_store.h"
#include "cas/s3_client.h"
#include "httplib.h"

namespace cairn::cas {
namespace {

using ::testing::HasSubstr;

constexpr char kBody[] = "object bytes";

// Whether libcurl (libcurl.so.4, or another flavour's libcurl-*.so.4) is
// mapped; not the loader itself, cas/libcurl_api.so in a Bazel test build.
bool CurlMapped() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("/libcurl.so") != std::string::npos ||
        line.find("/libcurl-") != std::string::npos) {
      return true;
    }
  }
  return false;
}

// A bucket on loopback (path style): GET or HEAD /bucket/present answers
// kBody, anything else 404.
class FakeEndpoint {
 public:
  FakeEndpoint() {
    server_.Get("/bucket/present",
                [](const httplib::Request&, httplib::Response& res) {
                  res.set_content(kBody, "application/octet-stream");
                });
    server_.Get("/.*", [](const httplib::Request&, httplib::Response& res) {
      res.status = 404;
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    for (int i = 0; i < 5000 && !server_.is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ~FakeEndpoint() {
    server_.stop();
    thread_.join();
  }
  std::string Url() const {
    return "http://127.0.0.1:" + std::to_string(port_);
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

TEST(CurlApiTest, LoadedOnFirstUseWithAClearErrorWhenAbsent) {
  FakeEndpoint endpoint;
  S3ClientOptions s3;
  s3.endpoint = endpoint.Url();
  s3.bucket = "bucket";
  s3.path_style = true;
  s3.credentials = {"id", "secret", ""};
  std::unique_ptr<BlobStore> store = NewMemoryBlobStore({});
  asset::OriginFetcherOptions origin;
  origin.store = store.get();
  origin.allowed_prefixes = {endpoint.Url() + "/"};
  EXPECT_FALSE(CurlMapped()) << "libcurl is mapped before any use";

  SetCurlLibraryForTest("libcairn-absent-curl.so.4");
  absl::StatusOr<std::unique_ptr<S3Client>> client = NewS3Client(s3);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(client.status().message(),
              HasSubstr("cannot load libcurl (libcairn-absent-curl.so.4"));
  absl::StatusOr<std::unique_ptr<asset::OriginFetcher>> fetcher =
      asset::NewHttpOriginFetcher(origin);
  EXPECT_EQ(fetcher.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(fetcher.status().message(),
              HasSubstr("libcairn-absent-curl.so.4"));
  EXPECT_FALSE(CurlMapped());

  SetCurlLibraryForTest("");
  client = NewS3Client(s3);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE(CurlMapped());
  absl::StatusOr<std::string> got = (*client)->GetAll("present");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, kBody);
  EXPECT_EQ((*client)->Head("absent").status().code(),
            absl::StatusCode::kNotFound);
  std::vector<absl::StatusOr<S3ObjectInfo>> many =
      (*client)->HeadMany({"present", "absent"});
  ASSERT_EQ(many.size(), 2u);
  ASSERT_TRUE(many[0].ok()) << many[0].status();
  EXPECT_EQ(many[0]->size, static_cast<int64_t>(sizeof(kBody) - 1));
  EXPECT_EQ(many[1].status().code(), absl::StatusCode::kNotFound);

  fetcher = asset::NewHttpOriginFetcher(origin);
  ASSERT_TRUE(fetcher.ok()) << fetcher.status();
  absl::StatusOr<Digest> fetched =
      (*fetcher)->Fetch(endpoint.Url() + "/bucket/present", absl::Seconds(10));
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(*fetched, Digest::OfData(kBody));
}

}  // namespace
}  // namespace cairn::cas
