// The HTTP cache over a memory store, driven by cpp-httplib's client on
// loopback: the bazel-remote /cas/ and /ac/ layout, /kv keys, chunked and
// spooled uploads, auth (bearer, basic, read-only), limits and metrics; and
// over raw sockets: requests it does not serve close their connection.
#include "http/http_cache.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cas/digest.h"
#include "cas/memory_blob_store.h"
#include "http/http_path.h"
#include "httplib.h"
#include "rpc/write_quota.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_certs.h"

namespace cairn::http {
namespace {

using ::testing::HasSubstr;

constexpr char kRw[] = "rw-token-0123456789abcdef";
constexpr char kRo[] = "ro-token-0123456789abcdef";
constexpr char kOctets[] = "application/octet-stream";

std::string Bytes(size_t n, uint32_t seed) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    seed = seed * 1103515245u + 12345u;
    out[i] = static_cast<char>(seed >> 16);
  }
  return out;
}

// One raw connection to the cache, for requests httplib's client cannot
// send (WebDAV methods, a body sent later) and for what follows on it.
class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr),
                                       sizeof(addr)) == 0;
  }
  ~RawConnection() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  bool connected() const { return connected_; }

  // Sends `data`; false once the server has closed the connection.
  bool Send(absl::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Returns one response (head and Content-Length body), or what arrived
  // before the connection ended or 10 s passed.
  std::string ReadResponse() {
    while (true) {
      const size_t head = buffer_.find("\r\n\r\n");
      if (head != std::string::npos) {
        size_t length = 0;
        const size_t at = buffer_.find("Content-Length: ");
        if (at != std::string::npos && at < head) {
          length = std::stoul(buffer_.substr(at + 16));
        }
        if (buffer_.size() >= head + 4 + length) {
          std::string response = buffer_.substr(0, head + 4 + length);
          buffer_.erase(0, head + 4 + length);
          return response;
        }
      }
      if (Fill() <= 0) {
        return std::exchange(buffer_, "");
      }
    }
  }

  // Returns true when the server ends the connection without sending more;
  // false (with what it sent in `*more`) otherwise.
  bool ClosedByServer(std::string* more) {
    while (true) {
      const int n = Fill();
      if (n <= 0) {
        *more = buffer_;
        return n == 0 && buffer_.empty();
      }
    }
  }

 private:
  // Reads what is there within 10 s: 1 (got bytes), 0 (the connection
  // ended: EOF or reset), -1 (nothing came).
  int Fill() {
    pollfd p = {fd_, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) {
      return -1;
    }
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) {
      return 0;
    }
    buffer_.append(buf, static_cast<size_t>(n));
    return 1;
  }

  const int fd_;
  bool connected_ = false;
  std::string buffer_;
};

class HttpCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = cas::NewMemoryBlobStore({int64_t{1} << 30});
    Start(HttpCacheOptions{});
  }

  void Start(HttpCacheOptions options) {
    cache_.reset();
    options.listen = "127.0.0.1:0";
    options.store = store_.get();
    options.spool_dir = dir_.path();
    options.threads = 4;
    auto started = StartHttpCache(options);
    ASSERT_TRUE(started.ok()) << started.status();
    cache_ = *std::move(started);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", cache_->port());
  }

  std::unique_ptr<rpc::Authorizer> MakeAuthorizer(rpc::Access anon) {
    const std::string file = dir_.path() + "/tokens";
    std::ofstream(file) << "rw " << kRw << "\nro " << kRo << "\n";
    rpc::AuthOptions auth;
    auth.tokens_file = file;
    auth.anonymous = anon;
    return *rpc::NewAuthorizer(auth);
  }

  int Put(const std::string& path, const std::string& body,
          const httplib::Headers& headers = {}) {
    auto res =
        client_->Put(path.c_str(), headers, body, "application/octet-stream");
    return res ? res->status : -1;
  }

  // PUT with Transfer-Encoding: chunked, in 100 KiB pieces.
  int PutChunked(const std::string& path, const std::string& body) {
    auto res = client_->Put(
        path.c_str(),
        [&body](size_t offset, httplib::DataSink& sink) {
          if (offset >= body.size()) {
            sink.done();
            return true;
          }
          const size_t n = std::min<size_t>(100 << 10, body.size() - offset);
          return sink.write(body.data() + offset, n);
        },
        "application/octet-stream");
    return res ? res->status : -1;
  }

  // Returns the status; fills `body`.
  int Get(const std::string& path, std::string* body = nullptr,
          const httplib::Headers& headers = {}) {
    auto res = client_->Get(path.c_str(), headers);
    if (!res) {
      return -1;
    }
    if (body != nullptr) {
      *body = res->body;
    }
    return res->status;
  }

  testutil::TempDir dir_;
  std::unique_ptr<cas::BlobStore> store_;
  std::unique_ptr<HttpCache> cache_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpCacheTest, CasRoundTripIsVerified) {
  const std::string data = "bazel output";
  const std::string hash = cas::Digest::OfData(data).hash();
  EXPECT_EQ(Get("/cas/" + hash), 404);
  EXPECT_EQ(Put("/cas/" + hash, data), 200);
  std::string body;
  EXPECT_EQ(Get("/cas/" + hash, &body), 200);
  EXPECT_EQ(body, data);
  auto head = client_->Head(("/cas/" + hash).c_str());
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->get_header_value("Content-Length"), "12");
  EXPECT_TRUE(store_->Contains(cas::Digest::OfData(data)));

  const std::string other = cas::Digest::OfData("something else").hash();
  EXPECT_EQ(Put("/cas/" + other, data), 400);
  EXPECT_EQ(Get("/cas/" + other), 404);
  EXPECT_EQ(Put("/cas/ABC", data), 400);
  EXPECT_EQ(Get("/cas/" + cas::Digest::Empty().hash(), &body), 200);
  EXPECT_EQ(body, "");
}

TEST_F(HttpCacheTest, InstancePrefixAndUnknownRoutes) {
  const std::string data = "per instance";
  const std::string hash = cas::Digest::OfData(data).hash();
  EXPECT_EQ(Put("/team/a/cas/" + hash, data), 200);
  EXPECT_EQ(Get("/team/a/cas/" + hash), 200);
  EXPECT_EQ(Get("/nothing/here"), 404);
  EXPECT_EQ(Get("/../cas/" + hash), 400);
  EXPECT_EQ(Get("/kv/ns"), 400);
  EXPECT_EQ(Get("/kv//key"), 400);
}

TEST_F(HttpCacheTest, LargeAndChunkedBodiesStream) {
  const std::string big = Bytes(5 << 20, 7);  // Over the in-memory limit.
  const std::string hash = cas::Digest::OfData(big).hash();
  EXPECT_EQ(PutChunked("/cas/" + hash, big), 200);
  std::string body;
  EXPECT_EQ(Get("/cas/" + hash, &body), 200);
  EXPECT_TRUE(body == big);
  EXPECT_EQ(PutChunked("/cas/" + cas::Digest::OfData("x").hash(), big), 400);

  EXPECT_EQ(Put("/kv/gradle/big", big), 200);  // Spooled (5 MiB).
  EXPECT_EQ(Get("/kv/gradle/big", &body), 200);
  EXPECT_TRUE(body == big);
  EXPECT_EQ(PutChunked("/kv/gradle/chunked", big.substr(0, 300000)), 200);
  EXPECT_EQ(Get("/kv/gradle/chunked", &body), 200);
  EXPECT_TRUE(body == big.substr(0, 300000));
}

TEST_F(HttpCacheTest, RangeRequestsAndEvictedValues) {
  const std::string big = Bytes(300000, 3);
  EXPECT_EQ(Put("/kv/ns/ranged", big), 200);
  std::string body;
  EXPECT_EQ(Get("/kv/ns/ranged", &body, {{"Range", "bytes=100000-100009"}}),
            206);
  EXPECT_EQ(body, big.substr(100000, 10));

  store_ = cas::NewMemoryBlobStore({200000});  // Small: evicts old blobs.
  Start(HttpCacheOptions{});
  EXPECT_EQ(Put("/kv/ns/first", std::string(120000, 'a')), 200);
  EXPECT_EQ(Get("/kv/ns/first"), 200);
  EXPECT_EQ(Put("/kv/ns/second", std::string(120000, 'b')), 200);
  EXPECT_EQ(Get("/kv/ns/first"), 404);  // Its body was evicted: a miss.
  EXPECT_EQ(Get("/kv/ns/second", &body), 200);
  EXPECT_EQ(body, std::string(120000, 'b'));
}

TEST_F(HttpCacheTest, KvKeysAreOpaque) {
  // Keys that would escape a directory if used as paths are only names.
  const std::string keys[] = {"/kv/sccache/a/b/c/0123abcd",
                              "/kv/sccache/.sccache_check",
                              "/kv/ns/..%2F..%2Fetc%2Fpasswd",
                              "/kv/gradle/0123456789abcdef0123456789abcdef"};
  int i = 0;
  for (const std::string& key : keys) {
    const std::string value = absl::StrCat("value ", i++);
    EXPECT_EQ(Put(key, value), 200) << key;
    std::string body;
    EXPECT_EQ(Get(key, &body), 200) << key;
    EXPECT_EQ(body, value);
  }
  EXPECT_EQ(Get("/kv/sccache/a/b/c/other"), 404);
  EXPECT_EQ(Get("/kv/other/.sccache_check"), 404);  // Namespaces differ.
  EXPECT_EQ(Put("/kv/ns/" + std::string(kMaxKvKeyBytes, 'k'), "v"), 400);
  EXPECT_EQ(Put("/kv/ns/k", "first"), 200);  // A PUT replaces the value.
  EXPECT_EQ(Put("/kv/ns/k", "second"), 200);
  std::string body;
  EXPECT_EQ(Get("/kv/ns/k", &body), 200);
  EXPECT_EQ(body, "second");
}

TEST_F(HttpCacheTest, ActionResultsAreValidatedAndComplete) {
  const std::string action = cas::Digest::OfData("action").hash();
  EXPECT_EQ(Put("/ac/" + action, "not a proto \xff\xff"), 400);

  const std::string out = "compiled object";
  actioncache::ActionResult result;
  auto* file = result.add_output_files();
  file->set_path("bazel-out/a.o");
  file->mutable_digest()->set_hash(cas::Digest::OfData(out).hash());
  file->mutable_digest()->set_size_bytes(static_cast<int64_t>(out.size()));
  result.set_exit_code(0);

  actioncache::ActionResult bad = result;
  bad.mutable_output_files(0)->set_path("/abs/a.o");
  EXPECT_EQ(Put("/ac/" + action, bad.SerializeAsString()), 400);

  EXPECT_EQ(Put("/ac/" + action, result.SerializeAsString()), 200);
  EXPECT_EQ(Get("/ac/" + action), 404);  // Its output is not in the CAS.
  EXPECT_EQ(Put("/cas/" + file->digest().hash(), out), 200);
  std::string body;
  ASSERT_EQ(Get("/ac/" + action, &body), 200);
  actioncache::ActionResult got;
  ASSERT_TRUE(got.ParseFromString(body));
  EXPECT_EQ(got.output_files(0).path(), "bazel-out/a.o");
  EXPECT_EQ(Get("/other/ac/" + action), 404);  // Per instance.
}

TEST_F(HttpCacheTest, AuthBearerBasicAndReadOnly) {
  auto auth = MakeAuthorizer(rpc::Access::kNone);
  HttpCacheOptions options;
  options.authorizer = auth.get();
  Start(options);
  const httplib::Headers rw = {{"Authorization", absl::StrCat("Bearer ", kRw)}};
  const httplib::Headers ro = {{"Authorization", absl::StrCat("Bearer ", kRo)}};
  const httplib::Headers basic = {
      {"Authorization",
       "Basic " + absl::Base64Escape(absl::StrCat("gradle:", kRw))}};
  const httplib::Headers wrong = {
      {"Authorization", "Bearer wrong-token-0123456789abcdef"}};
  EXPECT_EQ(Get("/kv/ns/k"), 401);
  EXPECT_EQ(Put("/kv/ns/k", "v"), 401);
  EXPECT_EQ(Put("/kv/ns/k", "v", wrong), 401);
  EXPECT_EQ(Put("/kv/ns/k", "v", ro), 403);
  EXPECT_EQ(Put("/kv/ns/k", "v", basic), 200);
  EXPECT_EQ(Get("/kv/ns/k", nullptr, ro), 200);
  EXPECT_EQ(Get("/kv/ns/k", nullptr, rw), 200);

  HttpCacheOptions read_only;
  read_only.read_only = true;
  Start(read_only);
  EXPECT_EQ(Put("/kv/ns/k2", "v"), 403);
  EXPECT_EQ(Get("/kv/ns/k"), 200);
}

TEST_F(HttpCacheTest, SizeLimitAndMetrics) {
  rpc::Registry registry;
  HttpCacheOptions options;
  options.max_blob_size_bytes = 1000;
  options.metrics = &registry;
  Start(options);
  EXPECT_EQ(Put("/kv/ns/big", std::string(2000, 'x')), 413);
  EXPECT_EQ(PutChunked("/kv/ns/big", std::string(2000, 'x')), 413);
  EXPECT_EQ(Get("/kv/ns/big"), 404);
  EXPECT_EQ(Put("/kv/ns/small", "ok"), 200);
  EXPECT_EQ(Get("/kv/ns/small"), 200);
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("cairn_http_requests_total{route=\"kv\","
                              "method=\"PUT\",code=\"413\"} 2"));
  EXPECT_THAT(text, HasSubstr("cairn_http_requests_total{route=\"kv\","
                              "method=\"GET\",code=\"200\"} 1"));
  EXPECT_THAT(text, HasSubstr("cairn_http_sent_bytes_total{route=\"kv\"} 2"));
}

TEST_F(HttpCacheTest, WriteQuotaChargesPutsPerPrincipal) {
  auto auth = MakeAuthorizer(rpc::Access::kWrite);
  const absl::Time now = absl::Now();  // Frozen: no refill during the test.
  rpc::WriteQuota quota(rpc::WriteQuotaOptions{.bytes_per_hour = 1000,
                                               .clock = [now] { return now; }},
                        nullptr);
  HttpCacheOptions options;
  options.authorizer = auth.get();
  options.write_quota = &quota;
  Start(options);
  const httplib::Headers rw = {{"Authorization", absl::StrCat("Bearer ", kRw)}};
  rpc::CallCredentials credentials;
  credentials.authorization = absl::StrCat("Bearer ", kRw);
  const std::string token =
      rpc::WriteQuota::LabelOf(rpc::PrincipalOf(credentials, "", true));
  EXPECT_EQ(Put("/kv/ns/a", Bytes(600, 1), rw), 200);
  // A body that does not match its hash is refused and refunded.
  const std::string blob = Bytes(300, 2);
  EXPECT_EQ(Put("/cas/" + cas::Digest::OfData(Bytes(300, 3)).hash(), blob, rw),
            400);
  EXPECT_EQ(Put("/cas/" + cas::Digest::OfData(blob).hash(), blob, rw), 200);
  EXPECT_EQ(quota.WrittenBytesForTest(token), 900);
  // 100 bytes left: 200 more need 100 bytes of refill, 360 s at 1000/hour;
  // refused before the body is read (Content-Length) or after (chunked).
  auto refused = client_->Put("/kv/ns/b", rw, Bytes(200, 4), kOctets);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429);
  EXPECT_EQ(refused->get_header_value("Retry-After"), "360");
  EXPECT_THAT(refused->body, HasSubstr("--write_quota_per_hour"));
  client_ = std::make_unique<httplib::Client>("127.0.0.1", cache_->port());
  client_->set_default_headers(rw);
  EXPECT_EQ(PutChunked("/kv/ns/c", Bytes(200, 5)), 429);
  client_->set_default_headers({});
  EXPECT_EQ(Get("/kv/ns/b"), 404);
  EXPECT_EQ(Get("/kv/ns/c"), 404);
  EXPECT_EQ(quota.RefusalsForTest(token), 2);
  // Anonymous clients have their own bucket.
  EXPECT_EQ(Put("/kv/ns/d", Bytes(600, 6)), 200);
  EXPECT_EQ(quota.WrittenBytesForTest("peer"), 600);
  EXPECT_EQ(quota.WrittenBytesForTest(token), 900);
}

TEST_F(HttpCacheTest, UnservedMethodsCloseTheirConnection) {
  ASSERT_EQ(Put("/kv/ns/k", "value"), 200);
  // What a client sends next on the same connection; httplib 0.11 used to
  // take it (the unread body of the request before) for a new request.
  const std::string smuggled = "GET /kv/ns/k HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string length = absl::StrCat(smuggled.size());
  struct Case {
    std::string head;  // Request line and headers announcing `smuggled`.
    std::string status;
  };
  const Case cases[] = {
      // WebDAV methods that httplib cannot parse (sccache without
      // SCCACHE_WEBDAV_DISABLE_CREATE_DIR sends these before each PUT).
      {"PROPFIND /kv/ns/ HTTP/1.1\r\nDepth: 0\r\n", "405"},
      {"MKCOL /kv/ns/a/ HTTP/1.1\r\n", "405"},
      // Methods httplib knows but the cache does not serve: before, httplib
      // read their whole body into memory (no size limit) to find no route.
      {"POST /kv/ns/k HTTP/1.1\r\n", "405"},
      {"DELETE /kv/ns/k HTTP/1.1\r\n", "405"},
      {"GET /kv/ns/k HTTP/1.1\r\n", "400"},  // A GET with a body.
      // A PUT refused before its body is read.
      {"PUT /kv/ns HTTP/1.1\r\n", "400"},
  };
  for (const Case& c : cases) {
    RawConnection conn(cache_->port());
    ASSERT_TRUE(conn.connected());
    ASSERT_TRUE(conn.Send(absl::StrCat(
        c.head, "Host: x\r\nContent-Length: ", length, "\r\n\r\n")));
    const std::string response = conn.ReadResponse();
    EXPECT_THAT(response, ::testing::StartsWith("HTTP/1.1 " + c.status))
        << c.head;
    EXPECT_THAT(response, HasSubstr("Connection: close")) << c.head;
    if (c.status == "405") {
      EXPECT_THAT(response, HasSubstr("Allow: GET, HEAD, PUT")) << c.head;
    }
    if (absl::StartsWith(c.head, "PROPFIND")) {
      EXPECT_THAT(response, HasSubstr("SCCACHE_WEBDAV_DISABLE_CREATE_DIR"));
    }
    conn.Send(smuggled);  // May fail: the server may have closed already.
    std::string more;
    EXPECT_TRUE(conn.ClosedByServer(&more)) << c.head << " then: " << more;
  }
  // A POST announcing 1 GiB is answered at once, its body never read.
  RawConnection post(cache_->port());
  ASSERT_TRUE(post.connected());
  ASSERT_TRUE(post.Send(
      "POST /kv/ns/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n"
      "\r\n"));
  EXPECT_THAT(post.ReadResponse(), ::testing::StartsWith("HTTP/1.1 405"));
  // The cache still serves the usual requests.
  std::string body;
  EXPECT_EQ(Get("/kv/ns/k", &body), 200);
  EXPECT_EQ(body, "value");
}

TEST_F(HttpCacheTest, ServesHttpsAndChecksClientCertificates) {
  if (!testutil::TestCerts::Available()) {
    GTEST_SKIP() << "no openssl command to make test certificates";
  }
  testutil::TestCerts certs(dir_.path());
  ASSERT_TRUE(certs.Make());
  HttpCacheOptions options;
  options.tls_cert_file = certs.Path("server.pem");
  options.tls_key_file = certs.Path("server.key");
  Start(options);
  auto client = [&](const std::string& name) {
    auto c =
        name.empty()
            ? std::make_unique<httplib::SSLClient>("127.0.0.1", cache_->port())
            : std::make_unique<httplib::SSLClient>("127.0.0.1", cache_->port(),
                                                   certs.Path(name + ".pem"),
                                                   certs.Path(name + ".key"));
    c->set_ca_cert_path(certs.Path("ca.pem").c_str());
    c->enable_server_certificate_verification(true);
    return c;
  };
  auto put = client("")->Put("/kv/ns/k", "over tls", kOctets);
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 200);
  auto got = client("")->Get("/kv/ns/k");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->body, "over tls");
  EXPECT_EQ(Get("/kv/ns/k"), -1);  // Plain HTTP to the TLS port: no answer.

  options.tls_client_ca_file = certs.Path("ca.pem");
  Start(options);
  EXPECT_FALSE(client("")->Get("/kv/ns/k"));          // No client certificate.
  EXPECT_FALSE(client("intruder")->Get("/kv/ns/k"));  // Untrusted CA.
  got = client("builder")->Get("/kv/ns/k");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body, "over tls");
}

TEST(HttpPathTest, ParsesRoutes) {
  const std::string h(64, 'a');
  auto cas = ParseCachePath("/cas/" + h);
  ASSERT_TRUE(cas.ok());
  EXPECT_EQ(cas->route, CachePath::Route::kCas);
  EXPECT_EQ(cas->instance, "");
  auto ac = ParseCachePath("/x/y/ac/" + h);
  ASSERT_TRUE(ac.ok());
  EXPECT_EQ(ac->route, CachePath::Route::kAc);
  EXPECT_EQ(ac->instance, "x/y");
  auto kv = ParseCachePath("/kv/ns/a/b/../c");
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->key, "ns/a/b/../c");
  for (const std::string& bad : std::vector<std::string>{
           std::string("cas/") + h, "/cas/" + h.substr(1), "/cas/" + h + "A",
           "/a//cas/" + h, "/../cas/" + h, "/blobs/cas/" + h, "/kv/", "/kv/ns",
           "/kv/ns/", "/kv//k", std::string("/kv/ns/a\0b", 10)}) {
    auto parsed = ParseCachePath(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
  for (const std::string& missing :
       std::vector<std::string>{"/", "/cas", "/foo/" + h, "/ac"}) {
    EXPECT_EQ(ParseCachePath(missing).status().code(),
              absl::StatusCode::kNotFound)
        << missing;
  }
}

}  // namespace
}  // namespace cairn::http
