// Go cache-key forensics: the GODEBUG=gocachehash=1 parser, grouping into
// actions, records and the explanation of differences. The two samples in
// testdata/ are the real stderr of go 1.26.8 (`go test -vet=off ./lib` then
// `go build ./cmd/hello`) for one module checked out at two paths with a
// different value of the variable the test reads; only the hashes of
// standard-library packages other than "errors" were left out.
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/gocacheprog/gocachehash.h"
#include "client/gocacheprog/keys.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

#ifndef CAIRN_KEYS_TESTDATA
#define CAIRN_KEYS_TESTDATA "tests/client/testdata"
#endif

namespace cairn::client::gocacheprog {
namespace {

std::string ReadSample(const std::string& name) {
  std::ifstream in(absl::StrCat(CAIRN_KEYS_TESTDATA, "/", name),
                   std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)),
                std::istreambuf_iterator<char>());
  return s;
}

std::vector<GoAction> Parse(absl::string_view text,
                            ParseCounts* counts = nullptr) {
  HashLogParser p;
  p.Feed(text);
  p.Finish();
  if (counts != nullptr) {
    *counts = p.counts();
  }
  return GroupActions(p);
}

const GoAction* Find(const std::vector<GoAction>& actions,
                     absl::string_view kind, absl::string_view package) {
  for (const GoAction& a : actions) {
    if (a.kind == kind && a.package == package) {
      return &a;
    }
  }
  return nullptr;
}

bool HasInput(const GoAction& a, absl::string_view prefix) {
  for (const std::string& in : a.inputs) {
    if (absl::StartsWith(in, prefix)) {
      return true;
    }
  }
  return false;
}

TEST(UnquoteGoTest, DecodesGoLiterals) {
  EXPECT_EQ(UnquoteGo(R"("go1.26.8")"), "go1.26.8");
  EXPECT_EQ(UnquoteGo(R"("a\n\t\"q\"\\")"), "a\n\t\"q\"\\");
  EXPECT_EQ(UnquoteGo(R"("\x01\x00")"), std::string("\x01\0", 2));
  EXPECT_EQ(UnquoteGo(R"("\u00e9\U0001F600")"), "\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(UnquoteGo(R"("\101")"), "A");
  EXPECT_EQ(UnquoteGo(R"("")"), "");
}

TEST(UnquoteGoTest, RejectsMalformedLiterals) {
  for (const char* bad : {"", "\"", "abc", "\"abc", "\"a\"b\"", "\"\\\"",
                          "\"\\x1\"", "\"\\xzz\"", "\"\\q\"", "\"\\777\"",
                          "\"\\u12\""}) {
    EXPECT_EQ(UnquoteGo(bad), std::nullopt) << bad;
  }
}

TEST(HashLogParserTest, GroupsInterleavedHashesByName) {
  HashLogParser p;
  p.Feed(
      "HASH[build a]\n"
      "HASH[build a]: \"go1.26.8\"\n"
      "HASH[build b [b.test]]\n"
      "HASH[build b [b.test]]: \"go1.26.8\"\n"
      "HASH[build a]: \"dir /x/a\\n\"\n"
      "HASH subkey " + std::string(64, 'a') + " \"stdout\" = " +
      std::string(64, 'b') + "\n"
      "HASH[build b [b.test]]: " + std::string(64, 'c') + "\n"
      "# compiler chatter\n"
      "HASH /x/a/a.go: " + std::string(64, 'd') + "\n"
      "HASH[build a]: " + std::string(64, 'a') + "\n");
  p.Finish();
  ASSERT_EQ(p.hashes().size(), 2u);
  EXPECT_EQ(p.hashes()[0].name, "build b [b.test]");
  EXPECT_EQ(p.hashes()[1].name, "build a");
  EXPECT_EQ(p.hashes()[1].writes,
            (std::vector<std::string>{"go1.26.8", "dir /x/a\n"}));
  ASSERT_EQ(p.subkeys().size(), 1u);
  EXPECT_EQ(p.subkeys()[0].desc, "stdout");
  EXPECT_EQ(p.counts().lines, 10);
  EXPECT_EQ(p.counts().hash_lines, 9);
  EXPECT_EQ(p.counts().unknown, 0);
  std::vector<GoAction> actions = GroupActions(p);
  ASSERT_EQ(actions.size(), 2u);
  EXPECT_EQ(actions[1].inputs,
            (std::vector<std::string>{"toolchain go1.26.8", "dir /x/a"}));
  EXPECT_EQ(actions[1].subkeys.size(), 1u);
}

TEST(HashLogParserTest, SkipsAndCountsWhatItCannotAttribute) {
  HashLogParser p;
  p.Feed(
      "HASH[vet x]\n"
      "HASH[vet x]\n"                           // overlapping same name
      "HASH[vet x]: \"go1.26.8\"\n"
      "HASH[vet x]: " + std::string(64, '1') + "\n"
      "HASH[vet x]: " + std::string(64, '2') + "\n"
      "HASH[link y]: \"orphan\"\n"              // no header
      "HASH[link y]: not-a-sum\n"               // unknown shape
      "HASH[link y\n"                           // unknown shape
      "HASH subkey zz \"d\" = zz\n"             // unknown shape
      "HASH[build z]\n"
      "HASH[build z]: \"bad \\q escape\"\n"     // unknown shape
      "HASH[build z]: \"go1.26.8\"");           // no sum, no newline
  p.Finish();
  EXPECT_TRUE(p.hashes().empty());
  EXPECT_EQ(p.counts().ambiguous, 2);
  EXPECT_EQ(p.counts().orphan_writes, 1);
  EXPECT_EQ(p.counts().unknown, 4);
  EXPECT_EQ(p.counts().unterminated, 1);
  EXPECT_EQ(p.counts().lines, 12);
}

TEST(HashLogParserTest, ChunkBoundariesDoNotMatter) {
  const std::string text = ReadSample("gocachehash_machine_a.log");
  ASSERT_GT(text.size(), 10000u);
  std::vector<GoAction> whole = Parse(text);
  HashLogParser p;
  for (size_t i = 0; i < text.size(); i += 7) {
    p.Feed(absl::string_view(text).substr(i, 7));
  }
  p.Finish();
  std::vector<GoAction> pieces = GroupActions(p);
  ASSERT_EQ(whole.size(), pieces.size());
  for (size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(whole[i].id, pieces[i].id);
    EXPECT_EQ(whole[i].inputs, pieces[i].inputs);
  }
}

TEST(GroupActionsTest, RealGoOutputHasEveryActionKind) {
  ParseCounts counts;
  std::vector<GoAction> actions =
      Parse(ReadSample("gocachehash_machine_a.log"), &counts);
  EXPECT_EQ(counts.unknown, 0);
  EXPECT_EQ(counts.ambiguous, 0);
  for (const auto& [kind, pkg] :
       std::vector<std::pair<const char*, const char*>>{
           {"build", "example.com/m/lib"},
           {"build", "example.com/m/lib [test]"},
           {"build", "example.com/m/lib.test"},
           {"link", "example.com/m/lib.test"},
           {"test", "example.com/m/lib"},
           {"build", "example.com/m/cmd/hello"},
           {"link", "example.com/m/cmd/hello"},
           {"build", "errors"}}) {
    const GoAction* a = Find(actions, kind, pkg);
    ASSERT_NE(a, nullptr) << kind << " " << pkg;
    EXPECT_TRUE(IsHex64(a->id));
    EXPECT_EQ(a->inputs[0], "toolchain go1.26.8");
  }
  const GoAction* lib = Find(actions, "build", "example.com/m/lib");
  EXPECT_TRUE(HasInput(*lib, "dir /tmp/machine-a/m/lib"));
  EXPECT_EQ(lib->subkeys.size(), 2u);  // srcfiles, stdout
  EXPECT_TRUE(HasInput(*Find(actions, "link", "example.com/m/cmd/hello"),
                       "packagefile example.com/m/lib="));
  EXPECT_TRUE(IsStandardAction(*Find(actions, "build", "errors"), actions));
  EXPECT_FALSE(IsStandardAction(*lib, actions));
  const GoAction* test = Find(actions, "test", "example.com/m/lib");
  EXPECT_TRUE(HasInput(*test, "test binary "));
  EXPECT_TRUE(HasInput(*test, "env CAIRN_FX set s3cr3t-a"));
  EXPECT_TRUE(HasInput(*test, "env GODEBUG set gocachehash=1"));
  EXPECT_TRUE(HasInput(*test, "stat /tmp/machine-a/m/lib/testdata.txt stat 5 "));
}

TEST(KeyRecordTest, HidesEnvironmentValuesAndRoundTrips) {
  std::vector<GoAction> actions = Parse(ReadSample("gocachehash_machine_a.log"));
  const GoAction* test = Find(actions, "test", "example.com/m/lib");
  ASSERT_NE(test, nullptr);
  const absl::Time t = absl::FromUnixSeconds(1796000000);
  KeyRecord r = MakeRecord(*test, "ci-a", t, RecordOptions{});
  const std::string blob = EncodeRecord(r);
  EXPECT_FALSE(absl::StrContains(blob, "s3cr3t"));
  EXPECT_TRUE(absl::StrContains(blob, "env CAIRN_FX set sha256:"));
  auto back = DecodeRecord(blob);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->inputs, r.inputs);
  EXPECT_EQ(back->machine, "ci-a");
  EXPECT_EQ(back->time, t);
  RecordOptions clear;
  clear.env_values_in_clear = true;
  EXPECT_TRUE(absl::StrContains(EncodeRecord(MakeRecord(*test, "a", t, clear)),
                                "s3cr3t-a"));
  RecordOptions small;
  small.max_inputs = 2;
  EXPECT_TRUE(MakeRecord(*test, "a", t, small).truncated);
  EXPECT_FALSE(DecodeRecord("{\"v\":2}").ok());
  EXPECT_FALSE(DecodeRecord("not json").ok());
}

TEST(RecordKeyTest, DependsOnEveryField) {
  const cas::Digest k = RecordKey("", "build", "m/lib");
  EXPECT_EQ(k, RecordKey("", "build", "m/lib"));
  EXPECT_NE(k, RecordKey("x", "build", "m/lib"));
  EXPECT_NE(k, RecordKey("", "link", "m/lib"));
  EXPECT_NE(k, RecordKey("", "build", "m/lib2"));
}

// Records `actions` as machine "a" would, keyed for an in-memory lookup.
RecordLookup Recorded(const std::vector<GoAction>& actions) {
  auto store = std::make_shared<absl::flat_hash_map<std::string, std::string>>();
  for (const GoAction& a : actions) {
    (*store)[absl::StrCat(a.kind, "|", a.package)] = EncodeRecord(
        MakeRecord(a, "a", absl::UnixEpoch(), RecordOptions{}));
  }
  return [store](absl::string_view kind,
                 absl::string_view pkg) -> std::optional<KeyRecord> {
    auto it = store->find(absl::StrCat(kind, "|", pkg));
    if (it == store->end()) {
      return std::nullopt;
    }
    auto r = DecodeRecord(it->second);
    return r.ok() ? std::optional<KeyRecord>(*r) : std::nullopt;
  };
}

const Finding* FindingFor(const ExplainReport& r, absl::string_view kind,
                          absl::string_view pkg) {
  for (const Finding& f : r.findings) {
    if (f.kind == kind && f.package == pkg) {
      return &f;
    }
  }
  return nullptr;
}

bool HasDiagnosis(const Finding& f, absl::string_view code,
                  absl::string_view text) {
  for (const Diagnosis& d : f.diagnoses) {
    if (d.code == code && absl::StrContains(d.message, text)) {
      return true;
    }
  }
  return false;
}

TEST(ExplainTest, SameMachineHasNothingToExplain) {
  std::vector<GoAction> a = Parse(ReadSample("gocachehash_machine_a.log"));
  ExplainReport r = Explain(a, Recorded(a));
  EXPECT_EQ(r.actions, r.with_record);
  EXPECT_GT(r.actions, 5);
  EXPECT_EQ(r.differing, 0);
  EXPECT_TRUE(r.findings.empty());
}

TEST(ExplainTest, RealCheckoutsAtTwoPathsNameTheDirectory) {
  std::vector<GoAction> a = Parse(ReadSample("gocachehash_machine_a.log"));
  std::vector<GoAction> b = Parse(ReadSample("gocachehash_machine_b.log"));
  ExplainReport r = Explain(b, Recorded(a));
  EXPECT_GT(r.differing, 0);
  const Finding* lib = FindingFor(r, "build", "example.com/m/lib");
  ASSERT_NE(lib, nullptr) << RenderText(r, "b");
  EXPECT_TRUE(HasDiagnosis(*lib, "trimpath", "/tmp/machine-b/m/lib here"));
  EXPECT_TRUE(HasDiagnosis(*lib, "trimpath", "-trimpath"));
  // The link only differs through its dependencies: not a cause itself.
  EXPECT_EQ(FindingFor(r, "link", "example.com/m/cmd/hello"), nullptr);
  bool link_attributed = false;
  for (const Finding& f : r.findings) {
    for (const std::string& d : f.dependents) {
      link_attributed |= d == "link example.com/m/cmd/hello";
    }
  }
  EXPECT_TRUE(link_attributed) << RenderText(r, "b");
  const Finding* test = FindingFor(r, "test", "example.com/m/lib");
  ASSERT_NE(test, nullptr);
  EXPECT_TRUE(HasDiagnosis(*test, "test_env", "CAIRN_FX"));
  EXPECT_TRUE(HasDiagnosis(*test, "test_file", "/tmp/machine-b/m/lib/testdata"));
  const std::string text = RenderText(r, "b");
  EXPECT_FALSE(absl::StrContains(text, "s3cr3t")) << text;
  // One summary line per kind of cause: three directories are one line.
  EXPECT_TRUE(absl::StrContains(text, "  3 x trimpath (e.g. build ")) << text;
  EXPECT_TRUE(absl::StrContains(text, "  1 x test_env CAIRN_FX")) << text;
  const std::string short_text = RenderText(r, "b", 1);
  EXPECT_TRUE(absl::StrContains(short_text, "\n[1] ")) << short_text;
  EXPECT_FALSE(absl::StrContains(short_text, "\n[2] ")) << short_text;
  EXPECT_TRUE(absl::StrContains(short_text, "more root causes not shown"));
  nlohmann::json j = nlohmann::json::parse(RenderJson(r, "b"));
  EXPECT_EQ(j["findings"].size(), r.findings.size());
}

GoAction Action(std::string kind, std::string pkg, std::string id,
                std::vector<std::string> inputs) {
  GoAction a;
  a.kind = std::move(kind);
  a.package = std::move(pkg);
  a.id = std::move(id);
  a.inputs = std::move(inputs);
  return a;
}

TEST(ExplainTest, FollowsDependenciesToTheRootCause) {
  const std::string t = "toolchain go1.26.8";
  std::vector<GoAction> there = {
      Action("build", "m/c", "c1", {t, "file c.go AAA"}),
      Action("build", "m/b", "b1", {t, "import m/c C1", "file b.go B"}),
      Action("build", "m/a", "a1", {t, "import m/b B1", "file a.go A"}),
      Action("link", "m/a", "l1", {t, "packagefile m/a=A1", "packagefile m/b=B1"}),
  };
  std::vector<GoAction> here = {
      Action("build", "m/c", "c2", {t, "file c.go ZZZ"}),
      Action("build", "m/b", "b2", {t, "import m/c C2", "file b.go B"}),
      Action("build", "m/a", "a2", {t, "import m/b B2", "file a.go A"}),
      Action("link", "m/a", "l2", {t, "packagefile m/a=A2", "packagefile m/b=B2"}),
  };
  ExplainReport r = Explain(here, Recorded(there));
  EXPECT_EQ(r.differing, 4);
  ASSERT_EQ(r.findings.size(), 1u) << RenderText(r, "here");
  const Finding& f = r.findings[0];
  EXPECT_EQ(f.package, "m/c");
  EXPECT_TRUE(HasDiagnosis(f, "source_file", "c.go"));
  EXPECT_EQ(f.dependents, (std::vector<std::string>{"build m/b", "build m/a",
                                                    "link m/a"}));
}

TEST(DiagnoseTest, NamesTheCause) {
  struct Case {
    InputDiff diff;
    const char* code;
    const char* subject;
  };
  const std::vector<Case> cases = {
      {{"toolchain", "toolchain go1.26.8", "toolchain go1.25.3"}, "toolchain",
       "go1.26.8"},
      {{"GOAMD64", "GOAMD64=v3", "GOAMD64=v1"}, "env_var", "GOAMD64"},
      {{"magic GOSSAFUNC", "magic GOSSAFUNC=f", std::nullopt}, "env_var",
       "GOSSAFUNC"},
      {{"modinfo", "modinfo \"build\\t-tags=x\\nbuild\\tCGO_ENABLED=0\\n\"",
        "modinfo \"build\\tCGO_ENABLED=0\\n\""},
       "build_setting", "-tags"},
      {{"modinfo", "modinfo \"build\\tCGO_ENABLED=1\\n\"",
        "modinfo \"build\\tCGO_ENABLED=0\\n\""},
       "env_var", "CGO_ENABLED"},
      {{"dir", "dir /b/lib", "dir /a/lib"}, "trimpath", "/b/lib"},
      {{"dir", std::nullopt, "dir /a/lib"}, "trimpath", "-trimpath"},
      {{"file x.go", "file x.go AAA", std::nullopt}, "file_set", "x.go"},
      {{"env HOME", "env HOME set sha256:1", "env HOME unset"}, "test_env",
       "HOME"},
      {{"open /r/data.txt",
        "open /r/data.txt stat 5 1a4 2026-11-30 22:00:00 +0000 UTC false",
        "open /r/data.txt stat 5 1a4 2026-11-29 10:00:00 +0000 UTC false"},
       "test_file_mtime", "/r/data.txt"},
      {{"compile#2", "compile compile version go1.26.8 [] [\"-N\"]",
        "compile compile version go1.26.8 [] []"},
       "build_setting", "-gcflags"},
  };
  for (const Case& c : cases) {
    Diagnosis d = Diagnose("build", "m/p", c.diff);
    EXPECT_EQ(d.code, c.code) << c.diff.key << ": " << d.message;
    EXPECT_TRUE(absl::StrContains(d.subject, c.subject))
        << c.diff.key << ": " << d.subject;
    EXPECT_FALSE(d.message.empty());
  }
}

TEST(DiffInputsTest, MatchesByKeyAndKeepsOrder) {
  std::vector<InputDiff> d = DiffInputs(
      {"toolchain go1", "import a X", "import b Y", "file z.go Q"},
      {"toolchain go1", "import b Y2", "import a X", "file y.go R"});
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].key, "import b");
  EXPECT_EQ(d[1].key, "file z.go");
  EXPECT_EQ(d[1].recorded, std::nullopt);
  EXPECT_EQ(d[2].key, "file y.go");
  EXPECT_EQ(d[2].local, std::nullopt);
}

}  // namespace
}  // namespace cairn::client::gocacheprog
