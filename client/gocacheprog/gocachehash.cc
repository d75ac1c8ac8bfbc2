#include "client/gocacheprog/gocachehash.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

// Invariants: open_ holds, per hash name, the hashes begun and not yet
// summed; a name with more than one open hash marks them all ambiguous (the
// stream cannot say which write belongs to which), and they are dropped when
// summed. Completed hashes land in hashes_ in the order their sums appeared.

namespace cairn::client::gocacheprog {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

void AppendUtf8(uint32_t r, std::string* out) {
  if (r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF)) {
    r = 0xFFFD;
  }
  if (r < 0x80) {
    out->push_back(static_cast<char>(r));
  } else if (r < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (r >> 6)));
    out->push_back(static_cast<char>(0x80 | (r & 0x3F)));
  } else if (r < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (r >> 12)));
    out->push_back(static_cast<char>(0x80 | ((r >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (r & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (r >> 18)));
    out->push_back(static_cast<char>(0x80 | ((r >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((r >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (r & 0x3F)));
  }
}

// Reads `digits` hex digits at s[*i]; nullopt when there are fewer.
std::optional<uint32_t> ReadHex(absl::string_view s, size_t* i, int digits) {
  if (*i + digits > s.size()) {
    return std::nullopt;
  }
  uint32_t v = 0;
  for (int k = 0; k < digits; ++k) {
    int h = HexValue(s[*i + k]);
    if (h < 0) {
      return std::nullopt;
    }
    v = v * 16 + static_cast<uint32_t>(h);
  }
  *i += digits;
  return v;
}

// Decodes the escape at s[*i] (just past the backslash) into `out`.
bool Unescape(absl::string_view s, size_t* i, std::string* out) {
  if (*i >= s.size()) {
    return false;
  }
  const char c = s[(*i)++];
  switch (c) {
    case 'a': out->push_back('\a'); return true;
    case 'b': out->push_back('\b'); return true;
    case 'f': out->push_back('\f'); return true;
    case 'n': out->push_back('\n'); return true;
    case 'r': out->push_back('\r'); return true;
    case 't': out->push_back('\t'); return true;
    case 'v': out->push_back('\v'); return true;
    case '\\': case '"': case '\'': out->push_back(c); return true;
    case 'x': {
      std::optional<uint32_t> v = ReadHex(s, i, 2);
      if (v) {
        out->push_back(static_cast<char>(*v));
      }
      return v.has_value();
    }
    case 'u': case 'U': {
      std::optional<uint32_t> v = ReadHex(s, i, c == 'u' ? 4 : 8);
      if (v) {
        AppendUtf8(*v, out);
      }
      return v.has_value();
    }
    default:
      break;
  }
  if (c < '0' || c > '7' || *i + 2 > s.size()) {
    return false;
  }
  uint32_t v = static_cast<uint32_t>(c - '0');
  for (int k = 0; k < 2; ++k) {
    const char d = s[(*i)++];
    if (d < '0' || d > '7') {
      return false;
    }
    v = v * 8 + static_cast<uint32_t>(d - '0');
  }
  if (v > 255) {
    return false;
  }
  out->push_back(static_cast<char>(v));
  return true;
}

// The name-and-rest split of a "HASH[name]..." line: the name ends at the
// first "]: " (a write or sum) or at the line's final ']' (a header).
bool SplitBracket(absl::string_view body, absl::string_view* name,
                  absl::string_view* rest, bool* header) {
  const size_t sep = body.find("]: ");
  if (sep != absl::string_view::npos) {
    *name = body.substr(0, sep);
    *rest = body.substr(sep + 3);
    *header = false;
    return true;
  }
  if (!body.empty() && body.back() == ']') {
    *name = body.substr(0, body.size() - 1);
    *header = true;
    return true;
  }
  return false;
}

}  // namespace

std::optional<std::string> UnquoteGo(absl::string_view quoted) {
  if (quoted.size() < 2 || quoted.front() != '"' || quoted.back() != '"') {
    return std::nullopt;
  }
  const absl::string_view s = quoted.substr(1, quoted.size() - 2);
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i++];
    if (c == '"') {
      return std::nullopt;  // An unescaped quote inside: not one literal.
    }
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (!Unescape(s, &i, &out)) {
      return std::nullopt;
    }
  }
  return out;
}

std::string QuoteForDisplay(absl::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    if (c == '\\' || c == '"') {
      absl::StrAppend(&out, "\\", std::string(1, static_cast<char>(c)));
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "\\x", absl::BytesToHexString(absl::string_view(
                                       reinterpret_cast<const char*>(&c), 1)));
    }
  }
  return out;
}

bool IsHex64(absl::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string GoBuildIdPart(absl::string_view hex) {
  if (!IsHex64(hex)) {
    return "";
  }
  const std::string bytes = absl::HexStringToBytes(hex.substr(0, 30));
  std::string out = absl::WebSafeBase64Escape(bytes);
  return out;
}

void HashLogParser::Feed(absl::string_view chunk) {
  while (!chunk.empty()) {
    const size_t nl = chunk.find('\n');
    const absl::string_view piece =
        chunk.substr(0, nl == absl::string_view::npos ? chunk.size() : nl);
    if (partial_.size() + piece.size() > kMaxLineBytes) {
      partial_too_long_ = true;  // Keep consuming; the line is dropped.
    } else if (!partial_too_long_) {
      partial_.append(piece.data(), piece.size());
    }
    if (nl == absl::string_view::npos) {
      return;
    }
    EndLine();
    chunk.remove_prefix(nl + 1);
  }
}

void HashLogParser::EndLine() {
  if (partial_too_long_) {
    ++counts_.lines;
    ++counts_.unknown;  // Longer than kMaxLineBytes: dropped.
  } else {
    AddLine(partial_);
  }
  partial_.clear();
  partial_too_long_ = false;
}

void HashLogParser::AddLine(absl::string_view line) {
  ++counts_.lines;
  absl::ConsumeSuffix(&line, "\r");
  if (!absl::ConsumePrefix(&line, "HASH")) {
    return;  // Not ours: compiler or test output.
  }
  ++counts_.hash_lines;
  absl::string_view name, rest;
  bool header = false;
  if (absl::ConsumePrefix(&line, "[") &&
      SplitBracket(line, &name, &rest, &header)) {
    if (header) {
      OnHeader(name);
    } else if (!rest.empty() && rest.front() == '"') {
      OnWrite(name, rest);
    } else if (IsHex64(rest)) {
      OnSum(name, rest);
    } else {
      ++counts_.unknown;
    }
    return;
  }
  if (absl::ConsumePrefix(&line, " subkey ")) {
    OnSubkey(line);
    return;
  }
  // "HASH <file>: <hex or error>": a file content hash; the build action's
  // "file" lines already carry it, so it is recognised and not kept.
  if (!absl::StartsWith(line, " ") || line.find(": ") == line.npos) {
    ++counts_.unknown;
  }
}

void HashLogParser::OnHeader(absl::string_view name) {
  if (name == "moduleIndex") {
    return;  // Not an action: never kept (its writes are orphans below).
  }
  std::vector<Open>& list = open_[name];
  list.push_back(Open{HashRecord{std::string(name), {}, ""}, false});
  if (list.size() > 1) {
    for (Open& o : list) {
      o.ambiguous = true;
    }
  }
}

void HashLogParser::OnWrite(absl::string_view name, absl::string_view quoted) {
  auto it = open_.find(name);
  if (it == open_.end() || it->second.empty()) {
    if (name != "moduleIndex") {
      ++counts_.orphan_writes;
    }
    return;
  }
  std::optional<std::string> bytes = UnquoteGo(quoted);
  if (!bytes) {
    ++counts_.unknown;
    return;
  }
  HashRecord& r = it->second.back().record;
  if (r.writes.size() >= kMaxWritesPerHash) {
    ++counts_.truncated;
    return;
  }
  if (bytes->size() > kMaxWriteBytes) {
    bytes->resize(kMaxWriteBytes);
    ++counts_.truncated;
  }
  r.writes.push_back(*std::move(bytes));
}

void HashLogParser::OnSum(absl::string_view name, absl::string_view hex) {
  auto it = open_.find(name);
  if (it == open_.end() || it->second.empty()) {
    if (name != "moduleIndex") {
      ++counts_.orphan_writes;
    }
    return;
  }
  Open done = std::move(it->second.front());
  it->second.erase(it->second.begin());
  if (it->second.empty()) {
    open_.erase(it);
  }
  if (done.ambiguous) {
    ++counts_.ambiguous;
    return;
  }
  done.record.sum = std::string(hex);
  hashes_.push_back(std::move(done.record));
}

void HashLogParser::OnSubkey(absl::string_view rest) {
  // <parent hex> "<desc>" = <out hex>
  const size_t sp = rest.find(' ');
  const size_t eq = rest.rfind(" = ");
  if (sp == rest.npos || eq == rest.npos || eq <= sp) {
    ++counts_.unknown;
    return;
  }
  const absl::string_view parent = rest.substr(0, sp);
  const absl::string_view out = rest.substr(eq + 3);
  std::optional<std::string> desc = UnquoteGo(rest.substr(sp + 1, eq - sp - 1));
  if (!IsHex64(parent) || !IsHex64(out) || !desc) {
    ++counts_.unknown;
    return;
  }
  subkeys_.push_back(
      SubkeyRecord{std::string(parent), *std::move(desc), std::string(out)});
}

void HashLogParser::Finish() {
  if (!partial_.empty() || partial_too_long_) {
    EndLine();
  }
  for (const auto& [name, list] : open_) {
    counts_.unterminated += static_cast<int64_t>(list.size());
  }
  open_.clear();
}

namespace {

std::string StripNewline(absl::string_view s) {
  absl::ConsumeSuffix(&s, "\n");
  return std::string(s);
}

// Splits "build p" / "link p" / "vet p" into kind and package.
bool ActionName(absl::string_view name, std::string* kind,
                std::string* package) {
  for (absl::string_view k : {"build", "link", "vet"}) {
    absl::string_view rest = name;
    if (absl::ConsumePrefix(&rest, k) && absl::ConsumePrefix(&rest, " ") &&
        !rest.empty()) {
      *kind = std::string(k);
      *package = std::string(rest);
      return true;
    }
  }
  return false;
}

// The writes of a hash after its salt, shown as inputs; the salt becomes
// "toolchain <version>".
std::vector<std::string> Inputs(const HashRecord& r) {
  std::vector<std::string> out;
  for (size_t i = 0; i < r.writes.size(); ++i) {
    out.push_back(i == 0 ? absl::StrCat("toolchain ", r.writes[0])
                         : StripNewline(r.writes[i]));
  }
  return out;
}

// Hashes a test's inputs refer to by sum: getenv, open and stat.
struct Nested {
  absl::flat_hash_map<std::string, const HashRecord*> by_sum;
};

// Renders one testInputs write ("env NAME <hex>", "open PATH <hex>", ...)
// with the nested hash it names resolved into a readable value.
std::string TestInput(absl::string_view write, const Nested& nested) {
  const std::string line = StripNewline(write);
  const size_t last = line.rfind(' ');
  if (last == std::string::npos || !IsHex64(line.substr(last + 1))) {
    return line;
  }
  auto it = nested.by_sum.find(line.substr(last + 1));
  if (it == nested.by_sum.end()) {
    return line;
  }
  const HashRecord& h = *it->second;
  const std::string head = line.substr(0, last);
  if (h.name == "getenv") {
    if (h.writes.size() >= 2 && h.writes[1] == std::string(1, '\0')) {
      return absl::StrCat(head, " unset");
    }
    std::string value;
    for (size_t i = 2; i < h.writes.size(); ++i) {
      value += h.writes[i];
    }
    return absl::StrCat(head, " set ", value);
  }
  std::vector<std::string> parts;
  for (size_t i = 1; i < h.writes.size(); ++i) {
    parts.push_back(StripNewline(h.writes[i]));
  }
  return absl::StrCat(head, " ", absl::StrJoin(parts, "; "));
}

// The package a "test binary <id> ..." line names, through the link action
// whose ID starts with <id>; empty when unknown.
std::string TestPackage(const HashRecord& result,
                        const absl::flat_hash_map<std::string, std::string>&
                            link_by_build_id) {
  if (result.writes.size() < 2) {
    return "";
  }
  absl::string_view line = result.writes[1];
  if (!absl::ConsumePrefix(&line, "test binary ")) {
    return "";
  }
  auto it = link_by_build_id.find(line.substr(0, line.find(' ')));
  if (it == link_by_build_id.end()) {
    return "";
  }
  absl::string_view pkg = it->second;
  absl::ConsumeSuffix(&pkg, ".test");
  return std::string(pkg);
}

struct Grouper {
  const HashLogParser& parser;
  GroupCounts counts;
  std::vector<GoAction> actions;
  absl::flat_hash_map<std::string, size_t> index;  // kind + "\0" + package
  absl::flat_hash_map<std::string, std::string> link_by_build_id;
  absl::flat_hash_map<std::string, const HashRecord*> test_results;
  absl::flat_hash_map<std::string, const HashRecord*> test_inputs;
  Nested nested;

  void Put(GoAction a) {
    const std::string key = absl::StrCat(a.kind, std::string(1, '\0'),
                                         a.package);
    auto [it, inserted] = index.emplace(key, actions.size());
    if (inserted) {
      actions.push_back(std::move(a));
    } else {
      actions[it->second] = std::move(a);
    }
  }

  void Scan() {
    for (const HashRecord& h : parser.hashes()) {
      GoAction a;
      if (ActionName(h.name, &a.kind, &a.package)) {
        if (a.kind == "link") {
          link_by_build_id[GoBuildIdPart(h.sum)] = a.package;
        }
        a.id = h.sum;
        a.inputs = Inputs(h);
        if (std::find(a.inputs.begin(), a.inputs.end(), "forcelibrary") !=
            a.inputs.end()) {
          a.package += " [test]";  // Recompiled for a test: same hash name.
        }
        Put(std::move(a));
      } else if (h.name == "testResult") {
        test_results[h.sum] = &h;
      } else if (h.name == "testInputs") {
        test_inputs[h.sum] = &h;
      } else if (h.name == "getenv" || h.name == "open" || h.name == "stat") {
        nested.by_sum[h.sum] = &h;
      } else {
        ++counts.skipped_names;
      }
    }
  }

  // One test action per testResult whose package is known; its inputs
  // subkey ("inputs:<testInputs sum>") completes it when present.
  void Tests() {
    absl::flat_hash_map<std::string, const SubkeyRecord*> inputs_of;
    for (const SubkeyRecord& s : parser.subkeys()) {
      if (absl::StartsWith(s.desc, "inputs:")) {
        inputs_of[s.parent] = &s;
      }
    }
    for (const HashRecord& h : parser.hashes()) {
      if (h.name != "testResult") {
        continue;
      }
      GoAction a;
      a.kind = "test";
      a.package = TestPackage(h, link_by_build_id);
      if (a.package.empty()) {
        ++counts.tests_unmatched;
        continue;
      }
      a.id = h.sum;
      a.inputs = Inputs(h);
      auto sk = inputs_of.find(h.sum);
      if (sk != inputs_of.end()) {
        a.id = sk->second->out;
        auto ti = test_inputs.find(sk->second->desc.substr(7));
        if (ti != test_inputs.end()) {
          for (size_t i = 1; i < ti->second->writes.size(); ++i) {
            a.inputs.push_back(TestInput(ti->second->writes[i], nested));
          }
        }
      }
      Put(std::move(a));
    }
  }

  void Subkeys() {
    absl::flat_hash_map<std::string, size_t> by_id;
    for (size_t i = 0; i < actions.size(); ++i) {
      by_id[actions[i].id] = i;
    }
    for (const SubkeyRecord& s : parser.subkeys()) {
      auto it = by_id.find(s.parent);
      if (it != by_id.end()) {
        actions[it->second].subkeys.emplace_back(s.desc, s.out);
      }
    }
  }
};

}  // namespace

std::vector<GoAction> GroupActions(const HashLogParser& parser,
                                   GroupCounts* counts) {
  Grouper g{parser, {}, {}, {}, {}, {}, {}, {}};
  g.Scan();
  g.Tests();
  g.Subkeys();
  g.counts.actions = static_cast<int64_t>(g.actions.size());
  if (counts != nullptr) {
    *counts = g.counts;
  }
  return std::move(g.actions);
}

}  // namespace cairn::client::gocacheprog
