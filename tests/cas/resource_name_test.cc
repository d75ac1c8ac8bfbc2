#include "cas/resource_name.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace cairn::cas {
namespace {

const std::string kHash(
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

struct ReadCase {
  std::string name;
  std::string instance;
  Compressor compressor;
};

class GoodReadTest : public testing::TestWithParam<ReadCase> {};

TEST_P(GoodReadTest, Parses) {
  auto r = ParseReadResourceName(GetParam().name);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->instance_name, GetParam().instance);
  EXPECT_EQ(r->digest.hash(), kHash);
  EXPECT_EQ(r->digest.size_bytes(), 3);
  EXPECT_EQ(r->compressor, GetParam().compressor);
}

INSTANTIATE_TEST_SUITE_P(
    Table, GoodReadTest,
    testing::Values(
        ReadCase{"blobs/" + kHash + "/3", "", Compressor::kIdentity},
        ReadCase{"main/blobs/" + kHash + "/3", "main", Compressor::kIdentity},
        ReadCase{"a/b/c/blobs/" + kHash + "/3", "a/b/c", Compressor::kIdentity},
        ReadCase{"blobs/sha256/" + kHash + "/3", "", Compressor::kIdentity},
        ReadCase{"x/compressed-blobs/zstd/" + kHash + "/3", "x",
                 Compressor::kZstd},
        ReadCase{"compressed-blobs/identity/" + kHash + "/3", "",
                 Compressor::kIdentity}));

class BadReadTest : public testing::TestWithParam<std::string> {};

TEST_P(BadReadTest, IsInvalidArgument) {
  auto r = ParseReadResourceName(GetParam());
  ASSERT_FALSE(r.ok()) << GetParam();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadReadTest,
    testing::Values("", "blobs", "blobs/" + kHash, "blobs/" + kHash + "/",
                    "blobs/" + kHash + "/-3", "blobs/" + kHash + "/3x",
                    "blobs/" + kHash + "/+3", "blobs/" + kHash + "/3/extra",
                    "blobs/md5/" + kHash + "/3", "blobs/blake3/" + kHash + "/3",
                    "compressed-blobs/brotli/" + kHash + "/3",
                    "compressed-blobs/" + kHash + "/3",
                    "../blobs/" + kHash + "/3", "a/../blobs/" + kHash + "/3",
                    "a//blobs/" + kHash + "/3", "/blobs/" + kHash + "/3",
                    "./blobs/" + kHash + "/3",
                    "uploads/x/blobs/" + kHash + "/3",
                    "blobs/" + std::string(64, 'A') + "/3",
                    "blobs/" + kHash + "/99999999999999999999999"));

TEST(WriteNameTest, ParsesWithInstanceUuidAndMetadata) {
  auto r = ParseWriteResourceName(
      absl::StrCat("ci/linux/uploads/1234-abcd/blobs/", kHash, "/3/meta/data"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->instance_name, "ci/linux");
  EXPECT_EQ(r->uuid, "1234-abcd");
  EXPECT_EQ(r->digest.size_bytes(), 3);
}

TEST(WriteNameTest, ParsesCompressed) {
  auto r = ParseWriteResourceName(
      absl::StrCat("uploads/u/compressed-blobs/zstd/", kHash, "/3"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->compressor, Compressor::kZstd);
  EXPECT_EQ(r->instance_name, "");
}

TEST(WriteNameTest, RejectsBadNames) {
  for (const std::string& name :
       {std::string("uploads/u/blobs/") + kHash, "blobs/" + kHash + "/3",
        "uploads//blobs/" + kHash + "/3", "uploads/u/" + kHash + "/3",
        "../uploads/u/blobs/" + kHash + "/3",
        "uploads/u/blobs/" + kHash + "/x"}) {
    auto r = ParseWriteResourceName(name);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << name;
  }
}

TEST(ResourceNameTest, MakeRoundTrips) {
  Digest d = Digest::OfData("abc");
  auto r = ParseReadResourceName(MakeReadResourceName("a/b", d));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->instance_name, "a/b");
  EXPECT_EQ(r->digest, d);
  auto w = ParseWriteResourceName(
      MakeWriteResourceName("", "id", d, Compressor::kZstd));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->uuid, "id");
  EXPECT_EQ(w->compressor, Compressor::kZstd);
}

TEST(InstanceNameTest, Validates) {
  EXPECT_TRUE(ValidateInstanceName("").ok());
  EXPECT_TRUE(ValidateInstanceName("main").ok());
  EXPECT_TRUE(ValidateInstanceName("a/b-c_d.e").ok());
  for (const char* bad : {"/", "a/", "/a", "..", "a/../b", ".", "a//b", "blobs",
                          "x/uploads", "a\nb"}) {
    EXPECT_EQ(ValidateInstanceName(bad).code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

}  // namespace
}  // namespace cairn::cas
