// Tests for rpc/auth.h: the decision table, the tokens file format,
// reloading (also by SIGHUP) and that tokens never appear in messages.
#include "rpc/auth.h"

#include <signal.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace cairn::rpc {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kRwToken[] = "rw-token-0123456789abcdef";
constexpr char kRoToken[] = "ro-token-0123456789abcdef";

class AuthTest : public ::testing::Test {
 protected:
  std::string WriteFile(const std::string& text) {
    std::string path = dir_.path() + "/tokens";
    std::ofstream(path, std::ios::trunc) << text;
    return path;
  }

  std::unique_ptr<Authorizer> Make(const std::string& text, Access anonymous,
                                   Access tls = Access::kWrite) {
    AuthOptions options;
    options.tokens_file = WriteFile(text);
    options.anonymous = anonymous;
    options.tls_client_access = tls;
    absl::StatusOr<std::unique_ptr<Authorizer>> auth = NewAuthorizer(options);
    EXPECT_TRUE(auth.ok()) << auth.status();
    return auth.ok() ? *std::move(auth) : nullptr;
  }

  static CallCredentials Bearer(const std::string& token) {
    CallCredentials c;
    c.authorization = "Bearer " + token;
    return c;
  }
  static CallCredentials Cert(std::vector<std::string> ids) {
    CallCredentials c;
    c.peer_identities = std::move(ids);
    return c;
  }

  testutil::TempDir dir_;
  const std::string file_ =
      absl::StrCat("# team tokens\n\nrw ", kRwToken, "\n  ro\t", kRoToken,
                   "  \r\nrw-cert ci-runner\n"
                   "ro-cert dev laptop\n"
                   "none-cert revoked.example\n");
};

TEST_F(AuthTest, ParseAccess) {
  EXPECT_EQ(*ParseAccess("none"), Access::kNone);
  EXPECT_EQ(*ParseAccess("read"), Access::kRead);
  EXPECT_EQ(*ParseAccess("write"), Access::kWrite);
  EXPECT_EQ(ParseAccess("rw").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AccessName(Access::kRead), "read");
}

TEST_F(AuthTest, TokensGrantTheirAccess) {
  auto auth = Make(file_, Access::kNone);
  ASSERT_NE(auth, nullptr);
  EXPECT_EQ(auth->EntryCountForTest(), 5u);
  EXPECT_TRUE(
      auth->AuthorizeCredentials(Bearer(kRwToken), Access::kWrite).ok());
  EXPECT_TRUE(auth->AuthorizeCredentials(Bearer(kRoToken), Access::kRead).ok());
  absl::Status denied =
      auth->AuthorizeCredentials(Bearer(kRoToken), Access::kWrite);
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.message(), Not(HasSubstr(kRoToken)));
  // The scheme is case-insensitive.
  CallCredentials lower;
  lower.authorization = std::string("bearer ") + kRwToken;
  EXPECT_TRUE(auth->AuthorizeCredentials(lower, Access::kWrite).ok());
}

TEST_F(AuthTest, BadTokensAreUnauthenticatedEvenWithAnonymousWrite) {
  auto auth = Make(file_, Access::kWrite);
  ASSERT_NE(auth, nullptr);
  const std::string wrong = "rw-token-0123456789abcdeX";
  for (const CallCredentials& c :
       {Bearer(wrong), Bearer(""), Bearer(std::string(kRwToken) + "x"),
        Bearer(std::string(kRwToken).substr(1))}) {
    absl::Status status = auth->AuthorizeCredentials(c, Access::kRead);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(status.message(), Not(HasSubstr("0123456789")));
  }
  CallCredentials basic;
  basic.authorization = std::string("Basic ") + kRwToken;
  EXPECT_EQ(auth->AuthorizeCredentials(basic, Access::kRead).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(AuthTest, AnonymousLevels) {
  CallCredentials nobody;
  auto none = Make(file_, Access::kNone);
  EXPECT_EQ(none->AuthorizeCredentials(nobody, Access::kRead).code(),
            absl::StatusCode::kUnauthenticated);
  auto read = Make(file_, Access::kRead);
  EXPECT_TRUE(read->AuthorizeCredentials(nobody, Access::kRead).ok());
  EXPECT_EQ(read->AuthorizeCredentials(nobody, Access::kWrite).code(),
            absl::StatusCode::kUnauthenticated);
  // A read-only token still reads when anonymous may read.
  EXPECT_TRUE(read->AuthorizeCredentials(Bearer(kRoToken), Access::kRead).ok());
  auto write = Make(file_, Access::kWrite);
  EXPECT_TRUE(write->AuthorizeCredentials(nobody, Access::kWrite).ok());
  // A read-only token gets the anonymous level when that is higher.
  EXPECT_TRUE(
      write->AuthorizeCredentials(Bearer(kRoToken), Access::kWrite).ok());
}

TEST_F(AuthTest, CertificateIdentities) {
  auto auth = Make(file_, Access::kNone, /*tls=*/Access::kRead);
  ASSERT_NE(auth, nullptr);
  EXPECT_TRUE(
      auth->AuthorizeCredentials(Cert({"ci-runner"}), Access::kWrite).ok());
  // Any of CN and SANs may match.
  EXPECT_TRUE(
      auth->AuthorizeCredentials(Cert({"x", "ci-runner"}), Access::kWrite)
          .ok());
  absl::Status ro =
      auth->AuthorizeCredentials(Cert({"dev laptop"}), Access::kWrite);
  EXPECT_EQ(ro.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(ro.message(), HasSubstr("dev laptop"));
  // Unlisted: tls_client_access.
  EXPECT_TRUE(auth->AuthorizeCredentials(Cert({"other"}), Access::kRead).ok());
  EXPECT_EQ(auth->AuthorizeCredentials(Cert({"other"}), Access::kWrite).code(),
            absl::StatusCode::kPermissionDenied);
  // Revoked wins, even over a listed SAN.
  EXPECT_EQ(auth->AuthorizeCredentials(Cert({"ci-runner", "revoked.example"}),
                                       Access::kRead)
                .code(),
            absl::StatusCode::kPermissionDenied);
  // A token takes precedence over the certificate.
  CallCredentials both = Cert({"ci-runner"});
  both.authorization = std::string("Bearer ") + kRoToken;
  EXPECT_EQ(auth->AuthorizeCredentials(both, Access::kWrite).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(AuthTest, UnlistedCertificatesRefusedWhenTlsAccessNone) {
  auto auth = Make(file_, Access::kNone, /*tls=*/Access::kNone);
  EXPECT_EQ(auth->AuthorizeCredentials(Cert({"other"}), Access::kRead).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(
      auth->AuthorizeCredentials(Cert({"ci-runner"}), Access::kRead).ok());
}

TEST_F(AuthTest, NoTokensFileMeansAnonymousOnly) {
  AuthOptions options;
  options.anonymous = Access::kRead;
  auto auth = NewAuthorizer(options);
  ASSERT_TRUE(auth.ok());
  EXPECT_TRUE((*auth)->AuthorizeCredentials({}, Access::kRead).ok());
  EXPECT_EQ(
      (*auth)->AuthorizeCredentials(Bearer(kRwToken), Access::kRead).code(),
      absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE((*auth)->Reload().ok());
}

TEST_F(AuthTest, BadFilesNameTheLineNotTheToken) {
  struct Case {
    std::string text;
    std::string expect;
  } cases[] = {
      {"rw short\n", "line 1"},
      {"# c\nadmin 0123456789abcdef0123\n", "line 2"},
      {absl::StrCat("rw ", kRwToken, "\nro ", kRwToken, "\n"),
       "already listed on line 1"},
      {"rw 0123456789abcdef 0123\n", "line 1"},
      {"rw-cert\n", "line 1"},
      {"ro-cert a\nrw-cert a\n", "listed twice"},
      {std::string("rw 0123456789abcdef\x01zz\n"), "line 1"},
  };
  for (const Case& c : cases) {
    AuthOptions options;
    options.tokens_file = WriteFile(c.text);
    absl::StatusOr<std::unique_ptr<Authorizer>> auth = NewAuthorizer(options);
    ASSERT_FALSE(auth.ok()) << c.text;
    EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(auth.status().message(), HasSubstr(c.expect));
    EXPECT_THAT(auth.status().message(), Not(HasSubstr("0123456789abcdef")));
  }
  AuthOptions missing;
  missing.tokens_file = dir_.path() + "/absent";
  EXPECT_EQ(NewAuthorizer(missing).status().code(),
            absl::StatusCode::kNotFound);
  AuthOptions directory;
  directory.tokens_file = dir_.path();
  EXPECT_EQ(NewAuthorizer(directory).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AuthTest, ReloadSwapsTokensAndKeepsOldTableOnError) {
  auto auth = Make(absl::StrCat("rw ", kRwToken, "\n"), Access::kNone);
  ASSERT_NE(auth, nullptr);
  WriteFile(absl::StrCat("ro ", kRoToken, "\n"));
  ASSERT_TRUE(auth->Reload().ok());
  EXPECT_EQ(auth->AuthorizeCredentials(Bearer(kRwToken), Access::kRead).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(auth->AuthorizeCredentials(Bearer(kRoToken), Access::kRead).ok());
  WriteFile("garbage line\n");
  EXPECT_EQ(auth->Reload().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(auth->AuthorizeCredentials(Bearer(kRoToken), Access::kRead).ok());
}

TEST_F(AuthTest, SighupReloads) {
  auto auth = Make(absl::StrCat("rw ", kRwToken, "\n"), Access::kNone);
  ASSERT_NE(auth, nullptr);
  absl::Notification reloaded;
  auto watcher = SighupWatcher::Start([&] {
    EXPECT_TRUE(auth->Reload().ok());
    if (!reloaded.HasBeenNotified()) {
      reloaded.Notify();
    }
  });
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  EXPECT_EQ(SighupWatcher::Start([] {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  WriteFile(absl::StrCat("ro ", kRoToken, "\n"));
  ASSERT_EQ(::raise(SIGHUP), 0);
  ASSERT_TRUE(reloaded.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_TRUE(auth->AuthorizeCredentials(Bearer(kRoToken), Access::kRead).ok());
  watcher->reset();
  // A new watcher can start once the old one is gone.
  EXPECT_TRUE(SighupWatcher::Start([] {}).ok());
}

TEST_F(AuthTest, ConcurrentAuthorizeDuringReload) {
  auto auth = Make(file_, Access::kNone);
  ASSERT_NE(auth, nullptr);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        if (!auth->AuthorizeCredentials(Bearer(kRwToken), Access::kWrite)
                 .ok()) {
          failures.fetch_add(1);
        }
      }
    });
  }
  for (int i = 0; i < 50; ++i) {
    EXPECT_TRUE(auth->Reload().ok());
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace cairn::rpc
