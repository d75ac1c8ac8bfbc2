// TempDir: a fresh directory under $TEST_TMPDIR (or /tmp when that is unset
// or too long to hold a Unix socket path) for one test, removed with
// everything in it when the object is destroyed.
//
// Thread safety: path() is safe to call from any thread; construction and
// destruction are not.
#ifndef CAIRN_TESTS_TESTUTIL_TEMP_DIR_H_
#define CAIRN_TESTS_TESTUTIL_TEMP_DIR_H_

#include <string>

namespace cairn::testutil {

class TempDir {
 public:
  // Creates the directory; aborts the test binary if it cannot.
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Returns the absolute path of the directory (no trailing '/').
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace cairn::testutil

#endif  // CAIRN_TESTS_TESTUTIL_TEMP_DIR_H_
