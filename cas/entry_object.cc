#include "cas/entry_object.h"

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace cairn::cas {
namespace {

// Takes one copy ("<hash> <size>[ <n>]\n" and its bytes) off the front of
// `*o`; nullopt when the header or the length is malformed.
std::optional<BlobWrite> ParseCopy(absl::string_view* o) {
  const size_t end = o->find('\n');
  if (end == absl::string_view::npos) {
    return std::nullopt;
  }
  std::vector<absl::string_view> f =
      absl::StrSplit(o->substr(0, end), absl::MaxSplits(' ', 2));
  int64_t size = 0;
  int64_t zstd = -1;  // The frames' length of a compressed copy.
  if (f.size() < 2 || !absl::SimpleAtoi(f[1], &size) || size < 0 ||
      (f.size() == 3 && (!absl::SimpleAtoi(f[2], &zstd) || zstd <= 0))) {
    return std::nullopt;
  }
  absl::StatusOr<Digest> d = Digest::Create(f[0], size);
  const int64_t n = zstd >= 0 ? zstd : size;
  if (!d.ok() || static_cast<uint64_t>(n) > o->size() - end - 1) {
    return std::nullopt;
  }
  const absl::string_view bytes = o->substr(end + 1, static_cast<size_t>(n));
  o->remove_prefix(end + 1 + static_cast<size_t>(n));
  return zstd >= 0 ? BlobWrite{*d, {}, bytes} : BlobWrite{*d, bytes};
}

}  // namespace

void AppendEntryCopy(const Digest& digest, absl::string_view data,
                     std::string* copies) {
  absl::StrAppend(copies, digest.hash(), " ", digest.size_bytes(), "\n", data);
}

void AppendEntryZstdCopy(const Digest& digest, absl::string_view frames,
                         std::string* copies) {
  absl::StrAppend(copies, digest.hash(), " ", digest.size_bytes(), " ",
                  frames.size(), "\n", frames);
}

std::string EncodeEntryObject(absl::string_view value,
                              absl::string_view copies) {
  return copies.empty() ? absl::StrCat(kEntryMagic, Sha256Raw(value), value)
                        : absl::StrCat(kEntryWithBlobsMagic, Sha256Raw(value),
                                       value.size(), "\n", value, copies);
}

std::optional<EntryObject> ParseEntryObject(absl::string_view o) {
  const size_t magic = kEntryMagic.size();
  if (o.size() < magic + 32) {
    return std::nullopt;
  }
  const absl::string_view kind = o.substr(0, magic);
  const absl::string_view hash = o.substr(magic, 32);
  o.remove_prefix(magic + 32);
  EntryObject entry;
  if (kind == kEntryMagic) {
    entry.value = o;
  } else if (kind == kEntryWithBlobsMagic) {
    const size_t eol = o.find('\n');
    size_t length = 0;
    if (eol == absl::string_view::npos ||
        !absl::SimpleAtoi(o.substr(0, eol), &length) ||
        length > o.size() - eol - 1) {
      return std::nullopt;
    }
    entry.value = o.substr(eol + 1, length);
    o.remove_prefix(eol + 1 + length);
    while (!o.empty()) {
      std::optional<BlobWrite> copy = ParseCopy(&o);
      if (!copy.has_value()) {
        break;
      }
      entry.blobs.push_back(*copy);
    }
  } else {
    return std::nullopt;
  }
  if (Sha256Raw(entry.value) != hash) {
    return std::nullopt;
  }
  return entry;
}

}  // namespace cairn::cas
