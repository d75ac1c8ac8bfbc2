#include "client/gocacheprog/local_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <list>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "cas/digest.h"

// Invariants: `index_` holds every committed file under a/ and o/ exactly
// once with its size, ordered in `lru_` (front = most recent); `total_` is
// the sum of their sizes. Files are deleted only after they left the index,
// off the lock. Pinned bodies are skipped by eviction.

namespace cairn::client::gocacheprog {
namespace {

namespace fs = std::filesystem;

// A file used this recently (mtime) is never deleted: another process
// sharing the directory may have handed it to its go command.
constexpr absl::Duration kRecentUse = absl::Hours(1);

// Dead journal bytes tolerated beyond the live ones before a rewrite.
constexpr int64_t kJournalSlack = 256 << 10;

std::string Errno(absl::string_view what, const std::string& path) {
  return absl::StrCat(what, " ", path, ": ", std::strerror(errno));
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& p) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return absl::InternalError(Errno("write", p));
    }
    data.remove_prefix(n);
  }
  return absl::OkStatus();
}

std::string EncodeEntry(const Entry& e) {
  return absl::StrCat("v1 ", cas::HexEncode(e.output_id), " ", e.size, " ",
                      absl::ToUnixNanos(e.time), "\n");
}

// Parses an entry as EncodeEntry writes it (a legacy a/ file's contents).
std::optional<Entry> DecodeEntry(absl::string_view text) {
  std::vector<absl::string_view> f =
      absl::StrSplit(absl::StripSuffix(text, "\n"), ' ');
  Entry e;
  int64_t nanos = 0;
  if (f.size() != 4 || f[0] != "v1" || !cas::ValidateSha256Hex(f[1]).ok() ||
      !absl::SimpleAtoi(f[2], &e.size) || !absl::SimpleAtoi(f[3], &nanos) ||
      e.size < 0) {
    return std::nullopt;
  }
  e.output_id = absl::HexStringToBytes(f[1]);
  e.time = absl::FromUnixNanos(nanos);
  return e;
}

// One line of the entries journal: "<hex ActionID> " + EncodeEntry(e).
std::string EncodeRecord(absl::string_view action_hex, const Entry& e) {
  return absl::StrCat(action_hex, " ", EncodeEntry(e));
}

// Parses one journal line (without its newline) into the ActionID's hex
// and the entry; nullopt for a malformed or torn line.
std::optional<std::pair<std::string, Entry>> DecodeRecord(
    absl::string_view line) {
  const size_t space = line.find(' ');
  if (space == absl::string_view::npos ||
      !cas::ValidateSha256Hex(line.substr(0, space)).ok()) {
    return std::nullopt;
  }
  std::optional<Entry> e = DecodeEntry(line.substr(space + 1));
  if (!e.has_value()) {
    return std::nullopt;
  }
  return std::make_pair(std::string(line.substr(0, space)), *std::move(e));
}

// A name in `tmp_dir` no other call of this process returns (and unlikely
// to be another process's: pid and time in it).
std::string TempName(const std::string& tmp_dir) {
  static std::atomic<uint64_t> counter{0};
  return absl::StrCat(tmp_dir, "/", getpid(), "-", counter.fetch_add(1), "-",
                      absl::ToUnixNanos(absl::Now()) % 1000000);
}

// Creates a unique file in `tmp_dir`; returns its fd and path.
absl::StatusOr<std::pair<int, std::string>> CreateTemp(
    const std::string& tmp_dir) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string path = TempName(tmp_dir);
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      return std::make_pair(fd, path);
    }
    if (errno != EEXIST) {
      return absl::InternalError(Errno("create", path));
    }
  }
  return absl::InternalError(absl::StrCat("no unique temp name in ", tmp_dir));
}

// A file being written before it is published under its final name. Where
// the kernel and file system allow, it has no name at all (O_TMPFILE): the
// inode is allocated without holding any directory's lock, and publishing
// is one link, where a named temporary costs a create under tmp/'s lock
// plus a rename that locks two directories (with many bodies arriving at
// once, threads spun on those locks for a quarter of the shim's CPU).
// `path` is empty for an unnamed file.
struct TempFile {
  int fd = -1;
  std::string path;
};

absl::StatusOr<TempFile> NewTemp(const std::string& tmp_dir, bool unnamed) {
  if (unnamed) {
    int fd = open(tmp_dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) {
      return TempFile{fd, ""};
    }
  }
  absl::StatusOr<std::pair<int, std::string>> t = CreateTemp(tmp_dir);
  if (!t.ok()) {
    return t.status();
  }
  return TempFile{t->first, std::move(t->second)};
}

// Gives the unnamed file open as `fd` the name `path`; errno is set on
// failure (EEXIST when `path` exists).
bool LinkUnnamed(int fd, const std::string& path) {
  const std::string self = absl::StrCat("/proc/self/fd/", fd);
  return linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path.c_str(),
                AT_SYMLINK_FOLLOW) == 0;
}

// Moves `t` to `path`, replacing what is there, and closes it. On failure
// the temporary is gone too.
absl::Status Publish(TempFile& t, const std::string& tmp_dir,
                     const std::string& path) {
  if (t.path.empty()) {
    if (LinkUnnamed(t.fd, path)) {
      close(t.fd);
      t.fd = -1;
      return absl::OkStatus();
    }
    if (errno != EEXIST) {
      close(t.fd);
      t.fd = -1;
      return absl::InternalError(Errno("link into", path));
    }
    // Replacing needs a name to rename from: link under a unique temp name.
    for (int attempt = 0; attempt < 100 && t.path.empty(); ++attempt) {
      std::string name = TempName(tmp_dir);
      if (LinkUnnamed(t.fd, name)) {
        t.path = std::move(name);
      } else if (errno != EEXIST) {
        break;
      }
    }
    if (t.path.empty()) {
      close(t.fd);
      t.fd = -1;
      return absl::InternalError(Errno("link into", tmp_dir));
    }
  }
  if (t.fd >= 0) {
    close(t.fd);
    t.fd = -1;
  }
  if (rename(t.path.c_str(), path.c_str()) != 0) {
    absl::Status s = absl::InternalError(Errno("rename into", path));
    unlink(t.path.c_str());
    return s;
  }
  return absl::OkStatus();
}

// Whether unnamed temporaries can be created in `tmp_dir` and linked into
// place (Linux >= 3.11, most local file systems, /proc mounted).
bool UnnamedTempsWork(const std::string& tmp_dir) {
  int fd = open(tmp_dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) {
    return false;
  }
  const std::string probe = TempName(tmp_dir);
  bool ok = LinkUnnamed(fd, probe);
  close(fd);
  if (ok) {
    unlink(probe.c_str());
  }
  return ok;
}

class DirLocalStore;

class FileBodyWriter final : public BodyWriter {
 public:
  FileBodyWriter(DirLocalStore* store, TempFile tmp)
      : store_(store), tmp_(std::move(tmp)) {}
  ~FileBodyWriter() override {
    if (tmp_.fd >= 0) {
      close(tmp_.fd);
    }
    if (!committed_ && !tmp_.path.empty()) {
      unlink(tmp_.path.c_str());
    }
  }
  absl::Status Append(absl::string_view data) override {
    hasher_.Update(data);
    return WriteAll(tmp_.fd, data, tmp_.path);
  }
  absl::StatusOr<std::string> Commit(absl::string_view output_id,
                                     int64_t size) override;

 private:
  DirLocalStore* store_;  // Not owned; must outlive the writer.
  TempFile tmp_;
  cas::Sha256Hasher hasher_;
  bool committed_ = false;
};

class DirLocalStore final : public LocalStore {
 public:
  DirLocalStore(std::string root, int64_t max_size)
      : root_(std::move(root)), max_size_(max_size) {}
  ~DirLocalStore() override {
    if (journal_fd_ >= 0) {
      close(journal_fd_);
    }
  }

  absl::Status Init();
  std::optional<LocalHit> Get(absl::string_view action_id) override;
  absl::StatusOr<std::unique_ptr<BodyWriter>> NewBody() override;
  absl::Status PutEntry(absl::string_view action_id,
                        const Entry& entry) override;
  std::string BodyPath(absl::string_view output_id) const override {
    return absl::StrCat(root_, "/o/", cas::HexEncode(output_id));
  }
  int64_t SizeBytes() const override {
    absl::MutexLock lock(&mu_);
    return total_;
  }

  // Moves the temp file `tmp` into place as body `output_id`.
  absl::StatusOr<std::string> CommitBody(TempFile& tmp,
                                         absl::string_view output_id,
                                         int64_t size);

 private:
  struct Item {
    int64_t size;
    std::list<std::string>::iterator lru;
  };

  std::string JournalPath() const { return root_ + "/entries"; }
  // Adds or refreshes `rel` ("a/<hex ActionID>" for an entry, "o/<hex
  // OutputID>" for a body) as most recently used.
  void Record(const std::string& rel, int64_t size)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns true when `rel` is indexed; marks it most recently used.
  bool Touch(const std::string& rel) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops `rel` from the index (and an entry from `entries_`).
  void Forget(const std::string& rel) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes least recently used items until under the bound, then compacts
  // the journal when most of it is dead.
  void Trim() ABSL_LOCKS_EXCLUDED(mu_);
  // Removes temp files left by dead processes (those untouched for a while;
  // live ones may belong to another process sharing the directory).
  void RemoveStaleTemps();
  // Indexes the bodies under o/ and the entries of the journal (plus any
  // legacy a/ files, moved into the journal), in access order: an entry
  // takes its body's mtime, and an entry without its body is dropped.
  void Scan();
  // Opens the journal for appending (creating it); -1 on failure.
  int OpenJournalForAppend() const;
  // Takes flock `op` on `fd` and returns whether `fd` is still the file at
  // JournalPath() (another process may have renamed a rewritten journal
  // over it); the lock is held either way.
  bool LockCurrentJournal(int fd, int op) const;
  // Opens the journal with `flags` (creating it) and takes flock `op` on
  // it, until the file locked is the one at JournalPath() (another process
  // may have renamed a rewritten journal over it). -1 on failure.
  int OpenLockedJournal(int flags, int op) const;
  // Rewrites the journal, which the caller holds under an exclusive flock,
  // as `text`; the append fd then follows the new file. False on failure
  // (the old journal stays: larger, still correct).
  bool ReplaceJournalLocked(const std::string& text)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rewrites the journal without the lines this process made dead (entries
  // it replaced or evicted), keeping other processes' lines.
  void CompactLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends `record` to the current journal under a shared flock.
  absl::Status AppendLocked(const std::string& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string root_;
  const int64_t max_size_;
  bool unnamed_temps_ = false;  // Set once by Init().
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Item> index_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> pinned_ ABSL_GUARDED_BY(mu_);
  int64_t total_ ABSL_GUARDED_BY(mu_) = 0;
  // Entries by hex ActionID; each is also in `index_` as "a/<hex>" with
  // its journal record's length as size.
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  int journal_fd_ ABSL_GUARDED_BY(mu_) = -1;  // O_APPEND
  int64_t live_journal_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Bytes of lines this process made dead since the last rewrite, and the
  // entries it evicted (their lines go at the next rewrite).
  int64_t dead_journal_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_set<std::string> evicted_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::string> FileBodyWriter::Commit(absl::string_view output_id,
                                                   int64_t size) {
  int64_t written = hasher_.bytes();
  std::string got = hasher_.FinishRaw();
  if (written != size || got != output_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("body of ", written, " bytes with SHA-256 ",
                     cas::HexEncode(got), " does not match OutputID ",
                     cas::HexEncode(output_id), " and size ", size));
  }
  absl::StatusOr<std::string> path = store_->CommitBody(tmp_, output_id, size);
  committed_ = true;  // Published, or removed by the failed publish.
  return path;
}

absl::Status DirLocalStore::Init() {
  std::error_code ec;
  for (const char* sub : {"/o", "/tmp"}) {
    fs::create_directories(root_ + sub, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("create ", root_, sub, ": ", ec.message()));
    }
  }
  RemoveStaleTemps();
  unnamed_temps_ = UnnamedTempsWork(root_ + "/tmp");
  Scan();
  {
    absl::MutexLock lock(&mu_);
    if (journal_fd_ < 0) {
      journal_fd_ = OpenJournalForAppend();
    }
    if (journal_fd_ < 0) {
      return absl::InternalError(Errno("open", JournalPath()));
    }
  }
  Trim();
  return absl::OkStatus();
}

// Parses journal text into `*out` (the last line per ActionID wins; bad
// and torn lines are skipped). Returns whether every line was good.
bool ParseJournal(absl::string_view text,
                  absl::flat_hash_map<std::string, Entry>* out) {
  bool clean = true;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty()) {
      continue;
    }
    std::optional<std::pair<std::string, Entry>> r = DecodeRecord(line);
    if (r.has_value()) {
      (*out)[r->first] = std::move(r->second);
    } else {
      clean = false;
    }
  }
  return clean && (text.empty() || text.back() == '\n');
}

// Reads all of `fd` from the start.
std::string ReadAllFrom(int fd) {
  std::string text;
  char buf[64 << 10];
  for (off_t at = 0;;) {
    ssize_t n = pread(fd, buf, sizeof(buf), at);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return text;
    }
    text.append(buf, static_cast<size_t>(n));
    at += n;
  }
}

int DirLocalStore::OpenJournalForAppend() const {
  return open(JournalPath().c_str(),
              O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

bool DirLocalStore::LockCurrentJournal(int fd, int op) const {
  struct stat held, named;
  return flock(fd, op) == 0 && fstat(fd, &held) == 0 &&
         stat(JournalPath().c_str(), &named) == 0 &&
         held.st_ino == named.st_ino && held.st_dev == named.st_dev;
}

int DirLocalStore::OpenLockedJournal(int flags, int op) const {
  for (int attempt = 0; attempt < 20; ++attempt) {
    int fd = open(JournalPath().c_str(), flags | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return -1;
    }
    if (LockCurrentJournal(fd, op)) {
      return fd;
    }
    close(fd);
  }
  return -1;
}

bool DirLocalStore::ReplaceJournalLocked(const std::string& text) {
  absl::StatusOr<std::pair<int, std::string>> tmp = CreateTemp(root_ + "/tmp");
  if (!tmp.ok()) {
    return false;
  }
  absl::Status s = WriteAll(tmp->first, text, tmp->second);
  close(tmp->first);
  if (!s.ok() || rename(tmp->second.c_str(), JournalPath().c_str()) != 0) {
    unlink(tmp->second.c_str());
    return false;
  }
  if (journal_fd_ >= 0) {
    close(journal_fd_);
  }
  journal_fd_ = OpenJournalForAppend();
  dead_journal_bytes_ = 0;
  evicted_.clear();
  return true;
}

void DirLocalStore::CompactLocked() {
  int fd = OpenLockedJournal(O_RDONLY, LOCK_EX);
  if (fd < 0) {
    return;
  }
  absl::flat_hash_map<std::string, Entry> all;
  ParseJournal(ReadAllFrom(fd), &all);
  std::string text;
  for (const auto& [hex, e] : all) {
    auto mine = entries_.find(hex);
    if (mine != entries_.end()) {
      text += EncodeRecord(hex, mine->second);
    } else if (!evicted_.contains(hex)) {
      text += EncodeRecord(hex, e);  // Another process's (or one we lost).
    }
  }
  ReplaceJournalLocked(text);
  close(fd);  // Releases the lock: waiting appenders find the new file.
}

absl::Status DirLocalStore::AppendLocked(const std::string& record) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (journal_fd_ < 0) {
      journal_fd_ = OpenJournalForAppend();
      if (journal_fd_ < 0) {
        return absl::InternalError(Errno("open", JournalPath()));
      }
    }
    if (LockCurrentJournal(journal_fd_, LOCK_SH)) {
      // One write per line: O_APPEND keeps lines of processes sharing the
      // directory whole.
      absl::Status s = WriteAll(journal_fd_, record, JournalPath());
      flock(journal_fd_, LOCK_UN);
      return s;
    }
    close(journal_fd_);  // Rewritten by another process: follow it.
    journal_fd_ = -1;
  }
  return absl::InternalError(
      absl::StrCat("journal ", JournalPath(), " keeps being replaced"));
}

void DirLocalStore::Scan() {
  struct Found {
    int64_t mtime_ns;
    std::string rel;
    int64_t size;
  };
  std::vector<Found> found;
  absl::flat_hash_map<std::string, std::pair<int64_t, int64_t>> bodies;
  std::error_code ec;
  for (fs::directory_iterator it(root_ + "/o", ec), end; !ec && it != end;
       it.increment(ec)) {
    struct stat st;
    if (stat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      continue;
    }
    const int64_t mtime = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    std::string name = it->path().filename().string();
    bodies[name] = {mtime, static_cast<int64_t>(st.st_size)};
    found.push_back({mtime, "o/" + name, static_cast<int64_t>(st.st_size)});
  }
  // Held exclusively until the rewrite below: no other process appends a
  // line that the rewrite would lose.
  const int locked = OpenLockedJournal(O_RDONLY, LOCK_EX);
  absl::Cleanup unlock = [locked] {
    if (locked >= 0) {
      close(locked);
    }
  };
  absl::flat_hash_map<std::string, Entry> entries;
  const std::string journal = locked >= 0 ? ReadAllFrom(locked) : "";
  bool clean = ParseJournal(journal, &entries);
  // Entries written as one file each by older releases join the journal.
  std::vector<std::string> legacy;
  for (fs::directory_iterator it(root_ + "/a", ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::ifstream in(it->path(), std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    std::optional<Entry> e = DecodeEntry(text);
    if (e.has_value() && cas::ValidateSha256Hex(name).ok() &&
        !entries.contains(name)) {
      entries[name] = *std::move(e);
    }
    legacy.push_back(it->path().string());
  }
  absl::MutexLock lock(&mu_);
  std::string text;
  for (auto& [hex, e] : entries) {
    const std::string body_hex = cas::HexEncode(e.output_id);
    auto body = bodies.find(body_hex);
    struct stat st;
    if (body == bodies.end() &&
        stat(BodyPath(e.output_id).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      // Committed by another process after the scan of o/ above.
      const int64_t mtime =
          st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
      body = bodies.emplace(body_hex, std::make_pair(
                                          mtime, static_cast<int64_t>(
                                                     st.st_size))).first;
      found.push_back({mtime, "o/" + body_hex, body->second.second});
    }
    if (body == bodies.end() || body->second.second != e.size) {
      clean = false;  // Its body is gone: the entry could never be served.
      continue;
    }
    const std::string record = EncodeRecord(hex, e);
    // Just after its body, so the body goes first when both are old.
    found.push_back({body->second.first, "a/" + hex,
                     static_cast<int64_t>(record.size())});
    live_journal_bytes_ += static_cast<int64_t>(record.size());
    text += record;
    entries_[hex] = std::move(e);
  }
  clean = clean && text.size() == journal.size();  // No line superseded.
  std::stable_sort(found.begin(), found.end(),
                   [](const Found& a, const Found& b) {
                     return a.mtime_ns < b.mtime_ns;
                   });
  for (const Found& f : found) {
    Record(f.rel, f.size);
  }
  // Legacy files go only once the rewritten journal holds their entries.
  if (locked >= 0 && (!legacy.empty() || !clean) &&
      ReplaceJournalLocked(text)) {
    for (const std::string& path : legacy) {
      unlink(path.c_str());
    }
    rmdir((root_ + "/a").c_str());
  }
}

void DirLocalStore::Record(const std::string& rel, int64_t size) {
  auto it = index_.find(rel);
  if (it != index_.end()) {
    total_ -= it->second.size;
    lru_.erase(it->second.lru);
    index_.erase(it);
  }
  lru_.push_front(rel);
  index_[rel] = Item{size, lru_.begin()};
  total_ += size;
}

bool DirLocalStore::Touch(const std::string& rel) {
  auto it = index_.find(rel);
  if (it == index_.end()) {
    return false;
  }
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return true;
}

void DirLocalStore::Forget(const std::string& rel) {
  auto it = index_.find(rel);
  if (it != index_.end()) {
    total_ -= it->second.size;
    if (absl::StartsWith(rel, "a/")) {
      live_journal_bytes_ -= it->second.size;
      dead_journal_bytes_ += it->second.size;
      entries_.erase(rel.substr(2));
      evicted_.insert(rel.substr(2));
    }
    lru_.erase(it->second.lru);
    index_.erase(it);
  }
}

void DirLocalStore::Trim() {
  std::vector<std::pair<std::string, int64_t>> victims;
  {
    absl::MutexLock lock(&mu_);
    auto it = lru_.end();
    while (total_ > max_size_ && it != lru_.begin()) {
      --it;
      if (pinned_.contains(*it)) {
        continue;
      }
      std::string rel = *it;
      int64_t size = index_[rel].size;
      it = std::next(it);  // Forget() invalidates the current position.
      Forget(rel);
      if (!absl::StartsWith(rel, "a/")) {  // Entries have no file.
        victims.emplace_back(std::move(rel), size);
      }
    }
    // Evicted and replaced entries leave dead records behind.
    if (dead_journal_bytes_ > live_journal_bytes_ + kJournalSlack) {
      CompactLocked();
    }
  }
  // Another process sharing the directory may have handed a file out; the
  // file's mtime shows it was used lately, so it stays (as most recent).
  const absl::Time recent = absl::Now() - kRecentUse;
  std::vector<std::pair<std::string, int64_t>> kept;
  for (auto& [rel, size] : victims) {
    const std::string path = root_ + "/" + rel;
    struct stat st;
    if (stat(path.c_str(), &st) == 0 &&
        absl::TimeFromTimespec(st.st_mtim) > recent) {
      kept.emplace_back(std::move(rel), size);
    } else {
      unlink(path.c_str());
    }
  }
  absl::MutexLock lock(&mu_);
  for (const auto& [rel, size] : kept) {
    Record(rel, size);
  }
}

void DirLocalStore::RemoveStaleTemps() {
  const absl::Time stale = absl::Now() - kRecentUse;
  std::error_code ec;
  for (fs::directory_iterator it(root_ + "/tmp", ec), end; !ec && it != end;
       it.increment(ec)) {
    struct stat st;
    if (lstat(it->path().c_str(), &st) == 0 &&
        absl::TimeFromTimespec(st.st_mtim) < stale) {
      unlink(it->path().c_str());
    }
  }
}

std::optional<LocalHit> DirLocalStore::Get(absl::string_view action_id) {
  const std::string hex = cas::HexEncode(action_id);
  const std::string entry_rel = "a/" + hex;
  std::optional<Entry> entry;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(hex);
    if (it == entries_.end() || !Touch(entry_rel)) {
      return std::nullopt;
    }
    entry = it->second;
  }
  const std::string body_rel = "o/" + cas::HexEncode(entry->output_id);
  const std::string body_path = root_ + "/" + body_rel;
  struct stat st;
  if (stat(body_path.c_str(), &st) != 0 || st.st_size != entry->size) {
    absl::MutexLock lock(&mu_);
    Forget(body_rel);
    return std::nullopt;
  }
  {
    absl::MutexLock lock(&mu_);
    if (!Touch(body_rel)) {
      Record(body_rel, entry->size);
    }
    pinned_.insert(body_rel);
    pinned_.insert(entry_rel);
  }
  // The body's mtime is the LRU order across restarts, its entry's too.
  utimensat(AT_FDCWD, body_path.c_str(), nullptr, 0);
  return LocalHit{*std::move(entry), body_path};
}

absl::StatusOr<std::unique_ptr<BodyWriter>> DirLocalStore::NewBody() {
  absl::StatusOr<TempFile> tmp = NewTemp(root_ + "/tmp", unnamed_temps_);
  if (!tmp.ok()) {
    return tmp.status();
  }
  return std::make_unique<FileBodyWriter>(this, *std::move(tmp));
}

absl::StatusOr<std::string> DirLocalStore::CommitBody(
    TempFile& tmp, absl::string_view output_id, int64_t size) {
  std::string path = BodyPath(output_id);
  if (absl::Status s = Publish(tmp, root_ + "/tmp", path); !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&mu_);
  Record("o/" + cas::HexEncode(output_id), size);
  pinned_.insert("o/" + cas::HexEncode(output_id));
  return path;
}

absl::Status DirLocalStore::PutEntry(absl::string_view action_id,
                                     const Entry& entry) {
  const std::string hex = cas::HexEncode(action_id);
  const std::string record = EncodeRecord(hex, entry);
  {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = AppendLocked(record); !s.ok()) {
      return s;
    }
    const std::string rel = "a/" + hex;
    Forget(rel);  // A replaced entry's line is dead.
    evicted_.erase(hex);
    Record(rel, static_cast<int64_t>(record.size()));
    live_journal_bytes_ += static_cast<int64_t>(record.size());
    entries_[hex] = entry;
    pinned_.insert(rel);
  }
  Trim();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalStore>> OpenLocalStore(
    const std::string& dir, int64_t max_size) {
  std::error_code ec;
  fs::path abs = fs::absolute(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("local dir ", dir, ": ", ec.message()));
  }
  auto store = std::make_unique<DirLocalStore>(abs.lexically_normal().string(),
                                               max_size);
  if (absl::Status s = store->Init(); !s.ok()) {
    return s;
  }
  return store;
}

}  // namespace cairn::client::gocacheprog
