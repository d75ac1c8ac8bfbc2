// TLS for cairn-server: turns the --tls_cert, --tls_key and --tls_client_ca
// flags into grpc::ServerCredentials.
//
//   no cert, no key          plaintext (grpc::InsecureServerCredentials)
//   cert + key               TLS; clients are not asked for certificates
//   cert + key + client CA   mutual TLS: every client must present a
//                            certificate that chains to the CA, or the
//                            handshake fails before any RPC runs
//
// The files are read and checked with libcrypto up front (PEM parses, the key
// matches the certificate, the CA file holds at least one certificate) so that
// a bad file is a clear startup error naming the flag and the path rather than
// a handshake failure later. Key material never appears in messages.
//
// Thread safety: free functions; safe from any thread.
#ifndef CAIRN_SERVER_TLS_H_
#define CAIRN_SERVER_TLS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace cairn::server {

struct TlsOptions {
  std::string cert_file;       // PEM certificate chain (leaf first).
  std::string key_file;        // PEM private key matching cert_file.
  std::string client_ca_file;  // PEM CA bundle; non-empty enables mTLS.

  // Returns true when TLS is requested (cert_file or key_file set).
  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

// Returns the server credentials for `options` (insecure when TLS is off).
// INVALID_ARGUMENT when only one of cert/key is given, when a client CA is
// given without cert and key, or when a file's PEM content is unusable or the
// key does not match the certificate; NOT_FOUND when a file does not exist;
// PERMISSION_DENIED / UNAVAILABLE when it cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options);

}  // namespace cairn::server

#endif  // CAIRN_SERVER_TLS_H_
