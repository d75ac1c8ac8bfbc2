// The tiered store's entry objects (cas/entry_object.h) without a bucket:
// what the encoder writes parses back, and what a bucket could hold that is
// not an intact entry is refused (tiered_blob_store_test covers them
// against a real engine).
#include "cas/entry_object.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cas/digest.h"

namespace cairn::cas {
namespace {

constexpr absl::string_view kValue = "an action result";

std::string Copies() {
  std::string copies;
  AppendEntryCopy(Digest::OfData("abc"), "abc", &copies);
  AppendEntryCopy(Digest::Empty(), "", &copies);
  return copies;
}

TEST(EntryObjectTest, ValueWithoutCopiesRoundTrips) {
  const std::string object = EncodeEntryObject(kValue, "");
  EXPECT_TRUE(absl::StartsWith(object, kEntryMagic));
  auto entry = ParseEntryObject(object);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->value, kValue);
  EXPECT_TRUE(entry->blobs.empty());
}

TEST(EntryObjectTest, CopiesRoundTripInOrder) {
  const std::string object = EncodeEntryObject(kValue, Copies());
  EXPECT_TRUE(absl::StartsWith(object, kEntryWithBlobsMagic));
  auto entry = ParseEntryObject(object);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->value, kValue);
  ASSERT_EQ(entry->blobs.size(), 2u);
  EXPECT_EQ(entry->blobs[0].digest, Digest::OfData("abc"));
  EXPECT_EQ(entry->blobs[0].data, "abc");
  EXPECT_EQ(entry->blobs[1].digest, Digest::Empty());
  EXPECT_EQ(entry->blobs[1].data, "");
}

TEST(EntryObjectTest, ValueNotMatchingItsHashIsNotAnEntry) {
  for (const std::string& copies : {std::string(), Copies()}) {
    std::string object = EncodeEntryObject(kValue, copies);
    object[object.find("action")] = 'A';
    EXPECT_FALSE(ParseEntryObject(object).has_value()) << copies.size();
  }
}

TEST(EntryObjectTest, UnknownMagicShortObjectOrBadLengthIsNotAnEntry) {
  std::string object = EncodeEntryObject(kValue, "");
  object[7] = '9';
  EXPECT_FALSE(ParseEntryObject(object).has_value());
  EXPECT_FALSE(ParseEntryObject("CAIRNAC1").has_value());
  EXPECT_FALSE(ParseEntryObject("").has_value());
  const std::string hash = EncodeEntryObject(kValue, "x").substr(8, 32);
  for (const std::string& length : {"", "x", "9999", "18446744073709551616"}) {
    EXPECT_FALSE(ParseEntryObject(absl::StrCat(kEntryWithBlobsMagic, hash,
                                               length, "\n", kValue))
                     .has_value())
        << length;
  }
}

TEST(EntryObjectTest, MalformedCopySectionEndsTheCopies) {
  std::string copies = Copies();
  absl::StrAppend(&copies, Digest::OfData("xyz").hash(), " 300\nxyz");
  // The parse answers views into the object: keep each object alive.
  const std::string object = EncodeEntryObject(kValue, copies);
  auto entry = ParseEntryObject(object);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->value, kValue);
  EXPECT_EQ(entry->blobs.size(), 2u);  // The truncated third is dropped.
  const std::string headless = EncodeEntryObject(kValue, "no header\nabc");
  entry = ParseEntryObject(headless);
  ASSERT_TRUE(entry.has_value());
  EXPECT_TRUE(entry->blobs.empty());
}

TEST(EntryObjectTest, CompressedCopyRoundTripsAsFrames) {
  std::string copies;
  AppendEntryCopy(Digest::OfData("abc"), "abc", &copies);
  AppendEntryZstdCopy(Digest::OfData("plain bytes"), "frames", &copies);
  AppendEntryCopy(Digest::OfData("xyz"), "xyz", &copies);
  const std::string object = EncodeEntryObject(kValue, copies);
  auto entry = ParseEntryObject(object);
  ASSERT_TRUE(entry.has_value());
  ASSERT_EQ(entry->blobs.size(), 3u);
  EXPECT_EQ(entry->blobs[1].digest, Digest::OfData("plain bytes"));
  EXPECT_EQ(entry->blobs[1].data, "");  // The keeper decompresses.
  EXPECT_EQ(entry->blobs[1].zstd, "frames");
  EXPECT_EQ(entry->blobs[2].data, "xyz");
  EXPECT_TRUE(entry->blobs[2].zstd.empty());
  // A frames length that is not a positive number, or runs past the end,
  // ends the copies there.
  const std::string first = copies.substr(0, copies.find('\n', 0) + 4);
  for (const std::string& n : {"0", "-1", "x", "7"}) {
    const std::string o = EncodeEntryObject(
        kValue, absl::StrCat(first, Digest::OfData("plain bytes").hash(),
                             " 11 ", n, "\nframes"));
    entry = ParseEntryObject(o);
    ASSERT_TRUE(entry.has_value()) << n;
    EXPECT_EQ(entry->blobs.size(), 1u) << n;
  }
}

}  // namespace
}  // namespace cairn::cas
