#include "client/gocacheprog/bundle.h"

#include <algorithm>
#include <cstring>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/gocacheprog/manifest.h"

namespace cairn::client::gocacheprog {
namespace {

constexpr size_t kIdSize = 32;
constexpr size_t kPartBytes = 32 + 8 + 1 + 8;
constexpr size_t kRecordBytes = 32 + 32 + 8 + 8 + 4 + 8;
constexpr absl::string_view kKeyPrefix("cairn-gocacheprog/v1 bundle\0", 28);

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    out->push_back(static_cast<char>(v >> (8 * i)));
  }
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    out->push_back(static_cast<char>(v >> (8 * i)));
  }
}

// Reads fixed-width fields from the front of a blob; the caller checked the
// length beforehand.
class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}
  uint64_t Uint(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      v |= uint64_t{static_cast<uint8_t>(data_[i])} << (8 * i);
    }
    data_.remove_prefix(bytes);
    return v;
  }
  std::string Bytes(size_t n) {
    std::string s(data_.substr(0, n));
    data_.remove_prefix(n);
    return s;
  }
  size_t left() const { return data_.size(); }

 private:
  absl::string_view data_;
};

absl::Status Bad(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("bundle index: ", why));
}

bool SizeOk(uint64_t v) { return v <= uint64_t{kMaxBundleBodyBytes}; }

// Checks that the distinct bodies of each part tile its content.
absl::Status CheckTiling(const BundleIndex& index) {
  const std::vector<std::vector<PartBody>> bodies = BodiesByPart(index);
  for (size_t p = 0; p < bodies.size(); ++p) {
    int64_t end = 0;
    for (const PartBody& b : bodies[p]) {
      if (b.offset != end) {
        return Bad(absl::StrCat("part ", p, ": body at ", b.offset,
                                " where ", end, " was expected"));
      }
      for (size_t r : b.records) {
        if (index.records[r].output_id != b.output_id ||
            index.records[r].size != b.size) {
          return Bad(absl::StrCat("part ", p, ": two bodies at ", b.offset));
        }
      }
      end += b.size;
    }
    if (end != index.parts[p].content_size) {
      return Bad(absl::StrCat("part ", p, ": bodies end at ", end, " of ",
                              index.parts[p].content_size));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<BundlePart> ReadPart(Reader& in) {
  BundlePart p;
  p.hash = in.Bytes(kIdSize);
  const uint64_t blob_size = in.Uint(8);
  const uint64_t encoding = in.Uint(1);
  const uint64_t content_size = in.Uint(8);
  if (blob_size == 0 || !SizeOk(blob_size) || content_size == 0 ||
      !SizeOk(content_size) || encoding > 1) {
    return Bad("bad part sizes or encoding");
  }
  p.blob_size = static_cast<int64_t>(blob_size);
  p.encoding = static_cast<PartEncoding>(encoding);
  p.content_size = static_cast<int64_t>(content_size);
  if (p.encoding == PartEncoding::kPlain && p.blob_size != p.content_size) {
    return Bad("plain part whose blob is not its content");
  }
  return p;
}

absl::StatusOr<BundleRecord> ReadRecord(Reader& in, size_t parts) {
  BundleRecord r;
  r.action_id = in.Bytes(kIdSize);
  r.output_id = in.Bytes(kIdSize);
  const uint64_t size = in.Uint(8);
  const int64_t nanos = static_cast<int64_t>(in.Uint(8));
  r.part = static_cast<uint32_t>(in.Uint(4));
  const uint64_t offset = in.Uint(8);
  if (!SizeOk(size) || !SizeOk(offset)) {
    return Bad("record size or offset out of range");
  }
  r.size = static_cast<int64_t>(size);
  r.offset = static_cast<int64_t>(offset);
  r.time = absl::FromUnixNanos(nanos);
  if (r.part == kNoPart ? r.offset != 0
                        : r.part >= parts || r.size == 0) {
    return Bad("record names no valid place");
  }
  return r;
}

}  // namespace

std::string EncodeBundleIndex(const BundleIndex& index) {
  std::string out(kBundleMagic);
  out.reserve(out.size() + 8 + index.parts.size() * kPartBytes +
              index.records.size() * kRecordBytes);
  PutU32(&out, static_cast<uint32_t>(index.parts.size()));
  for (const BundlePart& p : index.parts) {
    out.append(p.hash);
    PutU64(&out, static_cast<uint64_t>(p.blob_size));
    out.push_back(static_cast<char>(p.encoding));
    PutU64(&out, static_cast<uint64_t>(p.content_size));
  }
  PutU32(&out, static_cast<uint32_t>(index.records.size()));
  for (const BundleRecord& r : index.records) {
    out.append(r.action_id);
    out.append(r.output_id);
    PutU64(&out, static_cast<uint64_t>(r.size));
    PutU64(&out, static_cast<uint64_t>(absl::ToUnixNanos(r.time)));
    PutU32(&out, r.part);
    PutU64(&out, static_cast<uint64_t>(r.offset));
  }
  return out;
}

absl::StatusOr<BundleIndex> DecodeBundleIndex(absl::string_view blob) {
  if (blob.substr(0, kBundleMagic.size()) != kBundleMagic) {
    return Bad("wrong header");
  }
  Reader in(blob.substr(kBundleMagic.size()));
  if (in.left() < 4) {
    return Bad("truncated");
  }
  const uint64_t parts = in.Uint(4);
  if (parts > kMaxBundleParts || in.left() < parts * kPartBytes + 4) {
    return Bad(absl::StrCat(parts, " parts"));
  }
  BundleIndex index;
  index.parts.reserve(parts);
  for (uint64_t i = 0; i < parts; ++i) {
    absl::StatusOr<BundlePart> p = ReadPart(in);
    if (!p.ok()) {
      return p.status();
    }
    index.parts.push_back(*std::move(p));
  }
  const uint64_t records = in.Uint(4);
  if (records > kMaxManifestIds || in.left() != records * kRecordBytes) {
    return Bad(absl::StrCat(records, " records in ", in.left(), " bytes"));
  }
  index.records.reserve(records);
  absl::flat_hash_set<std::string> seen;
  for (uint64_t i = 0; i < records; ++i) {
    absl::StatusOr<BundleRecord> r = ReadRecord(in, index.parts.size());
    if (!r.ok()) {
      return r.status();
    }
    if (!seen.insert(r->action_id).second) {
      return Bad("an ActionID listed twice");
    }
    index.records.push_back(*std::move(r));
  }
  if (absl::Status s = CheckTiling(index); !s.ok()) {
    return s;
  }
  return index;
}

std::vector<std::vector<PartBody>> BodiesByPart(const BundleIndex& index) {
  std::vector<std::vector<PartBody>> bodies(index.parts.size());
  // Per part: offset -> position in bodies[part].
  std::vector<absl::flat_hash_map<int64_t, size_t>> at(index.parts.size());
  for (size_t i = 0; i < index.records.size(); ++i) {
    const BundleRecord& r = index.records[i];
    if (r.part == kNoPart || r.part >= index.parts.size()) {
      continue;
    }
    auto [it, fresh] = at[r.part].try_emplace(r.offset, bodies[r.part].size());
    if (fresh) {
      bodies[r.part].push_back(PartBody{r.offset, r.size, r.output_id, {}});
    }
    bodies[r.part][it->second].records.push_back(i);
  }
  for (std::vector<PartBody>& b : bodies) {
    std::sort(b.begin(), b.end(), [](const PartBody& x, const PartBody& y) {
      return x.offset < y.offset;
    });
  }
  return bodies;
}

cas::Digest PartDigest(const BundlePart& p) {
  // A decoded part's hash is 32 bytes and its size positive: well formed.
  return cas::Digest::Create(cas::HexEncode(p.hash), p.blob_size).value();
}

cas::Digest BundleKey(absl::string_view scope) {
  cas::Sha256Hasher h;
  h.Update(kKeyPrefix);
  h.Update(scope);
  return h.FinishDigest();
}

BundleIndex PlanBundle(absl::Span<const BundleEntry> entries,
                       int64_t max_bytes, int64_t part_bytes) {
  BundleIndex index;
  part_bytes = std::max<int64_t>(part_bytes, 1);
  absl::flat_hash_map<std::string, std::pair<uint32_t, int64_t>> placed;
  absl::flat_hash_set<std::string> ids;
  int64_t total = 0;
  bool open = false;  // The last part takes more bodies.
  for (const BundleEntry& e : entries) {
    if (e.action_id.size() != kIdSize || e.output_id.size() != kIdSize ||
        e.size < 0 || !ids.insert(e.action_id).second ||
        index.records.size() == kMaxManifestIds) {
      continue;
    }
    BundleRecord r{e.action_id, e.output_id, e.size, e.time, kNoPart, 0};
    if (auto it = placed.find(e.output_id); it != placed.end()) {
      std::tie(r.part, r.offset) = it->second;
    } else if (e.size > 0 && total + e.size <= max_bytes) {
      if (!open) {
        index.parts.push_back(BundlePart{});
        open = true;
      }
      BundlePart& p = index.parts.back();
      r.part = static_cast<uint32_t>(index.parts.size() - 1);
      r.offset = p.content_size;
      p.content_size += e.size;
      total += e.size;
      placed[e.output_id] = {r.part, r.offset};
      uint64_t head = 0;
      for (int i = 0; i < 8; ++i) {
        head = (head << 8) | static_cast<uint8_t>(e.output_id[i]);
      }
      const double u = static_cast<double>(head) / 18446744073709551616.0;
      open = p.content_size < 2 * part_bytes &&
             (p.content_size < part_bytes / 2 ||
              u >= 2.0 * static_cast<double>(e.size) / part_bytes);
    }
    index.records.push_back(std::move(r));
  }
  if (index.parts.size() > kMaxBundleParts) {
    // Too many parts (tiny part_bytes): the bodies past the limit go out.
    for (BundleRecord& r : index.records) {
      if (r.part != kNoPart && r.part >= kMaxBundleParts) {
        r.part = kNoPart;
        r.offset = 0;
      }
    }
    index.parts.resize(kMaxBundleParts);
  }
  return index;
}

}  // namespace cairn::client::gocacheprog
