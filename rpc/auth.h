// Authentication and authorisation for every Cairn RPC. Each service method
// calls Authorize(context, Access::kRead or kWrite) first and finishes the
// call with the status (via ToGrpcStatus) when it is not OK.
//
// Who the caller is, in this order:
//   1. An `authorization: Bearer <token>` header. The token must be listed in
//      the tokens file, else the call is UNAUTHENTICATED (a wrong token never
//      falls back to anonymous access).
//   2. A verified client certificate (mutual TLS): its identity (the subject
//      CN and every SAN) is looked up in the tokens file's `*-cert` lines;
//      an unlisted certificate gets `tls_client_access`.
//   3. Nobody: the caller gets `anonymous`.
// A caller gets the larger of its credential's access and `anonymous`. When
// that is below what the call needs: UNAUTHENTICATED for a caller without
// credentials, PERMISSION_DENIED for one with credentials (e.g. a write with
// a read-only token).
//
// Tokens file (--auth_tokens_file), one entry per line; blank lines and lines
// starting with '#' are ignored:
//   rw <token>            read-write bearer token
//   ro <token>            read-only bearer token
//   rw-cert <identity>    client certificate whose CN or a SAN is <identity>
//   ro-cert <identity>    the same, read-only
//   none-cert <identity>  the same, refused (revocation of one identity)
// Tokens are 16 to 512 printable ASCII characters without spaces; a token
// listed twice is an error. Tokens are compared in constant time
// (CRYPTO_memcmp over SHA-256 digests, scanning every entry) and never appear
// in a message or log line; errors name the file and the line number only.
//
// Thread safety: Authorize/AuthorizeCredentials may be called concurrently
// from any thread, also while Reload runs on another (it swaps an immutable
// table under a mutex).
#ifndef CAIRN_RPC_AUTH_H_
#define CAIRN_RPC_AUTH_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cairn::rpc {

// An access level, ordered: kNone < kRead < kWrite. A call needs kRead or
// kWrite; a principal is granted one of the three.
enum class Access { kNone = 0, kRead = 1, kWrite = 2 };

// Returns the Access for "none", "read" or "write"; INVALID_ARGUMENT else.
absl::StatusOr<Access> ParseAccess(absl::string_view text);

// Returns "none", "read" or "write".
absl::string_view AccessName(Access access);

struct AuthOptions {
  // The tokens file; empty means no tokens and no certificate identities.
  std::string tokens_file;
  // Access of callers that present no credentials.
  Access anonymous = Access::kWrite;
  // Access of a verified client certificate not listed in the tokens file.
  Access tls_client_access = Access::kWrite;
};

// What a call presented, extracted from its ServerContext (tests build it
// directly).
struct CallCredentials {
  // The value of the first `authorization` header, if any.
  std::optional<std::string> authorization;
  // The verified client certificate's CN and SANs (empty without mTLS).
  std::vector<std::string> peer_identities;
};

// Returns the credentials presented with the call behind `context`: the
// authorization header and, when the transport verified a client
// certificate, its identities. Call from the RPC's own thread (it may fill
// the context's lazily built AuthContext).
CallCredentials CredentialsOf(const grpc::ServerContextBase& context);

// Returns a short name for who made the call behind `context`, for limits
// and metrics kept per client (never for access decisions):
//   "token:<12 hex of the token's SHA-256>"  a bearer token (only when
//                                            `verified`: the server checks
//                                            tokens, so it was listed);
//   "cert:<first identity>"                  a verified client certificate;
//   "peer:<address without port>"            anyone else.
// The token itself never appears. Call from the RPC's own thread.
std::string PrincipalOf(const grpc::ServerContextBase& context, bool verified);

// The same over extracted credentials and the peer string gRPC reports
// ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000", "unix:/path").
std::string PrincipalOf(const CallCredentials& credentials,
                        absl::string_view peer, bool verified);

class Authorizer {
 public:
  virtual ~Authorizer() = default;

  // Returns OK when the caller behind `context` may perform a call that
  // needs `access`; UNAUTHENTICATED or PERMISSION_DENIED otherwise (see the
  // file comment). The message never contains the token.
  absl::Status Authorize(const grpc::ServerContextBase& context,
                         Access access) const {
    return AuthorizeCredentials(CredentialsOf(context), access);
  }

  // The same decision over already extracted credentials.
  virtual absl::Status AuthorizeCredentials(const CallCredentials& credentials,
                                            Access access) const = 0;

  // Re-reads the tokens file (called on SIGHUP). On error the previous
  // table stays in force and the error (naming file and line) is returned.
  // OK and no effect when no tokens file is configured.
  virtual absl::Status Reload() = 0;

  // Returns the number of tokens and certificate identities in force.
  virtual size_t EntryCountForTest() const = 0;
};

// The one call each service method makes first: returns OK when
// `authorizer` is null (access control off) or admits the caller behind
// `context` for `access`; its error otherwise. Finish the call with it.
inline absl::Status Authorize(const Authorizer* authorizer,
                              const grpc::ServerContextBase& context,
                              Access access) {
  return authorizer == nullptr ? absl::OkStatus()
                               : authorizer->Authorize(context, access);
}

// Reactors that only finish with `status`, for streaming methods whose
// caller Authorize refused: `return new RefusedWriteReactor<Response>(s);`.
// Each deletes itself when done.
template <typename Response>
class RefusedWriteReactor final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit RefusedWriteReactor(const grpc::Status& status) {
    this->Finish(status);
  }
  void OnDone() override { delete this; }
};

template <typename Request>
class RefusedReadReactor final : public grpc::ServerReadReactor<Request> {
 public:
  explicit RefusedReadReactor(const grpc::Status& status) {
    this->Finish(status);
  }
  void OnDone() override { delete this; }
};

// Returns an Authorizer that has loaded `options.tokens_file`. Errors as for
// Reload (NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT naming the line).
absl::StatusOr<std::unique_ptr<Authorizer>> NewAuthorizer(
    const AuthOptions& options);

// Calls `reload` on a background thread each time the process receives
// SIGHUP (a self-pipe written by the signal handler), until destroyed. At
// most one may exist at a time; `reload` runs on the watcher's thread.
class SighupWatcher {
 public:
  // Returns a started watcher; INTERNAL when the pipe or handler cannot be
  // installed, FAILED_PRECONDITION when another watcher exists.
  static absl::StatusOr<std::unique_ptr<SighupWatcher>> Start(
      std::function<void()> reload);

  // Restores the previous SIGHUP disposition and joins the thread.
  virtual ~SighupWatcher() = default;

 protected:
  SighupWatcher() = default;
};

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_AUTH_H_
