// Prefetch manifests: wire form, AC key, default scope.
#include "client/gocacheprog/manifest.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cas/digest.h"
#include "gtest/gtest.h"

namespace cairn::client::gocacheprog {
namespace {

std::string Id(int n) {
  cas::Sha256Hasher h;
  h.Update(absl::StrCat("id ", n));
  return h.FinishRaw();
}

TEST(ManifestTest, RoundTripsInOrder) {
  const std::vector<std::string> ids = {Id(3), Id(1), Id(2)};
  const std::string blob = EncodeManifest(ids);
  EXPECT_EQ(blob.size(), kManifestMagic.size() + 3 * 32);
  auto decoded = DecodeManifest(blob);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, ids);
}

TEST(ManifestTest, EmptyManifest) {
  auto decoded = DecodeManifest(EncodeManifest({}));
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(decoded->empty());
}

TEST(ManifestTest, SkipsIdsOfWrongSize) {
  auto decoded = DecodeManifest(EncodeManifest({Id(1), "short", Id(2)}));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, (std::vector<std::string>{Id(1), Id(2)}));
}

TEST(ManifestTest, CapsTheNumberOfIds) {
  std::vector<std::string> ids(kMaxManifestIds + 5, Id(1));
  auto decoded = DecodeManifest(EncodeManifest(ids));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->size(), kMaxManifestIds);
}

TEST(ManifestTest, RejectsMalformedBlobs) {
  const std::string good = EncodeManifest({Id(1)});
  for (const std::string& bad :
       {std::string(""), std::string("cairn-gocacheprog manifest v2\n"),
        good.substr(0, good.size() - 1), good + "x",
        std::string(kManifestMagic) +
            std::string(32 * (kMaxManifestIds + 1), 'a')}) {
    EXPECT_EQ(DecodeManifest(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad.size();
  }
}

TEST(ManifestTest, KeyIsDomainSeparatedSha256SizedAsPreimage) {
  cas::Sha256Hasher h;
  h.Update(absl::string_view("cairn-gocacheprog/v1 manifest\0", 30));
  h.Update("my scope");
  const cas::Digest want = h.FinishDigest();
  EXPECT_EQ(ManifestKey("my scope"), want);
  EXPECT_EQ(ManifestKey("my scope").size_bytes(), 38);
  EXPECT_NE(ManifestKey("my scope"), ManifestKey("my scope2"));
}

const char* Env(const char* name) {
  const std::string n = name;
  if (n == "GOOS") return "linux";
  if (n == "GOFLAGS") return "-mod=mod";
  return nullptr;
}

TEST(ManifestTest, DefaultScopeKeepsPackagesAndDropsFlagValues) {
  const std::vector<std::string> args = {
      "build", "-trimpath", "-o", "/tmp/random/gh", "-p=2",
      "github.com/cli/cli/v2/cmd/gh"};
  EXPECT_EQ(DefaultPrefetchScope("/src/gh", args, Env),
            "cwd=/src/gh\ncmd=build\narg=github.com/cli/cli/v2/cmd/gh\n"
            "GOOS=linux\nGOFLAGS=-mod=mod\n");
  // The output path does not matter; the packages and directory do.
  const std::vector<std::string> other_out = {
      "build", "-trimpath", "-o", "/tmp/other", "-p=2",
      "github.com/cli/cli/v2/cmd/gh"};
  EXPECT_EQ(DefaultPrefetchScope("/src/gh", args, Env),
            DefaultPrefetchScope("/src/gh", other_out, Env));
  EXPECT_NE(DefaultPrefetchScope("/src/gh", args, Env),
            DefaultPrefetchScope("/src/other", args, Env));
  const std::vector<std::string> std_args = {"build", "std"};
  EXPECT_NE(DefaultPrefetchScope("/src/gh", args, Env),
            DefaultPrefetchScope("/src/gh", std_args, Env));
}

TEST(ManifestTest, DefaultScopeStopsAtProgramArguments) {
  const std::vector<std::string> a = {"run", ".", "--", "x"};
  const std::vector<std::string> b = {"run", ".", "--", "y"};
  auto no_env = [](const char*) -> const char* { return nullptr; };
  EXPECT_EQ(DefaultPrefetchScope("/d", a, no_env),
            DefaultPrefetchScope("/d", b, no_env));
}

}  // namespace
}  // namespace cairn::client::gocacheprog
