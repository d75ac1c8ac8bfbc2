#include "cas/spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace cairn::cas {
namespace {
constexpr size_t kCopyChunk = 256 << 10;
}  // namespace

absl::StatusOr<std::unique_ptr<Spool>> Spool::Create(const std::string& dir) {
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::string path = dir + "/cairn-spool-XXXXXX";
    fd = mkstemp(path.data());
    if (fd >= 0) {
      unlink(path.c_str());
    }
  }
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create a spool file in ",
                                            dir, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<Spool>(new Spool(fd));
}

Spool::~Spool() { close(fd_); }

absl::Status Spool::Append(absl::string_view data) {
  hasher_.Update(data);
  while (!data.empty()) {
    ssize_t n = write(fd_, data.data(), data.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return errno == ENOSPC
                 ? absl::ResourceExhaustedError("spool directory is full")
                 : absl::InternalError(
                       absl::StrCat("spool write: ", std::strerror(errno)));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status Spool::CopyTo(BlobWriter* writer) {
  std::string buf(kCopyChunk, '\0');
  off_t offset = 0;
  while (true) {
    ssize_t n = pread(fd_, buf.data(), buf.size(), offset);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return absl::InternalError(
          absl::StrCat("spool read: ", std::strerror(errno)));
    }
    if (n == 0) {
      return absl::OkStatus();
    }
    if (absl::Status s = writer->Append(
            absl::string_view(buf.data(), static_cast<size_t>(n)));
        !s.ok()) {
      return s;
    }
    offset += n;
  }
}

absl::StatusOr<Digest> StoreSpooled(Spool* spool, BlobStore* store) {
  const Digest digest = spool->Finish();
  if (store->Contains(digest)) {
    return digest;
  }
  absl::StatusOr<std::unique_ptr<BlobWriter>> writer = store->OpenWrite(digest);
  if (!writer.ok()) {
    return writer.status();
  }
  if (absl::Status s = spool->CopyTo(writer->get()); !s.ok()) {
    return s;
  }
  if (absl::Status s = (*writer)->Commit(); !s.ok()) {
    return s;
  }
  return digest;
}

}  // namespace cairn::cas
