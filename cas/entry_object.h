// The form of an action-cache entry in the shared tier's bucket (the tiered
// store's entry objects, cas/tiered_blob_store.h). One object per key:
//   kEntryMagic, the value's SHA-256 (32 raw bytes), the value; or, with
//   copies of blobs the value names (one bucket request per cold hit),
//   kEntryWithBlobsMagic, the value's SHA-256, the value's length in decimal
//   and '\n', the value, then per blob "<hash> <size>\n" and its bytes, or
//   "<hash> <size> <n>\n" and n bytes of zstd frames holding its bytes (a
//   compressed copy; parsers before it stop reading copies there, so an
//   older node keeps the value and the plain copies before it).
// Objects come from a bucket other nodes (or anyone holding its keys) write:
// ParseEntryObject() trusts nothing, and a copy's bytes are checked against
// its digest by whoever keeps them.
//
// Thread safety: free functions over values; safe from any thread.
#ifndef CAIRN_CAS_ENTRY_OBJECT_H_
#define CAIRN_CAS_ENTRY_OBJECT_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "cas/blob_store.h"
#include "cas/digest.h"

namespace cairn::cas {

inline constexpr absl::string_view kEntryMagic = "CAIRNAC1";
inline constexpr absl::string_view kEntryWithBlobsMagic = "CAIRNAC2";

// An entry object taken apart: the value (its SHA-256 checked) and the blob
// copies it carries (not checked; views into the object, which must outlive
// them). A compressed copy has `zstd` set (the frames) and `data` empty:
// whoever keeps it decompresses it (bounded by the digest's size) and checks
// the result.
struct EntryObject {
  absl::string_view value;
  std::vector<BlobWrite> blobs;
};

// Appends the copy of blob `digest` (its bytes `data`) to `*copies`, the
// copy section EncodeEntryObject() takes.
void AppendEntryCopy(const Digest& digest, absl::string_view data,
                     std::string* copies);

// Appends a compressed copy of blob `digest`: `frames`, zstd frames that
// decompress to its bytes.
void AppendEntryZstdCopy(const Digest& digest, absl::string_view frames,
                         std::string* copies);

// Returns the object holding `value` and the copy section `copies` (empty:
// no copies, the kEntryMagic form).
std::string EncodeEntryObject(absl::string_view value,
                              absl::string_view copies);

// Returns the object's parts, or nullopt when it is not an intact entry
// (unknown magic, a value whose SHA-256 differs, a bad length). A malformed
// copy section ends the copies (the value stays good: its own hash checks
// it).
std::optional<EntryObject> ParseEntryObject(absl::string_view object);

}  // namespace cairn::cas

#endif  // CAIRN_CAS_ENTRY_OBJECT_H_
