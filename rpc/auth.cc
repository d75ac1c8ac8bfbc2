// The token table is immutable once built; Reload builds a new one and swaps
// a shared_ptr under mu_, so Authorize holds the lock only to copy a pointer.
// Tokens are kept only as SHA-256 digests; a lookup hashes the presented token
// and compares it with every entry using CRYPTO_memcmp, without early exit.
#include "rpc/auth.h"

#include <fcntl.h>
#include <grpc/grpc_security_constants.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "rpc/config_file.h"

namespace cairn::rpc {
namespace {

constexpr size_t kMinTokenLength = 16;
constexpr size_t kMaxTokenLength = 512;
constexpr size_t kMaxIdentityLength = 1024;
constexpr size_t kMaxTokensFileBytes = 1 << 20;

using TokenDigest = std::array<unsigned char, SHA256_DIGEST_LENGTH>;

TokenDigest DigestOf(absl::string_view token) {
  TokenDigest digest;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(),
         digest.data());
  return digest;
}

struct TokenEntry {
  TokenDigest digest;
  Access access;
  int line;
};

struct Table {
  std::vector<TokenEntry> tokens;
  absl::flat_hash_map<std::string, Access> identities;
};

bool ValidToken(absl::string_view token) {
  if (token.size() < kMinTokenLength || token.size() > kMaxTokenLength) {
    return false;
  }
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return false;
    }
  }
  return true;
}

// Adds one non-comment line to `table`; the message never quotes the token.
absl::Status ParseLine(absl::string_view line, int number,
                       absl::string_view path, Table& table) {
  std::pair<absl::string_view, absl::string_view> kv =
      absl::StrSplit(line, absl::MaxSplits(absl::ByAnyChar(" \t"), 1));
  absl::string_view keyword = kv.first;
  absl::string_view rest = absl::StripAsciiWhitespace(kv.second);
  std::string where = absl::StrCat("tokens file ", path, " line ", number);
  if (keyword == "rw" || keyword == "ro") {
    if (!ValidToken(rest)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": a token must be ", kMinTokenLength, " to ", kMaxTokenLength,
          " printable characters without spaces"));
    }
    TokenDigest digest = DigestOf(rest);
    for (const TokenEntry& entry : table.tokens) {
      if (CRYPTO_memcmp(entry.digest.data(), digest.data(), digest.size()) ==
          0) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": token already listed on line ", entry.line));
      }
    }
    table.tokens.push_back(
        {digest, keyword == "rw" ? Access::kWrite : Access::kRead, number});
    return absl::OkStatus();
  }
  Access access;
  if (keyword == "rw-cert") {
    access = Access::kWrite;
  } else if (keyword == "ro-cert") {
    access = Access::kRead;
  } else if (keyword == "none-cert") {
    access = Access::kNone;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": expected rw, ro, rw-cert, ro-cert or none-cert"));
  }
  if (rest.empty() || rest.size() > kMaxIdentityLength) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": missing or overlong certificate identity"));
  }
  if (!table.identities.emplace(std::string(rest), access).second) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": identity ", rest, " listed twice"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Table>> LoadTable(
    const std::string& path) {
  auto table = std::make_shared<Table>();
  if (path.empty()) {
    return table;
  }
  absl::StatusOr<std::string> text =
      ReadConfigFile(path, "--auth_tokens_file", kMaxTokensFileBytes);
  if (!text.ok()) {
    return text.status();
  }
  int number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') {
      continue;
    }
    absl::Status status = ParseLine(line, number, path, *table);
    if (!status.ok()) {
      return status;
    }
  }
  return table;
}

// Returns the token of an `authorization` header value, or an error.
absl::StatusOr<absl::string_view> BearerToken(absl::string_view header) {
  constexpr absl::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(header.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError(
        "auth: the authorization header is not 'Bearer <token>'");
  }
  absl::string_view token =
      absl::StripAsciiWhitespace(header.substr(kScheme.size()));
  if (token.empty()) {
    return absl::UnauthenticatedError("auth: empty bearer token");
  }
  return token;
}

class AuthorizerImpl final : public Authorizer {
 public:
  AuthorizerImpl(AuthOptions options, std::shared_ptr<const Table> table)
      : options_(std::move(options)), table_(std::move(table)) {}

  absl::Status AuthorizeCredentials(const CallCredentials& credentials,
                                    Access access) const override;

  absl::Status Reload() override {
    absl::StatusOr<std::shared_ptr<const Table>> table =
        LoadTable(options_.tokens_file);
    if (!table.ok()) {
      return table.status();
    }
    absl::MutexLock lock(&mu_);
    table_ = *std::move(table);
    return absl::OkStatus();
  }

  size_t EntryCountForTest() const override {
    std::shared_ptr<const Table> table = Snapshot();
    return table->tokens.size() + table->identities.size();
  }

 private:
  std::shared_ptr<const Table> Snapshot() const {
    absl::MutexLock lock(&mu_);
    return table_;
  }

  // Returns the access of `token`, or UNAUTHENTICATED.
  absl::StatusOr<Access> TokenAccess(const Table& table,
                                     absl::string_view token) const;
  // Returns the access of a verified certificate with `identities`.
  Access CertificateAccess(const Table& table,
                           const std::vector<std::string>& identities) const;

  const AuthOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Table> table_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<Access> AuthorizerImpl::TokenAccess(
    const Table& table, absl::string_view token) const {
  TokenDigest digest = DigestOf(token);
  int found = 0;
  int access = 0;
  for (const TokenEntry& entry : table.tokens) {  // No early exit.
    int match =
        CRYPTO_memcmp(entry.digest.data(), digest.data(), digest.size()) == 0;
    found |= match;
    access |= match * static_cast<int>(entry.access);
  }
  if (!found) {
    return absl::UnauthenticatedError("auth: unknown bearer token");
  }
  return static_cast<Access>(access);
}

Access AuthorizerImpl::CertificateAccess(
    const Table& table, const std::vector<std::string>& identities) const {
  bool listed = false;
  Access best = Access::kNone;
  for (const std::string& identity : identities) {
    auto it = table.identities.find(identity);
    if (it == table.identities.end()) {
      continue;
    }
    if (it->second == Access::kNone) {
      return Access::kNone;  // A revoked identity wins over everything.
    }
    listed = true;
    best = std::max(best, it->second);
  }
  return listed ? best : options_.tls_client_access;
}

absl::Status AuthorizerImpl::AuthorizeCredentials(
    const CallCredentials& credentials, Access access) const {
  std::shared_ptr<const Table> table = Snapshot();
  Access granted = options_.anonymous;
  std::string principal;
  if (credentials.authorization.has_value()) {
    absl::StatusOr<absl::string_view> token =
        BearerToken(*credentials.authorization);
    if (!token.ok()) {
      return token.status();
    }
    absl::StatusOr<Access> token_access = TokenAccess(*table, *token);
    if (!token_access.ok()) {
      return token_access.status();
    }
    granted = std::max(granted, *token_access);
    principal = "this bearer token";
  } else if (!credentials.peer_identities.empty()) {
    Access cert = CertificateAccess(*table, credentials.peer_identities);
    granted = cert == Access::kNone ? Access::kNone : std::max(granted, cert);
    principal = absl::StrCat("client certificate ",
                             credentials.peer_identities.front());
  }
  if (granted >= access) {
    return absl::OkStatus();
  }
  if (principal.empty()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "auth: ", AccessName(access),
        " access needs credentials (authorization: Bearer <token> or a client "
        "certificate)"));
  }
  return absl::PermissionDeniedError(
      absl::StrCat("auth: ", principal, " has ", AccessName(granted),
                   " access; this call needs ", AccessName(access)));
}

// SIGHUP plumbing: the handler writes one byte to a non-blocking pipe.
std::atomic<int> g_hup_pipe{-1};

void OnSighup(int) {
  int saved = errno;
  int fd = g_hup_pipe.load();
  if (fd >= 0) {
    char byte = 'h';
    [[maybe_unused]] ssize_t n = ::write(fd, &byte, 1);
  }
  errno = saved;
}

class SighupWatcherImpl final : public SighupWatcher {
 public:
  SighupWatcherImpl(int read_fd, int write_fd, struct sigaction old,
                    std::function<void()> reload)
      : read_fd_(read_fd), write_fd_(write_fd), old_(old) {
    thread_ = std::thread([this, reload = std::move(reload)] {
      char byte = 0;
      // Ends when the destructor writes 'q' (or the pipe fails).
      while (true) {
        ssize_t n = ::read(read_fd_, &byte, 1);
        if (n < 0 && errno == EINTR) {
          continue;
        }
        if (n <= 0 || byte == 'q') {
          return;
        }
        reload();
      }
    });
  }

  ~SighupWatcherImpl() override {
    ::sigaction(SIGHUP, &old_, nullptr);
    g_hup_pipe.store(-1);
    char byte = 'q';
    // The pipe may be full of 'h': drain-free retry until 'q' fits.
    for (int i = 0; i < 1000; ++i) {
      if (::write(write_fd_, &byte, 1) == 1) {
        break;
      }
      ::usleep(1000);
    }
    thread_.join();
    ::close(read_fd_);
    ::close(write_fd_);
  }

 private:
  const int read_fd_;
  const int write_fd_;
  const struct sigaction old_;
  std::thread thread_;
};

}  // namespace

absl::StatusOr<Access> ParseAccess(absl::string_view text) {
  if (text == "none") {
    return Access::kNone;
  }
  if (text == "read") {
    return Access::kRead;
  }
  if (text == "write") {
    return Access::kWrite;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("access must be none, read or write, not '", text, "'"));
}

absl::string_view AccessName(Access access) {
  switch (access) {
    case Access::kNone:
      return "none";
    case Access::kRead:
      return "read";
    case Access::kWrite:
      return "write";
  }
  return "none";
}

CallCredentials CredentialsOf(const grpc::ServerContextBase& context) {
  CallCredentials credentials;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it != metadata.end()) {
    credentials.authorization.emplace(it->second.data(), it->second.size());
  }
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) {
    return credentials;
  }
  for (const char* property :
       {GRPC_X509_CN_PROPERTY_NAME, GRPC_X509_SAN_PROPERTY_NAME,
        GRPC_PEER_DNS_PROPERTY_NAME, GRPC_PEER_URI_PROPERTY_NAME,
        GRPC_PEER_EMAIL_PROPERTY_NAME, GRPC_PEER_IP_PROPERTY_NAME}) {
    for (const grpc::string_ref& value : auth->FindPropertyValues(property)) {
      credentials.peer_identities.emplace_back(value.data(), value.size());
    }
  }
  return credentials;
}

std::string PrincipalOf(const CallCredentials& credentials,
                        absl::string_view peer, bool verified) {
  if (verified && credentials.authorization.has_value()) {
    absl::StatusOr<absl::string_view> token =
        BearerToken(*credentials.authorization);
    if (token.ok()) {
      TokenDigest digest = DigestOf(*token);
      std::string hex = absl::BytesToHexString(
          absl::string_view(reinterpret_cast<const char*>(digest.data()), 6));
      return absl::StrCat("token:", hex);
    }
  }
  if (!credentials.peer_identities.empty()) {
    return absl::StrCat("cert:", credentials.peer_identities.front());
  }
  // Drop the port: ipv4:1.2.3.4:PORT, ipv6:[::1]:PORT; unix:... has none.
  if (absl::StartsWith(peer, "ipv4:") || absl::StartsWith(peer, "ipv6:")) {
    size_t colon = peer.rfind(':');
    if (colon > 5) {
      peer = peer.substr(0, colon);
    }
  }
  return absl::StrCat("peer:", peer);
}

std::string PrincipalOf(const grpc::ServerContextBase& context, bool verified) {
  return PrincipalOf(CredentialsOf(context), context.peer(), verified);
}

absl::StatusOr<std::unique_ptr<Authorizer>> NewAuthorizer(
    const AuthOptions& options) {
  absl::StatusOr<std::shared_ptr<const Table>> table =
      LoadTable(options.tokens_file);
  if (!table.ok()) {
    return table.status();
  }
  return std::make_unique<AuthorizerImpl>(options, *std::move(table));
}

absl::StatusOr<std::unique_ptr<SighupWatcher>> SighupWatcher::Start(
    std::function<void()> reload) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(
        absl::StrCat("SIGHUP pipe: ", std::strerror(errno)));
  }
  ::fcntl(fds[1], F_SETFL, ::fcntl(fds[1], F_GETFL) | O_NONBLOCK);
  int expected = -1;
  if (!g_hup_pipe.compare_exchange_strong(expected, fds[1])) {
    ::close(fds[0]);
    ::close(fds[1]);
    return absl::FailedPreconditionError("a SIGHUP watcher already runs");
  }
  struct sigaction action = {};
  action.sa_handler = OnSighup;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  struct sigaction old = {};
  if (::sigaction(SIGHUP, &action, &old) != 0) {
    g_hup_pipe.store(-1);
    ::close(fds[0]);
    ::close(fds[1]);
    return absl::InternalError(
        absl::StrCat("SIGHUP handler: ", std::strerror(errno)));
  }
  return std::unique_ptr<SighupWatcher>(
      new SighupWatcherImpl(fds[0], fds[1], old, std::move(reload)));
}

}  // namespace cairn::rpc
