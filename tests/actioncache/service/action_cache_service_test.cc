// ActionCache service through an in-process server.
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/testutil/service_fixture.h"

namespace cairn::servertest {
namespace {

using ::grpc::ClientContext;
using ::grpc::StatusCode;

class ActionCacheServiceTest : public ServiceTest {
 protected:
  grpc::Status Update(const std::string& instance, const v2::Digest& action,
                      const v2::ActionResult& result) {
    ClientContext context;
    v2::UpdateActionResultRequest request;
    request.set_instance_name(instance);
    *request.mutable_action_digest() = action;
    *request.mutable_action_result() = result;
    v2::ActionResult stored;
    return ac_->UpdateActionResult(&context, request, &stored);
  }

  grpc::Status Get(const std::string& instance, const v2::Digest& action,
                   v2::ActionResult* result, bool inline_all = false) {
    ClientContext context;
    v2::GetActionResultRequest request;
    request.set_instance_name(instance);
    *request.mutable_action_digest() = action;
    if (inline_all) {
      request.set_inline_stdout(true);
      request.set_inline_stderr(true);
      request.add_inline_output_files("out/a.o");
    }
    return ac_->GetActionResult(&context, request, result);
  }

  // A result whose outputs and stdout are in the CAS.
  v2::ActionResult StoredResult() {
    v2::ActionResult result;
    result.set_exit_code(0);
    auto* file = result.add_output_files();
    file->set_path("out/a.o");
    *file->mutable_digest() = ProtoDigest(Put("object code"));
    *result.mutable_stdout_digest() = ProtoDigest(Put("compiler says hi"));
    return result;
  }

  const v2::Digest action_ = ProtoDigestOf("action");
};

TEST_F(ActionCacheServiceTest, MissIsNotFound) {
  v2::ActionResult result;
  EXPECT_EQ(Get("", action_, &result).error_code(), StatusCode::NOT_FOUND);
}

TEST_F(ActionCacheServiceTest, UpdateThenGetPerInstance) {
  ASSERT_TRUE(Update("ci/linux", action_, StoredResult()).ok());
  v2::ActionResult result;
  ASSERT_TRUE(Get("ci/linux", action_, &result).ok());
  ASSERT_EQ(result.output_files_size(), 1);
  EXPECT_EQ(result.output_files(0).path(), "out/a.o");
  EXPECT_TRUE(result.stdout_raw().empty());
  EXPECT_EQ(Get("other", action_, &result).error_code(), StatusCode::NOT_FOUND);
}

TEST_F(ActionCacheServiceTest, GetInlinesRequestedContents) {
  ASSERT_TRUE(Update("", action_, StoredResult()).ok());
  v2::ActionResult result;
  ASSERT_TRUE(Get("", action_, &result, /*inline_all=*/true).ok());
  EXPECT_EQ(result.stdout_raw(), "compiler says hi");
  ASSERT_EQ(result.output_files_size(), 1);
  EXPECT_EQ(result.output_files(0).contents(), "object code");
}

TEST_F(ActionCacheServiceTest, MissingOutputIsNotFound) {
  v2::ActionResult result = StoredResult();
  *result.add_output_files() = result.output_files(0);
  result.mutable_output_files(1)->set_path("out/gone.o");
  *result.mutable_output_files(1)->mutable_digest() = ProtoDigestOf("gone");
  ASSERT_TRUE(Update("", action_, result).ok());
  v2::ActionResult got;
  EXPECT_EQ(Get("", action_, &got).error_code(), StatusCode::NOT_FOUND);
}

TEST_F(ActionCacheServiceTest, UpdateValidates) {
  v2::ActionResult bad_path = StoredResult();
  bad_path.mutable_output_files(0)->set_path("/abs/path");
  EXPECT_EQ(Update("", action_, bad_path).error_code(),
            StatusCode::INVALID_ARGUMENT);
  v2::ActionResult bad_digest = StoredResult();
  bad_digest.mutable_output_files(0)->mutable_digest()->set_hash("xyz");
  EXPECT_EQ(Update("", action_, bad_digest).error_code(),
            StatusCode::INVALID_ARGUMENT);
  v2::Digest bad_action = action_;
  bad_action.set_size_bytes(-5);
  EXPECT_EQ(Update("", bad_action, StoredResult()).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Update("x/../y", action_, StoredResult()).error_code(),
            StatusCode::INVALID_ARGUMENT);
  v2::ActionResult result;
  EXPECT_EQ(Get("", bad_action, &result).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

TEST_F(ActionCacheServiceTest, DigestFunctionChecked) {
  ClientContext context;
  v2::GetActionResultRequest request;
  *request.mutable_action_digest() = action_;
  request.set_digest_function(v2::DigestFunction::MD5);
  v2::ActionResult result;
  EXPECT_EQ(ac_->GetActionResult(&context, request, &result).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

TEST_F(ActionCacheServiceTest, ReadOnlyRefusesUpdates) {
  ASSERT_TRUE(Update("", action_, StoredResult()).ok());
  server::ServerOptions options;
  options.read_only = true;
  StartServer(options);
  EXPECT_EQ(Update("", action_, StoredResult()).error_code(),
            StatusCode::PERMISSION_DENIED);
  v2::ActionResult result;
  EXPECT_TRUE(Get("", action_, &result).ok());
}

// Symlink targets: stored as sent by default (Capabilities says ALLOWED);
// with strict_symlink_targets (--strict_symlink_targets) absolute and
// escaping ones are refused and Capabilities says DISALLOWED.
TEST_F(ActionCacheServiceTest, SymlinkTargetsPassThroughUnlessStrict) {
  v2::ActionResult absolute = StoredResult();
  auto* link = absolute.add_output_symlinks();
  link->set_path("out/tool");
  link->set_target("/usr/bin/tool");
  v2::ActionResult escaping = StoredResult();
  link = escaping.add_output_symlinks();
  link->set_path("out/up");
  link->set_target("../../etc/passwd");
  v2::ActionResult inside = StoredResult();
  link = inside.add_output_symlinks();
  link->set_path("out/sub/link");
  link->set_target("../a.o");
  auto strategy = [&] {
    ClientContext context;
    v2::ServerCapabilities caps;
    EXPECT_TRUE(
        caps_->GetCapabilities(&context, v2::GetCapabilitiesRequest(), &caps)
            .ok());
    return caps.cache_capabilities().symlink_absolute_path_strategy();
  };
  EXPECT_TRUE(Update("", action_, absolute).ok());
  EXPECT_TRUE(Update("", action_, escaping).ok());
  EXPECT_EQ(strategy(), v2::SymlinkAbsolutePathStrategy::ALLOWED);
  server::ServerOptions options;
  options.strict_symlink_targets = true;
  StartServer(options);
  EXPECT_EQ(Update("", action_, absolute).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Update("", action_, escaping).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Update("", action_, inside).ok());
  EXPECT_EQ(strategy(), v2::SymlinkAbsolutePathStrategy::DISALLOWED);
}

}  // namespace
}  // namespace cairn::servertest
