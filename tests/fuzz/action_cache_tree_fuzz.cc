// Fuzzes what ActionCache::Get parses from storage (actioncache/): the Tree
// blobs of output directories, read for the completeness check, and the
// stored entry itself. The input is split (FuzzedDataProvider) into up to 4
// file blobs, up to 3 Tree blobs and an ActionResult. A hashless digest in a
// Tree's FileNodes or in the result's output files and directories is
// pointed, by its size_bytes, at one of those blobs or at a missing one;
// each blob is stored (under its real digest) or left out as the input
// says, and a Tree that does not parse is stored as it came. The result is
// then either stored through Update() or, for half the inputs, written
// straight into the store as the entry's bytes (an entry that does not
// parse included), as a corrupt or foreign store would hold it.
// Invariants: nothing crashes; Update() accepts exactly what
// ValidateActionResult() accepts and whose inlined bytes match the digests
// set beside them, and refuses with INVALID_ARGUMENT; Get() answers OK or
// NOT_FOUND, and OK exactly when the entry parses and validates, every blob it
// names is stored, every Tree parses and every file in every Tree (root and
// children) has a well-formed digest and is stored (checked here,
// independently); an OK answer is the result as stored; TryGet(), when it
// answers, answers the same.
#include <fuzzer/FuzzedDataProvider.h>
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "actioncache/action_cache.h"
#include "cas/digest.h"
#include "cas/memory_blob_store.h"

namespace {

namespace v2 = ::build::bazel::remote::execution::v2;
using cairn::actioncache::ActionCache;
using cairn::actioncache::ActionResult;
using cairn::cas::BlobStore;
using cairn::cas::Digest;

[[noreturn]] void Fail(const std::string& why) {
  fprintf(stderr, "action_cache_tree_fuzz: %s\n", why.c_str());
  abort();
}

// Points `d` at targets[size_bytes % (n + 1)] (n: a missing blob) when it
// has no hash; leaves it alone otherwise.
void Link(v2::Digest* d, const std::vector<Digest>& targets) {
  if (!d->hash().empty()) {
    return;
  }
  const int64_t n = static_cast<int64_t>(targets.size());
  const int64_t pick = d->size_bytes() % (n + 1);
  const Digest to = pick >= 0 && pick < n
                        ? targets[pick]
                        : Digest::OfData("action_cache_tree_fuzz missing");
  d->set_hash(to.hash());
  d->set_size_bytes(to.size_bytes());
}

// Consumes a blob count and that many (flag, bytes) pairs; stores each blob
// whose flag says so and returns their digests.
std::vector<std::string> ConsumeBlobs(FuzzedDataProvider& in, int max,
                                      std::vector<bool>* stored) {
  std::vector<std::string> blobs(in.ConsumeIntegralInRange<int>(0, max));
  for (std::string& blob : blobs) {
    stored->push_back(in.ConsumeIntegral<uint8_t>() % 8 != 0);
    blob = in.ConsumeRandomLengthString(512);
  }
  return blobs;
}

// Returns whether `d` is a well-formed digest of a stored blob.
bool Stored(BlobStore& store, const v2::Digest& d) {
  absl::StatusOr<Digest> digest = Digest::Create(d.hash(), d.size_bytes());
  return digest.ok() && store.Contains(*digest);
}

// Returns whether every file of the Tree stored under `d` is stored.
bool TreeComplete(BlobStore& store, const v2::Digest& d) {
  absl::StatusOr<Digest> digest = Digest::Create(d.hash(), d.size_bytes());
  absl::StatusOr<std::string> bytes = store.Read(*digest);
  v2::Tree tree;
  if (!bytes.ok() || !tree.ParseFromString(*bytes)) {
    return false;
  }
  for (const v2::FileNode& f : tree.root().files()) {
    if (!Stored(store, f.digest())) {
      return false;
    }
  }
  for (const v2::Directory& dir : tree.children()) {
    for (const v2::FileNode& f : dir.files()) {
      if (!Stored(store, f.digest())) {
        return false;
      }
    }
  }
  return true;
}

// Returns whether Get() must answer OK for the valid stored result `r`.
bool Complete(BlobStore& store, const ActionResult& r) {
  for (const v2::OutputFile& f : r.output_files()) {
    if (!Stored(store, f.digest())) {
      return false;
    }
  }
  for (const v2::Digest* d : {&r.stdout_digest(), &r.stderr_digest()}) {
    if (!(d->hash().empty() && d->size_bytes() == 0) && !Stored(store, *d)) {
      return false;
    }
  }
  for (const v2::OutputDirectory& dir : r.output_directories()) {
    if (!Stored(store, dir.tree_digest())) {
      return false;
    }
  }
  for (const v2::OutputDirectory& dir : r.output_directories()) {
    if (!TreeComplete(store, dir.tree_digest())) {
      return false;
    }
  }
  return true;
}

// Returns whether some inlined bytes of `r` (stdout_raw, stderr_raw, an
// output file's contents) differ from the digest set beside them, which
// Update() refuses with INVALID_ARGUMENT though the result validates.
bool InlinedMismatch(const ActionResult& r) {
  auto differs = [](const std::string& raw, const v2::Digest& d) {
    const Digest actual = Digest::OfData(raw);
    return !raw.empty() && !(d.hash().empty() && d.size_bytes() == 0) &&
           (d.hash() != actual.hash() || d.size_bytes() != actual.size_bytes());
  };
  bool out = differs(r.stdout_raw(), r.stdout_digest()) ||
             differs(r.stderr_raw(), r.stderr_digest());
  for (const v2::OutputFile& f : r.output_files()) {
    out = out || differs(f.contents(), f.digest());
  }
  return out;
}

// Stores `blobs` that `stored` marks; returns every blob's digest.
std::vector<Digest> Put(BlobStore& store, const std::vector<std::string>& blobs,
                        const std::vector<bool>& stored) {
  std::vector<Digest> digests;
  for (size_t i = 0; i < blobs.size(); ++i) {
    digests.push_back(Digest::OfData(blobs[i]));
    if (stored[i] && !store.Write(digests.back(), blobs[i]).ok()) {
      Fail("memory store refused a blob");
    }
  }
  return digests;
}

// Links the hashless file digests of a Tree that parses.
std::string LinkTree(const std::string& raw, const std::vector<Digest>& files) {
  v2::Tree tree;
  if (!tree.ParseFromString(raw)) {
    return raw;
  }
  for (v2::FileNode& f : *tree.mutable_root()->mutable_files()) {
    Link(f.mutable_digest(), files);
  }
  for (v2::Directory& dir : *tree.mutable_children()) {
    for (v2::FileNode& f : *dir.mutable_files()) {
      Link(f.mutable_digest(), files);
    }
  }
  return tree.SerializeAsString();
}

// Stores the result (through Update() or as raw entry bytes) and returns
// it as stored, or nullopt when no valid entry is stored.
std::optional<ActionResult> Store(FuzzedDataProvider& in, BlobStore& store,
                                  ActionCache& cache, const Digest& action,
                                  const std::vector<Digest>& files,
                                  const std::vector<Digest>& trees) {
  const bool raw_entry = in.ConsumeBool();
  const std::string bytes = in.ConsumeRemainingBytesAsString();
  ActionResult result;
  const bool parses = result.ParseFromString(bytes);
  for (v2::OutputFile& f : *result.mutable_output_files()) {
    Link(f.mutable_digest(), files);
  }
  for (v2::OutputDirectory& d : *result.mutable_output_directories()) {
    Link(d.mutable_tree_digest(), trees);
  }
  const bool valid =
      parses && cairn::actioncache::ValidateActionResult(result).ok();
  if (raw_entry) {
    const std::string value = parses ? result.SerializeAsString() : bytes;
    if (!store.PutEntry(cairn::actioncache::ActionCacheKey("", action), value)
             .ok()) {
      Fail("memory store refused an entry");
    }
    return valid ? std::optional<ActionResult>(result) : std::nullopt;
  }
  if (!parses) {
    return std::nullopt;
  }
  absl::StatusOr<ActionResult> updated = cache.Update("", action, result);
  if (updated.ok() != (valid && !InlinedMismatch(result)) ||
      (!updated.ok() && !absl::IsInvalidArgument(updated.status()))) {
    Fail(absl::StrCat("Update answered ", updated.status().ToString(),
                      " to a result that validates: ", valid));
  }
  return updated.ok() ? std::optional<ActionResult>(*updated) : std::nullopt;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // Invalid UTF-8 is logged.
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  std::unique_ptr<BlobStore> store =
      cairn::cas::NewMemoryBlobStore({int64_t{16} << 20});
  std::vector<bool> files_stored;
  const std::vector<std::string> file_blobs =
      ConsumeBlobs(in, 4, &files_stored);
  const std::vector<Digest> files = Put(*store, file_blobs, files_stored);
  std::vector<bool> trees_stored;
  std::vector<std::string> tree_blobs = ConsumeBlobs(in, 3, &trees_stored);
  for (std::string& tree : tree_blobs) {
    tree = LinkTree(tree, files);
  }
  const std::vector<Digest> trees = Put(*store, tree_blobs, trees_stored);

  ActionCache cache(store.get());
  const Digest action = Digest::OfData("action_cache_tree_fuzz action");
  const std::optional<ActionResult> stored =
      Store(in, *store, cache, action, files, trees);
  const bool hit = stored.has_value() && Complete(*store, *stored);
  const cairn::actioncache::InlineRequest no_inline;
  absl::StatusOr<ActionResult> got = cache.Get("", action, no_inline);
  if (got.ok() != hit ||
      (!got.ok() && got.status().code() != absl::StatusCode::kNotFound)) {
    Fail(absl::StrCat("Get answered ", got.status().ToString(),
                      "; expected a hit: ", hit));
  }
  if (hit && got->SerializeAsString() != stored->SerializeAsString()) {
    Fail("Get answered another result than the one stored");
  }
  std::optional<absl::StatusOr<ActionResult>> tried =
      cache.TryGet("", action, no_inline);
  if (tried.has_value() && (tried->status().code() != got.status().code() ||
                            (got.ok() && (*tried)->SerializeAsString() !=
                                             got->SerializeAsString()))) {
    Fail(absl::StrCat("TryGet answered ", tried->status().ToString(), ", Get ",
                      got.status().ToString()));
  }
  return 0;
}
