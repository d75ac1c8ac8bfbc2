#include "cas/entry_object.h"

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace cairn::cas {
namespace {

std::string Sha256Raw(absl::string_view data) {
  Sha256Hasher h;
  h.Update(data);
  return h.FinishRaw();
}

}  // namespace

void AppendEntryCopy(const Digest& digest, absl::string_view data,
                     std::string* copies) {
  absl::StrAppend(copies, digest.hash(), " ", digest.size_bytes(), "\n", data);
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
      const size_t end = o.find('\n');
      std::vector<absl::string_view> f =
          absl::StrSplit(o.substr(0, end), absl::MaxSplits(' ', 1));
      int64_t size = 0;
      absl::StatusOr<Digest> d =
          f.size() == 2 && absl::SimpleAtoi(f[1], &size) && size >= 0
              ? Digest::Create(f[0], size)
              : absl::InvalidArgumentError("no copy header");
      if (end == absl::string_view::npos || !d.ok() ||
          static_cast<size_t>(size) > o.size() - end - 1) {
        break;
      }
      entry.blobs.push_back(
          BlobWrite{*d, o.substr(end + 1, static_cast<size_t>(size))});
      o.remove_prefix(end + 1 + static_cast<size_t>(size));
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
