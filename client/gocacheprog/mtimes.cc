#include "client/gocacheprog/mtimes.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cas/digest.h"

// A file's time hashes its bytes; a symbolic link's its target; a
// directory's the sorted names of its entries, each with its kind, so adding,
// removing or renaming an entry changes it (as it changes a real mtime).

namespace cairn::client::gocacheprog {
namespace {

// 2000-01-01T00:00:00Z, and the span of times used (2^28 s, ~8.5 years).
constexpr int64_t kEpoch = 946684800;
constexpr uint64_t kSpan = uint64_t{1} << 28;

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::StatusOr<std::string> HashFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Errno("open", path);
  }
  absl::Cleanup closer = [fd] { close(fd); };
  cas::Sha256Hasher h;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Errno("read", path);
    }
    if (n == 0) {
      return h.FinishRaw();
    }
    h.Update(absl::string_view(buf, static_cast<size_t>(n)));
  }
}

absl::StatusOr<std::string> HashLink(const std::string& path) {
  char target[4096];
  ssize_t n = readlink(path.c_str(), target, sizeof(target));
  if (n < 0) {
    return Errno("readlink", path);
  }
  cas::Sha256Hasher h;
  h.Update("symlink:");
  h.Update(absl::string_view(target, static_cast<size_t>(n)));
  return h.FinishRaw();
}

absl::Status SetTime(const std::string& path, absl::string_view sha256) {
  const int64_t secs = absl::ToUnixSeconds(ContentTime(sha256));
  const timespec times[2] = {{secs, 0}, {secs, 0}};
  if (utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return Errno("set time of", path);
  }
  return absl::OkStatus();
}

// Normalizes the directory `path` and everything below it.
absl::Status Walk(const std::string& path, NormalizeCounts& counts) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) {
    return Errno("open directory", path);
  }
  std::vector<std::string> names;
  {
    absl::Cleanup closer = [dir] { closedir(dir); };
    errno = 0;
    while (dirent* e = readdir(dir)) {
      absl::string_view name = e->d_name;
      if (name != "." && name != "..") {
        names.emplace_back(name);
      }
    }
    if (errno != 0) {
      return Errno("read directory", path);
    }
  }
  std::sort(names.begin(), names.end());
  cas::Sha256Hasher dir_hash;
  dir_hash.Update("directory:");
  for (const std::string& name : names) {
    const std::string child = absl::StrCat(path, "/", name);
    struct stat st;
    if (lstat(child.c_str(), &st) != 0) {
      return Errno("stat", child);
    }
    const char kind[1] = {S_ISDIR(st.st_mode)   ? 'd'
                          : S_ISLNK(st.st_mode) ? 'l'
                                                : 'f'};
    dir_hash.Update(absl::string_view(kind, 1));
    dir_hash.Update(absl::string_view(name.c_str(), name.size() + 1));
    if (name == ".git") {
      continue;
    }
    absl::Status s;
    if (S_ISDIR(st.st_mode)) {
      s = Walk(child, counts);
    } else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
      absl::StatusOr<std::string> h =
          S_ISREG(st.st_mode) ? HashFile(child) : HashLink(child);
      s = h.ok() ? SetTime(child, *h) : h.status();
      ++counts.files;
    }
    if (!s.ok()) {
      return s;
    }
  }
  ++counts.directories;
  return SetTime(path, dir_hash.FinishRaw());
}

}  // namespace

absl::Time ContentTime(absl::string_view sha256) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < sha256.size(); ++i) {
    v = (v << 8) | static_cast<unsigned char>(sha256[i]);
  }
  return absl::FromUnixSeconds(kEpoch + static_cast<int64_t>(v % kSpan));
}

absl::StatusOr<NormalizeCounts> NormalizeMtimes(const std::string& root) {
  struct stat st;
  if (stat(root.c_str(), &st) != 0) {
    return errno == ENOENT
               ? absl::NotFoundError(absl::StrCat(root, " does not exist"))
               : Errno("stat", root);
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(root, " is not a directory"));
  }
  NormalizeCounts counts;
  if (absl::Status s = Walk(root, counts); !s.ok()) {
    return s;
  }
  return counts;
}

}  // namespace cairn::client::gocacheprog
