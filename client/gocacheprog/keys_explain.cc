// Diagnosis, root-cause search and rendering for keys.h.
//
// Explain walks dependency lines: an action whose only differing inputs name
// dependencies (import P, packagefile P, test binary, vetout P, pkg) is not
// a cause itself; the dependency's action is compared in turn, and the
// first action with differing inputs of its own becomes a Finding. A
// dependency with no record (or with the same ID on both machines) leaves
// the line as the action's own difference.
#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/gocacheprog/keys.h"
#include "nlohmann/json.hpp"

namespace cairn::client::gocacheprog {
namespace {

std::string Value(const std::optional<std::string>& v) {
  return v ? *v : std::string("(absent)");
}

// The part of `line` after its first `words` words.
std::string After(absl::string_view line, size_t words) {
  for (size_t i = 0; i < words && !line.empty(); ++i) {
    const size_t sp = line.find(' ');
    line = sp == line.npos ? absl::string_view() : line.substr(sp + 1);
  }
  return std::string(line);
}

// The "build\t..." settings of a modinfo input, as key -> line.
absl::flat_hash_map<std::string, std::string> BuildSettings(
    const std::optional<std::string>& modinfo) {
  absl::flat_hash_map<std::string, std::string> out;
  if (!modinfo) {
    return out;
  }
  std::optional<std::string> text = UnquoteGo(After(*modinfo, 1));
  if (!text) {
    return out;
  }
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (!absl::ConsumePrefix(&line, "build\t")) {
      continue;
    }
    out[std::string(line.substr(0, line.find('=')))] = std::string(line);
  }
  return out;
}

Diagnosis Setting(absl::string_view key, absl::string_view here,
                  absl::string_view there) {
  const std::string h = here.empty() ? "unset" : std::string(here);
  const std::string t = there.empty() ? "unset" : std::string(there);
  if (absl::StartsWith(key, "-")) {
    return {"build_setting", std::string(key),
            absl::StrCat("the build flag ", key, " differs (", h, " here, ", t,
                         " there): give both machines the same flags "
                         "(GOFLAGS or the go command line)")};
  }
  return {"env_var", std::string(key),
          absl::StrCat("the environment variable ", key, " differs (", h,
                       " here, ", t, " there): set ", key,
                       " the same on both machines")};
}

// A main package's embedded build settings (-tags, CGO_ENABLED, GOAMD64...).
Diagnosis Modinfo(const InputDiff& d) {
  auto here = BuildSettings(d.local);
  auto there = BuildSettings(d.recorded);
  for (const auto* side : {&here, &there}) {
    for (const auto& [key, line] : *side) {
      auto h = here.find(key);
      auto t = there.find(key);
      const std::string hv = h == here.end() ? "" : h->second;
      const std::string tv = t == there.end() ? "" : t->second;
      if (hv != tv) {
        return Setting(key, hv, tv);
      }
    }
  }
  return {"other", "modinfo",
          "the module information embedded in the binary differs (module or "
          "dependency versions): check out the same go.mod/go.sum"};
}

// "stat SIZE MODE MTIME... ISDIR" lines of a test's open/stat input.
Diagnosis TestFile(const InputDiff& d) {
  const std::string path = After(d.key, 1);
  if (!d.local || !d.recorded) {
    return {"test_file", path,
            absl::StrCat("the test read ", path, ", which the other machine's "
                         "run did not (a different checkout path or test "
                         "data): use the same checkout path for tests")};
  }
  const std::vector<std::string> a = absl::StrSplit(After(*d.local, 2), ' ');
  const std::vector<std::string> b = absl::StrSplit(After(*d.recorded, 2), ' ');
  const bool same_size = a.size() > 1 && b.size() > 1 && a[1] == b[1];
  if (same_size) {
    return {"test_file_mtime", path,
            absl::StrCat("the modification time of ", path,
                         ", which the test opened, differs: normalise mtimes "
                         "after checkout on every machine (cairn-gocacheprog "
                         "normalize-mtimes DIR) so test results can be "
                         "shared")};
  }
  return {"test_file", path,
          absl::StrCat("the contents of ", path,
                       ", which the test opened, differ (size)")};
}

Diagnosis Tool(const InputDiff& d) {
  auto tool = [](const std::optional<std::string>& v) {
    return v ? v->substr(0, v->find('[')) : std::string();
  };
  if (tool(d.local) != tool(d.recorded)) {
    return {"toolchain", d.key,
            "the compiler/linker build differs: pin the toolchain "
            "(GOTOOLCHAIN) on both machines"};
  }
  return {"build_setting", d.key == "linkflags" ? "-ldflags" : "-gcflags",
          "the compiler/linker flags differ (-gcflags, -ldflags, -asmflags "
          "or -race/-msan/-cover): use the same flags on both machines"};
}

Diagnosis ForKey(absl::string_view base, const InputDiff& d) {
  if (base == "toolchain") {
    return {"toolchain", After(Value(d.local), 1),
            absl::StrCat("the Go toolchain differs (", After(Value(d.local), 1),
                         " here, ", After(Value(d.recorded), 1),
                         " there): pin it on both machines (GOTOOLCHAIN, or "
                         "a toolchain line in go.mod)")};
  }
  if (base == "dir" || base == "trimpath" || base == "GOROOT") {
    if (d.local && d.recorded) {
      return {"trimpath", After(*d.local, base == "GOROOT" ? 0 : 1),
              absl::StrCat("the ", base == "GOROOT" ? "GOROOT" : "source directory",
                           " differs (", After(*d.local, base == "dir"),
                           " here, ", After(*d.recorded, base == "dir"),
                           " there) and -trimpath is off: build with "
                           "-trimpath (e.g. GOFLAGS=-trimpath)")};
    }
    return {"trimpath", "-trimpath",
            "-trimpath is set on one machine only: set it on both "
            "(e.g. GOFLAGS=-trimpath)"};
  }
  if (base == "modinfo") {
    return Modinfo(d);
  }
  if (base == "env") {
    const std::string name = After(d.key, 1);
    return {"test_env", name,
            absl::StrCat("the test reads the environment variable ", name,
                         ", whose value differs: set ", name,
                         " the same on both machines (or unset it)")};
  }
  if (base == "checkout") {
    return {"test_file", "checkout path",
            absl::StrCat("the test reads files under a different directory (",
                         Value(d.local), " here, ", Value(d.recorded),
                         " there): test results key on absolute paths, so "
                         "run tests from the same checkout path")};
  }
  if (base == "open" || base == "stat" || base == "chdir") {
    return TestFile(d);
  }
  return {"", "", ""};
}

Diagnosis ForOtherKey(absl::string_view base, const InputDiff& d) {
  if (base == "file") {
    const std::string f = After(d.key, 1);
    if (d.local && d.recorded) {
      return {"source_file", f,
              absl::StrCat("the source file ", f,
                           " differs: the machines built different sources")};
    }
    return {"file_set", f,
            absl::StrCat("the source file ", f, " is compiled ",
                         d.local ? "here only" : "there only",
                         ": build tags (-tags in GOFLAGS) or GOOS/GOARCH "
                         "differ")};
  }
  if (base == "compile" || base == "link#2" || base == "asm" ||
      base == "linkflags" || base == "vet") {
    return Tool(d);
  }
  if (base == "goos" || base == "buildmode") {
    return {"env_var", "GOOS/GOARCH",
            "the target (GOOS, GOARCH or -buildmode) differs"};
  }
  if (base == "go" || base == "defaultgodebug") {
    return {"go_directive", "go.mod",
            "the go.mod go/godebug lines differ: check out the same go.mod"};
  }
  if (base == "cgo" || base == "CC" || base == "CXX" || base == "FC" ||
      absl::StartsWith(base, "CC ID") || absl::StartsWith(base, "CXX ID")) {
    return {"cgo", std::string(base),
            "the C toolchain or its flags differ (CC, CGO_CFLAGS, "
            "CGO_CPPFLAGS, CGO_LDFLAGS): use the same on both machines"};
  }
  if (base == "test binary") {
    return {"test_flags", "go test flags",
            "the test flags differ (-run, -count, -timeout, -short, -v...): "
            "use the same go test flags on both machines"};
  }
  if (absl::StartsWith(base, "magic") || base.find('=') != base.npos ||
      absl::StartsWith(base, "GO") || base == "GO_EXTLINK_ENABLED") {
    const std::string name(absl::StripPrefix(d.key, "magic "));
    return Setting(name, After(Value(d.local), 0), After(Value(d.recorded), 0));
  }
  return {"other", d.key, absl::StrCat("the input \"", d.key, "\" differs")};
}

}  // namespace

Diagnosis Diagnose(absl::string_view kind, absl::string_view package,
                   const InputDiff& diff) {
  (void)kind;
  (void)package;
  absl::string_view key = diff.key;
  std::string base(key.substr(0, key.find('#')));
  if (key.find('#') != key.npos && absl::StartsWith(key, "link#")) {
    base = std::string(key);  // "link link version ..." (the tool line).
  }
  const std::string first = base.substr(0, base.find(' '));
  Diagnosis d = ForKey(first, diff);
  if (d.code.empty()) {
    d = ForOtherKey(first == "file" || first == "magic" ? first : base, diff);
  }
  return d;
}

namespace {

// The action a dependency line leads to, most specific candidate first.
struct DepRef {
  std::string kind;
  std::vector<std::string> packages;
};

// The variant suffix dependencies of `package` are looked up with first:
// inside a test (a test binary, its main package or a package recompiled
// for it) the test variants of packages.
std::string Variant(absl::string_view package) {
  return absl::EndsWith(package, ".test") || absl::EndsWith(package, " [test]")
             ? " [test]"
             : "";
}

std::optional<DepRef> Dependency(absl::string_view kind,
                                 absl::string_view package,
                                 const InputDiff& d) {
  const std::string pkg(package);
  auto named = [&](absl::string_view dep_kind, const std::string& dep,
                   const std::string& variant) {
    DepRef r{std::string(dep_kind), {}};
    if (!variant.empty()) {
      r.packages.push_back(dep + variant);
    }
    r.packages.push_back(dep);
    return r;
  };
  if (kind == "build" && absl::StartsWith(d.key, "import ")) {
    return named("build", After(d.key, 1), Variant(package));
  }
  if (kind == "link" && absl::StartsWith(d.key, "packagefile ")) {
    return named("build", After(d.key, 1), Variant(package));
  }
  if (kind == "link" && d.key == "packagemain") {
    return named("build", pkg, "");
  }
  if (kind == "vet" && d.key == "pkg") {
    return named("build", pkg, "");
  }
  if (kind == "vet" && absl::StartsWith(d.key, "vetout ")) {
    std::string dep = After(d.key, 1);
    return named("vet", std::string(absl::StripSuffix(
                            absl::StripPrefix(dep, "\""), "\"")), "");
  }
  if (kind == "test" && d.key == "test binary" && d.local && d.recorded &&
      After(*d.local, 3) == After(*d.recorded, 3)) {
    return named("link", absl::StrCat(pkg, ".test"), "");
  }
  return std::nullopt;
}

struct Outcome {
  bool known = false;    // both sides exist
  bool differs = false;
  std::vector<size_t> roots;  // indices into findings
};

// The path in a test's "open/stat/chdir PATH" key, or "".
std::string TestPath(const InputDiff& d) {
  for (absl::string_view p : {"open ", "stat ", "chdir "}) {
    if (absl::StartsWith(d.key, p)) {
      return d.key.substr(p.size());
    }
  }
  return "";
}

// Joins a test file read here only with one read there only that has the
// same name relative to a different directory (a different checkout path)
// into one diff keyed "checkout path".
std::vector<InputDiff> PairMovedFiles(std::vector<InputDiff> diffs) {
  std::vector<InputDiff> out;
  std::vector<bool> used(diffs.size(), false);
  for (size_t i = 0; i < diffs.size(); ++i) {
    const std::string p = TestPath(diffs[i]);
    if (used[i] || p.empty() || !diffs[i].local || diffs[i].recorded) {
      continue;
    }
    const std::string base = p.substr(p.rfind('/') + 1);
    for (size_t j = 0; j < diffs.size(); ++j) {
      const std::string q = TestPath(diffs[j]);
      if (!used[j] && !q.empty() && !diffs[j].local && diffs[j].recorded &&
          q.substr(q.rfind('/') + 1) == base) {
        used[i] = used[j] = true;
        out.push_back(InputDiff{"checkout path", p, q});
        break;
      }
    }
  }
  for (size_t i = 0; i < diffs.size(); ++i) {
    if (!used[i]) {
      out.push_back(std::move(diffs[i]));
    }
  }
  return out;
}

class Explainer {
 public:
  Explainer(absl::Span<const GoAction> local, const RecordLookup& lookup,
            size_t max_diffs)
      : lookup_(lookup), max_diffs_(max_diffs) {
    for (const GoAction& a : local) {
      local_[Key(a.kind, a.package)] = &a;
    }
  }

  ExplainReport Run(absl::Span<const GoAction> local) {
    for (const GoAction& a : local) {
      if (IsStandardAction(a, local)) {
        continue;
      }
      ++report_.actions;
      const Outcome o = Resolve(a.kind, a.package);
      report_.with_record += o.known ? 1 : 0;
      report_.differing += o.differs ? 1 : 0;
      for (size_t f : o.roots) {
        Finding& finding = report_.findings[f];
        if (finding.kind != a.kind || finding.package != a.package) {
          finding.dependents.push_back(absl::StrCat(a.kind, " ", a.package));
        }
      }
    }
    return std::move(report_);
  }

 private:
  static std::string Key(absl::string_view kind, absl::string_view pkg) {
    return absl::StrCat(kind, std::string(1, '\0'), pkg);
  }

  const std::optional<KeyRecord>& Recorded(absl::string_view kind,
                                           absl::string_view pkg) {
    auto [it, inserted] = records_.try_emplace(Key(kind, pkg));
    if (inserted) {
      it->second = lookup_(kind, pkg);
    }
    return it->second;
  }

  std::vector<std::string> LocalInputs(const GoAction& a,
                                       const KeyRecord& r) const {
    const bool hashed = std::any_of(
        r.inputs.begin(), r.inputs.end(), [](const std::string& in) {
          return absl::StartsWith(in, "env ") &&
                 absl::StrContains(in, " set sha256:");
        });
    std::vector<std::string> out;
    for (const std::string& in : a.inputs) {
      out.push_back(hashed ? ProtectEnvInput(in) : in);
    }
    return out;
  }

  Outcome Resolve(absl::string_view kind, absl::string_view pkg) {
    const std::string key = Key(kind, pkg);
    if (auto it = memo_.find(key); it != memo_.end()) {
      return it->second;
    }
    memo_[key] = Outcome{};  // Breaks cycles: in progress = unknown.
    Outcome o = Compute(kind, pkg);
    memo_[key] = o;
    return o;
  }

  Outcome Compute(absl::string_view kind, absl::string_view pkg) {
    Outcome o;
    auto l = local_.find(Key(kind, pkg));
    if (l == local_.end()) {
      return o;
    }
    const std::optional<KeyRecord>& rec = Recorded(kind, pkg);
    if (!rec) {
      return o;
    }
    o.known = true;
    if (rec->id == l->second->id) {
      return o;
    }
    o.differs = true;
    std::vector<InputDiff> own, unresolved;
    for (InputDiff& d : DiffInputs(LocalInputs(*l->second, *rec), rec->inputs)) {
      std::optional<DepRef> dep = Dependency(kind, pkg, d);
      if (!dep || !Follow(*dep, &o.roots)) {
        (dep ? unresolved : own).push_back(std::move(d));
      }
    }
    if (own.empty() && o.roots.empty()) {
      own = std::move(unresolved);
    }
    if (!own.empty()) {
      o.roots.push_back(AddFinding(*l->second, *rec, std::move(own)));
    }
    std::sort(o.roots.begin(), o.roots.end());
    o.roots.erase(std::unique(o.roots.begin(), o.roots.end()), o.roots.end());
    return o;
  }

  // Adds the roots of the dependency's differences; false when it cannot be
  // compared or does not differ.
  bool Follow(const DepRef& dep, std::vector<size_t>* roots) {
    for (const std::string& p : dep.packages) {
      if (!local_.contains(Key(dep.kind, p))) {
        continue;
      }
      const Outcome o = Resolve(dep.kind, p);
      if (!o.differs || o.roots.empty()) {
        return false;
      }
      roots->insert(roots->end(), o.roots.begin(), o.roots.end());
      return true;
    }
    return false;
  }

  size_t AddFinding(const GoAction& a, const KeyRecord& rec,
                    std::vector<InputDiff> diffs) {
    diffs = PairMovedFiles(std::move(diffs));
    Finding f;
    f.kind = a.kind;
    f.package = a.package;
    f.local_id = a.id;
    f.recorded = rec;
    f.recorded.inputs.clear();
    if (diffs.size() > max_diffs_) {
      diffs.resize(max_diffs_);
    }
    absl::flat_hash_set<std::string> seen;
    for (const InputDiff& d : diffs) {
      Diagnosis g = Diagnose(a.kind, a.package, d);
      if (seen.insert(absl::StrCat(g.code, "\n", g.subject)).second) {
        f.diagnoses.push_back(std::move(g));
      }
    }
    f.diffs = std::move(diffs);
    report_.findings.push_back(std::move(f));
    return report_.findings.size() - 1;
  }

  const RecordLookup& lookup_;
  const size_t max_diffs_;
  absl::flat_hash_map<std::string, const GoAction*> local_;
  absl::flat_hash_map<std::string, std::optional<KeyRecord>> records_;
  absl::flat_hash_map<std::string, Outcome> memo_;
  ExplainReport report_;
};

// Shortens `s` to about `width` characters around byte `at`.
std::string Excerpt(const std::string& s, size_t at, size_t width) {
  if (s.size() <= width) {
    return s;
  }
  const size_t start = at > width / 3 ? std::min(at - width / 3, s.size() - width)
                                      : 0;
  std::string out = s.substr(start, width);
  return absl::StrCat(start > 0 ? "..." : "", out,
                      start + width < s.size() ? "..." : "");
}

size_t FirstDifference(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) {
    ++i;
  }
  return i;
}

}  // namespace

ExplainReport Explain(absl::Span<const GoAction> local,
                      const RecordLookup& lookup, size_t max_diffs) {
  Explainer e(local, lookup, max_diffs);
  return e.Run(local);
}

namespace {

// One line per kind of cause (code, plus the subject where it names a
// variable or flag rather than a path), most frequent first.
std::string Summary(const ExplainReport& report) {
  struct Group {
    size_t count = 0;
    const Finding* first = nullptr;
    const Diagnosis* diagnosis = nullptr;
  };
  std::vector<std::pair<std::string, Group>> groups;
  for (const Finding& f : report.findings) {
    for (const Diagnosis& d : f.diagnoses) {
      const bool by_path = d.code == "trimpath" || d.code == "source_file" ||
                           d.code == "test_file" || d.code == "dependency";
      const std::string key =
          by_path ? d.code : absl::StrCat(d.code, " ", d.subject);
      auto it = std::find_if(groups.begin(), groups.end(),
                             [&](const auto& g) { return g.first == key; });
      if (it == groups.end()) {
        groups.push_back({key, Group{0, &f, &d}});
        it = groups.end() - 1;
      }
      ++it->second.count;
    }
  }
  std::stable_sort(groups.begin(), groups.end(), [](const auto& a,
                                                    const auto& b) {
    return a.second.count > b.second.count;
  });
  std::string out;
  for (const auto& [key, g] : groups) {
    absl::StrAppend(&out, "  ", g.count, " x ", key, " (e.g. ", g.first->kind,
                    " ", g.first->package, "): ", g.diagnosis->message, "\n");
  }
  return out;
}

std::string RenderFinding(const Finding& f, size_t n,
                          absl::string_view machine) {
  std::string out = absl::StrCat(
      "\n[", n, "] ", f.kind, " ", f.package, ": ", f.local_id.substr(0, 12),
      " here (", machine, "), ", f.recorded.id.substr(0, 12), " on ",
      QuoteForDisplay(f.recorded.machine), " (recorded ",
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", f.recorded.time,
                       absl::UTCTimeZone()),
      ")\n");
  for (const InputDiff& d : f.diffs) {
    const std::string l = QuoteForDisplay(Value(d.local));
    const std::string r = QuoteForDisplay(Value(d.recorded));
    const size_t at = FirstDifference(l, r);
    absl::StrAppend(&out, "    ", d.key, "\n      here:  ", Excerpt(l, at, 100),
                    "\n      there: ", Excerpt(r, at, 100), "\n");
  }
  for (const Diagnosis& g : f.diagnoses) {
    absl::StrAppend(&out, "  diagnosis (", g.code, "): ", g.message, "\n");
  }
  if (!f.dependents.empty()) {
    const size_t shown = std::min<size_t>(f.dependents.size(), 5);
    absl::StrAppend(
        &out, "  also missing because of it: ",
        absl::StrJoin(f.dependents.begin(), f.dependents.begin() + shown, ", "),
        f.dependents.size() > shown
            ? absl::StrCat(" (+", f.dependents.size() - shown, " more)")
            : "",
        "\n");
  }
  return out;
}

}  // namespace

std::string RenderText(const ExplainReport& report, absl::string_view machine,
                       size_t max_findings) {
  std::string out = absl::StrCat(
      "keys explain: ", report.actions, " actions, ", report.with_record,
      " with a record, ", report.differing, " differ; ",
      report.findings.size(), " root cause(s)\n");
  if (report.findings.size() > 1) {
    absl::StrAppend(&out, Summary(report));
  }
  const size_t shown = std::min(report.findings.size(), max_findings);
  for (size_t i = 0; i < shown; ++i) {
    absl::StrAppend(&out, RenderFinding(report.findings[i], i + 1, machine));
  }
  if (shown < report.findings.size()) {
    absl::StrAppend(&out, "\n(", report.findings.size() - shown,
                    " more root causes not shown; --json lists all)\n");
  }
  return out;
}

std::string RenderJson(const ExplainReport& report, absl::string_view machine) {
  nlohmann::json j;
  j["machine"] = QuoteForDisplay(machine);
  j["actions"] = report.actions;
  j["with_record"] = report.with_record;
  j["differing"] = report.differing;
  j["findings"] = nlohmann::json::array();
  for (const Finding& f : report.findings) {
    nlohmann::json x;
    x["kind"] = f.kind;
    x["package"] = QuoteForDisplay(f.package);
    x["local_id"] = f.local_id;
    x["recorded_id"] = f.recorded.id;
    x["recorded_machine"] = QuoteForDisplay(f.recorded.machine);
    x["recorded_time"] = absl::ToUnixSeconds(f.recorded.time);
    x["diffs"] = nlohmann::json::array();
    for (const InputDiff& d : f.diffs) {
      nlohmann::json y;
      y["key"] = QuoteForDisplay(d.key);
      y["local"] = d.local ? nlohmann::json(QuoteForDisplay(*d.local))
                           : nlohmann::json(nullptr);
      y["recorded"] = d.recorded ? nlohmann::json(QuoteForDisplay(*d.recorded))
                                 : nlohmann::json(nullptr);
      x["diffs"].push_back(std::move(y));
    }
    x["diagnoses"] = nlohmann::json::array();
    for (const Diagnosis& g : f.diagnoses) {
      x["diagnoses"].push_back(
          {{"code", g.code}, {"subject", QuoteForDisplay(g.subject)},
           {"message", QuoteForDisplay(g.message)}});
    }
    x["dependents"] = nlohmann::json::array();
    for (const std::string& d : f.dependents) {
      x["dependents"].push_back(QuoteForDisplay(d));
    }
    j["findings"].push_back(std::move(x));
  }
  return j.dump(2) + "\n";
}

}  // namespace cairn::client::gocacheprog
