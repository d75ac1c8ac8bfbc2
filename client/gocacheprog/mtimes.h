// NormalizeMtimes: gives every file and directory of a checkout a
// modification time derived from its content, so Go test results that read
// files (testdata/) hit the cache on another machine or a fresh clone.
//
// Why: the go command keys a cached test result on the size, mode and mtime
// of each file the test opened (and of each directory it listed), not on
// their content. A fresh checkout has fresh mtimes, so every such test
// misses. After normalization the mtime of a file is a function of its bytes
// (a directory's: of its entry names), identical on every machine, far in the
// past (the go command refuses to cache results that read files changed in
// the last two seconds), and different when the content differs. See
// docs/go-cache.md, "Test results across machines".
//
// Directory `.git` is skipped. Symbolic links get their own time (from the
// link text) and are not followed.
//
// Thread safety: free functions; do not run two over the same tree at once.
#ifndef CAIRN_CLIENT_GOCACHEPROG_MTIMES_H_
#define CAIRN_CLIENT_GOCACHEPROG_MTIMES_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace cairn::client::gocacheprog {

// Returns the time NormalizeMtimes gives content whose SHA-256 is `sha256`
// (32 raw bytes): whole seconds between 2000-01-01 and 2008-07-05 UTC.
absl::Time ContentTime(absl::string_view sha256);

struct NormalizeCounts {
  int64_t files = 0;        // regular files and symbolic links
  int64_t directories = 0;  // including `root`
};

// Sets the mtime (and atime) of everything under `root`, and of `root`
// itself, to its ContentTime. NOT_FOUND when `root` does not exist;
// INVALID_ARGUMENT when it is not a directory; INTERNAL (naming the path)
// when a file cannot be read or its time set. Stops at the first error.
absl::StatusOr<NormalizeCounts> NormalizeMtimes(const std::string& root);

}  // namespace cairn::client::gocacheprog

#endif  // CAIRN_CLIENT_GOCACHEPROG_MTIMES_H_
