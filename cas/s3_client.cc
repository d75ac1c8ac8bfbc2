// S3Client over libcurl. A request is a Transfer: one easy handle from the
// pool, set up from a Request, run either alone (curl_easy_perform) or with
// others on a multi handle (HeadMany, GetMany); either way each transfer
// holds one of the `max_concurrency` slots the client's callers share. A
// multi run waits for a slot only while it holds none (else it takes what
// is free and adds more as slots free up), so no caller holds slots while
// blocking for more. Connections, DNS and TLS sessions live in one share
// handle so that every easy handle reuses them; it keeps up to one idle
// connection per slot. Responses are mapped to
// absl::Status once, in ToStatus().
#include "cas/s3_client.h"

#include <expat.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <fstream>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "cas/curl_api.h"

namespace cairn::cas {
namespace {

constexpr absl::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
// Bodies up to this size are hashed here when the caller gives no hash.
constexpr size_t kHashBodyLimit = size_t{64} << 20;

std::string Sha256Hex(absl::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(md), SHA256_DIGEST_LENGTH));
}

bool SafeKeyChars(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-' ||
           c == '/';
  });
}

// ---- XML -------------------------------------------------------------------

struct XmlState {
  absl::Span<const std::string> names;
  std::vector<std::pair<std::string, std::string>> found;
  std::string current;  // Name being captured; empty when none.
  std::string text;
};

absl::string_view LocalName(const char* name) {
  absl::string_view n(name);
  size_t colon = n.rfind(':');
  return colon == absl::string_view::npos ? n : n.substr(colon + 1);
}

void XMLCALL OnStart(void* data, const char* name, const char**) {
  auto* s = static_cast<XmlState*>(data);
  absl::string_view local = LocalName(name);
  if (!s->current.empty()) {
    return;
  }
  for (const std::string& want : s->names) {
    if (want != local) {
      continue;
    }
    bool seen = std::any_of(s->found.begin(), s->found.end(),
                            [&](const auto& f) { return f.first == want; });
    if (!seen) {
      s->current = want;
      s->text.clear();
    }
    return;
  }
}

void XMLCALL OnEnd(void* data, const char* name) {
  auto* s = static_cast<XmlState*>(data);
  if (!s->current.empty() && LocalName(name) == s->current) {
    s->found.emplace_back(std::move(s->current), std::move(s->text));
    s->current.clear();
    s->text.clear();
  }
}

void XMLCALL OnText(void* data, const char* text, int len) {
  auto* s = static_cast<XmlState*>(data);
  if (!s->current.empty()) {
    s->text.append(text, static_cast<size_t>(len));
  }
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseXml(
    absl::string_view xml, absl::Span<const std::string> names) {
  XML_Parser parser = XML_ParserCreate(nullptr);
  if (parser == nullptr) {
    return absl::ResourceExhaustedError("s3: cannot create an XML parser");
  }
  XmlState state{names, {}, {}, {}};
  XML_SetUserData(parser, &state);
  XML_SetElementHandler(parser, OnStart, OnEnd);
  XML_SetCharacterDataHandler(parser, OnText);
  const bool ok = XML_Parse(parser, xml.data(), static_cast<int>(xml.size()),
                            /*isFinal=*/1) == XML_STATUS_OK;
  std::string error = ok ? "" : XML_ErrorString(XML_GetErrorCode(parser));
  XML_ParserFree(parser);
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("s3: malformed XML response: ", error));
  }
  return std::move(state.found);
}

std::string Field(const absl::StatusOr<
                      std::vector<std::pair<std::string, std::string>>>& fields,
                  absl::string_view name) {
  if (fields.ok()) {
    for (const auto& [k, v] : *fields) {
      if (k == name) {
        return v;
      }
    }
  }
  return "";
}

// ---- Requests
// ----------------------------------------------------------------

struct Request {
  absl::string_view kind;
  const char* method = "GET";
  std::string key;    // Empty: the bucket itself.
  std::string query;  // Canonical.
  std::vector<std::string> headers;
  std::optional<absl::string_view> body;  // Sent when set.
  std::string payload_sha256;             // Empty: UNSIGNED-PAYLOAD.
  const S3Sink* sink = nullptr;           // Receives a 2xx body when set.
  bool streamed = false;  // Stall limit instead of a total deadline.
};

struct Response {
  long http_status = 0;
  std::string body;  // Error bodies always; 2xx bodies without a sink.
  std::vector<std::pair<std::string, std::string>> headers;  // Lower-case.

  std::string Header(absl::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) {
        return v;
      }
    }
    return "";
  }
};

// One request on one easy handle; owns the header list and response buffers.
struct Transfer {
  explicit Transfer(const CurlApi& api) : curl(api) {}

  const CurlApi& curl;
  const Request* request = nullptr;
  CURL* easy = nullptr;
  curl_slist* header_list = nullptr;
  Response response;
  absl::string_view upload_left;
  absl::Status sink_status;
  int64_t sink_bytes = 0;
  absl::Time start;

  ~Transfer() { curl.slist_free_all(header_list); }
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  absl::string_view line(data, size * n);
  if (absl::StartsWith(line, "HTTP/")) {
    t->response.headers.clear();  // A new response (after 100 Continue).
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    t->response.headers.emplace_back(
        absl::AsciiStrToLower(line.substr(0, colon)),
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  }
  return size * n;
}

size_t OnWrite(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  absl::string_view chunk(data, size * n);
  long code = 0;
  t->curl.easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
  if (t->request->sink != nullptr && code >= 200 && code < 300) {
    t->sink_status = (*t->request->sink)(chunk);
    if (!t->sink_status.ok()) {
      return 0;  // Aborts the transfer.
    }
    t->sink_bytes += static_cast<int64_t>(chunk.size());
    return chunk.size();
  }
  if (t->response.body.size() < (size_t{1} << 20)) {
    t->response.body.append(chunk.data(), chunk.size());
  }
  return chunk.size();
}

size_t OnRead(char* buf, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = std::min(size * n, t->upload_left.size());
  std::copy_n(t->upload_left.data(), len, buf);
  t->upload_left.remove_prefix(len);
  return len;
}

absl::StatusCode CodeForHttp(long status) {
  switch (status) {
    case 404:
      return absl::StatusCode::kNotFound;
    case 412:
      return absl::StatusCode::kAlreadyExists;
    case 401:
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 416:
      return absl::StatusCode::kOutOfRange;
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 408:
    case 429:
      return absl::StatusCode::kUnavailable;
    default:
      return status >= 500 ? absl::StatusCode::kUnavailable
                           : absl::StatusCode::kFailedPrecondition;
  }
}

// ---- The client
// --------------------------------------------------------------

class CurlS3Client final : public S3Client {
 public:
  CurlS3Client(const CurlApi& curl, const S3ClientOptions& options)
      : curl_(curl),
        options_(options),
        share_(curl_.share_init()),
        max_connections_(std::max(5, options.max_concurrency)) {
    curl_.share_setopt(share_, CURLSHOPT_LOCKFUNC, &CurlS3Client::Lock);
    curl_.share_setopt(share_, CURLSHOPT_UNLOCKFUNC, &CurlS3Client::Unlock);
    curl_.share_setopt(share_, CURLSHOPT_USERDATA, this);
    curl_.share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_.share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_.share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    sigv4_ = absl::StrCat("aws:amz:", options_.region, ":s3");
    userpwd_ = absl::StrCat(options_.credentials.access_key_id, ":",
                            options_.credentials.secret_access_key);
    absl::string_view ep = options_.endpoint;
    while (absl::ConsumeSuffix(&ep, "/")) {
    }
    if (options_.path_style) {
      base_ = absl::StrCat(ep, "/", options_.bucket, "/");
    } else {
      size_t scheme = ep.find("://");
      base_ = absl::StrCat(ep.substr(0, scheme + 3), options_.bucket, ".",
                           ep.substr(scheme + 3), "/");
    }
    copy_source_prefix_ = absl::StrCat("/", options_.bucket, "/");
    available_slots_ = options_.max_concurrency;
  }

  ~CurlS3Client() override {
    for (CURL* e : idle_) {
      curl_.easy_cleanup(e);
    }
    curl_.share_cleanup(share_);
  }

  absl::Status CheckBucket() override {
    Request r;
    r.kind = "head_bucket";
    r.method = "HEAD";
    absl::StatusOr<Response> resp = Run(r);
    if (!resp.ok()) {
      return resp.status();
    }
    return ToStatus(r, *resp);
  }

  absl::StatusOr<S3ObjectInfo> Head(absl::string_view key) override {
    Request r;
    r.kind = "head";
    r.method = "HEAD";
    r.key = std::string(key);
    absl::StatusOr<Response> resp = Run(r);
    if (!resp.ok()) {
      return resp.status();
    }
    return ToInfo(r, *resp);
  }

  std::vector<absl::StatusOr<S3ObjectInfo>> HeadMany(
      absl::Span<const std::string> keys) override;
  std::vector<absl::StatusOr<S3ObjectInfo>> GetMany(
      absl::Span<const std::string> keys,
      absl::Span<const S3Sink> sinks) override;

  absl::StatusOr<S3ObjectInfo> Get(absl::string_view key, int64_t offset,
                                   int64_t length,
                                   const S3Sink& sink) override {
    Request r;
    r.kind = "get";
    r.key = std::string(key);
    r.sink = &sink;
    r.streamed = true;
    if (offset > 0 || length >= 0) {
      r.headers.push_back(
          absl::StrCat("Range: bytes=", offset, "-",
                       length >= 0 ? absl::StrCat(offset + length - 1) : ""));
    }
    absl::StatusOr<Response> resp = Run(r);
    if (!resp.ok()) {
      return resp.status();
    }
    absl::StatusOr<S3ObjectInfo> info = ToInfo(r, *resp);
    if (!info.ok()) {
      return info;
    }
    std::string range = resp->Header("content-range");  // bytes a-b/total
    size_t slash = range.rfind('/');
    if (slash == std::string::npos ||
        !absl::SimpleAtoi(range.substr(slash + 1), &info->size)) {
      if (info->size < 0) {
        info->size = offset;
      }
    }
    return info;
  }

  absl::StatusOr<std::string> GetAll(absl::string_view key) override {
    std::string out;
    S3Sink sink = [&out](absl::string_view chunk) {
      out.append(chunk.data(), chunk.size());
      return absl::OkStatus();
    };
    absl::StatusOr<S3ObjectInfo> info = Get(key, 0, -1, sink);
    if (!info.ok()) {
      return info.status();
    }
    return out;
  }

  absl::Status Put(absl::string_view key, absl::string_view body,
                   absl::string_view sha256_hex, bool if_absent) override {
    Request r;
    r.kind = "put";
    r.method = "PUT";
    r.key = std::string(key);
    r.body = body;
    r.payload_sha256 = std::string(sha256_hex);
    if (r.payload_sha256.empty() && body.size() <= kHashBodyLimit) {
      r.payload_sha256 = Sha256Hex(body);
    }
    r.streamed = body.size() > (size_t{1} << 20);
    if (if_absent) {
      r.headers.push_back("If-None-Match: *");
    }
    absl::StatusOr<Response> resp = Run(r);
    return resp.ok() ? ToStatus(r, *resp) : resp.status();
  }

  absl::StatusOr<std::string> CreateMultipart(absl::string_view key) override {
    Request r;
    r.kind = "multipart_create";
    r.method = "POST";
    r.key = std::string(key);
    r.query = "uploads=";
    r.body = "";
    r.payload_sha256 = Sha256Hex("");
    absl::StatusOr<Response> resp = Run(r);
    if (!resp.ok()) {
      return resp.status();
    }
    if (absl::Status s = ToStatus(r, *resp); !s.ok()) {
      return s;
    }
    std::string id =
        Field(ParseXml(resp->body, {std::string("UploadId")}), "UploadId");
    if (id.empty()) {
      return absl::UnavailableError(absl::StrCat(
          "s3 multipart_create ", key, ": no UploadId in the answer"));
    }
    return id;
  }

  absl::StatusOr<std::string> UploadPart(absl::string_view key,
                                         absl::string_view upload_id,
                                         int number,
                                         absl::string_view body) override {
    Request r;
    r.kind = "multipart_part";
    r.method = "PUT";
    r.key = std::string(key);
    r.query = absl::StrCat("partNumber=", number,
                           "&uploadId=", S3QueryEncode(upload_id));
    r.body = body;
    r.payload_sha256 = Sha256Hex(body);
    r.streamed = true;
    absl::StatusOr<Response> resp = Run(r);
    if (!resp.ok()) {
      return resp.status();
    }
    if (absl::Status s = ToStatus(r, *resp); !s.ok()) {
      return s;
    }
    std::string etag = resp->Header("etag");
    if (etag.empty()) {
      return absl::UnavailableError(absl::StrCat(
          "s3 multipart_part ", key, ": no ETag for part ", number));
    }
    return etag;
  }

  absl::Status CompleteMultipart(absl::string_view key,
                                 absl::string_view upload_id,
                                 absl::Span<const std::string> etags) override {
    std::string xml = "<CompleteMultipartUpload>";
    for (size_t i = 0; i < etags.size(); ++i) {
      absl::StrAppend(&xml, "<Part><PartNumber>", i + 1, "</PartNumber><ETag>",
                      etags[i], "</ETag></Part>");
    }
    absl::StrAppend(&xml, "</CompleteMultipartUpload>");
    Request r;
    r.kind = "multipart_complete";
    r.method = "POST";
    r.key = std::string(key);
    r.query = absl::StrCat("uploadId=", S3QueryEncode(upload_id));
    r.body = xml;
    r.payload_sha256 = Sha256Hex(xml);
    r.headers.push_back("Content-Type: application/xml");
    absl::StatusOr<Response> resp = Run(r);
    if (!resp.ok()) {
      return resp.status();
    }
    return ToStatusCheckingBody(r, *resp);
  }

  absl::Status AbortMultipart(absl::string_view key,
                              absl::string_view upload_id) override {
    Request r;
    r.kind = "multipart_abort";
    r.method = "DELETE";
    r.key = std::string(key);
    r.query = absl::StrCat("uploadId=", S3QueryEncode(upload_id));
    absl::StatusOr<Response> resp = Run(r);
    return resp.ok() ? ToStatus(r, *resp) : resp.status();
  }

  absl::Status Refresh(absl::string_view key) override {
    Request r;
    r.kind = "refresh";
    r.method = "PUT";
    r.key = std::string(key);
    r.body = "";
    r.payload_sha256 = Sha256Hex("");
    r.headers.push_back(
        absl::StrCat("x-amz-copy-source: ", copy_source_prefix_, key));
    r.headers.push_back("x-amz-metadata-directive: REPLACE");
    r.headers.push_back("x-amz-meta-cairn-refreshed: 1");
    absl::StatusOr<Response> resp = Run(r);
    if (!resp.ok()) {
      return resp.status();
    }
    return ToStatusCheckingBody(r, *resp);
  }

 private:
  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<CurlS3Client*>(user)->locks_[Slot(data)].Lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<CurlS3Client*>(user)->locks_[Slot(data)].Unlock();
  }
  static size_t Slot(curl_lock_data data) {
    return static_cast<size_t>(data) % kLockSlots;
  }

  CURL* AcquireEasy() {
    absl::MutexLock lock(&pool_mu_);
    if (!idle_.empty()) {
      CURL* e = idle_.back();
      idle_.pop_back();
      return e;
    }
    return curl_.easy_init();
  }

  void ReleaseEasy(CURL* e) {
    curl_.easy_reset(e);
    absl::MutexLock lock(&pool_mu_);
    idle_.push_back(e);
  }

  // Sets up `t` (easy handle included) for `r`. Returns false when libcurl
  // cannot allocate.
  bool Prepare(const Request& r, Transfer* t);
  // Turns a finished transfer into a response or a transport error.
  absl::StatusOr<Response> Finish(Transfer* t, CURLcode rc);
  // Takes one of the max_concurrency slots, waiting for one to be free.
  void TakeSlot();
  // Takes a slot when one is free; returns whether it did.
  bool TryTakeSlot();
  void ReleaseSlot();
  // Runs `r` alone, within the concurrency limit.
  absl::StatusOr<Response> Run(const Request& r);
  // Runs `requests` together on one multi handle, as many at once as
  // there are free slots (at least one); one response (or transport
  // error) per request, in order.
  std::vector<absl::StatusOr<Response>> RunMany(
      absl::Span<const Request> requests);
  // RunMany(), each answer read as an object's info (ToInfo()).
  std::vector<absl::StatusOr<S3ObjectInfo>> RunManyForInfo(
      absl::Span<const Request> requests);

  absl::Status ToStatus(const Request& r, const Response& resp) const {
    if (resp.http_status >= 200 && resp.http_status < 300) {
      return absl::OkStatus();
    }
    auto fields =
        ParseXml(resp.body, {std::string("Code"), std::string("Message")});
    std::string code = Field(fields, "Code");
    return absl::Status(
        CodeForHttp(resp.http_status),
        absl::StrCat("s3 ", r.kind, " ", options_.bucket, "/", r.key, ": HTTP ",
                     resp.http_status, code.empty() ? "" : " ", code));
  }

  // For answers that may carry an error document with status 200
  // (CompleteMultipartUpload, CopyObject).
  absl::Status ToStatusCheckingBody(const Request& r,
                                    const Response& resp) const {
    if (absl::Status s = ToStatus(r, resp); !s.ok()) {
      return s;
    }
    auto fields =
        ParseXml(resp.body, {std::string("Error"), std::string("Code")});
    if (!fields.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "s3 ", r.kind, " ", r.key, ": ", fields.status().message()));
    }
    std::string code = Field(fields, "Code");
    if (!code.empty() && absl::StrContains(resp.body, "<Error")) {
      return absl::UnavailableError(
          absl::StrCat("s3 ", r.kind, " ", r.key, ": error ", code));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<S3ObjectInfo> ToInfo(const Request& r,
                                      const Response& resp) const {
    if (absl::Status s = ToStatus(r, resp); !s.ok()) {
      return s;
    }
    S3ObjectInfo info;
    if (!absl::SimpleAtoi(resp.Header("content-length"), &info.size)) {
      info.size = -1;
    }
    std::string lm = resp.Header("last-modified");
    time_t t = lm.empty() ? -1 : curl_.getdate(lm.c_str(), nullptr);
    info.last_modified = t < 0 ? absl::InfinitePast() : absl::FromTimeT(t);
    return info;
  }

  static constexpr size_t kLockSlots = 8;

  const CurlApi& curl_;
  const S3ClientOptions options_;
  CURLSH* const share_;
  // CURLOPT_MAXCONNECTS of every transfer: the shared cache keeps one idle
  // connection per slot (libcurl's default, 5, closed the rest).
  const long max_connections_;
  std::string sigv4_;
  std::string userpwd_;
  std::string base_;  // URL up to and including the '/' before the key.
  std::string copy_source_prefix_;
  std::array<absl::Mutex, kLockSlots> locks_;

  absl::Mutex pool_mu_;
  std::vector<CURL*> idle_ ABSL_GUARDED_BY(pool_mu_);

  absl::Mutex slots_mu_;
  int available_slots_ ABSL_GUARDED_BY(slots_mu_);
};

bool CurlS3Client::Prepare(const Request& r, Transfer* t) {
  t->request = &r;
  t->easy = AcquireEasy();
  if (t->easy == nullptr) {
    return false;
  }
  CURL* e = t->easy;
  std::string url = absl::StrCat(base_, r.key);
  if (!r.query.empty()) {
    absl::StrAppend(&url, "?", r.query);
  }
  curl_.easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_.easy_setopt(e, CURLOPT_SHARE, share_);
  // The shared cache keeps a connection per slot: at libcurl's default of 5
  // a request returning its connection beyond the fifth closed the oldest,
  // so at 32 in flight most requests opened a new one.
  curl_.easy_setopt(e, CURLOPT_MAXCONNECTS, max_connections_);
  curl_.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_.easy_setopt(e, CURLOPT_AWS_SIGV4, sigv4_.c_str());
  curl_.easy_setopt(e, CURLOPT_USERPWD, userpwd_.c_str());
  curl_.easy_setopt(
      e, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
  if (r.streamed) {
    curl_.easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_.easy_setopt(
        e, CURLOPT_LOW_SPEED_TIME,
        std::max<long>(1, absl::ToInt64Seconds(options_.stall_timeout)));
  } else {
    curl_.easy_setopt(
        e, CURLOPT_TIMEOUT_MS,
        static_cast<long>(absl::ToInt64Milliseconds(options_.request_timeout)));
  }
  if (!options_.ca_file.empty()) {
    curl_.easy_setopt(e, CURLOPT_CAINFO, options_.ca_file.c_str());
  }
  curl_.easy_setopt(e, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_.easy_setopt(e, CURLOPT_HEADERDATA, t);
  curl_.easy_setopt(e, CURLOPT_WRITEFUNCTION, &OnWrite);
  curl_.easy_setopt(e, CURLOPT_WRITEDATA, t);
  absl::string_view method = r.method;
  if (method == "HEAD") {
    curl_.easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (method == "PUT") {
    t->upload_left = r.body.value_or("");
    curl_.easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_.easy_setopt(e, CURLOPT_READFUNCTION, &OnRead);
    curl_.easy_setopt(e, CURLOPT_READDATA, t);
    curl_.easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
                      static_cast<curl_off_t>(t->upload_left.size()));
  } else if (method == "POST") {
    absl::string_view body = r.body.value_or("");
    curl_.easy_setopt(e, CURLOPT_POST, 1L);
    curl_.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                      static_cast<curl_off_t>(body.size()));
    curl_.easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
  } else if (method != "GET") {
    curl_.easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method);
  }
  std::vector<std::string> headers = r.headers;
  headers.push_back(absl::StrCat(
      "x-amz-content-sha256: ",
      r.payload_sha256.empty() ? kUnsignedPayload : r.payload_sha256));
  if (!options_.credentials.session_token.empty()) {
    headers.push_back(absl::StrCat("x-amz-security-token: ",
                                   options_.credentials.session_token));
  }
  if (method == "POST" && !absl::c_any_of(headers, [](const std::string& h) {
        return absl::StartsWithIgnoreCase(h, "content-type:");
      })) {
    headers.push_back("Content-Type: application/xml");
  }
  for (const std::string& h : headers) {
    curl_slist* next = curl_.slist_append(t->header_list, h.c_str());
    if (next == nullptr) {
      return false;
    }
    t->header_list = next;
  }
  curl_.easy_setopt(e, CURLOPT_HTTPHEADER, t->header_list);
  if (options_.on_start) {
    options_.on_start(r.kind);
  }
  if (std::getenv("CAIRN_S3_VERBOSE") != nullptr) {
    curl_.easy_setopt(e, CURLOPT_VERBOSE, 1L);
  }
  t->start = absl::Now();
  return true;
}

absl::StatusOr<Response> CurlS3Client::Finish(Transfer* t, CURLcode rc) {
  const Request& r = *t->request;
  curl_.easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->response.http_status);
  S3RequestRecord record;
  record.kind = r.kind;
  record.http_status = static_cast<int>(t->response.http_status);
  record.seconds = absl::ToDoubleSeconds(absl::Now() - t->start);
  curl_off_t up = 0, down = 0;
  curl_.easy_getinfo(t->easy, CURLINFO_SIZE_UPLOAD_T, &up);
  curl_.easy_getinfo(t->easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
  record.bytes_sent = up;
  record.bytes_received = down;
  long opened = 0;
  curl_.easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &opened);
  record.connections_opened = opened;
  ReleaseEasy(t->easy);
  t->easy = nullptr;
  absl::StatusOr<Response> result;
  if (rc == CURLE_WRITE_ERROR && !t->sink_status.ok()) {
    result = t->sink_status;
  } else if (rc != CURLE_OK) {
    result = absl::UnavailableError(
        absl::StrCat("s3 ", r.kind, " ", options_.bucket, "/", r.key, ": ",
                     curl_.easy_strerror(rc)));
  } else {
    result = std::move(t->response);
  }
  if (options_.on_request) {
    record.code = !result.ok() ? result.status().code()
                  : (record.http_status >= 200 && record.http_status < 300)
                      ? absl::StatusCode::kOk
                      : CodeForHttp(record.http_status);
    options_.on_request(record);
  }
  return result;
}

void CurlS3Client::TakeSlot() {
  absl::MutexLock lock(&slots_mu_);
  slots_mu_.Await(absl::Condition(
      +[](int* n) { return *n > 0; }, &available_slots_));
  --available_slots_;
}

bool CurlS3Client::TryTakeSlot() {
  absl::MutexLock lock(&slots_mu_);
  if (available_slots_ == 0) {
    return false;
  }
  --available_slots_;
  return true;
}

void CurlS3Client::ReleaseSlot() {
  absl::MutexLock lock(&slots_mu_);
  ++available_slots_;
}

absl::StatusOr<Response> CurlS3Client::Run(const Request& r) {
  TakeSlot();
  absl::StatusOr<Response> result;
  {
    Transfer t(curl_);
    if (!Prepare(r, &t)) {
      if (t.easy != nullptr) {
        ReleaseEasy(t.easy);
      }
      result = absl::ResourceExhaustedError("s3: libcurl out of memory");
    } else {
      CURLcode rc = curl_.easy_perform(t.easy);
      result = Finish(&t, rc);
    }
  }
  ReleaseSlot();
  return result;
}

std::vector<absl::StatusOr<Response>> CurlS3Client::RunMany(
    absl::Span<const Request> requests) {
  std::vector<absl::StatusOr<Response>> results(
      requests.size(), absl::UnavailableError("s3: not run"));
  CURLM* multi = curl_.multi_init();
  if (multi == nullptr) {
    for (auto& res : results) {
      res = absl::ResourceExhaustedError("s3: libcurl out of memory");
    }
    return results;
  }
  // Its own default (4 per handle added) would close shared connections too.
  curl_.multi_setopt(multi, CURLMOPT_MAXCONNECTS, max_connections_);
  std::vector<std::unique_ptr<Transfer>> transfers(requests.size());
  size_t next = 0;
  int running = 0;
  // Adds requests while slots are free; waits for one only with none
  // running (holding no slot).
  auto add_next = [&]() {
    while (next < requests.size()) {
      if (running == 0) {
        TakeSlot();
      } else if (!TryTakeSlot()) {
        return;
      }
      size_t i = next++;
      transfers[i] = std::make_unique<Transfer>(curl_);
      if (!Prepare(requests[i], transfers[i].get())) {
        if (transfers[i]->easy != nullptr) {
          ReleaseEasy(transfers[i]->easy);
        }
        ReleaseSlot();
        results[i] = absl::ResourceExhaustedError("s3: libcurl out of memory");
        continue;
      }
      curl_.easy_setopt(transfers[i]->easy, CURLOPT_PRIVATE,
                        reinterpret_cast<char*>(i));
      curl_.multi_add_handle(multi, transfers[i]->easy);
      ++running;
    }
  };
  add_next();
  while (running > 0) {
    int still = 0;
    curl_.multi_perform(multi, &still);
    int queued = 0;
    while (CURLMsg* msg = curl_.multi_info_read(multi, &queued)) {
      if (msg->msg != CURLMSG_DONE) {
        continue;
      }
      char* priv = nullptr;
      curl_.easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
      size_t i = reinterpret_cast<size_t>(priv);
      CURLcode rc = msg->data.result;
      curl_.multi_remove_handle(multi, msg->easy_handle);
      --running;
      results[i] = Finish(transfers[i].get(), rc);
      ReleaseSlot();
      transfers[i].reset();
    }
    add_next();
    if (running > 0) {
      // Requests still waiting for a slot another caller may free: look
      // again soon.
      curl_.multi_poll(multi, nullptr, 0, next < requests.size() ? 5 : 100,
                       nullptr);
    }
  }
  curl_.multi_cleanup(multi);
  return results;
}

std::vector<absl::StatusOr<S3ObjectInfo>> CurlS3Client::RunManyForInfo(
    absl::Span<const Request> requests) {
  std::vector<absl::StatusOr<S3ObjectInfo>> results;
  if (requests.empty()) {
    return results;
  }
  std::vector<absl::StatusOr<Response>> responses = RunMany(requests);
  results.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    results.push_back(responses[i].ok() ? ToInfo(requests[i], *responses[i])
                                        : responses[i].status());
  }
  return results;
}

std::vector<absl::StatusOr<S3ObjectInfo>> CurlS3Client::HeadMany(
    absl::Span<const std::string> keys) {
  std::vector<Request> requests(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    requests[i].kind = "head";
    requests[i].method = "HEAD";
    requests[i].key = keys[i];
  }
  return RunManyForInfo(requests);
}

std::vector<absl::StatusOr<S3ObjectInfo>> CurlS3Client::GetMany(
    absl::Span<const std::string> keys, absl::Span<const S3Sink> sinks) {
  if (keys.size() != sinks.size()) {
    return std::vector<absl::StatusOr<S3ObjectInfo>>(
        keys.size(), absl::InvalidArgumentError("s3 get: one sink per key"));
  }
  std::vector<Request> requests(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    requests[i].kind = "get";
    requests[i].key = keys[i];
    requests[i].sink = &sinks[i];
    requests[i].streamed = true;
  }
  return RunManyForInfo(requests);
}

}  // namespace

std::string S3QueryEncode(absl::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
ParseS3XmlForTest(absl::string_view xml, absl::Span<const std::string> names) {
  return ParseXml(xml, names);
}

absl::StatusOr<std::unique_ptr<S3Client>> NewS3Client(
    const S3ClientOptions& options) {
  absl::string_view ep = options.endpoint;
  if (!absl::StartsWith(ep, "http://") && !absl::StartsWith(ep, "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("s3: endpoint must start with http:// or https://: ", ep));
  }
  absl::string_view host = ep.substr(ep.find("://") + 3);
  while (absl::ConsumeSuffix(&host, "/")) {
  }
  if (host.empty() || absl::StrContains(host, '/')) {
    return absl::InvalidArgumentError(absl::StrCat(
        "s3: endpoint must be scheme://host[:port] without a path: ", ep));
  }
  if (options.bucket.size() < 3 || options.bucket.size() > 63 ||
      !SafeKeyChars(options.bucket) || absl::StrContains(options.bucket, '/')) {
    return absl::InvalidArgumentError(
        absl::StrCat("s3: malformed bucket name: ", options.bucket));
  }
  if (options.credentials.access_key_id.empty() ||
      options.credentials.secret_access_key.empty()) {
    return absl::InvalidArgumentError("s3: no credentials");
  }
  if (options.max_concurrency < 1) {
    return absl::InvalidArgumentError("s3: max_concurrency must be >= 1");
  }
  absl::StatusOr<const CurlApi*> curl = LoadCurl();
  if (!curl.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("s3: ", curl.status().message()));
  }
  return std::make_unique<CurlS3Client>(**curl, options);
}

bool S3KeyIsSafe(absl::string_view key) { return SafeKeyChars(key); }

absl::StatusOr<S3Credentials> LoadS3CredentialsFrom(
    const std::function<std::optional<std::string>(const char*)>& env) {
  S3Credentials c;
  c.access_key_id = env("AWS_ACCESS_KEY_ID").value_or("");
  c.secret_access_key = env("AWS_SECRET_ACCESS_KEY").value_or("");
  if (!c.access_key_id.empty() && !c.secret_access_key.empty()) {
    c.session_token = env("AWS_SESSION_TOKEN").value_or("");
    return c;
  }
  std::string path = env("AWS_SHARED_CREDENTIALS_FILE").value_or("");
  if (path.empty()) {
    std::string home = env("HOME").value_or("");
    if (home.empty()) {
      return absl::NotFoundError("s3: no AWS credentials in the environment");
    }
    path = absl::StrCat(home, "/.aws/credentials");
  }
  const std::string profile = env("AWS_PROFILE").value_or("default");
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(
        "s3: no AWS credentials in the environment and none in ", path));
  }
  S3Credentials f;
  bool in_profile = false;
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view l = absl::StripAsciiWhitespace(line);
    if (l.empty() || l[0] == '#' || l[0] == ';') {
      continue;
    }
    if (l.front() == '[' && l.back() == ']') {
      in_profile =
          absl::StripAsciiWhitespace(l.substr(1, l.size() - 2)) == profile;
      continue;
    }
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(l, absl::MaxSplits('=', 1));
    absl::string_view k = absl::StripAsciiWhitespace(kv.first);
    std::string v(absl::StripAsciiWhitespace(kv.second));
    if (!in_profile) {
      continue;
    }
    if (k == "aws_access_key_id") {
      f.access_key_id = v;
    } else if (k == "aws_secret_access_key") {
      f.secret_access_key = v;
    } else if (k == "aws_session_token") {
      f.session_token = v;
    }
  }
  if (f.access_key_id.empty() || f.secret_access_key.empty()) {
    return absl::NotFoundError(absl::StrCat("s3: profile [", profile, "] of ",
                                            path,
                                            " has no access key and secret"));
  }
  return f;
}

absl::StatusOr<S3Credentials> LoadS3Credentials() {
  return LoadS3CredentialsFrom(
      [](const char* name) -> std::optional<std::string> {
        const char* v = std::getenv(name);
        if (v == nullptr) {
          return std::nullopt;
        }
        return std::string(v);
      });
}

}  // namespace cairn::cas
