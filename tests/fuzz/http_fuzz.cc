// Fuzzes the HTTP cache (http/): each input is sent as raw bytes, a whole
// HTTP/1.1 request stream (request line, headers, body, perhaps several
// requests), to one live HttpCache on loopback over a memory store, with a
// tokens file so the Authorization and basic-auth parsers run too; the
// input is also parsed as a request path (ParseCachePath). Invariants:
// nothing crashes (ASan/UBSan); the server answers each connection with an
// HTTP/1.1 status line, or closes it, within 10 s; ParseCachePath errors
// are INVALID_ARGUMENT or NOT_FOUND, a parsed cas/ac route has a 64-hex
// hash and a kv route a non-empty key of at most kMaxKvKeyBytes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cas/memory_blob_store.h"
#include "http/http_cache.h"
#include "http/http_path.h"
#include "rpc/auth.h"
#include "rpc/write_quota.h"

namespace {

// A read-write token in the tokens file; seeds use it.
constexpr char kToken[] = "fuzz-token-0123456789abcdef";

struct Server {
  std::unique_ptr<cairn::cas::BlobStore> store;
  std::unique_ptr<cairn::rpc::Authorizer> authorizer;
  // Charged by every PUT (64 MiB per hour: refunds, and 429s once spent).
  cairn::rpc::WriteQuota quota{{.bytes_per_hour = int64_t{64} << 20}, nullptr};
  std::unique_ptr<cairn::http::HttpCache> cache;
  std::string dir;
};

// Starts the cache once; it lives until the process exits.
Server* TheServer() {
  static Server* server = [] {
    auto* s = new Server;
    char dir[] = "/tmp/cairn-http-fuzz-XXXXXX";
    if (::mkdtemp(dir) == nullptr) abort();
    s->dir = dir;
    std::ofstream(s->dir + "/tokens") << "rw " << kToken << "\n";
    s->store = cairn::cas::NewMemoryBlobStore({int64_t{64} << 20});
    cairn::rpc::AuthOptions auth;
    auth.tokens_file = s->dir + "/tokens";
    auth.anonymous = cairn::rpc::Access::kRead;
    s->authorizer = *cairn::rpc::NewAuthorizer(auth);
    cairn::http::HttpCacheOptions options;
    options.listen = "127.0.0.1:0";
    options.store = s->store.get();
    options.authorizer = s->authorizer.get();
    options.spool_dir = s->dir;
    options.threads = 4;
    options.max_blob_size_bytes = int64_t{1} << 20;
    options.write_quota = &s->quota;
    auto started = cairn::http::StartHttpCache(options);
    if (!started.ok()) abort();
    s->cache = *std::move(started);
    std::atexit([] {
      // Spooled bodies are unlinked while open; only these two remain.
      ::unlink((TheServer()->dir + "/tokens").c_str());
      ::rmdir(TheServer()->dir.c_str());
    });
    return s;
  }();
  return server;
}

// Sends `request`, half-closes, and reads the answer until the server
// closes. Returns the bytes read; aborts when the server takes over 10 s.
std::string Exchange(int port, absl::string_view request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) abort();
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // An interrupted connect goes on in the background: retry until it is
  // done (EISCONN), polling while it is in progress (EALREADY).
  while (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno == EISCONN) break;
    if (errno != EINTR && errno != EALREADY) abort();
    pollfd p = {fd, POLLOUT, 0};
    ::poll(&p, 1, 100);
  }
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n =
        ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // The server may answer and close early.
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string answer;
  char buf[4096];
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (;;) {
    pollfd p = {fd, POLLIN, 0};
    const int ms =
        static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    const int ready = ::poll(&p, 1, std::max(ms, 0));
    if (ready < 0 && errno == EINTR) continue;  // libFuzzer's timer signal.
    if (ready != 1) abort();                    // The server hangs.
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
  }
  linger l = {1, 0};  // Reset: no TIME_WAIT per execution.
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  ::close(fd);
  return answer;
}

void FuzzPath(absl::string_view path) {
  auto parsed = cairn::http::ParseCachePath(path);
  if (!parsed.ok()) {
    const absl::StatusCode code = parsed.status().code();
    if (code != absl::StatusCode::kInvalidArgument &&
        code != absl::StatusCode::kNotFound) {
      abort();
    }
    return;
  }
  if (parsed->route == cairn::http::CachePath::Route::kKv) {
    if (parsed->key.empty() ||
        parsed->key.size() > cairn::http::kMaxKvKeyBytes) {
      abort();
    }
    return;
  }
  if (parsed->hash.size() != 64) abort();
  for (char c : parsed->hash) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  FuzzPath(input);
  const std::string answer = Exchange(TheServer()->cache->port(), input);
  if (!answer.empty() && !absl::StartsWith(answer, "HTTP/1.1 ")) abort();
  return 0;
}
