// Credentials are built from PEM text; libcrypto validates the text first
// because gRPC only reports bad key material at handshake time.
#include "server/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "rpc/config_file.h"

namespace cairn::server {

using ::cairn::rpc::ReadConfigFile;
namespace {

// Returns a read-only memory BIO over `pem` (which must outlive it).
BIO* MemBio(const std::string& pem) {
  return BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
}

// Returns the number of certificates in `pem`.
int CountCertificates(const std::string& pem) {
  BIO* bio = MemBio(pem);
  if (bio == nullptr) {
    return 0;
  }
  int count = 0;
  for (; count < 10000; ++count) {  // Bounded: a CA bundle is small.
    X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    if (cert == nullptr) {
      break;
    }
    X509_free(cert);
  }
  BIO_free(bio);
  ERR_clear_error();
  return count;
}

// Checks that `cert_pem` starts with a certificate and `key_pem` holds the
// private key for it.
absl::Status CheckKeyPair(const std::string& cert_pem,
                          const std::string& key_pem,
                          const TlsOptions& options) {
  BIO* cert_bio = MemBio(cert_pem);
  BIO* key_bio = MemBio(key_pem);
  X509* cert = cert_bio == nullptr
                   ? nullptr
                   : PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr);
  EVP_PKEY* key = key_bio == nullptr ? nullptr
                                     : PEM_read_bio_PrivateKey(
                                           key_bio, nullptr, nullptr, nullptr);
  absl::Cleanup free_all = [&] {
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(cert_bio);
    BIO_free(key_bio);
    ERR_clear_error();
  };
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_cert ", options.cert_file, ": no PEM certificate found"));
  }
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key ", options.key_file,
                     ": no unencrypted PEM private key found"));
  }
  if (X509_check_private_key(cert, key) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key ", options.key_file,
        " does not match the certificate in --tls_cert ", options.cert_file));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options) {
  if (!options.enabled()) {
    if (!options.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both --tls_cert and --tls_key");
  }
  absl::StatusOr<std::string> cert =
      ReadConfigFile(options.cert_file, "--tls_cert");
  if (!cert.ok()) {
    return cert.status();
  }
  absl::StatusOr<std::string> key =
      ReadConfigFile(options.key_file, "--tls_key");
  if (!key.ok()) {
    return key.status();
  }
  absl::Status pair = CheckKeyPair(*cert, *key, options);
  if (!pair.ok()) {
    return pair;
  }
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!options.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca =
        ReadConfigFile(options.client_ca_file, "--tls_client_ca");
    if (!ca.ok()) {
      return ca.status();
    }
    if (CountCertificates(*ca) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls_client_ca ", options.client_ca_file,
                       ": no PEM certificate found"));
    }
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace cairn::server
