// LocalStore: the shim's local tier, a directory of bodies plus an index of
// action entries, so a repeated build on one machine answers without the
// network and every answer can name a DiskPath.
//
// Layout under the root directory:
//   o/<hex OutputID>   a body (content-addressed: its SHA-256 is the name)
//   entries            the action entries, a journal of lines
//                      "<hex ActionID> v1 <hex OutputID> <size> <unix ns>";
//                      the last line for an ActionID wins
//   tmp/               bodies being written (and the journal being rewritten)
// A body is written unnamed (O_TMPFILE, or a named file in tmp/ where that
// is unsupported) and linked into place only once its bytes hash to its
// OutputID, so a DiskPath never shows a partial or wrong body. An entry is
// one append to the journal: no file, inode or rename per entry. Files are
// not fsync'ed: the cache is disposable; a torn journal line is skipped and
// a body whose size no longer matches its entry is treated as absent.
// Directories written by older releases (one a/<hex ActionID> file per
// entry) are moved into the journal on open.
//
// The directory is bounded by `max_size` bytes (bodies plus the entries'
// journal lines): least recently used items are dropped first. A body's
// access time is kept in its mtime, so the order survives restarts; an
// entry takes its body's. Bodies handed out as a DiskPath in this process,
// and their entries, are pinned and never deleted before the process
// exits, since the go command may open them until "close". When dropped
// and replaced entries make up most of the journal it is rewritten.
//
// Processes may share a directory: each sees the entries present when it
// opened the store plus its own. Appends hold a shared flock on the journal
// and a rewrite an exclusive one; a rewrite re-reads the file and keeps
// every other process's lines, and an appender whose journal was replaced
// follows the new file, so no process's entries are lost to another's
// rewrite.
//
// Thread safety: all methods are safe to call concurrently. A BodyWriter is
// used by one thread at a time.
#ifndef CAIRN_CLIENT_GOCACHEPROG_LOCAL_STORE_H_
#define CAIRN_CLIENT_GOCACHEPROG_LOCAL_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace cairn::client::gocacheprog {

// What a put recorded for an ActionID.
struct Entry {
  std::string output_id;  // 32 raw bytes: SHA-256 of the body
  int64_t size = 0;
  absl::Time time;  // when the entry was first put
};

// A body being written: bytes are appended, hashed on the fly, and become
// visible only through Commit(). Destroying an uncommitted writer removes
// its temporary file.
class BodyWriter {
 public:
  virtual ~BodyWriter() = default;
  // Appends `data`. INTERNAL on write errors.
  virtual absl::Status Append(absl::string_view data) = 0;
  // Verifies the bytes hash to `output_id` and number `size`, then moves the
  // body into place and returns its absolute path. INVALID_ARGUMENT on a
  // mismatch (the temporary file is removed).
  virtual absl::StatusOr<std::string> Commit(absl::string_view output_id,
                                             int64_t size) = 0;
};

struct LocalHit {
  Entry entry;
  std::string disk_path;
};

class LocalStore {
 public:
  virtual ~LocalStore() = default;

  // Returns the entry and body path stored for `action_id`, or nullopt when
  // either is absent or inconsistent. Marks both as recently used and pins
  // the body for the life of the process.
  virtual std::optional<LocalHit> Get(absl::string_view action_id) = 0;

  // Starts a new body in tmp/.
  virtual absl::StatusOr<std::unique_ptr<BodyWriter>> NewBody() = 0;

  // Records `entry` for `action_id` (atomically replacing any old one), pins
  // its body, and trims the directory to its bound.
  virtual absl::Status PutEntry(absl::string_view action_id,
                                const Entry& entry) = 0;

  // Returns the absolute path a body with `output_id` has (or would have).
  virtual std::string BodyPath(absl::string_view output_id) const = 0;

  // Returns the bytes currently accounted for (for tests and stats).
  virtual int64_t SizeBytes() const = 0;
};

// Opens (creating if needed) the store at `dir`, rebuilding the index from
// the files present in access order, removing stray temporary files and
// trimming to `max_size`. INTERNAL when the directory cannot be created.
absl::StatusOr<std::unique_ptr<LocalStore>> OpenLocalStore(
    const std::string& dir, int64_t max_size);

}  // namespace cairn::client::gocacheprog

#endif  // CAIRN_CLIENT_GOCACHEPROG_LOCAL_STORE_H_
