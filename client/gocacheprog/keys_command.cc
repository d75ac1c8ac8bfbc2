#include "client/gocacheprog/keys_command.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/gocacheprog/gocachehash.h"
#include "client/gocacheprog/keys_remote.h"

namespace cairn::client::gocacheprog {
namespace {

std::vector<GoAction> ReadActions(std::FILE* in, std::FILE* err,
                                  bool verbose) {
  HashLogParser parser;
  char buf[64 * 1024];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), in)) > 0) {
    parser.Feed(absl::string_view(buf, n));
  }
  parser.Finish();
  GroupCounts g;
  std::vector<GoAction> actions = GroupActions(parser, &g);
  const ParseCounts& c = parser.counts();
  if (verbose || c.unknown > 0 || c.ambiguous > 0) {
    absl::FPrintF(err,
                  "keys: lines=%d hash_lines=%d actions=%d unknown=%d "
                  "ambiguous=%d unterminated=%d orphans=%d truncated=%d "
                  "tests_unmatched=%d\n",
                  c.lines, c.hash_lines, g.actions, c.unknown, c.ambiguous,
                  c.unterminated, c.orphan_writes, c.truncated,
                  g.tests_unmatched);
  }
  return actions;
}

absl::Status Record(const KeysCommandOptions& o, ReapiClient& client,
                    const std::vector<GoAction>& actions, std::FILE* out) {
  absl::Status first;
  int64_t stored = 0, failed = 0, skipped = 0;
  const absl::Time now = absl::Now();
  for (const GoAction& a : actions) {
    if (IsStandardAction(a, actions)) {
      ++skipped;
      continue;
    }
    absl::Status s =
        StoreRecord(client, o.scope, MakeRecord(a, o.machine, now, o.record));
    if (s.ok()) {
      ++stored;
    } else {
      ++failed;
      first.Update(s);
    }
  }
  absl::FPrintF(out,
                "keys record: machine=%s stored=%d failed=%d "
                "skipped_std=%d\n",
                QuoteForDisplay(o.machine), stored, failed, skipped);
  return first;
}

absl::Status ExplainCommand(const KeysCommandOptions& o, ReapiClient& client,
                            const std::vector<GoAction>& actions,
                            std::FILE* out, std::FILE* err) {
  absl::Status lookup_error;
  RecordLookup lookup = [&](absl::string_view kind,
                            absl::string_view package) -> std::optional<KeyRecord> {
    if (!lookup_error.ok()) {
      return std::nullopt;  // The remote is failing: stop asking.
    }
    absl::StatusOr<std::optional<KeyRecord>> r =
        LoadRecord(client, o.scope, kind, package);
    if (!r.ok()) {
      lookup_error = r.status();
      return std::nullopt;
    }
    return *std::move(r);
  };
  const ExplainReport report = Explain(actions, lookup, o.max_diffs);
  const std::string text = o.json ? RenderJson(report, o.machine)
                                  : RenderText(report, o.machine);
  std::fwrite(text.data(), 1, text.size(), out);
  if (!lookup_error.ok()) {
    absl::FPrintF(err, "keys explain: lookups stopped: %s\n",
                  lookup_error.ToString());
  }
  return lookup_error;
}

}  // namespace

absl::Status RunKeysCommand(const KeysCommandOptions& options,
                            ReapiClient& client, std::FILE* in,
                            std::FILE* out, std::FILE* err) {
  if (options.subcommand != "record" && options.subcommand != "explain") {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown keys subcommand '", options.subcommand,
        "' (want record or explain)"));
  }
  const std::vector<GoAction> actions =
      ReadActions(in, err, options.verbose);
  if (options.subcommand == "record") {
    return Record(options, client, actions, out);
  }
  return ExplainCommand(options, client, actions, out, err);
}

}  // namespace cairn::client::gocacheprog
