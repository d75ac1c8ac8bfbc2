// Go cache-key forensics ("why did it miss?"): the per-action inputs of one
// machine's build kept as records, and the comparison of another machine's
// actions against them with a diagnosis of the first cause.
//
// A KeyRecord is what leaves the machine: the action's kind, package, ID,
// the machine label, the time and its inputs (gocachehash.h), bounded in
// count and size; the value of every environment variable a test read is
// replaced by a keyed hash ("set sha256:<32 hex>") unless the user opts in
// to clear values. Records are JSON blobs (EncodeRecord/DecodeRecord).
//
// Explain() compares local actions with the recorded ones it is given (via a
// lookup callback, so tests need no server), follows differing dependency
// lines (import, packagefile, test binary, vetout) down to the action whose
// own inputs differ, and returns one Finding per root cause with the
// dependents that miss because of it.
//
// Thread safety: free functions, safe from any thread; the lookup callback
// is called from the calling thread only.
#ifndef CAIRN_CLIENT_GOCACHEPROG_KEYS_H_
#define CAIRN_CLIENT_GOCACHEPROG_KEYS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "cas/digest.h"
#include "client/gocacheprog/gocachehash.h"

namespace cairn::client::gocacheprog {

struct KeyRecord {
  std::string kind;
  std::string package;
  std::string id;
  std::string machine;
  absl::Time time = absl::UnixEpoch();
  std::vector<std::string> inputs;
  bool truncated = false;  // inputs were cut to the bounds below
};

struct RecordOptions {
  bool env_values_in_clear = false;
  size_t max_inputs = 4096;
  size_t max_input_bytes = 4096;
  size_t max_total_bytes = 128 * 1024;  // all inputs together
};

// The most bytes an encoded record may have; DecodeRecord refuses more.
inline constexpr size_t kMaxRecordBytes = 1 << 20;

// Returns true for actions of standard-library packages (not recorded:
// their differences show in every module package's own inputs).
bool IsStandardAction(const GoAction& action,
                      absl::Span<const GoAction> all);

// Returns the record of `action` as it may leave the machine (see above).
KeyRecord MakeRecord(const GoAction& action, absl::string_view machine,
                     absl::Time time, const RecordOptions& options);

// Returns `input` with a clear environment value replaced by its hash
// ("env NAME set <v>" -> "env NAME set sha256:<32 hex>"); other inputs are
// returned unchanged.
std::string ProtectEnvInput(absl::string_view input);

std::string EncodeRecord(const KeyRecord& record);
// INVALID_ARGUMENT when `blob` is not a record (wrong JSON, version, fields
// or larger than kMaxRecordBytes).
absl::StatusOr<KeyRecord> DecodeRecord(absl::string_view blob);

// Returns the ActionCache key of the record for kind+package in `scope`
// (free text, e.g. a repository name; empty by default): SHA-256 over a
// domain-separating prefix and the three fields, sized as that preimage.
cas::Digest RecordKey(absl::string_view scope, absl::string_view kind,
                      absl::string_view package);

// One differing input: the key it is matched by (e.g. "dir", "import fmt",
// "env HOME") and its value on each side (nullopt: absent on that side).
struct InputDiff {
  std::string key;
  std::optional<std::string> local;
  std::optional<std::string> recorded;
};

// Returns the inputs that differ, in local order then recorded-only ones.
std::vector<InputDiff> DiffInputs(absl::Span<const std::string> local,
                                  absl::Span<const std::string> recorded);

// A diagnosis: `code` is one of toolchain, trimpath, build_setting,
// env_var, test_env, test_file_mtime, test_file, test_flags, source_file,
// file_set, cgo, go_directive, dependency, other; `subject` names the
// variable, flag, file or package; `message` is one line with the fix.
struct Diagnosis {
  std::string code;
  std::string subject;
  std::string message;
};

// Returns the diagnosis of one differing input of an action.
Diagnosis Diagnose(absl::string_view kind, absl::string_view package,
                   const InputDiff& diff);

struct Finding {
  std::string kind;
  std::string package;
  std::string local_id;
  KeyRecord recorded;
  std::vector<InputDiff> diffs;  // the action's own differing inputs
  std::vector<Diagnosis> diagnoses;
  std::vector<std::string> dependents;  // "kind package" missing through it
};

struct ExplainReport {
  int64_t actions = 0;        // local actions considered
  int64_t with_record = 0;    // ... that had a recorded counterpart
  int64_t differing = 0;      // ... whose ID differed from it
  std::vector<Finding> findings;
};

// Looks up the record for kind+package: nullopt when there is none (or it
// is unusable).
using RecordLookup = std::function<std::optional<KeyRecord>(
    absl::string_view kind, absl::string_view package)>;

// Compares `local` (all actions of this machine's stream) against what
// `lookup` returns; standard-library actions are looked up only when a
// dependency line leads to them. `max_diffs` bounds the differing inputs
// kept per finding.
ExplainReport Explain(absl::Span<const GoAction> local,
                      const RecordLookup& lookup, size_t max_diffs = 8);

// Renders the report as text (side by side, one diagnosis line per cause)
// or as one JSON document.
// Text: a header line, one summary line per kind of cause when there are
// several findings, then the first `max_findings` findings in full.
std::string RenderText(const ExplainReport& report, absl::string_view machine,
                       size_t max_findings = 20);
std::string RenderJson(const ExplainReport& report, absl::string_view machine);

}  // namespace cairn::client::gocacheprog

#endif  // CAIRN_CLIENT_GOCACHEPROG_KEYS_H_
