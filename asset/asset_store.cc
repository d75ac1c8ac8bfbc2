// Implementation notes: an entry is a StoredAsset serialised
// deterministically under AssetKey(). Record() checks presence before
// writing, Resolve() re-checks on every hit (like ActionCache::Get), so a
// mapping whose content was evicted reads as a miss. Tree walks are bounded
// by kMaxTreeDirectories and visit each Directory digest once.
#include "asset/asset_store.h"

#include <algorithm>
#include <deque>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace cairn::asset {
namespace {

namespace v2 = ::build::bazel::remote::execution::v2;

constexpr absl::string_view kSriQualifier = "checksum.sri";
constexpr size_t kMaxTreeDirectories = 100000;

absl::StatusOr<cas::Digest> FromProto(const v2::Digest& d,
                                      absl::string_view field) {
  return cas::DigestFromMessage(d, field);
}

absl::Status CheckText(absl::string_view text, absl::string_view what) {
  if (text.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is longer than ", kMaxNameBytes, " bytes"));
  }
  if (absl::StrContains(text, '\0')) {
    return absl::InvalidArgumentError(absl::StrCat(what, " contains NUL"));
  }
  return absl::OkStatus();
}

// Returns the hex SHA-256 a "sha256-<base64>" SRI names.
absl::StatusOr<std::string> SriSha256Hex(absl::string_view sri) {
  std::string raw;
  if (!absl::ConsumePrefix(&sri, "sha256-") ||
      !absl::Base64Unescape(sri, &raw) || raw.size() != 32) {
    return absl::InvalidArgumentError(
        "qualifier checksum.sri: only \"sha256-<base64 of 32 bytes>\" is "
        "supported");
  }
  return cas::HexEncode(raw);
}

// Returns the checksum.sri hash (hex) among `qualifiers`, or "".
std::string SriOf(absl::Span<const Qualifier> qualifiers) {
  for (const Qualifier& q : qualifiers) {
    if (q.first == kSriQualifier) {
      absl::StatusOr<std::string> hex = SriSha256Hex(q.second);
      return hex.ok() ? *hex : "";
    }
  }
  return "";
}

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }

}  // namespace

absl::Status ValidateAssetName(absl::Span<const std::string> uris,
                               absl::Span<const Qualifier> qualifiers) {
  if (uris.empty()) {
    return absl::InvalidArgumentError("at least one URI is required");
  }
  if (uris.size() > kMaxUris || qualifiers.size() > kMaxQualifiers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "at most ", kMaxUris, " URIs and ", kMaxQualifiers, " qualifiers"));
  }
  for (const std::string& uri : uris) {
    if (uri.empty()) {
      return absl::InvalidArgumentError("empty URI");
    }
    if (absl::Status s = CheckText(uri, "URI"); !s.ok()) {
      return s;
    }
  }
  absl::flat_hash_set<absl::string_view> names;
  for (const Qualifier& q : qualifiers) {
    if (q.first.empty()) {
      return absl::InvalidArgumentError("qualifier with an empty name");
    }
    if (!names.insert(q.first).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("qualifier ", q.first, " given twice"));
    }
    if (absl::Status s = CheckText(q.first, "qualifier name"); !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckText(q.second, "qualifier value"); !s.ok()) {
      return s;
    }
    if (q.first == kSriQualifier) {
      if (absl::Status s = SriSha256Hex(q.second).status(); !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

std::string AssetKey(StoredAsset::Kind kind, absl::string_view instance,
                     absl::string_view uri,
                     absl::Span<const Qualifier> qualifiers) {
  std::vector<Qualifier> sorted(qualifiers.begin(), qualifiers.end());
  std::sort(sorted.begin(), sorted.end());
  std::string text =
      absl::StrCat("cairn-asset-v1\n", static_cast<int>(kind), "\n",
                   instance.size(), ":", instance, "\n", uri.size(), ":", uri);
  for (const Qualifier& q : sorted) {
    absl::StrAppend(&text, "\n", q.first.size(), ":", q.first, "=",
                    q.second.size(), ":", q.second);
  }
  return cas::Digest::OfData(text).hash();
}

absl::Status AssetStore::Record(absl::string_view instance,
                                absl::Span<const std::string> uris,
                                absl::Span<const Qualifier> qualifiers,
                                StoredAsset asset) {
  if (absl::Status s = ValidateAssetName(uris, qualifiers); !s.ok()) {
    return s;
  }
  absl::StatusOr<cas::Digest> digest = FromProto(asset.digest(), "digest");
  if (!digest.ok()) {
    return digest.status();
  }
  const std::string sri = SriOf(qualifiers);
  if (!sri.empty() && sri != digest->hash()) {
    return absl::InvalidArgumentError(
        absl::StrCat("qualifier checksum.sri names ", sri, ", not the pushed ",
                     digest->ToString()));
  }
  if (absl::Status s = CheckComplete(asset); !s.ok()) {
    if (absl::IsNotFound(s)) {
      return absl::FailedPreconditionError(
          absl::StrCat("push: ", s.message(), "; upload it to the CAS first"));
    }
    return s;
  }
  asset.set_pushed_at_micros(ToMicros(absl::Now()));
  std::string value;
  {
    google::protobuf::io::StringOutputStream out(&value);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    asset.SerializeToCodedStream(&coded);
  }
  for (const std::string& uri : uris) {
    absl::Status s = store_->PutEntry(
        AssetKey(asset.kind(), instance, uri, qualifiers), value);
    if (!s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ResolvedAsset> AssetStore::Resolve(
    StoredAsset::Kind kind, absl::string_view instance,
    absl::Span<const std::string> uris, absl::Span<const Qualifier> qualifiers,
    absl::Time oldest_accepted) {
  if (absl::Status s = ValidateAssetName(uris, qualifiers); !s.ok()) {
    return s;
  }
  const std::string sri = SriOf(qualifiers);
  const int64_t now = ToMicros(absl::Now());
  const int64_t oldest = oldest_accepted == absl::InfinitePast()
                             ? INT64_MIN
                             : ToMicros(oldest_accepted);
  absl::Status why = absl::NotFoundError("asset not found");
  for (const std::string& uri : uris) {
    absl::StatusOr<std::string> value =
        store_->GetEntry(AssetKey(kind, instance, uri, qualifiers));
    if (!value.ok()) {
      continue;  // NOT_FOUND, or DATA_LOSS (the store removed the entry).
    }
    ResolvedAsset found{uri, {}, absl::OkStatus()};
    if (!found.asset.ParseFromString(*value) || found.asset.kind() != kind) {
      continue;
    }
    if (found.asset.expire_at_micros() != 0 &&
        found.asset.expire_at_micros() <= now) {
      why = absl::NotFoundError(absl::StrCat("asset ", uri, " has expired"));
      continue;
    }
    if (found.asset.pushed_at_micros() < oldest) {
      why = absl::NotFoundError(absl::StrCat(
          "asset ", uri, " is older than oldest_content_accepted"));
      continue;
    }
    if (!sri.empty() && found.asset.digest().hash() != sri) {
      continue;
    }
    if (absl::Status s = CheckComplete(found.asset); !s.ok()) {
      why = absl::NotFoundError(absl::StrCat("asset ", uri, ": ", s.message()));
      continue;
    }
    return found;
  }
  return why;
}

absl::Status AssetStore::CheckComplete(const StoredAsset& asset) {
  absl::StatusOr<cas::Digest> root = FromProto(asset.digest(), "digest");
  if (!root.ok()) {
    return root.status();
  }
  std::vector<cas::Digest> blobs;
  if (asset.kind() == StoredAsset::BLOB) {
    blobs.push_back(*root);
  }
  for (const v2::Digest& d : asset.references_blobs()) {
    absl::StatusOr<cas::Digest> digest = FromProto(d, "references_blobs");
    if (!digest.ok()) {
      return digest.status();
    }
    blobs.push_back(*digest);
  }
  std::vector<cas::Digest> missing = store_->FindMissing(blobs);
  if (!missing.empty()) {
    return absl::NotFoundError(absl::StrCat("blob ", missing.front().ToString(),
                                            " is not in the CAS"));
  }
  if (asset.kind() == StoredAsset::DIRECTORY) {
    if (absl::Status s = CheckTree(*root); !s.ok()) {
      return s;
    }
  }
  for (const v2::Digest& d : asset.references_directories()) {
    absl::StatusOr<cas::Digest> digest = FromProto(d, "references_directories");
    if (!digest.ok()) {
      return digest.status();
    }
    if (absl::Status s = CheckTree(*digest); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status AssetStore::CheckTree(const cas::Digest& root) {
  absl::flat_hash_set<cas::Digest> seen = {root};
  std::deque<cas::Digest> queue = {root};
  while (!queue.empty()) {
    const cas::Digest dir_digest = queue.front();
    queue.pop_front();
    absl::StatusOr<std::string> bytes = store_->Read(dir_digest);
    if (!bytes.ok()) {
      return absl::NotFoundError(absl::StrCat(
          "directory ", dir_digest.ToString(), " is not in the CAS"));
    }
    v2::Directory dir;
    if (!dir.ParseFromString(*bytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("blob ", dir_digest.ToString(), " is not a Directory"));
    }
    std::vector<cas::Digest> files;
    for (const v2::FileNode& f : dir.files()) {
      absl::StatusOr<cas::Digest> d = FromProto(f.digest(), "file digest");
      if (!d.ok()) {
        return d.status();
      }
      files.push_back(*d);
    }
    std::vector<cas::Digest> missing = store_->FindMissing(files);
    if (!missing.empty()) {
      return absl::NotFoundError(absl::StrCat(
          "file ", missing.front().ToString(), " is not in the CAS"));
    }
    for (const v2::DirectoryNode& sub : dir.directories()) {
      absl::StatusOr<cas::Digest> d =
          FromProto(sub.digest(), "directory digest");
      if (!d.ok()) {
        return d.status();
      }
      if (seen.insert(*d).second) {
        if (seen.size() > kMaxTreeDirectories) {
          return absl::InvalidArgumentError(
              absl::StrCat("tree under ", root.ToString(), " has over ",
                           kMaxTreeDirectories, " directories"));
        }
        queue.push_back(*d);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace cairn::asset
