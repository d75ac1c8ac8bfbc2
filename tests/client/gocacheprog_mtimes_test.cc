// Tests for NormalizeMtimes (client/gocacheprog/mtimes.h).
#include "client/gocacheprog/mtimes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cas/digest.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace cairn::client::gocacheprog {
namespace {

void Write(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

int64_t Mtime(const std::string& path) {
  struct stat st;
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  EXPECT_EQ(st.st_mtim.tv_nsec, 0) << path;
  return st.st_mtim.tv_sec;
}

void SetMtime(const std::string& path, int64_t secs, int64_t nanos) {
  const timespec t[2] = {{secs, nanos}, {secs, nanos}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), t, AT_SYMLINK_NOFOLLOW), 0);
}

std::string Sha(const std::string& data) {
  cas::Sha256Hasher h;
  h.Update(data);
  return h.FinishRaw();
}

class MtimesTest : public ::testing::Test {
 protected:
  // A checkout: pkg/x.go, pkg/testdata/{a.txt,b.txt,link}, .git/HEAD.
  std::string Checkout(const std::string& name, int64_t fake_time) {
    const std::string root = absl::StrCat(dir_, "/", name);
    for (const char* d : {"", "/pkg", "/pkg/testdata", "/.git"}) {
      EXPECT_EQ(mkdir((root + d).c_str(), 0755), 0);
    }
    Write(root + "/pkg/x.go", "package pkg\n");
    Write(root + "/pkg/testdata/a.txt", "alpha\n");
    Write(root + "/pkg/testdata/b.txt", "bravo\n");
    EXPECT_EQ(symlink("a.txt", (root + "/pkg/testdata/link").c_str()), 0);
    Write(root + "/.git/HEAD", "ref: refs/heads/main\n");
    for (const char* p : {"/pkg/x.go", "/pkg/testdata/a.txt",
                          "/pkg/testdata/link", "/pkg/testdata", "/.git/HEAD",
                          "/pkg", ""}) {
      SetMtime(root + p, fake_time, 123);
    }
    return root;
  }
  testutil::TempDir tmp_;
  std::string dir_ = tmp_.path();
};

TEST_F(MtimesTest, TwoCheckoutsGetTheSameTimes) {
  const std::string a = Checkout("a", 1600000000);
  const std::string b = Checkout("b", 1700000000);
  auto ca = NormalizeMtimes(a);
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ(ca->files, 4);        // x.go, a.txt, b.txt, link
  EXPECT_EQ(ca->directories, 3);  // root, pkg, testdata
  ASSERT_TRUE(NormalizeMtimes(b).ok());
  for (const char* p : {"/pkg/x.go", "/pkg/testdata/a.txt",
                        "/pkg/testdata/b.txt", "/pkg/testdata/link",
                        "/pkg/testdata", "/pkg", ""}) {
    EXPECT_EQ(Mtime(a + p), Mtime(b + p)) << p;
  }
  // A file's time is its content's, the same wherever it is.
  EXPECT_EQ(Mtime(a + "/pkg/testdata/a.txt"),
            absl::ToUnixSeconds(ContentTime(Sha("alpha\n"))));
  EXPECT_NE(Mtime(a + "/pkg/testdata/a.txt"),
            Mtime(a + "/pkg/testdata/b.txt"));
  // The link has its own time; its target keeps the content's.
  EXPECT_NE(Mtime(a + "/pkg/testdata/link"),
            Mtime(a + "/pkg/testdata/a.txt"));
  // .git is left alone.
  struct stat st;
  ASSERT_EQ(stat((a + "/.git/HEAD").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 1600000000);
}

TEST_F(MtimesTest, ChangesFollowContentAndEntries) {
  const std::string root = Checkout("c", 1600000000);
  ASSERT_TRUE(NormalizeMtimes(root).ok());
  const int64_t file = Mtime(root + "/pkg/testdata/a.txt");
  const int64_t dir = Mtime(root + "/pkg/testdata");
  const int64_t parent = Mtime(root + "/pkg");
  // Same size, different bytes: a real edit a size check would miss.
  Write(root + "/pkg/testdata/a.txt", "alphA\n");
  Write(root + "/pkg/testdata/new.txt", "x");
  ASSERT_TRUE(NormalizeMtimes(root).ok());
  EXPECT_NE(Mtime(root + "/pkg/testdata/a.txt"), file);
  EXPECT_NE(Mtime(root + "/pkg/testdata"), dir);
  EXPECT_EQ(Mtime(root + "/pkg"), parent);  // Its entries did not change.
}

TEST_F(MtimesTest, TimesAreOldWholeSeconds) {
  for (int i = 0; i < 100; ++i) {
    const absl::Time t = ContentTime(Sha(absl::StrCat(i)));
    EXPECT_GE(t, absl::FromCivil(absl::CivilSecond(2000, 1, 1),
                                 absl::UTCTimeZone()));
    EXPECT_LT(t, absl::FromCivil(absl::CivilSecond(2008, 7, 6),
                                 absl::UTCTimeZone()));
    EXPECT_EQ(t, absl::FromUnixSeconds(absl::ToUnixSeconds(t)));
  }
}

TEST_F(MtimesTest, BadRootsAreErrors) {
  EXPECT_EQ(NormalizeMtimes(dir_ + "/absent").status().code(),
            absl::StatusCode::kNotFound);
  Write(dir_ + "/file", "x");
  EXPECT_EQ(NormalizeMtimes(dir_ + "/file").status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_EQ(mkdir((dir_ + "/locked").c_str(), 0755), 0);
  Write(dir_ + "/locked/secret", "x");
  ASSERT_EQ(chmod((dir_ + "/locked/secret").c_str(), 0), 0);
  if (geteuid() != 0) {  // root reads anything
    absl::StatusOr<NormalizeCounts> r = NormalizeMtimes(dir_ + "/locked");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
    EXPECT_NE(r.status().message().find("locked/secret"), std::string::npos)
        << r.status();
  }
}

}  // namespace
}  // namespace cairn::client::gocacheprog
