// One curl easy handle per download (downloads are rare next to cache
// traffic: a handle pool is not worth its state). The write callback spools
// and hashes; it aborts the transfer once max_bytes is passed. Only then is
// the blob written to the store, verified, under the spool's digest.
#include "asset/origin_fetcher.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cas/curl_api.h"
#include "cas/spool.h"

namespace cairn::asset {
namespace {

struct Download {
  cas::Spool* spool = nullptr;
  int64_t max_bytes = 0;
  absl::Status status;  // Why the callback stopped the transfer.
};

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* d = static_cast<Download*>(user);
  const size_t n = size * count;
  if (d->max_bytes > 0 &&
      d->spool->size() + static_cast<int64_t>(n) > d->max_bytes) {
    d->status = absl::ResourceExhaustedError(
        absl::StrCat("body is larger than ", d->max_bytes, " bytes"));
    return 0;
  }
  d->status = d->spool->Append(absl::string_view(data, n));
  return d->status.ok() ? n : 0;
}

class HttpOriginFetcher final : public OriginFetcher {
 public:
  HttpOriginFetcher(const cas::CurlApi& curl, OriginFetcherOptions options)
      : curl_(curl), options_(std::move(options)) {}

  bool Allows(absl::string_view uri) const override {
    return std::any_of(
        options_.allowed_prefixes.begin(), options_.allowed_prefixes.end(),
        [uri](const std::string& p) { return absl::StartsWith(uri, p); });
  }

  absl::StatusOr<cas::Digest> Fetch(absl::string_view uri,
                                    absl::Duration timeout) override {
    if (!Allows(uri)) {
      return absl::FailedPreconditionError(
          absl::StrCat("origin fetch: ", uri, " is not an allowed origin"));
    }
    if (running_.fetch_add(1) >= options_.max_concurrent) {
      running_.fetch_sub(1);
      return absl::ResourceExhaustedError(absl::StrCat(
          "origin fetch: ", options_.max_concurrent, " downloads running"));
    }
    absl::Cleanup done = [this] { running_.fetch_sub(1); };
    if (timeout <= absl::ZeroDuration()) {
      timeout = options_.default_timeout;
    }
    timeout = std::min(timeout, options_.max_timeout);
    absl::StatusOr<std::unique_ptr<cas::Spool>> spool =
        cas::Spool::Create(options_.spool_dir);
    if (!spool.ok()) {
      return spool.status();
    }
    if (absl::Status s = Download(std::string(uri), timeout, spool->get());
        !s.ok()) {
      return s;
    }
    return cas::StoreSpooled(spool->get(), options_.store);
  }

 private:
  absl::Status Download(const std::string& uri, absl::Duration timeout,
                        cas::Spool* spool) {
    CURL* easy = curl_.easy_init();
    if (easy == nullptr) {
      return absl::InternalError("origin fetch: curl_easy_init failed");
    }
    absl::Cleanup cleanup = [this, easy] { curl_.easy_cleanup(easy); };
    struct Download d {
      spool, options_.max_bytes, absl::OkStatus()
    };
    curl_.easy_setopt(easy, CURLOPT_URL, uri.c_str());
    curl_.easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_.easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_.easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
    curl_.easy_setopt(easy, CURLOPT_MAXREDIRS, 5L);
    curl_.easy_setopt(easy, CURLOPT_FAILONERROR, 1L);
    curl_.easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_.easy_setopt(easy, CURLOPT_TIMEOUT_MS,
                      static_cast<long>(absl::ToInt64Milliseconds(timeout)));
    curl_.easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_.easy_setopt(easy, CURLOPT_USERAGENT, "cairn-server");
    curl_.easy_setopt(easy, CURLOPT_WRITEFUNCTION, &OnBody);
    curl_.easy_setopt(easy, CURLOPT_WRITEDATA, &d);
    if (options_.max_bytes > 0) {
      curl_.easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
                        static_cast<curl_off_t>(options_.max_bytes));
    }
    const CURLcode rc = curl_.easy_perform(easy);
    if (rc == CURLE_OK) {
      return absl::OkStatus();
    }
    if (!d.status.ok()) {
      return absl::Status(
          d.status.code(),
          absl::StrCat("origin fetch ", uri, ": ", d.status.message()));
    }
    long code = 0;
    curl_.easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    const std::string what =
        absl::StrCat("origin fetch ", uri, ": ", curl_.easy_strerror(rc));
    if (rc == CURLE_HTTP_RETURNED_ERROR && (code == 404 || code == 410)) {
      return absl::NotFoundError(what);
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      return absl::DeadlineExceededError(what);
    }
    if (rc == CURLE_FILESIZE_EXCEEDED) {
      return absl::ResourceExhaustedError(what);
    }
    return absl::UnavailableError(what);
  }

  const cas::CurlApi& curl_;
  const OriginFetcherOptions options_;
  std::atomic<int> running_{0};
};

}  // namespace

absl::StatusOr<std::unique_ptr<OriginFetcher>> NewHttpOriginFetcher(
    OriginFetcherOptions options) {
  if (options.store == nullptr) {
    return absl::InvalidArgumentError("origin fetcher: no store");
  }
  for (const std::string& p : options.allowed_prefixes) {
    // The host must end inside the prefix ("http://h:80" would also allow
    // "http://h:80@elsewhere/"): a '/' after the scheme's "//".
    const size_t scheme = p.find("://");
    if ((!absl::StartsWith(p, "http://") && !absl::StartsWith(p, "https://")) ||
        p.find('/', scheme + 3) == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "origin fetcher: allowed prefix \"", p,
          "\" must be an http:// or https:// URI with a path, e.g. "
          "https://host/"));
    }
  }
  if (options.spool_dir.empty()) {
    std::error_code ec;
    options.spool_dir = std::filesystem::temp_directory_path(ec).string();
    if (ec || options.spool_dir.empty()) {
      options.spool_dir = "/tmp";
    }
  }
  absl::StatusOr<const cas::CurlApi*> curl = cas::LoadCurl();
  if (!curl.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("origin fetcher: ", curl.status().message()));
  }
  return std::make_unique<HttpOriginFetcher>(**curl, std::move(options));
}

}  // namespace cairn::asset
