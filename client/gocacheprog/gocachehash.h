// Parser for the go command's `GODEBUG=gocachehash=1` stderr stream: the
// inputs Go hashes into each action ID, grouped per action.
//
// Line shapes (Go's src/cmd/go/internal/cache/hash.go; not a stable API):
//   HASH[<name>]                      a hash is created (the salt follows)
//   HASH[<name>]: "<Go-quoted bytes>" one Write into that hash
//   HASH[<name>]: <64 hex>            its Sum (the hash ends)
//   HASH subkey <hex> "<desc>" = <hex>
//   HASH <file>: <hex or error>       a source file's content hash
// Names: "build <import path>", "link <import path>", "vet <import path>",
// "testResult", "testInputs", "getenv", "stat", "open", "moduleIndex", ...
// Hashes of different names interleave freely (parallel builds); two open
// hashes of the same name cannot be told apart, so they are dropped and
// counted. Anything else that starts with "HASH" is skipped and counted;
// other lines (compiler output, test output) are ignored. Nothing here
// fails: a malformed stream yields fewer actions and higher counters.
//
// GroupActions() then turns the hashes into actions: build, link and vet
// actions keyed by their import path, and one "test" action per tested
// package (its testResult line plus the test's inputs: the environment
// variables it read and the files it opened or stat'ed, with the nested
// getenv/open/stat hashes folded in as values).
//
// Thread safety: a HashLogParser is used by one thread at a time; the free
// functions are safe from any thread.
#ifndef CAIRN_CLIENT_GOCACHEPROG_GOCACHEHASH_H_
#define CAIRN_CLIENT_GOCACHEPROG_GOCACHEHASH_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace cairn::client::gocacheprog {

// One completed hash: its name, the bytes written into it (the salt, i.e.
// the Go version, first) and its sum as 64 lowercase hex digits.
struct HashRecord {
  std::string name;
  std::vector<std::string> writes;
  std::string sum;
};

// One `HASH subkey` line: Subkey(parent, desc) = out (hex).
struct SubkeyRecord {
  std::string parent;
  std::string desc;
  std::string out;
};

// Counters of what a stream held.
struct ParseCounts {
  int64_t lines = 0;          // every line seen
  int64_t hash_lines = 0;     // lines starting with "HASH"
  int64_t unknown = 0;        // HASH lines of no known shape (skipped)
  int64_t ambiguous = 0;      // hashes dropped: same-name hashes overlapped
  int64_t unterminated = 0;   // hashes with no sum at the end of the stream
  int64_t orphan_writes = 0;  // writes/sums with no open hash of that name
  int64_t truncated = 0;      // writes cut to kMaxWriteBytes, or hashes
                              // cut to kMaxWritesPerHash writes
};

inline constexpr size_t kMaxWriteBytes = 64 * 1024;
inline constexpr size_t kMaxWritesPerHash = 20000;
inline constexpr size_t kMaxLineBytes = 1 << 20;

// Streams a log in: Feed() any chunks (lines may span chunks), then
// Finish(). Hashes named "moduleIndex" (the go command's package index, not
// an action) are not kept.
class HashLogParser {
 public:
  HashLogParser() = default;
  HashLogParser(const HashLogParser&) = delete;
  HashLogParser& operator=(const HashLogParser&) = delete;

  // Consumes `chunk`; complete lines are parsed at once.
  void Feed(absl::string_view chunk);
  // Parses one line (without its newline).
  void AddLine(absl::string_view line);
  // Parses any unterminated last line and counts hashes left open.
  void Finish();

  const std::vector<HashRecord>& hashes() const { return hashes_; }
  const std::vector<SubkeyRecord>& subkeys() const { return subkeys_; }
  const ParseCounts& counts() const { return counts_; }

 private:
  struct Open {
    HashRecord record;
    bool ambiguous = false;
  };
  void EndLine();  // Parses (or drops) the line gathered in partial_.
  void OnHeader(absl::string_view name);
  void OnWrite(absl::string_view name, absl::string_view quoted);
  void OnSum(absl::string_view name, absl::string_view hex);
  void OnSubkey(absl::string_view rest);

  std::string partial_;
  bool partial_too_long_ = false;
  absl::flat_hash_map<std::string, std::vector<Open>> open_;
  std::vector<HashRecord> hashes_;
  std::vector<SubkeyRecord> subkeys_;
  ParseCounts counts_;
};

// Decodes a Go %q string literal (with its quotes): \a \b \f \n \r \t \v
// \\ \" \' \xHH \ooo \uHHHH \UHHHHHHHH (as UTF-8). nullopt when malformed.
std::optional<std::string> UnquoteGo(absl::string_view quoted);

// Returns `bytes` as a Go %q literal would show them (printable ASCII kept,
// the rest escaped) - for display only.
std::string QuoteForDisplay(absl::string_view bytes);

// Returns true when `s` is 64 lowercase hex digits.
bool IsHex64(absl::string_view s);

// Returns the build ID form of an action ID as Go prints it in
// "test binary <id>" and "packagefile p=<id>": base64url (no padding) of
// its first 15 bytes. Empty when `hex` is not IsHex64.
std::string GoBuildIdPart(absl::string_view hex);

// What GroupActions produces: one entry per action.
struct GoAction {
  std::string kind;     // "build", "link", "vet" or "test"
  // Import path, e.g. "m/lib"; a package recompiled for a test (its hash
  // has the same name, Go marks it "forcelibrary") is "m/lib [test]".
  std::string package;
  std::string id;       // action ID (test: the final test-result key), hex
  // Inputs in hashing order. The salt is shown as "go <version>"; a test's
  // inputs are its testResult line then "env NAME <state>", "open PATH
  // <stat>", "stat PATH <stat>", "chdir PATH <stat>" where <state> is
  // "unset" or "set <bytes>" (the variable's value; see keys.h for how it
  // is protected before leaving the machine).
  std::vector<std::string> inputs;
  // Sub-keys derived from the action ID (desc -> hex), e.g. "stdout".
  std::vector<std::pair<std::string, std::string>> subkeys;
};

struct GroupCounts {
  int64_t actions = 0;
  int64_t tests_unmatched = 0;  // test results whose package was not found
  int64_t skipped_names = 0;    // hashes of kinds not kept (moduleIndex...)
};

// Groups a parsed stream into actions, in the order their hashes ended.
// When the same kind+package was hashed more than once, the last wins.
std::vector<GoAction> GroupActions(const HashLogParser& parser,
                                   GroupCounts* counts = nullptr);

}  // namespace cairn::client::gocacheprog

#endif  // CAIRN_CLIENT_GOCACHEPROG_GOCACHEHASH_H_
