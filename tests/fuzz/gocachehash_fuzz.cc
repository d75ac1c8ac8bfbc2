// Fuzzes the GODEBUG=gocachehash=1 parser and what is built on it
// (client/gocacheprog/gocachehash.h, keys.h). The input is a stderr stream;
// the first byte picks the chunk size it is fed in. Invariants: nothing
// crashes, hangs or throws; the counters are consistent; every action has a
// 64-hex ID; the result does not depend on the chunking; records round-trip
// through their JSON form; a stream compared with its own records has
// nothing to explain.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/gocacheprog/gocachehash.h"
#include "client/gocacheprog/keys.h"

namespace {

namespace gcp = ::cairn::client::gocacheprog;

std::vector<gcp::GoAction> Run(absl::string_view text, size_t chunk,
                               gcp::ParseCounts* counts) {
  gcp::HashLogParser p;
  for (size_t i = 0; i < text.size(); i += chunk) {
    p.Feed(text.substr(i, chunk));
  }
  p.Finish();
  *counts = p.counts();
  return gcp::GroupActions(p);
}

void Check(bool ok) {
  if (!ok) {
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const size_t chunk = 1 + data[0] % 64;
  const absl::string_view text(reinterpret_cast<const char*>(data + 1),
                               size - 1);
  gcp::ParseCounts c, whole_counts;
  std::vector<gcp::GoAction> actions = Run(text, chunk, &c);
  std::vector<gcp::GoAction> whole = Run(text, text.size() + 1, &whole_counts);
  Check(c.unknown <= c.hash_lines && c.hash_lines <= c.lines);
  Check(c.lines == whole_counts.lines && c.unknown == whole_counts.unknown);
  Check(actions.size() == whole.size());
  auto store = std::make_shared<absl::flat_hash_map<std::string, gcp::KeyRecord>>();
  for (size_t i = 0; i < actions.size(); ++i) {
    const gcp::GoAction& a = actions[i];
    Check(gcp::IsHex64(a.id) && a.id == whole[i].id &&
          a.inputs == whole[i].inputs);
    gcp::KeyRecord r =
        gcp::MakeRecord(a, "m", absl::UnixEpoch(), gcp::RecordOptions{});
    const std::string blob = gcp::EncodeRecord(r);
    absl::StatusOr<gcp::KeyRecord> back = gcp::DecodeRecord(blob);
    if (blob.size() > gcp::kMaxRecordBytes) {
      Check(!back.ok());  // Refused (StoreRecord never uploads it).
      continue;
    }
    Check(back.ok() && back->inputs == r.inputs && back->package == r.package);
    (*store)[absl::StrCat(a.kind, "\n", a.package)] = *back;
  }
  gcp::ExplainReport report = gcp::Explain(
      actions, [store](absl::string_view k, absl::string_view p)
                   -> std::optional<gcp::KeyRecord> {
        auto it = store->find(absl::StrCat(k, "\n", p));
        if (it == store->end()) {
          return std::nullopt;
        }
        return it->second;
      });
  Check(report.differing == 0 && report.findings.empty());
  gcp::RenderText(report, "m");
  gcp::RenderJson(report, "m");
  return 0;
}
