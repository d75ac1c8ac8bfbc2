// Spool: bytes of unknown digest parked on disk while they are hashed, then
// copied into a BlobWriter once the digest is known (HTTP uploads of unknown
// length, downloads from an origin). The file is unlinked from the start
// (O_TMPFILE, or mkstemp + unlink), so nothing is left behind after a crash.
//
// Thread safety: one Spool is used by one thread at a time.
#ifndef CAIRN_CAS_SPOOL_H_
#define CAIRN_CAS_SPOOL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cas/blob_store.h"
#include "cas/digest.h"

namespace cairn::cas {

class Spool {
 public:
  // Returns a spool file in directory `dir`; INTERNAL when none can be made.
  static absl::StatusOr<std::unique_ptr<Spool>> Create(const std::string& dir);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Appends and hashes `data`. RESOURCE_EXHAUSTED when the directory's file
  // system is full; INTERNAL on other write errors.
  absl::Status Append(absl::string_view data);

  // Returns the number of bytes appended so far.
  int64_t size() const { return hasher_.bytes(); }

  // Returns the digest of everything appended. Call once, after the last
  // Append().
  Digest Finish() { return hasher_.FinishDigest(); }

  // Copies the spooled bytes into `writer` (not committed). INTERNAL on a
  // read error; the writer's own errors as they come.
  absl::Status CopyTo(BlobWriter* writer);

 private:
  explicit Spool(int fd) : fd_(fd) {}
  const int fd_;
  Sha256Hasher hasher_;
};

// Finishes `spool` and stores its bytes in `store` under their digest, unless
// `store` already holds that blob. Returns the digest; the errors of
// BlobStore::OpenWrite, Spool::CopyTo and BlobWriter::Commit as they come.
// Neither pointer is owned.
absl::StatusOr<Digest> StoreSpooled(Spool* spool, BlobStore* store);

}  // namespace cairn::cas

#endif  // CAIRN_CAS_SPOOL_H_
