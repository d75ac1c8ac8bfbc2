// Prefetch bundles: the entries one build asked for *and their bodies*,
// packed in a few large CAS blobs, so the next run of the same build (on any
// machine) warms its local tier with a handful of large reads instead of one
// lookup per entry (through a cold cairn-server node: a handful of bucket
// GETs instead of hundreds; through any REAPI server: a few ByteStream reads
// instead of hundreds of calls). See docs/go.md, "Prefetch".
//
// A bundle is an *index* blob plus *parts*. Each part is a CAS blob holding
// consecutive bodies (deduplicated by OutputID), in the order the last run
// first asked for them, zstd-compressed as one frame (kZstd) or plain
// (kPlain). The index (a CAS blob, little-endian integers):
//
//   kBundleMagic                      "cairn-gocacheprog bundle v1\n"
//   u32 part count (<= kMaxBundleParts)
//   per part:   hash[32] (SHA-256 of the blob) | u64 blob size |
//               u8 encoding (0 plain, 1 zstd) | u64 content size (plain)
//   u32 record count (<= kMaxManifestIds)
//   per record: ActionID[32] | OutputID[32] | u64 size | i64 put time (Unix
//               ns) | u32 part (kNoPart: body not in the bundle) |
//               u64 offset of the body in the part's content
//
// Rules DecodeBundleIndex() enforces (a bundle breaking one is refused
// whole): the length is exact; ActionIDs are distinct; an empty body and a
// body outside the bundle have part kNoPart and offset 0; every other body
// lies inside its part's content, and the distinct bodies of a part (records
// naming the same part and offset name the same OutputID and size) tile its
// content from 0 to its end without gap or overlap; a plain part's blob size
// is its content size; sizes are at most kMaxBundleBodyBytes. The index says
// nothing trustworthy about bytes: each body read from a part is stored only
// when it hashes to its OutputID (the local store's BodyWriter checks), so a
// wrong index or part costs a fetch, never a wrong answer.
//
// The index is found through the ActionCache key BundleKey(scope): SHA-256
// over "cairn-gocacheprog/v1 bundle\0" plus the scope (manifest.h's
// construction, a key of its own, so shims that know only the v1 manifest
// keep reading theirs); the ActionResult names the index blob as its one
// output file kBundleOutputPath.
//
// Thread safety: free functions, safe from any thread.
#ifndef CAIRN_CLIENT_GOCACHEPROG_BUNDLE_H_
#define CAIRN_CLIENT_GOCACHEPROG_BUNDLE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "cas/digest.h"

namespace cairn::client::gocacheprog {

inline constexpr absl::string_view kBundleMagic =
    "cairn-gocacheprog bundle v1\n";
inline constexpr size_t kMaxBundleParts = 4096;
inline constexpr uint32_t kNoPart = 0xFFFFFFFF;
// The largest body, part content or part blob an index may name (1 TiB).
inline constexpr int64_t kMaxBundleBodyBytes = int64_t{1} << 40;
// The path of the single output file in a bundle's ActionResult.
inline constexpr char kBundleOutputPath[] = "go-bundle-index";

enum class PartEncoding : uint8_t { kPlain = 0, kZstd = 1 };

struct BundlePart {
  std::string hash;  // 32 raw bytes: SHA-256 of the blob
  int64_t blob_size = 0;
  PartEncoding encoding = PartEncoding::kZstd;
  int64_t content_size = 0;  // Plain bytes: the bodies it holds.
};

struct BundleRecord {
  std::string action_id;  // 32 raw bytes
  std::string output_id;  // 32 raw bytes
  int64_t size = 0;
  absl::Time time;
  uint32_t part = kNoPart;
  int64_t offset = 0;
};

struct BundleIndex {
  std::vector<BundlePart> parts;
  std::vector<BundleRecord> records;  // In the order the build asked.
};

// One distinct body of a part, in content order, and the records (indices
// into BundleIndex::records) it answers.
struct PartBody {
  int64_t offset = 0;
  int64_t size = 0;
  std::string output_id;
  std::vector<size_t> records;
};

// Returns the index blob for `index` (which must satisfy the rules above).
std::string EncodeBundleIndex(const BundleIndex& index);

// Parses an index blob. INVALID_ARGUMENT naming the first broken rule.
absl::StatusOr<BundleIndex> DecodeBundleIndex(absl::string_view blob);

// Returns, for each part of a decoded index, its bodies in content order.
std::vector<std::vector<PartBody>> BodiesByPart(const BundleIndex& index);

// Returns the CAS digest of part `p` of an index.
cas::Digest PartDigest(const BundlePart& p);

// Returns the ActionCache key under which the bundle for `scope` lives.
cas::Digest BundleKey(absl::string_view scope);

// What PlanBundle() is given per entry, in request order.
struct BundleEntry {
  std::string action_id;
  std::string output_id;
  int64_t size = 0;
  absl::Time time;
};

// Lays out a bundle of `entries` (distinct ActionIDs): bodies deduplicated
// by OutputID, in first-request order; an empty body, and every body once
// `max_bytes` of distinct bodies are placed, get no part. Parts end where
// the content decides, so that adding or removing a few entries changes only
// the parts around them (unchanged parts keep their digest and deduplicate
// in the remote): after a body that brings a part to at least
// `part_bytes` / 2, the part ends when the first 8 bytes of the body's
// OutputID, read as a fraction of 2^64, are below 2 x size / `part_bytes`;
// at `part_bytes` x 2 it always ends. Parts come back with content_size set
// and encoding kZstd; hash and blob_size are left for the writer to fill.
BundleIndex PlanBundle(absl::Span<const BundleEntry> entries,
                       int64_t max_bytes, int64_t part_bytes);

}  // namespace cairn::client::gocacheprog

#endif  // CAIRN_CLIENT_GOCACHEPROG_BUNDLE_H_
