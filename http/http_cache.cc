// Implementation notes. One cpp-httplib server; GET (httplib routes HEAD to
// it and sends no body) and PUT with a content reader, both on "/.*", with
// the route parsed by ParseCachePath(). Every request is authorised first.
// Downloads use a content provider reading the BlobReader in 64 KiB steps;
// uploads go through Upload (a BlobWriter, memory, or a Spool). A request
// whose body was not read to the end closes its connection
// (CloseAfterResponse); PreRoute refuses other methods before httplib would
// read their body into memory, Unparsed answers request lines httplib
// cannot parse (its error handler). The CAS size index entry
// ("cairn-http-cas-size-v1") lets GET /cas/HASH find the digest.
#include "http/http_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "cas/spool.h"
#include "http/http_path.h"
#include "httplib.h"
#include "rpc/grpc_status.h"

namespace cairn::http {
namespace {

using cas::Spool;
using rpc::Access;

constexpr size_t kChunk = 64 << 10;
constexpr int64_t kMemoryBodyLimit = 1 << 20;  // Larger bodies are spooled.
constexpr int64_t kMaxActionResultBytes = 16 << 20;
constexpr char kOctets[] = "application/octet-stream";

// ------------------------------------------------------------ task queue

// httplib's connection queue: `threads` workers, at most `max_queue`
// accepted connections waiting; beyond that enqueue() blocks the accept
// loop, so further clients wait in the kernel's backlog.
class BoundedTaskQueue final : public httplib::TaskQueue {
 public:
  BoundedTaskQueue(int threads, size_t max_queue) : max_queue_(max_queue) {
    for (int i = 0; i < threads; ++i) {
      workers_.emplace_back([this] { Work(); });
    }
  }

  void enqueue(std::function<void()> fn) override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &BoundedTaskQueue::HasRoom));
    queue_.push_back(std::move(fn));
  }

  void shutdown() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& t : workers_) {
      t.join();
    }
  }

 private:
  bool HasRoom() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.size() < max_queue_ || stopping_;
  }
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || stopping_;
  }

  void Work() {
    while (true) {
      std::function<void()> fn;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &BoundedTaskQueue::HasWork));
        if (queue_.empty()) {
          return;  // Stopping and drained.
        }
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      fn();
    }
  }

  const size_t max_queue_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

// ------------------------------------------------------------ helpers

int HttpCodeOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kDataLoss:  // The corrupt item is gone: a miss.
      return 404;
    case absl::StatusCode::kOutOfRange:
      return 413;
    case absl::StatusCode::kResourceExhausted:
      return 507;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

// The size index key of a CAS blob uploaded over HTTP.
std::string SizeKey(absl::string_view hash) {
  return cas::Digest::OfData(absl::StrCat("cairn-http-cas-size-v1\n", hash))
      .hash();
}

// The action digest an HTTP /ac/ request stands for. HTTP names an action
// by its hash alone; size 1 stands for "unknown": no Action message
// serialises to one byte (every field takes at least two), so no gRPC
// request names it and HTTP results stay apart from gRPC ones.
absl::StatusOr<cas::Digest> HttpActionDigest(absl::string_view hash) {
  return cas::Digest::Create(hash, 1);
}

// The asset URI of a /kv key.
std::string KvUri(absl::string_view key) {
  return absl::StrCat("cairn-http-kv:", key);
}

// Returns the credentials of an HTTP request: a Bearer header as given; a
// Basic header's password (or user when the password is empty) as a token.
rpc::CallCredentials CredentialsOf(const httplib::Request& req) {
  rpc::CallCredentials credentials;
  if (!req.has_header("Authorization")) {
    return credentials;
  }
  std::string value = req.get_header_value("Authorization");
  absl::string_view rest = value;
  if (absl::StartsWithIgnoreCase(rest, "basic ")) {
    rest.remove_prefix(6);
    std::string decoded;
    if (absl::Base64Unescape(absl::StripAsciiWhitespace(rest), &decoded)) {
      const size_t colon = decoded.find(':');
      std::string token =
          colon == std::string::npos ? decoded : decoded.substr(colon + 1);
      if (token.empty() && colon != std::string::npos) {
        token = decoded.substr(0, colon);
      }
      credentials.authorization = "Bearer " + token;
      return credentials;
    }
  }
  credentials.authorization = std::move(value);
  return credentials;
}

// Per-route metrics.
struct Metrics {
  explicit Metrics(rpc::Registry* r)
      : requests(r->NewCounter("cairn_http_requests_total",
                               "HTTP cache requests by route, method, code.",
                               {"route", "method", "code"})),
        latency(r->NewHistogram("cairn_http_request_seconds",
                                "HTTP cache request latency by route.",
                                {"route", "method"}, rpc::LatencyBuckets())),
        bytes_in(r->NewCounter("cairn_http_received_bytes_total",
                               "Request body bytes stored, by route.",
                               {"route"})),
        bytes_out(r->NewCounter("cairn_http_sent_bytes_total",
                                "Response body bytes served, by route.",
                                {"route"})) {}
  rpc::Family<rpc::Counter>* requests;
  rpc::Family<rpc::Histogram>* latency;
  rpc::Family<rpc::Counter>* bytes_in;
  rpc::Family<rpc::Counter>* bytes_out;
};

// The reading side of a download: one BlobReader, read sequentially and
// reopened at the requested offset for a Range request.
struct Download {
  cas::BlobStore* store = nullptr;
  cas::Digest digest;
  std::unique_ptr<cas::BlobReader> reader;
  size_t position = 0;
  std::string buf;
  rpc::Counter* bytes_out = nullptr;
};

// ------------------------------------------------------------ the cache

class HttpCacheImpl final : public HttpCache {
 public:
  HttpCacheImpl(const HttpCacheOptions& options,
                std::unique_ptr<httplib::Server> server)
      : options_(options),
        own_ac_(options.action_cache == nullptr
                    ? std::make_unique<actioncache::ActionCache>(options.store)
                    : nullptr),
        own_assets_(options.assets == nullptr
                        ? std::make_unique<asset::AssetStore>(options.store)
                        : nullptr),
        ac_(own_ac_ ? own_ac_.get() : options.action_cache),
        assets_(own_assets_ ? own_assets_.get() : options.assets),
        metrics_(options.metrics ? std::make_unique<Metrics>(options.metrics)
                                 : nullptr),
        server_(std::move(server)) {
    if (options_.spool_dir.empty()) {
      std::error_code ec;
      options_.spool_dir = std::filesystem::temp_directory_path(ec).string();
      if (ec || options_.spool_dir.empty()) {
        options_.spool_dir = "/tmp";
      }
    }
  }
  ~HttpCacheImpl() override { Stop(); }

  // Registers the handlers and binds; returns the port or an error.
  absl::StatusOr<int> Bind(const std::string& host, int port);
  void Run() {
    thread_ = std::thread([this] {
      server_->listen_after_bind();
      listen_returned_.store(true);
    });
  }

  int port() const override { return port_; }
  void Stop() override {
    if (!thread_.joinable()) {
      return;
    }
    // httplib's stop() does nothing before its loop has started; wait for
    // that (or for the loop to have ended) first.
    while (!server_->is_running() && !listen_returned_.load()) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    server_->stop();
    thread_.join();
  }

 private:
  // Answers what the routes do not serve, before httplib reads any body:
  // methods other than GET, HEAD and PUT (405), GET with a body (400).
  httplib::Server::HandlerResponse PreRoute(const httplib::Request& req,
                                            httplib::Response& res);
  // Answers a request whose request line httplib could not parse (e.g. a
  // WebDAV method such as PROPFIND or MKCOL, which it does not know) and
  // closes the connection: its headers and body were never read.
  httplib::Server::HandlerResponse Unparsed(const httplib::Request& req,
                                            httplib::Response& res);
  void HandleGet(const httplib::Request& req, httplib::Response& res);
  void HandlePut(const httplib::Request& req, httplib::Response& res,
                 const httplib::ContentReader& reader);
  absl::Status Get(const CachePath& path, bool head, httplib::Response& res);
  // `charge` is charged the body's size before it is stored: up front when
  // the request gives its length, once read otherwise.
  absl::Status Put(const CachePath& path, const httplib::Request& req,
                   const httplib::ContentReader& reader, bool* body_read,
                   rpc::QuotaCharge* charge);
  absl::Status ServeBlob(const cas::Digest& digest, bool head,
                         absl::string_view route, httplib::Response& res);
  absl::Status PutCas(const CachePath& path, std::optional<int64_t> length,
                      const httplib::ContentReader& reader, bool* body_read,
                      rpc::QuotaCharge* charge);
  absl::Status PutAc(const CachePath& path, std::optional<int64_t> length,
                     const httplib::ContentReader& reader, bool* body_read,
                     rpc::QuotaCharge* charge);
  absl::Status PutKv(const CachePath& path, std::optional<int64_t> length,
                     const httplib::ContentReader& reader, bool* body_read,
                     rpc::QuotaCharge* charge);
  // Reads the whole body; `*digest` is its digest. Memory for small bodies
  // with a known length, a Spool otherwise; then stored in the CAS.
  absl::StatusOr<cas::Digest> StoreBody(absl::string_view route,
                                        std::optional<int64_t> length,
                                        const httplib::ContentReader& reader,
                                        bool* body_read,
                                        rpc::QuotaCharge* charge);
  absl::Status CheckSize(std::optional<int64_t> length) const;
  void Record(absl::string_view route, const httplib::Request& req, int code,
              absl::Time start);
  rpc::Counter* BytesIn(absl::string_view route) {
    return metrics_ ? metrics_->bytes_in->WithLabels({std::string(route)})
                    : nullptr;
  }

  HttpCacheOptions options_;
  std::unique_ptr<actioncache::ActionCache> own_ac_;
  std::unique_ptr<asset::AssetStore> own_assets_;
  actioncache::ActionCache* const ac_;
  asset::AssetStore* const assets_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_{false};
  int port_ = 0;
};

void SetError(httplib::Response& res, const absl::Status& status) {
  res.status = HttpCodeOf(status);
  if (std::optional<absl::Duration> delay = rpc::RetryDelayOf(status);
      delay.has_value() && res.status == 507) {
    // A quota or cap, not a full store: ask the client to come back.
    res.status = 429;
    res.set_header("Retry-After", absl::StrCat(absl::ToInt64Seconds(
                                      absl::Ceil(*delay, absl::Seconds(1)))));
  }
  res.set_content(absl::StrCat(status.message(), "\n"), "text/plain");
  if (res.status == 401) {
    res.set_header("WWW-Authenticate", "Basic realm=\"cairn\"");
  }
}

std::optional<int64_t> ContentLength(const httplib::Request& req) {
  if (req.has_header("Transfer-Encoding") &&
      absl::StrContains(
          absl::AsciiStrToLower(req.get_header_value("Transfer-Encoding")),
          "chunked")) {
    return std::nullopt;
  }
  int64_t length = 0;
  if (!req.has_header("Content-Length") ||
      !absl::SimpleAtoi(req.get_header_value("Content-Length"), &length) ||
      length < 0) {
    return std::nullopt;
  }
  return length;
}

// Makes httplib close the connection once this response is written, for a
// request whose body (or more) is still unread on it. A "Connection: close"
// header alone does not: httplib would go on reading the connection and
// take the unread bytes for the next request. A content provider that
// reports failure after writing the whole body ends its keep-alive loop.
// (A HEAD response writes no body, so it cannot close this way.)
void CloseAfterResponse(httplib::Response& res) {
  auto body = std::make_shared<std::string>(std::move(res.body));
  res.body.clear();
  if (body->empty()) {
    body->push_back('\n');
  }
  std::string type = res.get_header_value("Content-Type");
  res.headers.erase("Content-Type");
  res.set_header("Connection", "close");
  res.set_content_provider(
      body->size(), type.empty() ? "text/plain" : type,
      [body](size_t offset, size_t length, httplib::DataSink& sink) {
        if (offset < body->size()) {
          sink.write(body->data() + offset,
                     std::min(length, body->size() - offset));
        }
        return false;  // All written: end the connection.
      });
}

// Whether a request announces a body (a malformed length counts as one).
bool HasBody(const httplib::Request& req) {
  if (req.has_header("Transfer-Encoding")) {
    return true;
  }
  int64_t length = 0;
  return req.has_header("Content-Length") &&
         !(absl::SimpleAtoi(req.get_header_value("Content-Length"), &length) &&
           length == 0);
}

absl::StatusOr<int> HttpCacheImpl::Bind(const std::string& host, int port) {
  const int threads =
      options_.threads > 0
          ? options_.threads
          : std::max(8,
                     4 * static_cast<int>(std::thread::hardware_concurrency()));
  const size_t queued = options_.max_queued_connections > 0
                            ? options_.max_queued_connections
                            : static_cast<size_t>(4 * threads);
  server_->new_task_queue = [threads, queued] {
    return new BoundedTaskQueue(threads, queued);
  };
  server_->set_keep_alive_max_count(1000);
  server_->set_keep_alive_timeout(5);
  server_->set_read_timeout(60);
  server_->set_write_timeout(60);
  server_->set_tcp_nodelay(true);
  server_->set_pre_routing_handler(
      [this](const httplib::Request& req, httplib::Response& res) {
        return PreRoute(req, res);
      });
  server_->set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req, httplib::Response& res) {
        return Unparsed(req, res);
      }));
  server_->Get(".*", [this](const httplib::Request& req,
                            httplib::Response& res) { HandleGet(req, res); });
  server_->Put(".*", [this](const httplib::Request& req, httplib::Response& res,
                            const httplib::ContentReader& reader) {
    HandlePut(req, res, reader);
  });
  port_ = port == 0 ? server_->bind_to_any_port(host)
                    : (server_->bind_to_port(host, port) ? port : -1);
  if (port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("http: cannot listen on ", host, ":", port));
  }
  return port_;
}

void HttpCacheImpl::Record(absl::string_view route, const httplib::Request& req,
                           int code, absl::Time start) {
  if (!metrics_) {
    return;
  }
  const std::string r(route);
  metrics_->requests->WithLabels({r, req.method, absl::StrCat(code)})
      ->Increment();
  metrics_->latency->WithLabels({r, req.method})
      ->Observe(absl::ToDoubleSeconds(absl::Now() - start));
}

httplib::Server::HandlerResponse HttpCacheImpl::PreRoute(
    const httplib::Request& req, httplib::Response& res) {
  const bool get = req.method == "GET" || req.method == "HEAD";
  if (req.method == "PUT" || (get && !HasBody(req))) {
    return httplib::Server::HandlerResponse::Unhandled;
  }
  const absl::Time start = absl::Now();
  if (get) {
    res.status = 400;
    res.set_content(absl::StrCat(req.method, " with a body\n"), "text/plain");
  } else {
    res.status = 405;
    res.set_header("Allow", "GET, HEAD, PUT");
    res.set_content(absl::StrCat(req.method,
                                 " is not served: this cache answers GET, "
                                 "HEAD and PUT\n"),
                    "text/plain");
  }
  CloseAfterResponse(res);  // Its body, if any, is unread.
  Record("other", req, res.status, start);
  return httplib::Server::HandlerResponse::Handled;
}

httplib::Server::HandlerResponse HttpCacheImpl::Unparsed(
    const httplib::Request& req, httplib::Response& res) {
  if (!req.path.empty()) {
    return httplib::Server::HandlerResponse::Unhandled;  // Routed: answered.
  }
  // The method is the request line's first word, if it was reached: a
  // client's word, so it goes into the message but not into metrics.
  const bool token = !req.method.empty() && req.method.size() <= 32 &&
                     std::all_of(req.method.begin(), req.method.end(),
                                 [](char c) { return c >= 'A' && c <= 'Z'; });
  if (res.status == 400 && token) {
    res.status = 405;
    res.set_header("Allow", "GET, HEAD, PUT");
    std::string message = absl::StrCat(
        req.method, " is not served: this cache answers GET, HEAD and PUT");
    if (req.method == "PROPFIND" || req.method == "MKCOL") {
      absl::StrAppend(&message,
                      " (sccache's WebDAV client: set "
                      "SCCACHE_WEBDAV_DISABLE_CREATE_DIR=true)");
    }
    res.set_content(message + "\n", "text/plain");
  } else if (res.body.empty()) {
    res.set_content("malformed request\n", "text/plain");
  }
  CloseAfterResponse(res);
  if (metrics_) {
    metrics_->requests->WithLabels({"other", "other", absl::StrCat(res.status)})
        ->Increment();
  }
  return httplib::Server::HandlerResponse::Handled;
}

void HttpCacheImpl::HandleGet(const httplib::Request& req,
                              httplib::Response& res) {
  const absl::Time start = absl::Now();
  absl::StatusOr<CachePath> path = ParseCachePath(req.path);
  absl::Status status = path.status();
  if (status.ok() && options_.authorizer != nullptr) {
    status = options_.authorizer->AuthorizeCredentials(CredentialsOf(req),
                                                       Access::kRead);
  }
  if (status.ok()) {
    status = Get(*path, req.method == "HEAD", res);
  }
  if (!status.ok()) {
    SetError(res, status);
  }
  // On success httplib sets the code after this returns: 206 for a Range
  // request (it then serves only the ranges), else 200.
  const int code =
      res.status != -1 ? res.status : (req.ranges.empty() ? 200 : 206);
  Record(path.ok() ? RouteName(path->route) : "other", req, code, start);
}

absl::Status HttpCacheImpl::Get(const CachePath& path, bool head,
                                httplib::Response& res) {
  switch (path.route) {
    case CachePath::Route::kCas: {
      if (path.hash == cas::Digest::Empty().hash()) {
        return ServeBlob(cas::Digest::Empty(), head, "cas", res);
      }
      absl::StatusOr<std::string> size =
          options_.store->GetEntry(SizeKey(path.hash));
      int64_t bytes = 0;
      if (!size.ok() || !absl::SimpleAtoi(*size, &bytes)) {
        return absl::NotFoundError(
            absl::StrCat("cas ", path.hash, " not found"));
      }
      absl::StatusOr<cas::Digest> digest =
          cas::Digest::Create(path.hash, bytes);
      if (!digest.ok()) {
        return digest.status();
      }
      return ServeBlob(*digest, head, "cas", res);
    }
    case CachePath::Route::kAc: {
      absl::StatusOr<cas::Digest> action = HttpActionDigest(path.hash);
      if (!action.ok()) {
        return action.status();
      }
      absl::StatusOr<actioncache::ActionResult> result =
          ac_->Get(path.instance, *action, actioncache::InlineRequest{});
      if (!result.ok()) {
        return result.status();
      }
      std::string body = result->SerializeAsString();
      if (metrics_) {
        metrics_->bytes_out->WithLabels({"ac"})->Increment(
            static_cast<int64_t>(body.size()));
      }
      res.set_content(std::move(body), kOctets);
      return absl::OkStatus();
    }
    case CachePath::Route::kKv: {
      absl::StatusOr<asset::ResolvedAsset> found =
          assets_->Resolve(asset::StoredAsset::BLOB, "", {KvUri(path.key)}, {},
                           absl::InfinitePast());
      if (!found.ok()) {
        return absl::NotFoundError("kv key not found");
      }
      absl::StatusOr<cas::Digest> digest = cas::Digest::Create(
          found->asset.digest().hash(), found->asset.digest().size_bytes());
      if (!digest.ok()) {
        return digest.status();
      }
      return ServeBlob(*digest, head, "kv", res);
    }
  }
  return absl::NotFoundError("no such route");
}

absl::Status HttpCacheImpl::ServeBlob(const cas::Digest& digest, bool head,
                                      absl::string_view route,
                                      httplib::Response& res) {
  const size_t size = static_cast<size_t>(digest.size_bytes());
  if (head) {
    if (!options_.store->Contains(digest)) {
      return absl::NotFoundError(absl::StrCat(digest.ToString(), " not found"));
    }
    res.set_content_provider(size, kOctets,
                             [](size_t, size_t, httplib::DataSink&) {
                               return false;  // HEAD sends no body.
                             });
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<cas::BlobReader>> reader =
      options_.store->OpenRead(digest, 0);
  if (!reader.ok()) {
    return reader.status();
  }
  auto download = std::make_shared<Download>();
  download->store = options_.store;
  download->digest = digest;
  download->reader = *std::move(reader);
  if (metrics_) {
    download->bytes_out = metrics_->bytes_out->WithLabels({std::string(route)});
  }
  res.set_content_provider(
      size, kOctets,
      [download](size_t offset, size_t length, httplib::DataSink& sink) {
        if (offset != download->position) {  // A Range request.
          absl::StatusOr<std::unique_ptr<cas::BlobReader>> reopened =
              download->store->OpenRead(download->digest,
                                        static_cast<int64_t>(offset));
          if (!reopened.ok()) {
            return false;
          }
          download->reader = *std::move(reopened);
          download->position = offset;
        }
        download->buf.resize(std::min(length, kChunk));
        absl::StatusOr<size_t> n =
            download->reader->Read(download->buf.data(), download->buf.size());
        if (!n.ok() || *n == 0) {
          return false;  // DATA_LOSS or I/O error: abort the connection.
        }
        download->position += *n;
        if (download->bytes_out != nullptr) {
          download->bytes_out->Increment(static_cast<int64_t>(*n));
        }
        return sink.write(download->buf.data(), *n);
      });
  return absl::OkStatus();
}

void HttpCacheImpl::HandlePut(const httplib::Request& req,
                              httplib::Response& res,
                              const httplib::ContentReader& reader) {
  const absl::Time start = absl::Now();
  absl::StatusOr<CachePath> path = ParseCachePath(req.path);
  absl::Status status = path.status();
  if (status.ok() && options_.authorizer != nullptr) {
    status = options_.authorizer->AuthorizeCredentials(CredentialsOf(req),
                                                       Access::kWrite);
  }
  if (status.ok() && options_.read_only) {
    status = absl::PermissionDeniedError("this cache is read-only");
  }
  bool body_read = false;
  if (status.ok()) {
    rpc::QuotaCharge charge(
        options_.write_quota,
        options_.write_quota == nullptr
            ? std::string()
            : rpc::PrincipalOf(CredentialsOf(req), req.remote_addr,
                               options_.authorizer != nullptr));
    cas::WriteOwnerScope owner(
        rpc::OwnerIdOf(options_.write_quota, charge.principal()));
    status = Put(*path, req, reader, &body_read, &charge);
    if (status.ok()) {
      charge.Stored();
    }
  }
  if (status.ok()) {
    res.status = 200;
  } else {
    SetError(res, status);
  }
  if (!body_read) {
    CloseAfterResponse(res);  // The rest of the body is still unread.
  }
  Record(path.ok() ? RouteName(path->route) : "other", req, res.status, start);
}

absl::Status HttpCacheImpl::CheckSize(std::optional<int64_t> length) const {
  if (length.has_value() && options_.max_blob_size_bytes > 0 &&
      *length > options_.max_blob_size_bytes) {
    return absl::OutOfRangeError(absl::StrCat("body of ", *length,
                                              " bytes is over the limit of ",
                                              options_.max_blob_size_bytes));
  }
  return absl::OkStatus();
}

absl::Status HttpCacheImpl::Put(const CachePath& path,
                                const httplib::Request& req,
                                const httplib::ContentReader& reader,
                                bool* body_read, rpc::QuotaCharge* charge) {
  const std::optional<int64_t> length = ContentLength(req);
  if (absl::Status s = CheckSize(length); !s.ok()) {
    return s;
  }
  if (length.has_value()) {
    if (absl::Status s = charge->Take(*length, "HTTP PUT"); !s.ok()) {
      return s;
    }
  }
  switch (path.route) {
    case CachePath::Route::kCas:
      return PutCas(path, length, reader, body_read, charge);
    case CachePath::Route::kAc:
      return PutAc(path, length, reader, body_read, charge);
    case CachePath::Route::kKv:
      return PutKv(path, length, reader, body_read, charge);
  }
  return absl::NotFoundError("no such route");
}

absl::Status HttpCacheImpl::PutCas(const CachePath& path,
                                   std::optional<int64_t> length,
                                   const httplib::ContentReader& reader,
                                   bool* body_read, rpc::QuotaCharge* charge) {
  cas::Digest stored;
  if (length.has_value()) {  // Digest known: stream into the store.
    absl::StatusOr<cas::Digest> digest =
        cas::Digest::Create(path.hash, *length);
    if (!digest.ok()) {
      return digest.status();
    }
    absl::StatusOr<std::unique_ptr<cas::BlobWriter>> writer =
        options_.store->OpenWrite(*digest);
    if (!writer.ok()) {
      return writer.status();
    }
    absl::Status append = absl::OkStatus();
    rpc::Counter* in = BytesIn("cas");
    *body_read = reader([&](const char* data, size_t n) {
      append = (*writer)->Append(absl::string_view(data, n));
      if (in != nullptr) {
        in->Increment(static_cast<int64_t>(n));
      }
      return append.ok();
    });
    if (!append.ok()) {
      return append;
    }
    if (!*body_read) {
      return absl::InvalidArgumentError("request body ended early");
    }
    if (absl::Status s = (*writer)->Commit(); !s.ok()) {
      return s;
    }
    stored = *digest;
  } else {
    absl::StatusOr<cas::Digest> digest =
        StoreBody("cas", length, reader, body_read, charge);
    if (!digest.ok()) {
      return digest.status();
    }
    stored = *digest;
  }
  if (stored.hash() != path.hash) {
    return absl::InvalidArgumentError(
        absl::StrCat("body hashes to ", stored.hash(), ", not ", path.hash));
  }
  return options_.store->PutEntry(SizeKey(path.hash),
                                  absl::StrCat(stored.size_bytes()));
}

absl::Status HttpCacheImpl::PutAc(const CachePath& path,
                                  std::optional<int64_t> length,
                                  const httplib::ContentReader& reader,
                                  bool* body_read, rpc::QuotaCharge* charge) {
  if (length.value_or(0) > kMaxActionResultBytes) {
    return absl::OutOfRangeError("ActionResult over 16 MiB");
  }
  std::string body;
  *body_read = reader([&](const char* data, size_t n) {
    body.append(data, n);
    return body.size() <= static_cast<size_t>(kMaxActionResultBytes);
  });
  if (!*body_read) {
    return absl::InvalidArgumentError("ActionResult body unread or too large");
  }
  actioncache::ActionResult result;
  if (!result.ParseFromString(body)) {
    return absl::InvalidArgumentError("body is not an ActionResult");
  }
  if (!length.has_value()) {
    const int64_t size = static_cast<int64_t>(body.size());
    if (absl::Status s = charge->Take(size, "HTTP PUT"); !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<cas::Digest> action = HttpActionDigest(path.hash);
  if (!action.ok()) {
    return action.status();
  }
  if (rpc::Counter* in = BytesIn("ac")) {
    in->Increment(static_cast<int64_t>(body.size()));
  }
  return ac_->Update(path.instance, *action, result).status();
}

absl::Status HttpCacheImpl::PutKv(const CachePath& path,
                                  std::optional<int64_t> length,
                                  const httplib::ContentReader& reader,
                                  bool* body_read, rpc::QuotaCharge* charge) {
  absl::StatusOr<cas::Digest> digest =
      StoreBody("kv", length, reader, body_read, charge);
  if (!digest.ok()) {
    return digest.status();
  }
  asset::StoredAsset entry;
  entry.set_kind(asset::StoredAsset::BLOB);
  entry.mutable_digest()->set_hash(digest->hash());
  entry.mutable_digest()->set_size_bytes(digest->size_bytes());
  return assets_->Record("", {KvUri(path.key)}, {}, std::move(entry));
}

absl::StatusOr<cas::Digest> HttpCacheImpl::StoreBody(
    absl::string_view route, std::optional<int64_t> length,
    const httplib::ContentReader& reader, bool* body_read,
    rpc::QuotaCharge* charge) {
  rpc::Counter* in = BytesIn(route);
  const int64_t limit = options_.max_blob_size_bytes;
  absl::Status status = absl::OkStatus();
  int64_t received = 0;
  auto count = [&](size_t n) {
    received += static_cast<int64_t>(n);
    if (in != nullptr) {
      in->Increment(static_cast<int64_t>(n));
    }
    if (limit > 0 && received > limit) {
      status = absl::OutOfRangeError("body over the blob size limit");
    }
    return status.ok();
  };
  if (length.has_value() && *length <= kMemoryBodyLimit) {
    std::string body;
    body.reserve(static_cast<size_t>(*length));
    *body_read = reader([&](const char* data, size_t n) {
      body.append(data, n);
      return count(n);
    });
    if (!status.ok() || !*body_read) {
      return status.ok() ? absl::InvalidArgumentError("body ended early")
                         : status;
    }
    cas::Digest digest = cas::Digest::OfData(body);
    if (absl::Status s = options_.store->Write(digest, body); !s.ok()) {
      return s;
    }
    return digest;
  }
  absl::StatusOr<std::unique_ptr<Spool>> spool =
      Spool::Create(options_.spool_dir);
  if (!spool.ok()) {
    return spool.status();
  }
  *body_read = reader([&](const char* data, size_t n) {
    if (!count(n)) {
      return false;
    }
    status = (*spool)->Append(absl::string_view(data, n));
    return status.ok();
  });
  if (!status.ok() || !*body_read) {
    return status.ok() ? absl::InvalidArgumentError("body ended early")
                       : status;
  }
  if (!length.has_value()) {
    if (absl::Status s = charge->Take((*spool)->size(), "HTTP PUT"); !s.ok()) {
      return s;
    }
  }
  return cas::StoreSpooled(spool->get(), options_.store);
}

absl::Status ParseListen(absl::string_view listen, std::string* host,
                         int* port) {
  const size_t colon = listen.rfind(':');
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(listen.substr(colon + 1), port) || *port < 0 ||
      *port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("http address \"", listen, "\": want HOST:PORT"));
  }
  *host = std::string(listen.substr(0, colon));
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpCache>> StartHttpCache(
    const HttpCacheOptions& options) {
  if (options.store == nullptr) {
    return absl::InvalidArgumentError("http: no store");
  }
  std::string host;
  int port = 0;
  if (absl::Status s = ParseListen(options.listen, &host, &port); !s.ok()) {
    return s;
  }
  std::unique_ptr<httplib::Server> server;
  if (!options.tls_cert_file.empty()) {
    server = std::make_unique<httplib::SSLServer>(
        options.tls_cert_file.c_str(), options.tls_key_file.c_str(),
        options.tls_client_ca_file.empty()
            ? nullptr
            : options.tls_client_ca_file.c_str());
  } else {
    server = std::make_unique<httplib::Server>();
  }
  if (!server->is_valid()) {
    return absl::UnavailableError(
        "http: cannot load the TLS certificate, key or client CA");
  }
  auto cache = std::make_unique<HttpCacheImpl>(options, std::move(server));
  absl::StatusOr<int> bound = cache->Bind(host, port);
  if (!bound.ok()) {
    return bound.status();
  }
  cache->Run();
  return cache;
}

}  // namespace cairn::http
