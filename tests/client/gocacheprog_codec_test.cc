// Wire codec and local store of cairn-gocacheprog.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "cas/digest.h"
#include "client/gocacheprog/codec.h"
#include "client/gocacheprog/local_store.h"
#include "client/gocacheprog/remote.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace cairn::client::gocacheprog {
namespace {

std::string Sha(absl::string_view data) {
  cas::Sha256Hasher h;
  h.Update(data);
  return h.FinishRaw();
}

TEST(ParseRequestTest, ReadsAllFields) {
  absl::StatusOr<Request> r = ParseRequest(absl::StrCat(
      R"({"ID":7,"Command":"put","ActionID":")", absl::Base64Escape("abc"),
      R"(","OutputID":")", absl::Base64Escape("xyz"), R"(","BodySize":12})"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id, 7);
  EXPECT_EQ(r->command, "put");
  EXPECT_EQ(r->action_id, "abc");
  EXPECT_EQ(r->output_id, "xyz");
  EXPECT_EQ(r->body_size, 12);
}

TEST(ParseRequestTest, AcceptsObjectIdSpelling) {
  absl::StatusOr<Request> r =
      ParseRequest(absl::StrCat(R"({"ID":1,"Command":"put","ObjectID":")",
                                absl::Base64Escape("old"), R"("})"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->output_id, "old");
}

TEST(ParseRequestTest, RejectsMalformedRequests) {
  for (const char* line :
       {"", "not json", "[]", "42", R"({"ID":1})",
        R"({"ID":"1","Command":"get"})", R"({"ID":1,"Command":7})",
        R"({"ID":1,"Command":"get","ActionID":"!!"})",
        R"({"ID":1,"Command":"get","ActionID":5})",
        R"({"ID":1,"Command":"put","BodySize":-1})",
        R"({"ID":1.5,"Command":"get"})", R"({"ID":1,"Command":"get"} x)"}) {
    absl::StatusOr<Request> r = ParseRequest(line);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << line;
  }
}

TEST(EncodeResponseTest, OmitsEmptyFieldsAndEndsWithNewline) {
  Response r;
  r.id = 3;
  r.miss = true;
  EXPECT_EQ(EncodeResponse(r), "{\"ID\":3,\"Miss\":true}\n");
  Response hit;
  hit.id = 4;
  hit.output_id = "\x01\x02";
  hit.size = 9;
  hit.time = absl::FromUnixSeconds(0);
  hit.disk_path = "/x/y";
  EXPECT_EQ(EncodeResponse(hit),
            "{\"DiskPath\":\"/x/y\",\"ID\":4,\"OutputID\":\"AQI=\",\"Size\":9,"
            "\"Time\":\"1970-01-01T00:00:00+00:00\"}\n");
}

// Feeds `text` through a pipe to a LineReader and decodes one body line.
absl::StatusOr<std::string> DecodeBody(const std::string& text) {
  int p[2];
  if (pipe(p) != 0) {
    return absl::InternalError("pipe");
  }
  std::thread writer([&] {
    absl::string_view rest = text;
    while (!rest.empty()) {
      ssize_t n = write(p[1], rest.data(), rest.size());
      if (n <= 0) break;
      rest.remove_prefix(n);
    }
    close(p[1]);
  });
  LineReader reader(p[0]);
  std::string out;
  absl::StatusOr<int64_t> n = reader.ReadBase64Body([&](absl::string_view c) {
    out.append(c.data(), c.size());
    return absl::OkStatus();
  });
  writer.join();
  close(p[0]);
  if (!n.ok()) {
    return n.status();
  }
  EXPECT_EQ(*n, static_cast<int64_t>(out.size()));
  return out;
}

TEST(LineReaderTest, DecodesBodiesOfEveryLength) {
  std::mt19937 gen(1);
  for (size_t len : {1, 2, 3, 4, 5, 6, 7, 100, 65535, 65536, 65537, 300001}) {
    std::string body(len, '\0');
    for (char& c : body) c = static_cast<char>(gen());
    absl::StatusOr<std::string> got =
        DecodeBody(absl::StrCat("\"", absl::Base64Escape(body), "\"\n"));
    ASSERT_TRUE(got.ok()) << len << " " << got.status();
    EXPECT_TRUE(*got == body) << len;
  }
}

TEST(LineReaderTest, AcceptsLeadingBlankLineAndEscapedSlash) {
  absl::StatusOr<std::string> got = DecodeBody("\n\"\\/w==\"\n");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, absl::string_view("\xff", 1));
}

TEST(LineReaderTest, RejectsMalformedBodies) {
  for (const char* text :
       {"abc\n", "\"ab!c\"\n", "\"abc\"\n", "\"a===\"\n", "\"ab=c\"\n",
        "\"YWJj\" x\n", "\"YWJj", "\"YWJj\"", "\"\\nYWJj\"\n"}) {
    EXPECT_EQ(DecodeBody(text).status().code(),
              absl::StatusCode::kInvalidArgument)
        << text;
  }
}

TEST(LineReaderTest, ReadsLinesAndReportsEof) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  ASSERT_EQ(write(p[1], "a\n\nbc\n", 6), 6);
  close(p[1]);
  LineReader reader(p[0]);
  std::string line;
  EXPECT_TRUE(*reader.ReadLine(&line));
  EXPECT_EQ(line, "a");
  EXPECT_TRUE(*reader.ReadLine(&line));
  EXPECT_EQ(line, "");
  EXPECT_TRUE(*reader.ReadLine(&line));
  EXPECT_EQ(line, "bc");
  EXPECT_FALSE(*reader.ReadLine(&line));
  close(p[0]);
}

TEST(GoActionKeyTest, IsDomainSeparatedAndSized) {
  const std::string action = Sha("an action");
  cas::Digest key = GoActionKey(action);
  EXPECT_EQ(key, GoActionKey(action));
  EXPECT_NE(key.hash(), cas::HexEncode(action));
  EXPECT_NE(key, cas::Digest::OfData(action));
  EXPECT_GT(key.size_bytes(), 32);  // bazel-remote refuses size 0.
  EXPECT_NE(key, GoActionKey(Sha("another action")));
}

class LocalStoreTest : public ::testing::Test {
 protected:
  // Stores `body` under action `n`; returns the body's path.
  std::string Put(LocalStore& store, int n, const std::string& body) {
    auto w = store.NewBody();
    EXPECT_TRUE(w.ok());
    EXPECT_TRUE((*w)->Append(body).ok());
    auto path = (*w)->Commit(Sha(body), body.size());
    EXPECT_TRUE(path.ok()) << path.status();
    Entry e{Sha(body), static_cast<int64_t>(body.size()), absl::Now()};
    EXPECT_TRUE(store.PutEntry(Sha(absl::StrCat(n)), e).ok());
    return *path;
  }
  testutil::TempDir tmp_;
  std::string dir_ = tmp_.path();
};

TEST_F(LocalStoreTest, SurvivesReopen) {
  {
    auto store = OpenLocalStore(dir_, 1 << 20);
    ASSERT_TRUE(store.ok());
    Put(**store, 1, "hello");
  }
  auto store = OpenLocalStore(dir_, 1 << 20);
  ASSERT_TRUE(store.ok());
  std::optional<LocalHit> hit = (*store)->Get(Sha("1"));
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->entry.output_id, Sha("hello"));
  EXPECT_EQ(hit->entry.size, 5);
  EXPECT_FALSE((*store)->Get(Sha("2")).has_value());
}

TEST_F(LocalStoreTest, CommitRejectsWrongDigestAndLeavesNothing) {
  auto store = OpenLocalStore(dir_, 1 << 20);
  ASSERT_TRUE(store.ok());
  auto w = (*store)->NewBody();
  ASSERT_TRUE((*w)->Append("abc").ok());
  EXPECT_EQ((*w)->Commit(Sha("abd"), 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  w->reset();
  const std::string cmd =
      absl::StrCat("test -z \"$(find ", dir_, "/tmp ", dir_, "/o -type f)\"");
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

// A body committed again (two writers of one output) and an entry put again
// with another output each replace what is there, and nothing is left in
// tmp/: bodies and entries are published by a link where the file system
// allows, which cannot replace, so this pins the replacing path.
TEST_F(LocalStoreTest, RepublishingReplacesAndLeavesNoTemporaries) {
  auto store = OpenLocalStore(dir_, 1 << 20);
  ASSERT_TRUE(store.ok());
  const std::string first = Put(**store, 1, "body one");
  EXPECT_EQ(Put(**store, 2, "body one"), first);  // Same body, second entry.
  Put(**store, 1, "body two");  // Action 1 now names another body.
  std::optional<LocalHit> hit = (*store)->Get(Sha("1"));
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->entry.output_id, Sha("body two"));
  hit = (*store)->Get(Sha("2"));
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->entry.output_id, Sha("body one"));
  std::ifstream in(hit->disk_path, std::ios::binary);
  std::stringstream got;
  got << in.rdbuf();
  EXPECT_EQ(got.str(), "body one");
  const std::string cmd =
      absl::StrCat("test -z \"$(find ", dir_, "/tmp -type f)\"");
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  store->reset();
  auto reopened = OpenLocalStore(dir_, 1 << 20);
  ASSERT_TRUE(reopened.ok());
  hit = (*reopened)->Get(Sha("1"));
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->entry.output_id, Sha("body two"));
}

// A directory written by an older release (one a/<hex ActionID> file per
// entry) opens with its entries served, and they move into the journal.
TEST_F(LocalStoreTest, OpensTheOneFilePerEntryLayout) {
  ASSERT_EQ(mkdir((dir_ + "/o").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dir_ + "/a").c_str(), 0755), 0);
  const std::string body = "an old body";
  std::ofstream(dir_ + "/o/" + cas::HexEncode(Sha(body))) << body;
  std::ofstream(dir_ + "/a/" + cas::HexEncode(Sha("old"))) << absl::StrCat(
      "v1 ", cas::HexEncode(Sha(body)), " ", body.size(), " 1700000000000000000\n");
  std::ofstream(dir_ + "/a/" + cas::HexEncode(Sha("garbage"))) << "v2 nonsense";
  {
    auto store = OpenLocalStore(dir_, 1 << 20);
    ASSERT_TRUE(store.ok());
    std::optional<LocalHit> hit = (*store)->Get(Sha("old"));
    ASSERT_TRUE(hit.has_value());
    EXPECT_EQ(hit->entry.output_id, Sha(body));
    EXPECT_EQ(hit->entry.time, absl::FromUnixNanos(1700000000000000000));
    EXPECT_FALSE((*store)->Get(Sha("garbage")).has_value());
  }
  EXPECT_NE(access((dir_ + "/a").c_str(), F_OK), 0);  // Moved, then removed.
  auto store = OpenLocalStore(dir_, 1 << 20);
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->Get(Sha("old")).has_value());
}

// A torn or foreign line in the journal costs only itself; an entry whose
// body is gone is not served.
TEST_F(LocalStoreTest, SkipsBadJournalLinesAndEntriesWithoutBodies) {
  std::string gone_path;
  {
    auto store = OpenLocalStore(dir_, 1 << 20);
    ASSERT_TRUE(store.ok());
    Put(**store, 1, "kept");
    gone_path = Put(**store, 2, "gone");
  }
  {
    std::ofstream journal(dir_ + "/entries", std::ios::app);
    journal << "not a record\n" << cas::HexEncode(Sha("3")) << " v1 "
            << cas::HexEncode(Sha("x")) << " 1";  // Torn: no time, no newline.
  }
  ASSERT_EQ(unlink(gone_path.c_str()), 0);
  auto store = OpenLocalStore(dir_, 1 << 20);
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->Get(Sha("1")).has_value());
  EXPECT_FALSE((*store)->Get(Sha("2")).has_value());
  EXPECT_FALSE((*store)->Get(Sha("3")).has_value());
  Put(**store, 4, "after the torn line");
  store->reset();
  auto reopened = OpenLocalStore(dir_, 1 << 20);
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE((*reopened)->Get(Sha("1")).has_value());
  EXPECT_TRUE((*reopened)->Get(Sha("4")).has_value());
}

// Replacing one entry over and over does not grow the journal without
// bound: dead lines are rewritten away.
TEST_F(LocalStoreTest, JournalOfReplacedEntriesStaysBounded) {
  auto store = OpenLocalStore(dir_, 64 << 20);
  ASSERT_TRUE(store.ok());
  Put(**store, 1, "the body");
  const Entry e{Sha("the body"), 8, absl::Now()};
  for (int i = 0; i < 20000; ++i) {  // ~3.4 MB of lines if never rewritten.
    ASSERT_TRUE((*store)->PutEntry(Sha("1"), e).ok());
  }
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/entries").c_str(), &st), 0);
  EXPECT_LT(st.st_size, 1 << 20);
  EXPECT_LT((*store)->SizeBytes(), 1000);  // One body, one entry.
  store->reset();
  auto reopened = OpenLocalStore(dir_, 64 << 20);
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE((*reopened)->Get(Sha("1")).has_value());
}

// Two processes sharing one directory (two stores here: each opens the
// journal itself, so their file locks exclude each other as processes'
// would): one rewriting the journal loses none of the other's entries,
// those written before the rewrite or after it.
TEST_F(LocalStoreTest, SharedDirectoryRewriteKeepsTheOtherProcessesEntries) {
  auto a = OpenLocalStore(dir_, 64 << 20);
  auto b = OpenLocalStore(dir_, 64 << 20);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  Put(**a, 1, "from a, before");
  Put(**b, 2, "from b");
  const Entry e{Sha("from b"), 6, absl::Now()};
  for (int i = 0; i < 10000; ++i) {  // 1.7 MB of lines if never rewritten.
    ASSERT_TRUE((*b)->PutEntry(Sha("2"), e).ok());
  }
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/entries").c_str(), &st), 0);
  ASSERT_LT(st.st_size, 400 << 10);  // b did rewrite it.
  Put(**a, 3, "from a, after");  // a still holds the replaced file open.
  a->reset();
  b->reset();
  auto c = OpenLocalStore(dir_, 64 << 20);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE((*c)->Get(Sha("1")).has_value());
  EXPECT_TRUE((*c)->Get(Sha("2")).has_value());
  EXPECT_TRUE((*c)->Get(Sha("3")).has_value());
}

TEST_F(LocalStoreTest, TrimsLeastRecentlyUsedButKeepsPinned) {
  // Each body is 1000 bytes; entries add ~80 bytes each.
  {
    auto store = OpenLocalStore(dir_, 1 << 20);
    ASSERT_TRUE(store.ok());
    for (int i = 0; i < 5; ++i) {
      std::string body(1000, static_cast<char>('a' + i));
      std::string path = Put(**store, i, body);
      // File times are coarse; give each body its own second, in order (an
      // entry takes its body's place in the order).
      const timespec t[2] = {{1000000 + i, 0}, {1000000 + i, 0}};
      utimensat(AT_FDCWD, path.c_str(), t, 0);
    }
  }
  // Reopen with room for about three: the two oldest (not pinned in this
  // process) go, and a truncated body is never served.
  auto store = OpenLocalStore(dir_, 3500);
  ASSERT_TRUE(store.ok());
  EXPECT_LE((*store)->SizeBytes(), 3500);
  EXPECT_FALSE((*store)->Get(Sha("0")).has_value());
  EXPECT_FALSE((*store)->Get(Sha("1")).has_value());
  std::optional<LocalHit> pinned = (*store)->Get(Sha("4"));
  ASSERT_TRUE(pinned.has_value());
  for (int i = 5; i < 10; ++i) {
    Put(**store, i, std::string(1000, static_cast<char>('a' + i)));
  }
  EXPECT_EQ(access(pinned->disk_path.c_str(), R_OK), 0);  // Pinned: kept.
  EXPECT_TRUE((*store)->Get(Sha("4")).has_value());
}

}  // namespace
}  // namespace cairn::client::gocacheprog
