#include "client/gocacheprog/keys.h"

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

// Records are JSON: {"v":1,"kind","package","id","machine","time" (Unix
// seconds),"inputs":[...],"truncated"}. Inputs are byte strings that may not
// be UTF-8, so each is stored Go-quoted (QuoteForDisplay/UnquoteGo).

namespace cairn::client::gocacheprog {
namespace {

constexpr absl::string_view kRecordKeyPrefix(
    "cairn-gocacheprog/v1 go-keys\0", 29);
constexpr absl::string_view kEnvHashPrefix("cairn-gocacheprog env\0", 22);

std::vector<std::string> Tokens(absl::string_view line) {
  return absl::StrSplit(line, ' ');
}

// The key an input is matched by across machines (before de-duplication).
std::string BaseKey(absl::string_view line) {
  const std::vector<std::string> t = Tokens(line);
  const std::string& w = t[0];
  if (w == "toolchain" || (w == "test" && t.size() > 1 && t[1] == "binary")) {
    return w == "test" ? "test binary" : w;
  }
  if (w == "import" && t.size() == 3 && !absl::StartsWith(t[1], "\"")) {
    return absl::StrCat("import ", t[1]);
  }
  if (w == "packagefile" && t.size() >= 2) {
    return absl::StrCat("packagefile ", t[1].substr(0, t[1].find('=')));
  }
  if ((w == "file" && t.size() >= 3) || w == "vetout" || w == "env" ||
      w == "open" || w == "stat" || w == "chdir" || w == "magic") {
    if (t.size() >= 2) {
      return absl::StrCat(w, " ", t[1].substr(0, t[1].find('=')));
    }
  }
  const size_t eq = w.find('=');
  if (eq != std::string::npos && eq > 0) {
    return w.substr(0, eq);
  }
  return w;
}

// Keys for all of `inputs`, a repeated key numbered "#2", "#3"...
std::vector<std::string> Keys(absl::Span<const std::string> inputs) {
  absl::flat_hash_map<std::string, int> seen;
  std::vector<std::string> keys;
  for (const std::string& in : inputs) {
    std::string k = BaseKey(in);
    const int n = ++seen[k];
    keys.push_back(n == 1 ? k : absl::StrCat(k, "#", n));
  }
  return keys;
}

std::string Rest(absl::string_view line, size_t words) {
  for (size_t i = 0; i < words; ++i) {
    const size_t sp = line.find(' ');
    if (sp == line.npos) {
      return "";
    }
    line.remove_prefix(sp + 1);
  }
  return std::string(line);
}

}  // namespace

bool IsStandardAction(const GoAction& action,
                      absl::Span<const GoAction> all) {
  if (action.kind != "build" && action.kind != "vet") {
    return false;
  }
  const std::string base = action.package.substr(0, action.package.find(' '));
  for (const GoAction& a : all) {
    if (a.kind == "build" && (a.package == action.package || a.package == base)) {
      for (const std::string& in : a.inputs) {
        if (absl::StartsWith(in, "omitdebug ") &&
            absl::StrContains(in, " standard true ")) {
          return true;
        }
      }
    }
  }
  return false;
}

std::string ProtectEnvInput(absl::string_view input) {
  if (!absl::StartsWith(input, "env ")) {
    return std::string(input);
  }
  const std::vector<std::string> t = Tokens(input);
  if (t.size() < 3 || t[2] != "set") {
    return std::string(input);
  }
  const std::string value = Rest(input, 3);
  if (absl::StartsWith(value, "sha256:")) {
    return std::string(input);
  }
  cas::Sha256Hasher h;
  h.Update(kEnvHashPrefix);
  h.Update(t[1]);
  h.Update(absl::string_view("\0", 1));
  h.Update(value);
  return absl::StrCat("env ", t[1], " set sha256:",
                      h.FinishDigest().hash().substr(0, 32));
}

KeyRecord MakeRecord(const GoAction& action, absl::string_view machine,
                     absl::Time time, const RecordOptions& options) {
  KeyRecord r;
  r.kind = action.kind;
  r.package = action.package;
  r.id = action.id;
  r.machine = std::string(machine);
  r.time = time;
  size_t total = 0;
  for (const std::string& in : action.inputs) {
    if (r.inputs.size() >= options.max_inputs ||
        total >= options.max_total_bytes) {
      r.truncated = true;
      break;
    }
    std::string v = options.env_values_in_clear ? in : ProtectEnvInput(in);
    const size_t room = std::min(options.max_input_bytes,
                                 options.max_total_bytes - total);
    if (v.size() > room) {
      v.resize(room);
      r.truncated = true;
    }
    total += v.size();
    r.inputs.push_back(std::move(v));
  }
  return r;
}

std::string EncodeRecord(const KeyRecord& record) {
  nlohmann::json j;
  j["v"] = 1;
  j["kind"] = record.kind;
  j["package"] = QuoteForDisplay(record.package);
  j["id"] = record.id;
  j["machine"] = QuoteForDisplay(record.machine);
  j["time"] = absl::ToUnixSeconds(record.time);
  nlohmann::json inputs = nlohmann::json::array();
  for (const std::string& in : record.inputs) {
    inputs.push_back(QuoteForDisplay(in));
  }
  j["inputs"] = std::move(inputs);
  j["truncated"] = record.truncated;
  return j.dump();
}

absl::StatusOr<KeyRecord> DecodeRecord(absl::string_view blob) {
  const absl::Status bad = absl::InvalidArgumentError("not a go-keys record");
  if (blob.size() > kMaxRecordBytes) {
    return bad;
  }
  nlohmann::json j = nlohmann::json::parse(blob, nullptr, false);
  if (!j.is_object() || j.value("v", 0) != 1 || !j["inputs"].is_array() ||
      !j["kind"].is_string() || !j["package"].is_string() ||
      !j["id"].is_string() || !j["machine"].is_string() ||
      !j["time"].is_number_integer()) {
    return bad;
  }
  KeyRecord r;
  r.kind = j["kind"].get<std::string>();
  std::optional<std::string> pkg =
      UnquoteGo(absl::StrCat("\"", j["package"].get<std::string>(), "\""));
  std::optional<std::string> machine =
      UnquoteGo(absl::StrCat("\"", j["machine"].get<std::string>(), "\""));
  if (!pkg || !machine) {
    return bad;
  }
  r.package = *pkg;
  r.machine = *machine;
  r.id = j["id"].get<std::string>();
  r.time = absl::FromUnixSeconds(j["time"].get<int64_t>());
  r.truncated = j.value("truncated", false);
  for (const auto& in : j["inputs"]) {
    std::optional<std::string> v =
        in.is_string()
            ? UnquoteGo(absl::StrCat("\"", in.get<std::string>(), "\""))
            : std::nullopt;
    if (!v) {
      return bad;
    }
    r.inputs.push_back(*std::move(v));
  }
  return r;
}

cas::Digest RecordKey(absl::string_view scope, absl::string_view kind,
                      absl::string_view package) {
  cas::Sha256Hasher h;
  h.Update(kRecordKeyPrefix);
  h.Update(scope);
  h.Update(absl::string_view("\0", 1));
  h.Update(kind);
  h.Update(absl::string_view("\0", 1));
  h.Update(package);
  return h.FinishDigest();
}

std::vector<InputDiff> DiffInputs(absl::Span<const std::string> local,
                                  absl::Span<const std::string> recorded) {
  const std::vector<std::string> lk = Keys(local);
  const std::vector<std::string> rk = Keys(recorded);
  absl::flat_hash_map<std::string, size_t> rindex;
  for (size_t i = 0; i < rk.size(); ++i) {
    rindex.emplace(rk[i], i);
  }
  absl::flat_hash_set<std::string> lset(lk.begin(), lk.end());
  std::vector<InputDiff> out;
  for (size_t i = 0; i < lk.size(); ++i) {
    auto it = rindex.find(lk[i]);
    if (it == rindex.end()) {
      out.push_back(InputDiff{lk[i], local[i], std::nullopt});
    } else if (recorded[it->second] != local[i]) {
      out.push_back(InputDiff{lk[i], local[i], recorded[it->second]});
    }
  }
  for (size_t i = 0; i < rk.size(); ++i) {
    if (!lset.contains(rk[i])) {
      out.push_back(InputDiff{rk[i], std::nullopt, recorded[i]});
    }
  }
  return out;
}

}  // namespace cairn::client::gocacheprog
