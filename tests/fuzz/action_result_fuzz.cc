// Fuzzes ActionResult validation and storage. The input is a serialized
// ActionResult (protobuf wire format; inputs that do not parse are skipped).
// Invariants: ValidateActionResult never crashes and fails only with
// INVALID_ARGUMENT; an accepted result has only well-formed digests and clean
// relative paths, symlink targets that are non-empty and NUL-free, and no
// path naming two outputs (checked here independently of the implementation);
// ActionCache::Update accepts exactly what validates (or runs out of room),
// stores no inlined bytes, and what it stored validates again; Get answers
// OK or NOT_FOUND.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_split.h"
#include "actioncache/action_cache.h"
#include "cas/digest.h"
#include "cas/memory_blob_store.h"

namespace {

namespace v2 = ::build::bazel::remote::execution::v2;
using cairn::actioncache::ActionResult;

bool CleanRelativePath(const std::string& path) {
  if (path.empty() || path[0] == '/' || path.find('\0') != std::string::npos) {
    return false;
  }
  for (absl::string_view seg : absl::StrSplit(path, '/')) {
    if (seg.empty() || seg == "." || seg == "..") {
      return false;
    }
  }
  return true;
}

bool ValidDigest(const v2::Digest& d, bool optional) {
  if (optional && d.hash().empty() && d.size_bytes() == 0) {
    return true;
  }
  if (d.hash().size() != 64 || d.size_bytes() < 0) {
    return false;
  }
  for (char c : d.hash()) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

// Checks, independently of the implementation, what validation promises.
// (Reads the deprecated symlink fields on purpose: clients still send them.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
void CheckAccepted(const ActionResult& r) {
  for (const v2::OutputFile& f : r.output_files()) {
    if (!CleanRelativePath(f.path()) || !ValidDigest(f.digest(), false)) {
      abort();
    }
  }
  for (const v2::OutputDirectory& d : r.output_directories()) {
    if (!CleanRelativePath(d.path()) || !ValidDigest(d.tree_digest(), false) ||
        !ValidDigest(d.root_directory_digest(), true)) {
      abort();
    }
  }
  for (const auto* links : {&r.output_symlinks(), &r.output_file_symlinks(),
                            &r.output_directory_symlinks()}) {
    for (const v2::OutputSymlink& l : *links) {
      if (!CleanRelativePath(l.path()) || l.target().empty() ||
          l.target().find('\0') != std::string::npos) {
        abort();
      }
    }
  }
  // No path names two outputs (files, directories, current symlinks).
  std::set<std::string> paths;
  size_t count = 0;
  for (const v2::OutputFile& f : r.output_files()) {
    paths.insert(f.path());
    ++count;
  }
  for (const v2::OutputDirectory& d : r.output_directories()) {
    paths.insert(d.path());
    ++count;
  }
  for (const v2::OutputSymlink& l : r.output_symlinks()) {
    paths.insert(l.path());
    ++count;
  }
  if (paths.size() != count) {
    abort();
  }
}

#pragma GCC diagnostic pop

void CheckStored(const ActionResult& stored) {
  if (!cairn::actioncache::ValidateActionResult(stored).ok() ||
      !stored.stdout_raw().empty() || !stored.stderr_raw().empty()) {
    abort();
  }
  for (const v2::OutputFile& f : stored.output_files()) {
    if (!f.contents().empty()) {
      abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ActionResult result;
  if (!result.ParseFromArray(data, static_cast<int>(size))) {
    return 0;
  }
  absl::Status valid = cairn::actioncache::ValidateActionResult(result);
  if (!valid.ok() && valid.code() != absl::StatusCode::kInvalidArgument) {
    abort();
  }
  if (valid.ok()) {
    CheckAccepted(result);
  }
  std::unique_ptr<cairn::cas::BlobStore> store =
      cairn::cas::NewMemoryBlobStore({/*max_size_bytes=*/int64_t{8} << 20});
  cairn::actioncache::ActionCache cache(store.get());
  cairn::cas::Digest action = cairn::cas::Digest::OfData("fuzz action");
  absl::StatusOr<ActionResult> stored = cache.Update("fuzz", action, result);
  if (!valid.ok() && stored.ok()) {
    abort();  // Update accepted what validation refused.
  }
  if (!stored.ok()) {
    absl::StatusCode code = stored.status().code();
    if (code != absl::StatusCode::kInvalidArgument &&
        code != absl::StatusCode::kResourceExhausted) {
      abort();
    }
    return 0;
  }
  CheckStored(*stored);
  cairn::actioncache::InlineRequest inline_all;
  inline_all.stdout_raw = true;
  inline_all.stderr_raw = true;
  for (const v2::OutputFile& f : stored->output_files()) {
    inline_all.output_files.push_back(f.path());
  }
  absl::StatusOr<ActionResult> got = cache.Get("fuzz", action, inline_all);
  if (!got.ok() && got.status().code() != absl::StatusCode::kNotFound) {
    abort();
  }
  return 0;
}
