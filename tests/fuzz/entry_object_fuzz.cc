// Fuzzes the tiered store's entry objects (cas/entry_object.h), which it
// reads from a bucket other nodes write. The input is parsed as an object
// as it came, and once more with a valid header (either magic and the
// SHA-256 of the value, the length line for kEntryWithBlobsMagic) put in
// front of its parts: the input's first byte gives the value's length and
// the rest is the copy section. Invariants: nothing crashes; a parsed
// object starts with a magic and the SHA-256 of its value; the value and
// every copy are views inside the object, in order and not overlapping,
// each copy as long as its digest says (a compressed copy: frames, no
// plain bytes); and an object EncodeEntryObject()
// built from a value and copies parses back to exactly them.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "cas/digest.h"
#include "cas/entry_object.h"

namespace {

using cairn::cas::Digest;
using cairn::cas::EntryObject;

[[noreturn]] void Fail(const std::string& why) {
  fprintf(stderr, "entry_object_fuzz: %s\n", why.c_str());
  abort();
}

std::string Sha256Raw(absl::string_view data) {
  cairn::cas::Sha256Hasher h;
  h.Update(data);
  return h.FinishRaw();
}

// Returns whether `part` lies inside `whole`, at or after `from`.
bool Inside(absl::string_view part, absl::string_view whole, const char* from) {
  return part.data() >= from &&
         part.data() + part.size() <= whole.data() + whole.size();
}

// Parses `object` and checks what any parsed object must satisfy.
std::optional<EntryObject> ParseChecked(absl::string_view object) {
  std::optional<EntryObject> entry = cairn::cas::ParseEntryObject(object);
  if (!entry.has_value()) {
    return entry;
  }
  const size_t header = cairn::cas::kEntryMagic.size() + 32;
  if ((!absl::StartsWith(object, cairn::cas::kEntryMagic) &&
       !absl::StartsWith(object, cairn::cas::kEntryWithBlobsMagic)) ||
      object.substr(cairn::cas::kEntryMagic.size(), 32) !=
          Sha256Raw(entry->value) ||
      !Inside(entry->value, object, object.data() + header)) {
    Fail("a parsed object's value is not the one its header names");
  }
  const char* next = entry->value.data() + entry->value.size();
  for (const cairn::cas::BlobWrite& b : entry->blobs) {
    if (!b.zstd.empty()) {  // Compressed: frames, decompressed by the keeper.
      if (!b.data.empty() || !Inside(b.zstd, object, next)) {
        Fail(absl::StrCat("compressed copy of ", b.digest.ToString(),
                          " out of place"));
      }
      next = b.zstd.data() + b.zstd.size();
      continue;
    }
    if (!Inside(b.data, object, next) ||
        static_cast<int64_t>(b.data.size()) != b.digest.size_bytes()) {
      Fail(absl::StrCat("copy of ", b.digest.ToString(), " is ", b.data.size(),
                        " bytes out of place"));
    }
    next = b.data.data() + b.data.size();
  }
  return entry;
}

// Splits `rest` into copies, each a length byte (twice the length, plus one
// for a copy whose digest names other bytes of its size: a corrupt copy)
// and its bytes, and checks the object of `value` and them round-trips.
void CheckRoundTrip(absl::string_view value, absl::string_view rest) {
  std::vector<std::pair<Digest, std::string>> copies;
  std::string section;
  while (!rest.empty()) {
    const size_t n =
        std::min<size_t>(static_cast<uint8_t>(rest[0]) / 2, rest.size() - 1);
    const std::string data(rest.substr(1, n));
    std::string named = data;  // What the copy's digest names.
    if ((rest[0] & 1) && !named.empty()) {
      named[0] ^= 1;
    }
    const Digest d = Digest::OfData(named);
    rest.remove_prefix(1 + n);
    cairn::cas::AppendEntryCopy(d, data, &section);
    copies.emplace_back(d, data);
  }
  const std::string object = cairn::cas::EncodeEntryObject(value, section);
  std::optional<EntryObject> entry = ParseChecked(object);
  if (!entry.has_value() || entry->value != value ||
      entry->blobs.size() != copies.size()) {
    Fail("an encoded object did not parse back");
  }
  for (size_t i = 0; i < copies.size(); ++i) {
    if (entry->blobs[i].digest != copies[i].first ||
        entry->blobs[i].data != copies[i].second) {
      Fail(absl::StrCat("copy ", i, " did not parse back"));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  ParseChecked(input);
  if (input.empty()) {
    return 0;
  }
  const size_t n =
      std::min<size_t>(static_cast<uint8_t>(input[0]), input.size() - 1);
  const absl::string_view value = input.substr(1, n);
  const absl::string_view rest = input.substr(1 + n);
  // The copy section as it came, behind a valid header.
  ParseChecked(absl::StrCat(cairn::cas::kEntryWithBlobsMagic, Sha256Raw(value),
                            value.size(), "\n", value, rest));
  CheckRoundTrip(value, rest);
  return 0;
}
