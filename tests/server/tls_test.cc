// Tests for server/tls.h and the TLS half of rpc/auth.h over a real
// loopback gRPC server: certificates are made at test time with the openssl
// command into a temp dir (skipped when openssl is absent).
#include "server/tls.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rpc/auth.h"
#include "rpc/grpc_status.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_certs.h"

namespace cairn::server {
namespace {

namespace v2 = ::build::bazel::remote::execution::v2;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "tls-test-token-0123456789";

// GetCapabilities needs read access, UpdateActionResult write access.
class AuthorizedService final : public v2::Capabilities::CallbackService,
                                public v2::ActionCache::CallbackService {
 public:
  explicit AuthorizedService(const rpc::Authorizer* auth) : auth_(auth) {}

  grpc::ServerUnaryReactor* GetCapabilities(
      grpc::CallbackServerContext* context, const v2::GetCapabilitiesRequest*,
      v2::ServerCapabilities*) override {
    return Answer(context, rpc::Access::kRead);
  }
  grpc::ServerUnaryReactor* GetActionResult(
      grpc::CallbackServerContext* context, const v2::GetActionResultRequest*,
      v2::ActionResult*) override {
    return Answer(context, rpc::Access::kRead);
  }
  grpc::ServerUnaryReactor* UpdateActionResult(
      grpc::CallbackServerContext* context,
      const v2::UpdateActionResultRequest*, v2::ActionResult*) override {
    return Answer(context, rpc::Access::kWrite);
  }

  // The identities of the last call. Set on a gRPC thread, read by the test
  // after its call returned: ordered only through the network, which TSan
  // cannot see, hence the mutex.
  std::vector<std::string> last_identities() const {
    absl::MutexLock lock(&mu_);
    return last_identities_;
  }

 private:
  grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context,
                                   rpc::Access access) {
    {
      absl::MutexLock lock(&mu_);
      last_identities_ = rpc::CredentialsOf(*context).peer_identities;
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(rpc::ToGrpcStatus(auth_->Authorize(*context, access)));
    return reactor;
  }

  const rpc::Authorizer* auth_;
  mutable absl::Mutex mu_;
  std::vector<std::string> last_identities_ ABSL_GUARDED_BY(mu_);
};

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testutil::TestCerts::Available()) {
      GTEST_SKIP() << "openssl command not available";
    }
    ASSERT_TRUE(certs_.Make());
    tokens_ = dir_.path() + "/tokens";
    std::ofstream(tokens_) << "rw " << kToken << "\nro-cert reader-1\n";
  }

  // Starts a server with `tls` and an authorizer granting `anonymous`.
  void StartServer(const TlsOptions& tls, rpc::Access anonymous) {
    rpc::AuthOptions auth_options;
    auth_options.tokens_file = tokens_;
    auth_options.anonymous = anonymous;
    auto auth = rpc::NewAuthorizer(auth_options);
    ASSERT_TRUE(auth.ok()) << auth.status();
    auth_ = *std::move(auth);
    service_ = std::make_unique<AuthorizedService>(auth_.get());
    auto creds = MakeServerCredentials(tls);
    ASSERT_TRUE(creds.ok()) << creds.status();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *creds, &port_);
    builder.RegisterService(
        static_cast<v2::Capabilities::CallbackService*>(service_.get()));
    builder.RegisterService(
        static_cast<v2::ActionCache::CallbackService*>(service_.get()));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port_, 0);
  }

  TlsOptions ServerTls(bool mutual) const {
    return {certs_.Path("server.pem"), certs_.Path("server.key"),
            mutual ? certs_.Path("ca.pem") : ""};
  }

  // Returns a TLS channel trusting the test CA, presenting `client` ("" for
  // no client certificate).
  std::shared_ptr<grpc::Channel> TlsChannel(const std::string& client) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = certs_.Read("ca.pem");
    if (!client.empty()) {
      ssl.pem_private_key = certs_.Read(client + ".key");
      ssl.pem_cert_chain = certs_.Read(client + ".pem");
    }
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port_),
                                     grpc::SslCredentials(ssl), args);
  }

  // Calls GetCapabilities (read) or UpdateActionResult (write).
  grpc::Status Call(const std::shared_ptr<grpc::Channel>& channel,
                    rpc::Access access, const std::string& token = "") {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
    if (!token.empty()) {
      context.AddMetadata("authorization", "Bearer " + token);
    }
    if (access == rpc::Access::kRead) {
      v2::ServerCapabilities response;
      return v2::Capabilities::NewStub(channel)->GetCapabilities(
          &context, v2::GetCapabilitiesRequest(), &response);
    }
    v2::ActionResult response;
    return v2::ActionCache::NewStub(channel)->UpdateActionResult(
        &context, v2::UpdateActionResultRequest(), &response);
  }

  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown();
    }
  }

  testutil::TempDir dir_;
  testutil::TestCerts certs_{dir_.path()};
  std::string tokens_;
  std::unique_ptr<rpc::Authorizer> auth_;
  std::unique_ptr<AuthorizedService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(TlsTest, OptionErrorsAreClear) {
  auto only_cert = MakeServerCredentials({certs_.Path("server.pem"), "", ""});
  EXPECT_EQ(only_cert.status().code(), absl::StatusCode::kInvalidArgument);
  auto ca_alone = MakeServerCredentials({"", "", certs_.Path("ca.pem")});
  EXPECT_EQ(ca_alone.status().code(), absl::StatusCode::kInvalidArgument);
  auto missing = MakeServerCredentials(
      {dir_.path() + "/nope.pem", certs_.Path("server.key"), ""});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("--tls_cert"));
  EXPECT_THAT(missing.status().message(), HasSubstr("nope.pem"));
  auto swapped = MakeServerCredentials(
      {certs_.Path("server.key"), certs_.Path("server.pem"), ""});
  EXPECT_EQ(swapped.status().code(), absl::StatusCode::kInvalidArgument);
  auto mismatch = MakeServerCredentials(
      {certs_.Path("server.pem"), certs_.Path("builder.key"), ""});
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mismatch.status().message(), HasSubstr("does not match"));
  EXPECT_THAT(mismatch.status().message(), Not(HasSubstr("PRIVATE KEY")));
  auto bad_ca = MakeServerCredentials({certs_.Path("server.pem"),
                                       certs_.Path("server.key"),
                                       certs_.Path("server.key")});
  EXPECT_EQ(bad_ca.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_ca.status().message(), HasSubstr("--tls_client_ca"));
  auto dir =
      MakeServerCredentials({dir_.path(), certs_.Path("server.key"), ""});
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MakeServerCredentials({}).ok());
  EXPECT_TRUE(MakeServerCredentials(ServerTls(true)).ok());
}

TEST_F(TlsTest, TlsServesAndRefusesPlaintext) {
  StartServer(ServerTls(false), rpc::Access::kRead);
  EXPECT_TRUE(Call(TlsChannel(""), rpc::Access::kRead).ok());
  EXPECT_EQ(Call(TlsChannel(""), rpc::Access::kWrite).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(Call(TlsChannel(""), rpc::Access::kWrite, kToken).ok());
  auto plain = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                                   grpc::InsecureChannelCredentials());
  EXPECT_EQ(Call(plain, rpc::Access::kRead).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsRequiresAVerifiedClientCertificate) {
  StartServer(ServerTls(true), rpc::Access::kNone);
  EXPECT_EQ(Call(TlsChannel(""), rpc::Access::kRead).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Call(TlsChannel("intruder"), rpc::Access::kRead).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // Unlisted certificate: tls_client_access (write by default).
  grpc::Status builder = Call(TlsChannel("builder"), rpc::Access::kWrite);
  EXPECT_TRUE(builder.ok()) << builder.error_message();
  EXPECT_THAT(service_->last_identities(), ::testing::Contains("builder-1"));
  EXPECT_THAT(service_->last_identities(),
              ::testing::Contains("builder-1.example"));
  // Listed read-only.
  EXPECT_TRUE(Call(TlsChannel("reader"), rpc::Access::kRead).ok());
  grpc::Status denied = Call(TlsChannel("reader"), rpc::Access::kWrite);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(denied.error_message(), HasSubstr("reader-1"));
  // A token over mTLS wins over the certificate.
  EXPECT_TRUE(Call(TlsChannel("reader"), rpc::Access::kWrite, kToken).ok());
  EXPECT_EQ(
      Call(TlsChannel("reader"), rpc::Access::kRead, "wrong-token-0123456789")
          .error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(TlsTest, PlaintextCallsCarryNoIdentity) {
  StartServer({}, rpc::Access::kNone);
  auto plain = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                                   grpc::InsecureChannelCredentials());
  EXPECT_EQ(Call(plain, rpc::Access::kRead).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(service_->last_identities().empty());
  EXPECT_TRUE(Call(plain, rpc::Access::kWrite, kToken).ok());
}

}  // namespace
}  // namespace cairn::server
