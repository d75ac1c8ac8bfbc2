#include "tests/testutil/temp_dir.h"

#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace cairn::testutil {
namespace {

// Tests put Unix sockets in their TempDir, and a socket path has room for
// 107 bytes: Bazel's default TEST_TMPDIR, deep in its output base, leaves
// too little, so a base longer than this is passed over for /tmp.
constexpr size_t kMaxBaseLength = 60;

}  // namespace

TempDir::TempDir() {
  const char* env = getenv("TEST_TMPDIR");
  std::string base = env != nullptr ? env : "";
  if (base.empty() || base.size() > kMaxBaseLength) {
    base = "/tmp";
  }
  std::string pattern = base + "/cairn-test-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    perror("mkdtemp");
    abort();
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  // Tests may leave read-only directories behind; make them writable first.
  for (auto it = std::filesystem::recursive_directory_iterator(path_, ec);
       !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
  }
  std::filesystem::remove_all(path_, ec);
}

}  // namespace cairn::testutil
