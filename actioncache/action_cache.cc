// Implementation notes: an entry is the deterministic serialisation of the
// ActionResult as stored (inlined bytes moved to the CAS), kept in the
// BlobStore's keyed entries under ActionCacheKey(). Get() re-checks on every
// hit that all referenced blobs, including the files inside output trees,
// are still present, and only then inlines what was asked for.
#include "actioncache/action_cache.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace cairn::actioncache {
namespace {

namespace v2 = ::build::bazel::remote::execution::v2;

// A Digest message left at its defaults means "not set".
bool IsUnset(const v2::Digest& d) {
  return d.hash().empty() && d.size_bytes() == 0;
}

absl::StatusOr<cas::Digest> ToDigest(const v2::Digest& d,
                                     absl::string_view field) {
  return cas::DigestFromMessage(d, field);
}

v2::Digest ToProto(const cas::Digest& d) {
  v2::Digest out;
  out.set_hash(d.hash());
  out.set_size_bytes(d.size_bytes());
  return out;
}

// Names a field in an error message: "name[index]suffix" (no index when
// negative). Formatted only when an error is returned, so that validating a
// well-formed result (every hit and every update) allocates nothing for it.
struct Field {
  Field(const char* name) : name(name) {}  // NOLINT: a plain name converts.
  Field(absl::string_view name, int index, absl::string_view suffix = "")
      : name(name), index(index), suffix(suffix) {}

  std::string str() const {
    return index < 0 ? absl::StrCat(name, suffix)
                     : absl::StrCat(name, "[", index, "]", suffix);
  }

  absl::string_view name;
  int index = -1;
  absl::string_view suffix;
};

// INVALID_ARGUMENT unless `d` is a well-formed digest (makes no Digest).
absl::Status CheckDigest(const v2::Digest& d, const Field& field) {
  absl::Status s = cas::Digest::Check(d.hash(), d.size_bytes());
  if (!s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field.str(), ": ", s.message()));
  }
  return s;
}

absl::Status ValidatePath(absl::string_view path, const Field& field) {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field.str(), ": empty path"));
  }
  if (path.front() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(field.str(), ": absolute path \"", path, "\""));
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(field.str(), ": NUL in path"));
  }
  for (absl::string_view seg : absl::StrSplit(path, '/')) {
    if (seg.empty() || seg == "." || seg == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(field.str(), ": path \"", path,
                       "\" has an empty, '.' or '..' segment"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateOptionalDigest(const v2::Digest& d, const Field& field) {
  if (IsUnset(d)) {
    return absl::OkStatus();
  }
  return CheckDigest(d, field);
}

absl::Status ValidateOutputs(const ActionResult& r) {
  for (int i = 0; i < r.output_files_size(); ++i) {
    const v2::OutputFile& f = r.output_files(i);
    const Field field("output_files", i);
    if (absl::Status s = ValidatePath(f.path(), field); !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckDigest(f.digest(), field); !s.ok()) {
      return s;
    }
  }
  for (int i = 0; i < r.output_directories_size(); ++i) {
    const v2::OutputDirectory& d = r.output_directories(i);
    const Field field("output_directories", i);
    if (absl::Status s = ValidatePath(d.path(), field); !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckDigest(d.tree_digest(), field); !s.ok()) {
      return s;
    }
    if (absl::Status s =
            ValidateOptionalDigest(d.root_directory_digest(), field);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// Returns OK when `target`, read lexically from the directory holding the
// link at `path`, stays inside the output root (or escaping is allowed).
absl::Status ValidateSymlinkTarget(absl::string_view path,
                                   absl::string_view target,
                                   const ValidationOptions& options,
                                   const Field& field) {
  if (target.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field.str(), ": empty target"));
  }
  if (target.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(field.str(), ": NUL in target"));
  }
  if (options.allow_escaping_symlink_targets) {
    return absl::OkStatus();
  }
  if (target.front() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(field.str(), ": absolute target \"", target, "\""));
  }
  // The link's directory is as deep as its path has segments, less one.
  int64_t depth =
      static_cast<int64_t>(std::count(path.begin(), path.end(), '/'));
  for (absl::string_view seg : absl::StrSplit(target, '/')) {
    if (seg == "..") {
      if (--depth < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            field.str(), ": target \"", target, "\" leaves the output root"));
      }
    } else if (!seg.empty() && seg != ".") {
      ++depth;
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSymlinks(
    const google::protobuf::RepeatedPtrField<v2::OutputSymlink>& links,
    absl::string_view name, const ValidationOptions& options) {
  for (int i = 0; i < links.size(); ++i) {
    const Field field(name, i);
    if (absl::Status s = ValidatePath(links[i].path(), field); !s.ok()) {
      return s;
    }
    if (absl::Status s = ValidateSymlinkTarget(
            links[i].path(), links[i].target(), options, field);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// Adds the paths of `links` to `*seen`; INVALID_ARGUMENT on a repeat.
absl::Status AddUniquePaths(
    const google::protobuf::RepeatedPtrField<v2::OutputSymlink>& links,
    absl::string_view name, absl::flat_hash_set<absl::string_view>* seen) {
  for (int i = 0; i < links.size(); ++i) {
    if (!seen->insert(links[i].path()).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, "[", i, "]: path \"", links[i].path(), "\" names two outputs"));
    }
  }
  return absl::OkStatus();
}

// Returns INVALID_ARGUMENT when a path names two outputs. output_symlinks
// and the deprecated symlink fields are alternative views of the same links
// (servers fill both for older clients), so each view is checked on its
// own against the files and directories.
absl::Status ValidateUniquePaths(const ActionResult& r) {
  absl::flat_hash_set<absl::string_view> outputs;
  for (int i = 0; i < r.output_files_size(); ++i) {
    if (!outputs.insert(r.output_files(i).path()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("output_files[", i, "]: path \"",
                       r.output_files(i).path(), "\" names two outputs"));
    }
  }
  for (int i = 0; i < r.output_directories_size(); ++i) {
    if (!outputs.insert(r.output_directories(i).path()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("output_directories[", i, "]: path \"",
                       r.output_directories(i).path(), "\" names two outputs"));
    }
  }
  absl::flat_hash_set<absl::string_view> current = outputs;
  if (absl::Status s =
          AddUniquePaths(r.output_symlinks(), "output_symlinks", &current);
      !s.ok()) {
    return s;
  }
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  absl::Status s = AddUniquePaths(r.output_file_symlinks(),
                                  "output_file_symlinks", &outputs);
  s.Update(AddUniquePaths(r.output_directory_symlinks(),
                          "output_directory_symlinks", &outputs));
#pragma GCC diagnostic pop
  return s;
}

absl::Status ValidateTimestamp(const google::protobuf::Timestamp& t,
                               const Field& field) {
  // 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z, as timestamp.proto says.
  constexpr int64_t kMinSeconds = -62135596800;
  constexpr int64_t kMaxSeconds = 253402300799;
  if (t.seconds() < kMinSeconds || t.seconds() > kMaxSeconds || t.nanos() < 0 ||
      t.nanos() > 999999999) {
    return absl::InvalidArgumentError(
        absl::StrCat(field.str(), ": timestamp out of range (", t.seconds(),
                     "s ", t.nanos(), "ns)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateDuration(const google::protobuf::Duration& d,
                              const Field& field) {
  constexpr int64_t kMaxSeconds = 315576000000;  // duration.proto's bound.
  bool in_range = d.seconds() >= -kMaxSeconds && d.seconds() <= kMaxSeconds &&
                  d.nanos() >= -999999999 && d.nanos() <= 999999999;
  bool same_sign = (d.seconds() >= 0 && d.nanos() >= 0) ||
                   (d.seconds() <= 0 && d.nanos() <= 0);
  if (!in_range || !same_sign) {
    return absl::InvalidArgumentError(
        absl::StrCat(field.str(), ": duration out of range (", d.seconds(),
                     "s ", d.nanos(), "ns)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateMetadata(const v2::ExecutedActionMetadata& m) {
  const google::protobuf::Timestamp* stamps[] = {
      &m.queued_timestamp(),
      &m.worker_start_timestamp(),
      &m.worker_completed_timestamp(),
      &m.input_fetch_start_timestamp(),
      &m.input_fetch_completed_timestamp(),
      &m.execution_start_timestamp(),
      &m.execution_completed_timestamp(),
      &m.output_upload_start_timestamp(),
      &m.output_upload_completed_timestamp()};
  absl::Status s;
  for (const google::protobuf::Timestamp* t : stamps) {
    s.Update(ValidateTimestamp(*t, "execution_metadata"));
  }
  s.Update(ValidateDuration(m.virtual_execution_duration(),
                            "execution_metadata.virtual_execution_duration"));
  return s;
}

// Checks the node_properties of output `name`[`index`].
absl::Status ValidateNodeProperties(const v2::NodeProperties& p,
                                    absl::string_view name, int index) {
  if (absl::Status s = ValidateTimestamp(
          p.mtime(), Field(name, index, ".node_properties.mtime"));
      !s.ok()) {
    return s;
  }
  if (p.has_unix_mode() && p.unix_mode().value() > 07777) {
    return absl::InvalidArgumentError(
        absl::StrCat(Field(name, index, ".node_properties.unix_mode").str(),
                     ": ", p.unix_mode().value(), " has bits beyond 07777"));
  }
  return absl::OkStatus();
}

// Checks node_properties on every output that carries them.
absl::Status ValidateAllNodeProperties(const ActionResult& r) {
  absl::Status s;
  for (int i = 0; i < r.output_files_size() && s.ok(); ++i) {
    s.Update(ValidateNodeProperties(r.output_files(i).node_properties(),
                                    "output_files", i));
  }
  for (int i = 0; i < r.output_symlinks_size() && s.ok(); ++i) {
    s.Update(ValidateNodeProperties(r.output_symlinks(i).node_properties(),
                                    "output_symlinks", i));
  }
  return s;
}

absl::Status NotFoundResult(const cas::Digest& action, absl::string_view why) {
  return absl::NotFoundError(
      absl::StrCat("action result ", action.ToString(), ": ", why));
}

// Moves inlined bytes `*raw` into the CAS and points `*digest` at them.
// INVALID_ARGUMENT when `*digest` is set and does not match the bytes.
absl::Status MoveInlined(cas::BlobStore* store, std::string* raw,
                         v2::Digest* digest, absl::string_view field) {
  if (raw->empty()) {
    return absl::OkStatus();
  }
  cas::Digest actual = cas::Digest::OfData(*raw);
  if (!IsUnset(*digest) && (digest->hash() != actual.hash() ||
                            digest->size_bytes() != actual.size_bytes())) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": inlined bytes hash to ", actual.ToString(),
                     ", not ", digest->hash(), "/", digest->size_bytes()));
  }
  if (absl::Status s = store->Write(actual, *raw); !s.ok()) {
    return s;
  }
  *digest = ToProto(actual);
  raw->clear();
  return absl::OkStatus();
}

absl::Status MoveAllInlined(cas::BlobStore* store, ActionResult* r) {
  if (absl::Status s = MoveInlined(store, r->mutable_stdout_raw(),
                                   r->mutable_stdout_digest(), "stdout_raw");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = MoveInlined(store, r->mutable_stderr_raw(),
                                   r->mutable_stderr_digest(), "stderr_raw");
      !s.ok()) {
    return s;
  }
  for (int i = 0; i < r->output_files_size(); ++i) {
    v2::OutputFile* f = r->mutable_output_files(i);
    if (absl::Status s =
            MoveInlined(store, f->mutable_contents(), f->mutable_digest(),
                        absl::StrCat("output_files[", i, "].contents"));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// Appends the digest of every file in the Tree blob `tree` to `*out`.
absl::Status CollectTreeFiles(cas::BlobStore* store, const cas::Digest& tree,
                              std::vector<cas::Digest>* out) {
  absl::StatusOr<std::string> bytes = store->Read(tree);
  if (!bytes.ok()) {
    return bytes.status();
  }
  v2::Tree parsed;
  if (!parsed.ParseFromString(*bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tree ", tree.ToString(), " does not parse"));
  }
  std::vector<const v2::Directory*> dirs = {&parsed.root()};
  for (const v2::Directory& dir : parsed.children()) {
    dirs.push_back(&dir);
  }
  for (const v2::Directory* dir : dirs) {
    for (const v2::FileNode& f : dir->files()) {
      absl::StatusOr<cas::Digest> d = ToDigest(f.digest(), "tree file");
      if (!d.ok()) {
        return d.status();
      }
      out->push_back(*d);
    }
  }
  return absl::OkStatus();
}

// Returns the digests `r` references directly (trees not expanded).
std::vector<cas::Digest> DirectReferences(const ActionResult& r) {
  std::vector<cas::Digest> refs;
  for (const v2::OutputFile& f : r.output_files()) {
    refs.push_back(*ToDigest(f.digest(), ""));
  }
  for (const v2::OutputDirectory& d : r.output_directories()) {
    refs.push_back(*ToDigest(d.tree_digest(), ""));
  }
  for (const v2::Digest* d : {&r.stdout_digest(), &r.stderr_digest()}) {
    if (!IsUnset(*d)) {
      refs.push_back(*ToDigest(*d, ""));
    }
  }
  return refs;
}

// Returns OK when every blob `r` references, including the files inside its
// output trees, is in the CAS; NOT_FOUND otherwise; UNAVAILABLE when the store
// cannot tell. Asks as a reader (FindMissingForRead): a hit's outputs are
// read next, so a tiered store may fetch small ones instead of checking.
absl::Status CheckComplete(cas::BlobStore* store, const cas::Digest& action,
                           const ActionResult& r) {
  absl::StatusOr<std::vector<cas::Digest>> checked =
      store->FindMissingForRead(DirectReferences(r));
  if (!checked.ok()) {
    return checked.status();  // Cannot tell (shared tier down): not a miss.
  }
  std::vector<cas::Digest> missing = *std::move(checked);
  if (!missing.empty()) {
    return NotFoundResult(action, absl::StrCat("output ", missing[0].ToString(),
                                               " is gone from the cas"));
  }
  std::vector<cas::Digest> files;
  for (const v2::OutputDirectory& d : r.output_directories()) {
    absl::Status s =
        CollectTreeFiles(store, *ToDigest(d.tree_digest(), ""), &files);
    if (s.code() == absl::StatusCode::kUnavailable) {
      return s;
    }
    if (!s.ok()) {
      return NotFoundResult(action, s.message());
    }
  }
  checked = store->FindMissingForRead(files);
  if (!checked.ok()) {
    return checked.status();
  }
  missing = *std::move(checked);
  if (!missing.empty()) {
    return NotFoundResult(action,
                          absl::StrCat("tree file ", missing[0].ToString(),
                                       " is gone from the cas"));
  }
  return absl::OkStatus();
}

// Reads blob `d` into `*out` if it fits in `*budget`; leaves `*out` alone
// otherwise. NOT_FOUND when the blob is gone.
absl::Status InlineBlob(cas::BlobStore* store, const cas::Digest& action,
                        const v2::Digest& d, int64_t* budget,
                        std::string* out) {
  if (IsUnset(d) || d.size_bytes() > *budget) {
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> bytes = store->Read(*ToDigest(d, ""));
  if (!bytes.ok()) {
    return NotFoundResult(action, bytes.status().message());
  }
  *budget -= d.size_bytes();
  *out = *std::move(bytes);
  return absl::OkStatus();
}

absl::Status InlineRequested(cas::BlobStore* store, const cas::Digest& action,
                             const InlineRequest& req, ActionResult* r) {
  int64_t budget = req.max_inline_bytes;
  absl::Status s;
  if (req.stdout_raw) {
    s.Update(InlineBlob(store, action, r->stdout_digest(), &budget,
                        r->mutable_stdout_raw()));
  }
  if (req.stderr_raw && s.ok()) {
    s.Update(InlineBlob(store, action, r->stderr_digest(), &budget,
                        r->mutable_stderr_raw()));
  }
  absl::flat_hash_set<absl::string_view> wanted(req.output_files.begin(),
                                                req.output_files.end());
  for (int i = 0; i < r->output_files_size() && s.ok(); ++i) {
    v2::OutputFile* f = r->mutable_output_files(i);
    if (wanted.contains(f->path())) {
      s.Update(InlineBlob(store, action, f->digest(), &budget,
                          f->mutable_contents()));
    }
  }
  return s;
}

// Checks the current and the deprecated symlink fields (older clients still
// fill the latter).
absl::Status ValidateAllSymlinks(const ActionResult& r,
                                 const ValidationOptions& options) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  for (const auto* links : {&r.output_symlinks(), &r.output_file_symlinks(),
                            &r.output_directory_symlinks()}) {
    if (absl::Status s = ValidateSymlinks(*links, "output_symlinks", options);
        !s.ok()) {
      return s;
    }
  }
#pragma GCC diagnostic pop
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateActionResult(const ActionResult& result,
                                  const ValidationOptions& options) {
  if (absl::Status s = ValidateOutputs(result); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateAllSymlinks(result, options); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateUniquePaths(result); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateAllNodeProperties(result); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateMetadata(result.execution_metadata()); !s.ok()) {
    return s;
  }
  if (absl::Status s =
          ValidateOptionalDigest(result.stdout_digest(), "stdout_digest");
      !s.ok()) {
    return s;
  }
  return ValidateOptionalDigest(result.stderr_digest(), "stderr_digest");
}

std::string ActionCacheKey(absl::string_view instance_name,
                           const cas::Digest& action_digest) {
  // Length-prefixed so that no two (instance, action) pairs collide.
  // One StrCat (not Digest::ToString()): this runs on every ActionCache call.
  return cas::Digest::OfData(absl::StrCat("cairn-ac-v1\n", instance_name.size(),
                                          ":", instance_name, "\n",
                                          action_digest.hash(), "/",
                                          action_digest.size_bytes()))
      .hash();
}

absl::StatusOr<ActionResult> ActionCache::Get(
    absl::string_view instance_name, const cas::Digest& action_digest,
    const InlineRequest& inline_request) {
  absl::StatusOr<std::string> value =
      store_->GetEntry(ActionCacheKey(instance_name, action_digest));
  if (absl::IsNotFound(value.status()) || absl::IsDataLoss(value.status())) {
    return NotFoundResult(
        action_digest,
        absl::StrCat("not found in instance \"", instance_name, "\""));
  }
  if (!value.ok()) {
    return value.status();
  }
  ActionResult result;
  if (!result.ParseFromString(*value) ||
      !ValidateActionResult(result, options_).ok()) {
    return NotFoundResult(action_digest, "stored entry does not parse");
  }
  if (absl::Status s = CheckComplete(store_, action_digest, result); !s.ok()) {
    return s;
  }
  if (absl::Status s =
          InlineRequested(store_, action_digest, inline_request, &result);
      !s.ok()) {
    return s;
  }
  return result;
}

std::optional<absl::StatusOr<ActionResult>> ActionCache::TryGet(
    absl::string_view instance_name, const cas::Digest& action_digest,
    const InlineRequest& inline_request) {
  const std::string key = ActionCacheKey(instance_name, action_digest);
  auto not_found = [&] {
    return NotFoundResult(
        action_digest,
        absl::StrCat("not found in instance \"", instance_name, "\""));
  };
  if (inline_request.stdout_raw || inline_request.stderr_raw ||
      !inline_request.output_files.empty()) {
    // Inlining reads blobs: only a miss is answered here.
    if (store_->TryHasEntry(key) == false) {
      return not_found();
    }
    return std::nullopt;
  }
  std::optional<absl::StatusOr<std::string>> value = store_->TryGetEntry(key);
  if (!value.has_value()) {
    return std::nullopt;
  }
  if (absl::IsNotFound(value->status()) || absl::IsDataLoss(value->status())) {
    return not_found();
  }
  if (!value->ok()) {
    return value->status();
  }
  ActionResult result;
  if (!result.ParseFromString(**value) ||
      !ValidateActionResult(result, options_).ok()) {
    return NotFoundResult(action_digest, "stored entry does not parse");
  }
  if (result.output_directories_size() > 0) {
    return std::nullopt;  // CheckComplete() reads the trees.
  }
  std::optional<std::vector<cas::Digest>> missing =
      store_->TryFindMissing(DirectReferences(result));
  if (!missing.has_value()) {
    return std::nullopt;
  }
  if (!missing->empty()) {
    return NotFoundResult(action_digest,
                          absl::StrCat("output ", (*missing)[0].ToString(),
                                       " is gone from the cas"));
  }
  return result;
}

absl::StatusOr<ActionResult> ActionCache::PrepareUpdate(
    const ActionResult& result, std::string* bytes) {
  if (absl::Status s = ValidateActionResult(result, options_); !s.ok()) {
    return s;
  }
  ActionResult stored = result;
  if (absl::Status s = MoveAllInlined(store_, &stored); !s.ok()) {
    return s;
  }
  google::protobuf::io::StringOutputStream out(bytes);
  google::protobuf::io::CodedOutputStream coded(&out);
  coded.SetSerializationDeterministic(true);
  stored.SerializeToCodedStream(&coded);
  return stored;
}

absl::StatusOr<ActionResult> ActionCache::Update(
    absl::string_view instance_name, const cas::Digest& action_digest,
    const ActionResult& result) {
  std::string bytes;
  absl::StatusOr<ActionResult> stored = PrepareUpdate(result, &bytes);
  if (!stored.ok()) {
    return stored;
  }
  // The outputs a hit's reader fetches next: a tiered store may keep small
  // ones with the entry (one bucket request per cold hit).
  if (absl::Status s =
          store_->PutEntry(ActionCacheKey(instance_name, action_digest), bytes,
                           DirectReferences(*stored));
      !s.ok()) {
    return s;
  }
  return stored;
}

void ActionCache::UpdateThen(absl::string_view instance_name,
                             const cas::Digest& action_digest,
                             const ActionResult& result, UpdateCallback done) {
  std::string bytes;
  absl::StatusOr<ActionResult> stored = PrepareUpdate(result, &bytes);
  if (!stored.ok()) {
    std::move(done)(std::move(stored));
    return;
  }
  const std::vector<cas::Digest> outputs = DirectReferences(*stored);
  store_
      ->PutEntry(ActionCacheKey(instance_name, action_digest), bytes, outputs,
                 [stored = *std::move(stored),
                  done = std::move(done)](absl::Status s) mutable {
                   if (!s.ok()) {
                     std::move(done)(std::move(s));
                   } else {
                     std::move(done)(std::move(stored));
                   }
                 })
      .IgnoreError();  // Reported to the callback.
}

}  // namespace cairn::actioncache
