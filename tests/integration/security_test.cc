// Security of the real cairn-server binary (label "security"): TLS and mutual
// TLS (--tls_cert, --tls_key, --tls_client_ca), bearer tokens from
// --auth_tokens_file reloaded on SIGHUP, --anonymous_access, and that tokens
// never reach the server's log. Certificates are made with the openssl
// command at test time.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cas/digest.h"
#include "tests/testutil/server_process.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_certs.h"
#include "tests/testutil/test_client.h"

namespace cairn::faulttest {
namespace {

namespace v2 = ::build::bazel::remote::execution::v2;
using ::cairn::testutil::Client;
using ::cairn::testutil::ServerProcess;

constexpr char kRwToken[] = "rw-secret-token-7f3a9c1e5b";
constexpr char kRoToken[] = "ro-secret-token-2d8e4a6f0c";
constexpr char kNewToken[] = "new-secret-token-91b7c3d5e8";
constexpr char kWrongToken[] = "wrong-secret-token-00000000";

class SecurityTest : public ::testing::Test {
 protected:
  // The certificate set-up of tls_test.cc: GTEST_SKIP must stand in SetUp.
  void SetUp() override {
    if (!testutil::TestCerts::Available()) {
      GTEST_SKIP() << "openssl command not available";
    }
    ASSERT_TRUE(certs_.Make());
    tokens_ = dir_.path() + "/tokens";
    WriteTokens(absl::StrCat("# test tokens\nrw ", kRwToken, "\nro ", kRoToken,
                             "\nro-cert reader-1\n"));
  }

  void WriteTokens(const std::string& text) {
    std::ofstream(tokens_ + ".new") << text;
    std::rename((tokens_ + ".new").c_str(), tokens_.c_str());
  }

  std::vector<std::string> Flags(const std::vector<std::string>& extra) {
    std::vector<std::string> flags = {"--dir=" + dir_.path() + "/store",
                                      "--max_size=1GiB",
                                      "--tls_cert=" + certs_.Path("server.pem"),
                                      "--tls_key=" + certs_.Path("server.key"),
                                      "--auth_tokens_file=" + tokens_};
    flags.insert(flags.end(), extra.begin(), extra.end());
    return flags;
  }

  std::unique_ptr<Client> TlsClient(const std::string& address,
                                    const std::string& token,
                                    const std::string& cert = "") {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = certs_.Read("ca.pem");
    if (!cert.empty()) {
      ssl.pem_private_key = certs_.Read(cert + ".key");
      ssl.pem_cert_chain = certs_.Read(cert + ".pem");
    }
    auto client = std::make_unique<Client>(address, grpc::SslCredentials(ssl),
                                           "localhost");
    client->set_token(token);
    return client;
  }

  static grpc::StatusCode Find(Client& client) {
    std::vector<cas::Digest> missing;
    return client.FindMissing({cas::Digest::OfData("x")}, &missing)
        .error_code();
  }

  static grpc::StatusCode UpdateAc(Client& client) {
    v2::UpdateActionResultRequest request;
    *request.mutable_action_digest() =
        Client::ToProto(cas::Digest::OfData("action"));
    request.mutable_action_result()->set_exit_code(0);
    v2::ActionResult response;
    grpc::ClientContext context;
    client.Prepare(&context);
    return client.ac()
        ->UpdateActionResult(&context, request, &response)
        .error_code();
  }

  static grpc::StatusCode Capabilities(Client& client) {
    auto stub = v2::Capabilities::NewStub(client.channel());
    v2::ServerCapabilities response;
    grpc::ClientContext context;
    client.Prepare(&context);
    return stub->GetCapabilities(&context, {}, &response).error_code();
  }

  testutil::TempDir dir_;
  testutil::TestCerts certs_{dir_.path()};
  std::string tokens_;
};

TEST_F(SecurityTest, TokensOverTlsAndReloadOnSighup) {
  ServerProcess server(Flags({"--anonymous_access=none"}));
  ASSERT_TRUE(server.started());
  const std::string blob = "security test blob";
  const cas::Digest digest = cas::Digest::OfData(blob);

  Client plain(server.address());
  EXPECT_EQ(Find(plain), grpc::StatusCode::UNAVAILABLE);

  auto nobody = TlsClient(server.address(), "");
  EXPECT_EQ(Find(*nobody), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(nobody->Write(blob).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Capabilities(*nobody), grpc::StatusCode::UNAUTHENTICATED);

  auto wrong = TlsClient(server.address(), kWrongToken);
  EXPECT_EQ(Find(*wrong), grpc::StatusCode::UNAUTHENTICATED);

  auto ro = TlsClient(server.address(), kRoToken);
  EXPECT_EQ(Find(*ro), grpc::StatusCode::OK);
  EXPECT_EQ(Capabilities(*ro), grpc::StatusCode::OK);
  EXPECT_EQ(ro->Write(blob).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  std::vector<int> codes;
  EXPECT_EQ(ro->BatchUpdate({blob}, &codes).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(UpdateAc(*ro), grpc::StatusCode::PERMISSION_DENIED);

  auto rw = TlsClient(server.address(), kRwToken);
  ASSERT_TRUE(rw->Write(blob).ok());
  EXPECT_EQ(UpdateAc(*rw), grpc::StatusCode::OK);
  std::string data;
  ASSERT_TRUE(ro->Read(digest, &data).ok());
  EXPECT_EQ(data, blob);
  EXPECT_EQ(nobody->Read(digest, &data).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  // SIGHUP: the read-only token is replaced by a new read-write one.
  WriteTokens(absl::StrCat("rw ", kRwToken, "\nrw ", kNewToken, "\n"));
  server.Signal(SIGHUP);
  auto fresh = TlsClient(server.address(), kNewToken);
  bool reloaded = false;
  for (int i = 0; i < 200 && !reloaded; ++i) {  // At most ~10 s.
    reloaded = Find(*fresh) == grpc::StatusCode::OK;
    if (!reloaded) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ASSERT_TRUE(reloaded) << server.log();
  EXPECT_TRUE(fresh->Write("written with the new token").ok());
  EXPECT_EQ(Find(*ro), grpc::StatusCode::UNAUTHENTICATED);

  // A broken file on SIGHUP keeps the tokens in force.
  WriteTokens("this line is not valid\n");
  server.Signal(SIGHUP);
  for (int i = 0; i < 200 && !absl::StrContains(server.log(), "line 1"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(absl::StrContains(server.log(), "line 1")) << server.log();
  EXPECT_EQ(Find(*fresh), grpc::StatusCode::OK);

  // No token ever reaches the log.
  const std::string log = server.log();
  for (const char* token : {kRwToken, kRoToken, kNewToken, kWrongToken}) {
    EXPECT_FALSE(absl::StrContains(log, token)) << "token in the log";
  }
  EXPECT_EQ(server.Terminate(), 0) << server.log();
}

TEST_F(SecurityTest, MutualTlsIdentities) {
  ServerProcess server(Flags(
      {"--tls_client_ca=" + certs_.Path("ca.pem"), "--anonymous_access=none"}));
  ASSERT_TRUE(server.started());
  EXPECT_EQ(Find(*TlsClient(server.address(), "")),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Find(*TlsClient(server.address(), "", "intruder")),
            grpc::StatusCode::UNAVAILABLE);
  auto builder = TlsClient(server.address(), "", "builder");
  EXPECT_TRUE(builder->Write("from builder-1").ok());
  auto reader = TlsClient(server.address(), "", "reader");
  EXPECT_EQ(Find(*reader), grpc::StatusCode::OK);
  EXPECT_EQ(reader->Write("from reader-1").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // A token presented over mTLS decides.
  auto reader_with_token = TlsClient(server.address(), kRwToken, "reader");
  EXPECT_TRUE(reader_with_token->Write("from reader-1 with token").ok());
}

TEST_F(SecurityTest, AnonymousReadOnly) {
  ServerProcess server(Flags({"--anonymous_access=read"}));
  ASSERT_TRUE(server.started());
  auto nobody = TlsClient(server.address(), "");
  EXPECT_EQ(Find(*nobody), grpc::StatusCode::OK);
  EXPECT_EQ(nobody->Write("anonymous").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(TlsClient(server.address(), kRwToken)->Write("named").ok());
}

TEST_F(SecurityTest, BadSecurityFlagsStopStartUp) {
  const std::string missing = dir_.path() + "/absent.pem";
  struct Case {
    std::vector<std::string> flags;
    std::string expect;
  } cases[] = {
      {{"--tls_cert=" + missing}, "--tls_"},
      {{"--tls_key=" + missing}, "absent.pem"},
      {{"--tls_client_ca=" + missing}, "absent.pem"},
      {{"--auth_tokens_file=" + missing}, "absent"},
      {{"--anonymous_access=everyone"}, "anonymous_access"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> flags = Flags({});
    flags.insert(flags.end(), c.flags.begin(), c.flags.end());
    ServerProcess server(flags);
    EXPECT_EQ(server.address(), "") << c.expect;
    EXPECT_TRUE(absl::StrContains(server.log(), c.expect))
        << c.expect << " not in: " << server.log();
  }
}

}  // namespace
}  // namespace cairn::faulttest
