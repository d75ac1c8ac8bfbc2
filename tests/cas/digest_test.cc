#include "cas/digest.h"

#include <string>
#include <thread>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace cairn::cas {
namespace {

constexpr char kEmpty[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
// SHA-256("abc"), FIPS 180-2 test vector.
constexpr char kAbc[] =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(DigestTest, DefaultIsEmptyBlob) {
  Digest d;
  EXPECT_EQ(d.hash(), kEmpty);
  EXPECT_EQ(d.size_bytes(), 0);
  EXPECT_TRUE(d.IsEmpty());
  EXPECT_EQ(d, Digest::Empty());
}

TEST(DigestTest, OfDataMatchesKnownVectors) {
  EXPECT_EQ(Digest::OfData("").hash(), kEmpty);
  Digest abc = Digest::OfData("abc");
  EXPECT_EQ(abc.hash(), kAbc);
  EXPECT_EQ(abc.size_bytes(), 3);
  EXPECT_EQ(abc.ToString(), std::string(kAbc) + "/3");
}

// OfData reuses one hashing context per thread: consecutive hashes of
// different lengths, on several threads, must not leak state into each other.
TEST(DigestTest, OneShotHashesAreIndependent) {
  auto check = [] {
    for (int n : {0, 3, 55, 56, 64, 1000, 3, 0}) {
      std::string data(static_cast<size_t>(n), 'a');
      Sha256Hasher h;
      h.Update(data);
      EXPECT_EQ(Digest::OfData(data), h.FinishDigest()) << n;
    }
    EXPECT_EQ(Digest::OfData("abc").hash(), kAbc);
    EXPECT_EQ(HexEncode(Sha256Raw("abc")), kAbc);
  };
  std::thread other(check);
  check();
  other.join();
}

TEST(DigestTest, StreamingEqualsOneShot) {
  std::string data(100000, 'x');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  Sha256Hasher h;
  for (size_t i = 0; i < data.size(); i += 999) {
    h.Update(absl::string_view(data).substr(i, 999));
  }
  EXPECT_EQ(h.bytes(), 100000);
  EXPECT_EQ(h.FinishDigest(), Digest::OfData(data));
}

TEST(DigestTest, CreateAcceptsValid) {
  auto d = Digest::Create(kAbc, 3);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->hash(), kAbc);
  EXPECT_TRUE(Digest::Create(kEmpty, 0).ok());
  EXPECT_TRUE(Digest::Create(kAbc, int64_t{1} << 40).ok());
}

struct BadDigest {
  std::string hash;
  int64_t size;
};

class BadDigestTest : public testing::TestWithParam<BadDigest> {};

TEST_P(BadDigestTest, IsInvalidArgument) {
  auto d = Digest::Create(GetParam().hash, GetParam().size);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument)
      << d.status();
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadDigestTest,
    testing::Values(
        BadDigest{"", 1},                               // empty hash
        BadDigest{std::string(kAbc).substr(0, 63), 3},  // short
        BadDigest{std::string(kAbc) + "0", 3},          // long
        BadDigest{
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
            3},                                         // uppercase
        BadDigest{std::string(63, 'a') + "g", 3},       // non-hex
        BadDigest{std::string(63, 'a') + " ", 3},       // space
        BadDigest{std::string(kAbc).substr(0, 32), 3},  // MD5 length
        BadDigest{kAbc, -1},                            // negative
        BadDigest{kAbc, 0},                             // 0 but not empty
        BadDigest{std::string(64, '\0'), 3}));          // NULs

TEST(HexTest, Encodes) {
  EXPECT_EQ(HexEncode(std::string("\x00\x0f\xf0\xff", 4)), "000ff0ff");
  EXPECT_EQ(HexEncode(""), "");
}

}  // namespace
}  // namespace cairn::cas
