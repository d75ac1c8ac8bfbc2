// ActionCache: validation and storage of REAPI ActionResults over a BlobStore.
//
// Results are kept per instance: the store key is the SHA-256 of the instance
// name and the action digest, so an instance name never becomes a path. A
// result is served only while everything it references (output files, output
// directory trees and the files inside them, stdout/stderr) is still in the
// CAS; otherwise Get() answers NOT_FOUND so the client rebuilds and
// re-uploads rather than getting a hit it cannot use.
//
// Thread safety: all methods are safe to call concurrently.
#ifndef CAIRN_ACTIONCACHE_ACTION_CACHE_H_
#define CAIRN_ACTIONCACHE_ACTION_CACHE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "cas/blob_store.h"
#include "cas/digest.h"

namespace cairn::actioncache {

using ::build::bazel::remote::execution::v2::ActionResult;

// What GetActionResult asked to have inlined.
struct InlineRequest {
  bool stdout_raw = false;
  bool stderr_raw = false;
  // Paths of output files whose contents should be inlined.
  std::vector<std::string> output_files;
  // Upper bound on the inlined bytes in one answer.
  int64_t max_inline_bytes = 1 << 20;
};

// How strictly ValidateActionResult() treats symlink targets.
struct ValidationOptions {
  // When true (the default, matching Capabilities' ALLOWED), a symlink target
  // is stored as sent: absolute, or climbing above the output root with '..'.
  // The cache never follows or creates a link; the client that fetches the
  // result materialises it, and the REAPI lets targets be absolute when the
  // server advertises ALLOWED and allows '..' anywhere in a target. When
  // false (advertise DISALLOWED), a target that starts with '/' or whose
  // '..' segments, read lexically from the link's directory, leave the
  // output root is refused.
  bool allow_escaping_symlink_targets = true;
};

// Returns OK when `result` is well formed:
//  - every digest is well formed (optional ones may be unset);
//  - every output path is a clean relative path (no leading '/', no '.',
//    '..' or empty segments, no NUL) and no path names two outputs (files,
//    directories and symlinks; output_symlinks and the deprecated
//    output_file_symlinks/output_directory_symlinks are alternative views
//    of the same links, so they are checked against the others separately);
//  - symlink targets are non-empty, without NUL, and contained as `options`
//    asks;
//  - timestamps and durations (execution_metadata, node_properties.mtime)
//    are in google.protobuf's valid range and unix_mode has no bits beyond
//    07777.
// Stored unchecked, as opaque to a cache: exit_code, worker, the
// auxiliary_metadata Any messages, node property names and values (the
// message size limit bounds them all).
// INVALID_ARGUMENT naming the offending field otherwise.
absl::Status ValidateActionResult(const ActionResult& result,
                                  const ValidationOptions& options = {});

// Returns the 64-hex store key for (instance, action).
std::string ActionCacheKey(absl::string_view instance_name,
                           const cas::Digest& action_digest);

class ActionCache {
 public:
  // `store` is not owned and must outlive this object. Update() validates
  // with `options`.
  explicit ActionCache(cas::BlobStore* store, ValidationOptions options = {})
      : store_(store), options_(options) {}

  ActionCache(const ActionCache&) = delete;
  ActionCache& operator=(const ActionCache&) = delete;

  // Returns the result stored for (instance, action), with the requested
  // contents inlined when they fit. NOT_FOUND when absent or when anything it
  // references is gone from the CAS; DATA_LOSS is reported as NOT_FOUND after
  // the corrupt entry is removed. Marks the entry and its blobs recently used.
  absl::StatusOr<ActionResult> Get(absl::string_view instance_name,
                                   const cas::Digest& action_digest,
                                   const InlineRequest& inline_request);

  // Get() from memory alone, for threads that must not block: answers as
  // Get() would, or returns std::nullopt when that needs I/O (the entry's
  // bytes are not in memory, a referenced blob's access time is due for a
  // refresh, the result has output directories whose trees must be read, or
  // contents are to be inlined); the caller then uses Get() on a thread that
  // may block. Never does I/O and never waits on a lock held across I/O.
  std::optional<absl::StatusOr<ActionResult>> TryGet(
      absl::string_view instance_name, const cas::Digest& action_digest,
      const InlineRequest& inline_request);

  // Validates and stores `result`. Inlined contents (stdout_raw, stderr_raw,
  // OutputFile.contents) are moved into the CAS and replaced by digests.
  // Returns the result as stored. INVALID_ARGUMENT for bad digests, paths or
  // inlined bytes that do not match their digest; RESOURCE_EXHAUSTED when the
  // store is full.
  absl::StatusOr<ActionResult> Update(absl::string_view instance_name,
                                      const cas::Digest& action_digest,
                                      const ActionResult& result);

  // Update() for a thread that should not wait for the disk to sync: calls
  // `done` exactly once with what Update() would return, on this thread or
  // later on one of the store's (BlobStore::PutEntry() with `done`). The
  // arguments need not outlive the call.
  using UpdateCallback =
      absl::AnyInvocable<void(absl::StatusOr<ActionResult>) &&>;
  void UpdateThen(absl::string_view instance_name,
                  const cas::Digest& action_digest, const ActionResult& result,
                  UpdateCallback done);

 private:
  // Validates `result` and returns it as stored (inlined bytes moved into
  // the CAS) with its serialized bytes in `*bytes`.
  absl::StatusOr<ActionResult> PrepareUpdate(const ActionResult& result,
                                             std::string* bytes);

  cas::BlobStore* const store_;  // Not owned.
  const ValidationOptions options_;
};

}  // namespace cairn::actioncache

#endif  // CAIRN_ACTIONCACHE_ACTION_CACHE_H_
