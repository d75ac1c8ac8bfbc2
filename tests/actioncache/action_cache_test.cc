#include "actioncache/action_cache.h"

#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "cas/disk_blob_store.h"
#include "cas/memory_blob_store.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace cairn::actioncache {
namespace {

namespace v2 = ::build::bazel::remote::execution::v2;

v2::Digest ToProto(const cas::Digest& d) {
  v2::Digest out;
  out.set_hash(d.hash());
  out.set_size_bytes(d.size_bytes());
  return out;
}

v2::Digest Proto(const std::string& hash, int64_t size) {
  v2::Digest out;
  out.set_hash(hash);
  out.set_size_bytes(size);
  return out;
}

class ActionCacheTest : public testing::Test {
 protected:
  // Stores `data` in the CAS and returns its digest.
  v2::Digest Blob(const std::string& data) {
    cas::Digest d = cas::Digest::OfData(data);
    EXPECT_TRUE(store_->Write(d, data).ok());
    return ToProto(d);
  }

  // A result with one output file, stdout and stderr, all stored.
  ActionResult Complete() {
    ActionResult r;
    v2::OutputFile* f = r.add_output_files();
    f->set_path("out/a.o");
    *f->mutable_digest() = Blob("object code");
    *r.mutable_stdout_digest() = Blob("compiler says hi");
    *r.mutable_stderr_digest() = Blob("warning: x");
    r.set_exit_code(0);
    return r;
  }

  std::unique_ptr<cas::BlobStore> store_ =
      cas::NewMemoryBlobStore({.max_size_bytes = 1 << 20});
  ActionCache cache_{store_.get()};
  cas::Digest action_ = cas::Digest::OfData("action");
};

TEST_F(ActionCacheTest, MissIsNotFound) {
  EXPECT_EQ(cache_.Get("", action_, {}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ActionCacheTest, UpdateThenGet) {
  ActionResult r = Complete();
  r.set_exit_code(3);
  ASSERT_TRUE(cache_.Update("", action_, r).ok());
  absl::StatusOr<ActionResult> got = cache_.Get("", action_, {});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->exit_code(), 3);
  EXPECT_EQ(got->output_files(0).path(), "out/a.o");
  EXPECT_TRUE(got->stdout_raw().empty());  // Not asked for.
  EXPECT_TRUE(got->output_files(0).contents().empty());
}

TEST_F(ActionCacheTest, InstancesAreSeparate) {
  ActionResult r = Complete();
  ASSERT_TRUE(cache_.Update("a", action_, r).ok());
  EXPECT_TRUE(cache_.Get("a", action_, {}).ok());
  EXPECT_EQ(cache_.Get("b", action_, {}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(cache_.Get("", action_, {}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_NE(ActionCacheKey("a/b", action_), ActionCacheKey("a", action_));
  EXPECT_EQ(ActionCacheKey("a", action_).size(), 64u);
}

// The key names entries on disk: a store written by an earlier release must
// find them again. SHA-256 of "cairn-ac-v1\n2:ci\n<sha256(x)>/1".
TEST_F(ActionCacheTest, KeyIsStableAcrossReleases) {
  EXPECT_EQ(ActionCacheKey("ci", cas::Digest::OfData("x")),
            "7808a371d7e9f3ac9ae13dffa89bf2e418e21b39614a9f7712cff2c7350d10d9");
}

TEST_F(ActionCacheTest, NotFoundWhenAnOutputIsMissing) {
  ActionResult r = Complete();
  *r.mutable_output_files(0)->mutable_digest() =
      ToProto(cas::Digest::OfData("never uploaded"));
  ASSERT_TRUE(cache_.Update("", action_, r).ok());
  EXPECT_EQ(cache_.Get("", action_, {}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ActionCacheTest, NotFoundWhenStdoutIsMissing) {
  ActionResult r = Complete();
  *r.mutable_stdout_digest() = ToProto(cas::Digest::OfData("gone"));
  ASSERT_TRUE(cache_.Update("", action_, r).ok());
  EXPECT_EQ(cache_.Get("", action_, {}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ActionCacheTest, TreesAreCheckedDownToTheirFiles) {
  v2::Tree tree;
  v2::FileNode* file = tree.mutable_root()->add_files();
  file->set_name("f");
  *file->mutable_digest() = Blob("file in root");
  v2::FileNode* child_file = tree.add_children()->add_files();
  child_file->set_name("g");
  *child_file->mutable_digest() = ToProto(cas::Digest::OfData("not stored"));
  ActionResult r = Complete();
  v2::OutputDirectory* dir = r.add_output_directories();
  dir->set_path("out/dir");
  *dir->mutable_tree_digest() = Blob(tree.SerializeAsString());
  ASSERT_TRUE(cache_.Update("", action_, r).ok());
  EXPECT_EQ(cache_.Get("", action_, {}).status().code(),
            absl::StatusCode::kNotFound);
  Blob("not stored");
  EXPECT_TRUE(cache_.Get("", action_, {}).ok());
  // A missing tree blob itself is NOT_FOUND too.
  *dir->mutable_tree_digest() = ToProto(cas::Digest::OfData("no tree"));
  ASSERT_TRUE(cache_.Update("", action_, r).ok());
  EXPECT_EQ(cache_.Get("", action_, {}).status().code(),
            absl::StatusCode::kNotFound);
}

// TryGet() answers from memory (the memory store always can) as Get() would.
TEST_F(ActionCacheTest, TryGetAnswersLikeGet) {
  ActionResult r = Complete();
  r.set_exit_code(5);
  ASSERT_TRUE(cache_.Update("", action_, r).ok());
  std::optional<absl::StatusOr<ActionResult>> got =
      cache_.TryGet("", action_, {});
  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(got->ok()) << got->status();
  EXPECT_EQ((*got)->SerializeAsString(),
            cache_.Get("", action_, {})->SerializeAsString());
  EXPECT_EQ((*got)->exit_code(), 5);

  got = cache_.TryGet("other", action_, {});
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status().code(), absl::StatusCode::kNotFound);

  *r.mutable_stderr_digest() = ToProto(cas::Digest::OfData("gone"));
  ASSERT_TRUE(cache_.Update("", action_, r).ok());
  got = cache_.TryGet("", action_, {});
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status().code(), absl::StatusCode::kNotFound);
}

// What needs blob reads (inlining, output trees) is left to Get(); a miss
// is still answered.
TEST_F(ActionCacheTest, TryGetLeavesReadsToGet) {
  ActionResult r = Complete();
  ASSERT_TRUE(cache_.Update("", action_, r).ok());
  InlineRequest inline_stdout;
  inline_stdout.stdout_raw = true;
  EXPECT_EQ(cache_.TryGet("", action_, inline_stdout), std::nullopt);
  std::optional<absl::StatusOr<ActionResult>> miss =
      cache_.TryGet("", cas::Digest::OfData("other"), inline_stdout);
  ASSERT_TRUE(miss.has_value());
  EXPECT_EQ(miss->status().code(), absl::StatusCode::kNotFound);

  v2::Tree tree;
  *tree.mutable_root()->add_files()->mutable_digest() = Blob("f");
  v2::OutputDirectory* dir = r.add_output_directories();
  dir->set_path("out/dir");
  *dir->mutable_tree_digest() = Blob(tree.SerializeAsString());
  ASSERT_TRUE(cache_.Update("", action_, r).ok());
  EXPECT_EQ(cache_.TryGet("", action_, {}), std::nullopt);
  EXPECT_TRUE(cache_.Get("", action_, {}).ok());
}

TEST_F(ActionCacheTest, InlinesRequestedContentsWithinBudget) {
  ActionResult r = Complete();
  v2::OutputFile* big = r.add_output_files();
  big->set_path("out/big");
  *big->mutable_digest() = Blob(std::string(1000, 'b'));
  ASSERT_TRUE(cache_.Update("", action_, r).ok());

  InlineRequest req;
  req.stdout_raw = true;
  req.stderr_raw = true;
  req.output_files = {"out/a.o", "out/big"};
  absl::StatusOr<ActionResult> got = cache_.Get("", action_, req);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->stdout_raw(), "compiler says hi");
  EXPECT_EQ(got->stderr_raw(), "warning: x");
  EXPECT_EQ(got->output_files(0).contents(), "object code");
  EXPECT_EQ(got->output_files(1).contents(), std::string(1000, 'b'));
  EXPECT_EQ(got->stdout_digest().size_bytes(), 16);  // Digest kept.

  req.max_inline_bytes = 100;  // Room for the small ones only.
  got = cache_.Get("", action_, req);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->stdout_raw(), "compiler says hi");
  EXPECT_EQ(got->output_files(0).contents(), "object code");
  EXPECT_TRUE(got->output_files(1).contents().empty());

  req = InlineRequest{};
  req.stderr_raw = true;
  got = cache_.Get("", action_, req);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->stdout_raw().empty());
  EXPECT_EQ(got->stderr_raw(), "warning: x");
}

TEST_F(ActionCacheTest, InlinedContentsMoveToTheCas) {
  ActionResult r;
  r.set_stdout_raw("inline out");
  r.set_stderr_raw("inline err");
  v2::OutputFile* f = r.add_output_files();
  f->set_path("x");
  f->set_contents("file body");
  *f->mutable_digest() = ToProto(cas::Digest::OfData("file body"));
  absl::StatusOr<ActionResult> stored = cache_.Update("", action_, r);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(stored->stdout_raw().empty());
  EXPECT_TRUE(stored->output_files(0).contents().empty());
  EXPECT_EQ(stored->stdout_digest().hash(),
            cas::Digest::OfData("inline out").hash());
  EXPECT_EQ(*store_->Read(cas::Digest::OfData("inline out")), "inline out");
  EXPECT_EQ(*store_->Read(cas::Digest::OfData("inline err")), "inline err");
  EXPECT_EQ(*store_->Read(cas::Digest::OfData("file body")), "file body");
  EXPECT_TRUE(cache_.Get("", action_, {}).ok());
}

TEST_F(ActionCacheTest, InlinedContentsMustMatchTheirDigest) {
  ActionResult r;
  v2::OutputFile* f = r.add_output_files();
  f->set_path("x");
  f->set_contents("file body");
  *f->mutable_digest() = ToProto(cas::Digest::OfData("other body"));
  EXPECT_EQ(cache_.Update("", action_, r).status().code(),
            absl::StatusCode::kInvalidArgument);

  ActionResult s;
  s.set_stdout_raw("out");
  *s.mutable_stdout_digest() = ToProto(cas::Digest::OfData("different"));
  EXPECT_EQ(cache_.Update("", action_, s).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache_.Get("", action_, {}).status().code(),
            absl::StatusCode::kNotFound);
}

struct BadResult {
  std::string name;
  std::function<void(ActionResult*)> mutate;
};

class ValidationTest : public testing::TestWithParam<BadResult> {};

TEST_P(ValidationTest, IsInvalidArgument) {
  ActionResult r;
  v2::OutputFile* f = r.add_output_files();
  f->set_path("ok/path");
  *f->mutable_digest() = ToProto(cas::Digest::OfData("x"));
  ASSERT_TRUE(ValidateActionResult(r).ok());
  GetParam().mutate(&r);
  absl::Status s = ValidateActionResult(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

const std::string kAbc =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

auto SetPath(std::string path) {
  return
      [path](ActionResult* r) { r->mutable_output_files(0)->set_path(path); };
}
auto SetDigest(std::string hash, int64_t size) {
  return [hash, size](ActionResult* r) {
    *r->mutable_output_files(0)->mutable_digest() = Proto(hash, size);
  };
}

// Adds to the deprecated field that older clients still fill.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
v2::OutputSymlink* AddFileSymlink(ActionResult* r) {
  return r->add_output_file_symlinks();
}
#pragma GCC diagnostic pop

auto AddLink(std::string path, std::string target) {
  return [path, target](ActionResult* r) {
    v2::OutputSymlink* l = r->add_output_symlinks();
    l->set_path(path);
    l->set_target(target);
  };
}

INSTANTIATE_TEST_SUITE_P(
    Table, ValidationTest,
    testing::Values(
        BadResult{"AbsolutePath", SetPath("/etc/passwd")},
        BadResult{"DotDot", SetPath("a/../b")},
        BadResult{"LeadingDotDot", SetPath("../b")},
        BadResult{"Dot", SetPath("a/./b")},
        BadResult{"EmptySegment", SetPath("a//b")},
        BadResult{"TrailingSlash", SetPath("a/b/")},
        BadResult{"EmptyPath", SetPath("")},
        BadResult{"NulInPath", SetPath(std::string("a\0b", 3))},
        BadResult{"UppercaseHash", SetDigest(std::string(64, 'A'), 3)},
        BadResult{"ShortHash", SetDigest(kAbc.substr(1), 3)},
        BadResult{"NegativeSize", SetDigest(kAbc, -1)},
        BadResult{"MissingDigest", SetDigest("", 0)},
        BadResult{"BadStdoutDigest",
                  [](ActionResult* r) {
                    *r->mutable_stdout_digest() = Proto("zz", 1);
                  }},
        BadResult{"BadStderrDigest",
                  [](ActionResult* r) {
                    *r->mutable_stderr_digest() = Proto(kAbc, -5);
                  }},
        BadResult{"BadTreeDigest",
                  [](ActionResult* r) {
                    v2::OutputDirectory* d = r->add_output_directories();
                    d->set_path("d");
                    *d->mutable_tree_digest() = Proto("nothex", 1);
                  }},
        BadResult{"MissingTreeDigest",
                  [](ActionResult* r) {
                    r->add_output_directories()->set_path("d");
                  }},
        BadResult{"DirectoryDotDot",
                  [](ActionResult* r) {
                    v2::OutputDirectory* d = r->add_output_directories();
                    d->set_path("..");
                    *d->mutable_tree_digest() = Proto(kAbc, 3);
                  }},
        BadResult{"SymlinkAbsolutePath",
                  [](ActionResult* r) {
                    v2::OutputSymlink* l = r->add_output_symlinks();
                    l->set_path("/abs");
                    l->set_target("t");
                  }},
        BadResult{"SymlinkEmptyTarget", AddLink("l", "")},
        BadResult{"SymlinkNulInTarget", AddLink("l", std::string("a\0b", 3))},
        BadResult{"DeprecatedSymlinkNulInTarget",
                  [](ActionResult* r) {
                    v2::OutputSymlink* l = AddFileSymlink(r);
                    l->set_path("l");
                    l->set_target(std::string("\0", 1));
                  }},
        BadResult{"DuplicateFile",
                  [](ActionResult* r) {
                    *r->add_output_files() = r->output_files(0);
                  }},
        BadResult{"FileAndDirectorySamePath",
                  [](ActionResult* r) {
                    v2::OutputDirectory* d = r->add_output_directories();
                    d->set_path("ok/path");
                    *d->mutable_tree_digest() = Proto(kAbc, 3);
                  }},
        BadResult{"FileAndSymlinkSamePath", AddLink("ok/path", "target")},
        BadResult{"TwoSymlinksSamePath",
                  [](ActionResult* r) {
                    AddLink("l", "a")(r);
                    AddLink("l", "b")(r);
                  }},
        BadResult{"TimestampNanosNegative",
                  [](ActionResult* r) {
                    r->mutable_execution_metadata()
                        ->mutable_worker_start_timestamp()
                        ->set_nanos(-1);
                  }},
        BadResult{"TimestampAfterYear9999",
                  [](ActionResult* r) {
                    r->mutable_execution_metadata()
                        ->mutable_output_upload_completed_timestamp()
                        ->set_seconds(253402300800);
                  }},
        BadResult{"DurationSignsDiffer",
                  [](ActionResult* r) {
                    auto* d = r->mutable_execution_metadata()
                                  ->mutable_virtual_execution_duration();
                    d->set_seconds(1);
                    d->set_nanos(-1);
                  }},
        BadResult{"MtimeNanosTooLarge",
                  [](ActionResult* r) {
                    r->mutable_output_files(0)
                        ->mutable_node_properties()
                        ->mutable_mtime()
                        ->set_nanos(1000000000);
                  }},
        BadResult{"UnixModeBeyond07777",
                  [](ActionResult* r) {
                    r->mutable_output_files(0)
                        ->mutable_node_properties()
                        ->mutable_unix_mode()
                        ->set_value(010000);
                  }}),
    [](const testing::TestParamInfo<BadResult>& info) {
      return info.param.name;
    });

TEST(ValidateActionResultTest, AcceptsCleanResults) {
  ActionResult r;
  EXPECT_TRUE(ValidateActionResult(r).ok());  // Empty result is fine.
  v2::OutputSymlink* l = r.add_output_symlinks();
  l->set_path("lib/link");
  l->set_target("../target");  // Targets may point upwards.
  v2::OutputDirectory* d = r.add_output_directories();
  d->set_path("a.b/c..d/.e");
  *d->mutable_tree_digest() = Proto(kAbc, 3);
  EXPECT_TRUE(ValidateActionResult(r).ok());
}

TEST(ValidateActionResultTest, AcceptsWhatTheSpecAllows) {
  ActionResult r;
  v2::OutputFile* f = r.add_output_files();
  f->set_path("bin/tool");
  *f->mutable_digest() = Proto(kAbc, 3);
  f->mutable_node_properties()->mutable_unix_mode()->set_value(0755);
  f->mutable_node_properties()->mutable_mtime()->set_seconds(1700000000);
  AddLink("bin/abs", "/usr/bin/env")(&r);  // Capabilities say ALLOWED.
  AddLink("bin/up", "../../outside")(&r);  // '..' is allowed anywhere.
  // The deprecated fields repeat output_symlinks for older clients.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  *r.add_output_file_symlinks() = r.output_symlinks(0);
  *r.add_output_directory_symlinks() = r.output_symlinks(1);
#pragma GCC diagnostic pop
  r.mutable_execution_metadata()->set_worker("w1");
  r.mutable_execution_metadata()->mutable_queued_timestamp()->set_seconds(-5);
  r.mutable_execution_metadata()
      ->mutable_virtual_execution_duration()
      ->set_nanos(-3);
  r.set_exit_code(-9);
  absl::Status s = ValidateActionResult(r);
  EXPECT_TRUE(s.ok()) << s;
}

struct SymlinkCase {
  std::string path;
  std::string target;
  bool contained;  // Accepted when escaping targets are refused.
};

class ContainedSymlinkTest : public testing::TestWithParam<SymlinkCase> {};

TEST_P(ContainedSymlinkTest, RefusesOnlyEscapingTargets) {
  ActionResult r;
  AddLink(GetParam().path, GetParam().target)(&r);
  EXPECT_TRUE(ValidateActionResult(r).ok());  // Default: passed through.
  absl::Status s = ValidateActionResult(
      r, ValidationOptions{.allow_escaping_symlink_targets = false});
  if (GetParam().contained) {
    EXPECT_TRUE(s.ok()) << s;
  } else {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ContainedSymlinkTest,
    testing::Values(
        SymlinkCase{"l", "t", true}, SymlinkCase{"a/b/l", "../../t", true},
        SymlinkCase{"a/b/l", "../../../t", false},
        SymlinkCase{"l", "..", false}, SymlinkCase{"l", "/abs", false},
        SymlinkCase{"l", "//abs", false}, SymlinkCase{"a/l", "x/../../t", true},
        SymlinkCase{"a/l", "x/../../../t", false},
        SymlinkCase{"a/l", "./.././t", true},
        SymlinkCase{"a/l", "x//..//..", true},
        SymlinkCase{"l", "x/../..", false}));

TEST(ActionCacheStrictTest, UpdateRefusesAndGetHidesEscapingLinks) {
  std::unique_ptr<cas::BlobStore> store =
      cas::NewMemoryBlobStore({.max_size_bytes = 1 << 20});
  cas::Digest action = cas::Digest::OfData("action");
  ActionResult r;
  AddLink("l", "/etc/passwd")(&r);
  ActionCache lenient(store.get());
  ASSERT_TRUE(lenient.Update("", action, r).ok());
  ActionCache strict(store.get(), {.allow_escaping_symlink_targets = false});
  EXPECT_EQ(strict.Update("", action, r).status().code(),
            absl::StatusCode::kInvalidArgument);
  // An entry stored before the policy changed is a miss, not a bad hit.
  EXPECT_TRUE(lenient.Get("", action, {}).ok());
  EXPECT_EQ(strict.Get("", action, {}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ActionCacheOnDiskTest, CorruptEntryIsNotFoundAndRemoved) {
  testutil::TempDir dir;
  cas::DiskBlobStoreOptions options;
  options.root = dir.path();
  options.max_size_bytes = 1 << 20;
  options.fsync = false;
  options.small_item_max_bytes = 0;  // Corrupted through the entry's file.
  absl::StatusOr<std::unique_ptr<cas::BlobStore>> store =
      cas::NewDiskBlobStore(options);
  ASSERT_TRUE(store.ok()) << store.status();
  ActionCache cache(store->get());
  cas::Digest action = cas::Digest::OfData("action");
  ActionResult r;
  r.set_exit_code(7);
  r.set_stdout_raw("hello");
  ASSERT_TRUE(cache.Update("ci", action, r).ok());
  absl::StatusOr<ActionResult> got = cache.Get("ci", action, {});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->exit_code(), 7);

  std::string key = ActionCacheKey("ci", action);
  std::string path = dir.path() + "/ac/" + key.substr(0, 2) + "/" + key;
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(-1, std::ios::end);
  f.put('\x7f');
  f.close();
  EXPECT_EQ(cache.Get("ci", action, {}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->Stats().corruptions, 1);
  EXPECT_EQ((*store)->Stats().ac_entries, 0);
}

}  // namespace
}  // namespace cairn::actioncache
