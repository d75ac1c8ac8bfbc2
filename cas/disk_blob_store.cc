// Implementation notes.
//
// Invariants (all under mu_):
//   - An item is in index_ only while its file is in place: commits take
//     any older version out, rename, then insert; eviction and corruption
//     removal erase before unlinking.
//   - unlinking_ counts pending unlinks per key and committing_ holds keys
//     being renamed into place; a commit waits (on key_idle_) until its key
//     is in neither, so a late unlink can never delete a freshly committed
//     file.
//   - entries_ holds a copy of an entry's value only while that entry is in
//     index_ with exactly those bytes: a commit puts the value it wrote,
//     and every removal of an entry from index_ (replacement, eviction,
//     corruption, a vanished file) erases it; entry_generation_ counts
//     these changes so that a read racing with one does not cache old bytes.
//   - index_.reserved_bytes() is the sum of the reservations shared by the
//     open writers of each digest, those taken for commits in progress, and
//     those of StoreWhole() calls in progress.
//   - While the index loads in the background (loading_): settled_ holds the
//     keys for which index_ is exact. Before a request looks a key up it
//     settles it (SettleForLoad(): a key not indexed yet is looked up on
//     disk and indexed as found; one found nowhere stays unsettled), and a
//     write settles its key even when found nowhere, before it changes the
//     disk. So nothing changes on disk under a key that is not settled, and
//     the loader skips settled keys: an item is indexed by one side only,
//     counted once. Eviction is deferred (LruIndex::DeferEviction()) until
//     FinishLoad().
// mu_ is a leaf lock and is never held across file system calls (waiting on
// key_idle_ releases it).
//
// Access times: index items carry the mtime last written to their file
// (`stamp`, ns since the epoch); stamps come from a clock made strictly
// increasing under mu_, so the on-disk order is total.
#include "cas/disk_blob_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <random>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "cas/entry_cache.h"
#include "cas/lru_index.h"
#include "cas/small_item_store.h"
#include "cas/zstd_codec.h"

namespace cairn::cas {
namespace {

using FaultFn = std::function<int(absl::string_view)>;

constexpr absl::string_view kAcMagic = "CAIRNAC1";
constexpr size_t kAcHeaderSize = 8 + 32;
constexpr int kShards = 256;
// The layout this code writes (see the header): 1 had no version file and
// no small-item database; 2 adds both; 3 adds CAS files of zstd frames
// (written only with keep_zstd; a store opened without it keeps layout 2).
constexpr int kLayoutVersion = 3;
constexpr int kPlainLayoutVersion = 2;
constexpr absl::string_view kZstdSuffix = ".zst";
constexpr absl::string_view kLayoutFile = "LAYOUT";
constexpr absl::string_view kLayoutPrefix = "cairn-store-layout ";

absl::Status ErrnoStatus(int err, absl::string_view what) {
  std::string msg = absl::StrCat(what, ": ", strerror(err));
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// Returns the errno the fault hook injects for `op`, or 0.
int Inject(const FaultFn& fault, absl::string_view op) {
  return fault ? fault(op) : 0;
}

ItemKey CasKey(const Digest& digest) {
  return *ItemKey::FromHex(ItemKind::kCas, digest.hash());
}

std::string AcHeader(absl::string_view value) {
  return absl::StrCat(kAcMagic, Sha256Raw(value));
}

bool AcEntryIntact(absl::string_view file) {
  return file.size() >= kAcHeaderSize &&
         file.substr(0, kAcHeaderSize) == AcHeader(file.substr(kAcHeaderSize));
}

absl::Status WriteFully(int fd, absl::string_view data, const FaultFn& fault,
                        absl::string_view what) {
  while (!data.empty()) {
    int err = Inject(fault, "write");
    ssize_t n = err != 0 ? -1 : write(fd, data.data(), data.size());
    if (n < 0) {
      err = err != 0 ? err : errno;
      if (err == EINTR) {
        continue;
      }
      return ErrnoStatus(err, absl::StrCat("write ", what));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Reads up to `max` bytes at the current position; 0 only at end of file.
absl::StatusOr<size_t> ReadSome(int fd, char* buf, size_t max,
                                const FaultFn& fault, absl::string_view what) {
  for (;;) {
    int err = Inject(fault, "read");
    ssize_t n = err != 0 ? -1 : read(fd, buf, max);
    if (n >= 0) {
      return static_cast<size_t>(n);
    }
    err = err != 0 ? err : errno;
    if (err != EINTR) {
      return ErrnoStatus(err, absl::StrCat("read ", what));
    }
  }
}

// Returns a fingerprint of the file behind `st`: its identity (device,
// inode), size, mtime and ctime. Any write, truncation, replacement or
// metadata change through the file system changes it (within the file
// system's timestamp granularity). Never 0, which means "not verified".
uint64_t Fingerprint(const struct stat& st) {
  uint64_t h = absl::Hash<std::tuple<uint64_t, uint64_t, int64_t, int64_t,
                                     int64_t, int64_t, int64_t>>()(
      std::make_tuple(static_cast<uint64_t>(st.st_dev),
                      static_cast<uint64_t>(st.st_ino),
                      static_cast<int64_t>(st.st_size),
                      static_cast<int64_t>(st.st_mtim.tv_sec),
                      static_cast<int64_t>(st.st_mtim.tv_nsec),
                      static_cast<int64_t>(st.st_ctim.tv_sec),
                      static_cast<int64_t>(st.st_ctim.tv_nsec)));
  return h == 0 ? 1 : h;
}

// Bytes after which a temp file that will be fsynced starts the write-back
// of what it holds so far (sync_file_range), so that the final fsync finds
// little left to write.
constexpr int64_t kWritebackBytes = int64_t{8} << 20;

// A file in tmp/ owned by one write. Removed on destruction unless it has
// been published (renamed into place).
class TempFile {
 public:
  // `writeback`: the file will be fsynced; start writing it back early.
  static absl::StatusOr<std::unique_ptr<TempFile>> Create(std::string path,
                                                          const FaultFn* fault,
                                                          bool writeback);
  ~TempFile() {
    close(fd_);
    if (!published_) {
      unlink(path_.c_str());
    }
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  absl::Status Append(absl::string_view data) {
    absl::Status s = WriteFully(fd_, data, *fault_, path_);
    written_ += static_cast<int64_t>(data.size());
    if (s.ok() && writeback_ && written_ - started_ >= kWritebackBytes) {
      // Best effort and asynchronous: the fsync in Sync() is the guarantee.
      sync_file_range(fd_, started_, written_ - started_,
                      SYNC_FILE_RANGE_WRITE);
      started_ = written_;
    }
    return s;
  }
  absl::Status Sync();
  const std::string& path() const { return path_; }
  // Sets the mtime to `stamp_ns` and renames the file to `dest`. Sets
  // `*fingerprint` to the published file's Fingerprint(), or 0 if it cannot
  // be read. Does not fsync dest's directory (see CommitTemp()).
  absl::Status Publish(const std::string& dest, int64_t stamp_ns,
                       uint64_t* fingerprint);

 private:
  TempFile(std::string path, int fd, const FaultFn* fault, bool writeback)
      : path_(std::move(path)), fd_(fd), fault_(fault), writeback_(writeback) {}

  const std::string path_;
  const int fd_;
  const FaultFn* const fault_;  // Not owned.
  const bool writeback_;
  int64_t written_ = 0;  // Bytes appended.
  int64_t started_ = 0;  // Bytes whose write-back has been started.
  bool published_ = false;
};

absl::StatusOr<std::unique_ptr<TempFile>> TempFile::Create(std::string path,
                                                           const FaultFn* fault,
                                                           bool writeback) {
  int err = Inject(*fault, "open_tmp");
  int fd = err != 0 ? -1
                    : open(path.c_str(),
                           O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    return ErrnoStatus(err != 0 ? err : errno, absl::StrCat("create ", path));
  }
  return std::unique_ptr<TempFile>(
      new TempFile(std::move(path), fd, fault, writeback));
}

absl::Status TempFile::Sync() {
  int err = Inject(*fault_, "fsync");
  if (err != 0 || fsync(fd_) != 0) {
    return ErrnoStatus(err != 0 ? err : errno, absl::StrCat("fsync ", path_));
  }
  return absl::OkStatus();
}

absl::Status TempFile::Publish(const std::string& dest, int64_t stamp_ns,
                               uint64_t* fingerprint) {
  *fingerprint = 0;
  struct timespec times[2];
  times[0].tv_sec = times[1].tv_sec = stamp_ns / 1000000000;
  times[0].tv_nsec = times[1].tv_nsec = stamp_ns % 1000000000;
  futimens(fd_, times);  // Only the LRU order depends on it.
  std::string dir = dest.substr(0, dest.rfind('/'));
  int err = Inject(*fault_, "rename");
  bool renamed = err == 0 && rename(path_.c_str(), dest.c_str()) == 0;
  if (!renamed && err == 0 && errno == ENOENT) {
    mkdir(dir.c_str(), 0755);  // Shard directories are made on first use.
    renamed = rename(path_.c_str(), dest.c_str()) == 0;
  }
  if (!renamed) {
    return ErrnoStatus(err != 0 ? err : errno,
                       absl::StrCat("rename to ", dest));
  }
  published_ = true;
  // After the rename: it changes the ctime on most file systems.
  struct stat st;
  if (fstat(fd_, &st) == 0) {
    *fingerprint = Fingerprint(st);
  }
  return absl::OkStatus();
}

class EmptyBlobReader final : public BlobReader {
 public:
  int64_t size() const override { return 0; }
  absl::StatusOr<size_t> Read(char* buf, size_t max) override { return 0; }
};

class EmptyBlobWriter final : public BlobWriter {
 public:
  absl::Status Append(absl::string_view data) override {
    if (!data.empty()) {
      return absl::InvalidArgumentError("cas blob " +
                                        Digest::Empty().ToString() +
                                        ": more data than its size");
    }
    return absl::OkStatus();
  }
  int64_t committed_size() const override { return 0; }
  absl::Status Commit() override {
    if (std::exchange(committed_, true)) {
      return absl::FailedPreconditionError("empty blob: committed twice");
    }
    return absl::OkStatus();
  }

 private:
  bool committed_ = false;
};

// An item found on disk (a file, or a record of the small-item database) at
// start-up, or by a lookup while the index loads.
struct LoadedItem {
  ItemKey key;
  int64_t size;
  int64_t stamp;
  bool small = false;  // In the small-item database (else a file).
  // A file of zstd frames of a blob of `content_size` bytes.
  bool zstd = false;
  int64_t content_size = 0;
};

// A file's mtime in ns since the epoch: the access stamp the store keeps.
int64_t StampOf(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
         st.st_mtim.tv_nsec;
}

// A lookup's file was replaced by another encoding of the same blob between
// the lookup and the open (ABORTED, never returned to callers: they look the
// blob up again, kLookups times at most).
constexpr int kLookups = 3;
absl::Status MovedError(absl::string_view what) {
  return absl::AbortedError(absl::StrCat(what, ": file re-encoded"));
}
bool Moved(const absl::Status& s) {
  return s.code() == absl::StatusCode::kAborted;
}

// Serves a small blob already read (and verified) into memory.
class StringBlobReader final : public BlobReader {
 public:
  StringBlobReader(std::string data, int64_t offset)
      : data_(std::move(data)), pos_(static_cast<size_t>(offset)) {}
  int64_t size() const override { return static_cast<int64_t>(data_.size()); }
  absl::StatusOr<size_t> Read(char* buf, size_t max) override {
    size_t n = std::min(max, data_.size() - pos_);
    std::memcpy(buf, data_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  const std::string data_;
  size_t pos_;
};

}  // namespace

class DiskBlobStore final : public BlobStore {
 public:
  explicit DiskBlobStore(const DiskBlobStoreOptions& options);
  ~DiskBlobStore() override;

  // Creates the layout, empties tmp/, opens the small-item database and
  // rebuilds the index (with `load_index_in_background`, starts doing so).
  absl::Status Load();

  // BlobStore (cas/blob_store.h), declared as every store declares it.
  std::vector<Digest> FindMissing(absl::Span<const Digest> digests) override;
  bool Contains(const Digest& digest) override;
  std::optional<std::vector<Digest>> TryFindMissing(
      absl::Span<const Digest> digests) override;
  std::optional<bool> TryHasEntry(absl::string_view key) override;
  std::optional<absl::StatusOr<std::string>> TryGetEntry(
      absl::string_view key) override;
  absl::StatusOr<std::string> Read(const Digest& digest) override;
  absl::StatusOr<std::unique_ptr<BlobReader>> OpenRead(const Digest& digest,
                                                       int64_t offset) override;
  absl::Status Write(const Digest& digest, absl::string_view data) override;
  std::vector<absl::Status> WriteBlobs(
      absl::Span<const BlobWrite> blobs) override;
  absl::StatusOr<std::unique_ptr<BlobWriter>> OpenWrite(
      const Digest& digest) override;
  absl::StatusOr<std::unique_ptr<BlobWriter>> OpenWriteZstd(
      const Digest& digest) override;
  absl::StatusOr<StoredBlob> ReadAsStored(const Digest& digest) override;
  absl::StatusOr<StoredBlobReader> OpenReadAsStored(
      const Digest& digest) override;
  absl::StatusOr<std::string> GetEntry(absl::string_view key) override;
  absl::Status PutEntryImpl(absl::string_view key, absl::string_view value,
                            absl::Span<const Digest> blobs,
                            PutCallback* then) override;
  StoreStats Stats() override;
  std::vector<OwnerEvictions> EvictionsByOwner() override {
    absl::MutexLock lock(&mu_);
    return index_.EvictionsByWriter();
  }

  // The pieces readers and writers share with the store.
  const FaultFn& fault() const { return options_.fault_injector_for_test; }
  bool sync() const { return options_.fsync; }
  // The path of item `key` as a plain file, or (`zstd`) as a file of zstd
  // frames of a blob of `content_size` bytes: cas/ab/<hash>.<size>.zst.
  std::string PathOf(const ItemKey& key, bool zstd = false,
                     int64_t content_size = 0) const;
  std::string ItemPath(const LruIndex::Item& item) const {
    return PathOf(item.key, item.zstd, item.content_size);
  }
  // Whether zstd frames of `compressed` bytes are kept for a blob of
  // `content_size` bytes that goes to a file: with keep_zstd, when they
  // save at least an eighth.
  bool KeepZstd(int64_t compressed, int64_t content_size) const {
    return options_.keep_zstd && !IsSmall(content_size) &&
           ZstdSavesEnough(compressed, content_size);
  }
  // Decompresses the zstd frames in `temp` (verified, of a blob of
  // `content_size` bytes) into a new temp file.
  absl::StatusOr<std::unique_ptr<TempFile>> DecodeTemp(TempFile& temp,
                                                       int64_t content_size);
  // Decompresses the zstd frames written to `temp` so far, at most
  // `max_output` bytes, handing the bytes to `sink`; returns how many.
  absl::StatusOr<int64_t> DecodeTempTo(
      TempFile& temp, int64_t max_output,
      absl::FunctionRef<absl::Status(absl::string_view)> sink);
  absl::StatusOr<std::unique_ptr<TempFile>> NewTempFile();
  // Reserves `bytes`, evicting (and unlinking) least recently used items.
  absl::Status ReserveSpace(int64_t bytes, absl::string_view what);
  void ReleaseSpace(int64_t bytes);
  // The LruIndex write-sharing calls (JoinWrite also unlinks the victims).
  absl::Status JoinWrite(const ItemKey& key, int64_t bytes,
                         absl::string_view what);
  int64_t TakeWriteReservation(const ItemKey& key) {
    absl::MutexLock lock(&mu_);
    return index_.TakeWriteReservation(key);
  }
  void LeaveWrite(const ItemKey& key) {
    absl::MutexLock lock(&mu_);
    index_.LeaveWrite(key);
  }
  // Publishes `temp` as item `key` of `size` bytes, taking over `reserved`
  // bytes of reservation (0: reserve now). Unless `replace`, an item already
  // held with that size wins and `temp` is dropped. `entry_value`, when not
  // null, is the keyed entry's value the file holds (kept in entries_).
  // `zstd_content` >= 0: the file holds zstd frames of a CAS blob of that
  // many bytes (`size` is the file's).
  absl::Status CommitTemp(const ItemKey& key, TempFile& temp, int64_t size,
                          int64_t reserved, bool replace,
                          const absl::string_view* entry_value = nullptr,
                          int64_t zstd_content = -1);
  // As CommitTemp(), for an item stored in the small-item database: `value`
  // is the whole item (verified by the caller). With `then`, the item is
  // written without waiting for the log sync and `*then` is moved to the
  // database's WhenDurable() (or called with the error); the return value
  // is then OK.
  absl::Status CommitSmall(const ItemKey& key, absl::string_view value,
                           int64_t reserved, bool replace,
                           const absl::string_view* entry_value = nullptr,
                           PutCallback* then = nullptr);
  // Whether an item of `size` bytes goes to the small-item database.
  bool IsSmall(int64_t size) const {
    return size <= options_.small_item_max_bytes;
  }
  // Removes item `key` if its file is still the one open as `fd` (found at
  // `path`), counting a corruption.
  void RemoveCorrupt(const ItemKey& key, int fd, const std::string& path);
  // Records that a read hashed item `key`'s whole file, found it intact and
  // saw `fingerprint` when it opened the file.
  void MarkVerified(const ItemKey& key, uint64_t fingerprint);
  void CountReadHash() { read_hashes_.fetch_add(1, std::memory_order_relaxed); }

 private:
  // Recompression at rest (see the header). The thread's loop; one blob:
  // read, check, encode, verify, replace.
  void RecompressLoop();
  // What the loop's incompressibility guesses reuse from blob to blob: a
  // level-1 compressor (its zstd context and output scratch) and the sample
  // buffer. Before, each guess created a context and zero-filled its
  // buffers: a quarter of the server's instructions under BatchUpdateBlobs.
  struct RestProbe {
    ZstdCompressor fast{1};
    std::unique_ptr<char[]> sample;
  };
  void RecompressOne(const ItemKey& key, RestProbe& probe);
  // The blob's content, read from its file `as` and checked against its
  // digest; nullopt if it is gone, unreadable or does not match.
  struct RestItem {
    int64_t size = 0;
    bool zstd = false;
    int64_t content_size = 0;
  };
  std::optional<std::string> ReadForRecompress(const ItemKey& key,
                                               const RestItem& as);
  // Publishes `temp` (verified zstd frames of `frames` bytes) as the file of
  // `key` if the index still holds it `as`; true if it did.
  bool ReplaceEncoding(const ItemKey& key, const RestItem& as, TempFile& temp,
                       int64_t frames);
  // Queues a blob just committed to a file for recompression.
  void QueueForRestLocked(const ItemKey& key, int64_t content_size)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool RecompressingLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return options_.rest_zstd_level > 0 && options_.keep_zstd;
  }
  // Waits until no commit, unlink or stamp refresh of `key` is in progress.
  // Returns 0 (and gives up `*reserved`) if an item of `size` is stored and
  // !`replace`; otherwise claims `key` for publishing, first reserving
  // `size` (evicting, and unlinking the evicted items off the lock) if
  // `*reserved` is 0, takes the older version (if any) out of the index,
  // setting `*old` to it, and returns the new item's stamp. `content_size`
  // (-1: `size`) is what an item held must have to count as stored.
  absl::StatusOr<int64_t> ClaimForCommit(const ItemKey& key, int64_t size,
                                         bool replace, int64_t* reserved,
                                         std::optional<LruIndex::Item>* old,
                                         int64_t content_size = -1);
  // ClaimForCommit() once `key` is idle, evicting into `*victims`.
  absl::StatusOr<int64_t> ClaimLocked(const ItemKey& key, int64_t size,
                                      bool replace, int64_t* reserved,
                                      std::vector<LruIndex::Item>* victims,
                                      std::optional<LruIndex::Item>* old,
                                      int64_t content_size = -1)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits the small CAS blobs blobs[i] for i in `which` (verified, not
  // stored, distinct, each holding a reservation of its size) in one
  // database batch, setting (*out)[i]. A blob whose key is busy (another
  // commit, unlink or stamp refresh in progress) is committed on its own
  // afterwards, so a batch never waits while holding claims.
  // Write() of `data` already found to hash to `digest`; `zstd`, when not
  // empty, holds zstd frames of `data` (see BlobWrite).
  absl::Status WriteVerified(const Digest& digest, absl::string_view data,
                             absl::string_view zstd = {});
  void CommitSmallBatch(absl::Span<const BlobWrite> blobs,
                        absl::Span<const size_t> which,
                        std::vector<absl::Status>* out);
  // Ends the claim of ClaimForCommit(): on success (`s` ok) indexes the item
  // and keeps `entry_value` (if not null) in memory. `zstd_content`: as for
  // CommitTemp().
  void EndCommit(const ItemKey& key, const absl::Status& s, int64_t size,
                 int64_t stamp, int64_t reserved, bool small,
                 uint64_t fingerprint, const absl::string_view* entry_value,
                 int64_t zstd_content = -1);
  void EndCommitLocked(const ItemKey& key, const absl::Status& s, int64_t size,
                       int64_t stamp, int64_t reserved, bool small,
                       uint64_t fingerprint,
                       const absl::string_view* entry_value,
                       int64_t zstd_content = -1)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What a lookup found: the item's size, where it lives, the stamp it has
  // after the lookup, and the fingerprint of its file when last verified.
  struct Found {
    int64_t size = 0;
    bool small = false;
    bool zstd = false;  // A file of zstd frames.
    int64_t content_size = 0;
    int64_t stamp = 0;
    uint64_t verified = 0;
  };
  // Marks `key` recently used (refreshing its access stamp when due) and
  // returns what it found, if the item is held and `want_size` is negative
  // or matches.
  std::optional<Found> TouchItem(const ItemKey& key, int64_t want_size);
  // An access stamp to record for an item (its file's mtime, or its
  // metadata in the small-item database), off the lock.
  struct Refresh {
    ItemKey key;
    int64_t stamp;
    bool small;
    int64_t size;
    bool zstd;
    int64_t content_size;
  };
  // TouchItem() under mu_; appends the refresh due, if any (a small item's
  // counts in refreshing_ until RefreshMtimes() has written it). `now_ns`:
  // the current time (read once per batch by callers looking up many).
  std::optional<Found> TouchLocked(const ItemKey& key, int64_t want_size,
                                   std::vector<Refresh>* refreshes,
                                   int64_t now_ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshMtimes(const std::vector<Refresh>& refreshes);
  // Opens the file of item `key` as `found`; NOT_FOUND (dropping the stale
  // index entry) if gone.
  absl::StatusOr<int> OpenItem(const ItemKey& key, const Found& found,
                               absl::string_view what);
  // Reads small item `key` found at `stamp` from the database and returns it
  // if `intact` accepts it; otherwise removes it and answers DATA_LOSS.
  absl::StatusOr<std::string> ReadSmall(
      const ItemKey& key, absl::string_view what, int64_t stamp,
      const std::function<bool(absl::string_view)>& intact);
  // Drops small item `key` from the index (counting a corruption if
  // `corrupt`, deleting its records then) if it is still the version found
  // at `stamp` and no commit of it is in progress.
  void DropSmall(const ItemKey& key, int64_t stamp, bool corrupt);
  // Reads the whole file of item `key` as `found` and returns it if `intact`
  // accepts it; otherwise removes it and answers DATA_LOSS. `intact` is
  // skipped when the open file's Fingerprint() is `found.verified`.
  absl::StatusOr<std::string> ReadChecked(
      const ItemKey& key, const Found& found, absl::string_view what,
      const std::function<bool(absl::string_view)>& intact);
  // Read() of blob `digest` found as `found`: its plain bytes, or
  // (`as_stored`) the file's bytes, which are zstd frames when found.zstd.
  absl::StatusOr<std::string> ReadFound(const Digest& digest,
                                        const Found& found, bool as_stored);
  // ReadFound() of a file of zstd frames.
  absl::StatusOr<std::string> ReadZstd(const Digest& digest, const Found& found,
                                       bool as_stored);
  // OpenRead() of blob `digest` found as `found`, from `offset`
  // (`as_stored`: see OpenReadAsStored(); then 0).
  absl::StatusOr<std::unique_ptr<BlobReader>> OpenFound(const Digest& digest,
                                                        const Found& found,
                                                        int64_t offset,
                                                        bool as_stored);
  // Opens a reader of blob `digest` held as `found` (a file): plain bytes
  // from `offset`, or (`as_stored`, offset 0) the bytes of the file.
  absl::StatusOr<std::unique_ptr<BlobReader>> OpenFileReader(
      const Digest& digest, const Found& found, int64_t offset, bool as_stored);
  // Writes `parts` as item `key` through a temp file (`entry_value`: as for
  // CommitTemp()).
  absl::Status StoreWhole(const ItemKey& key,
                          absl::Span<const absl::string_view> parts,
                          bool replace, absl::string_view what,
                          const absl::string_view* entry_value = nullptr,
                          int64_t zstd_content = -1);
  // Drops the cached value of `key` (a keyed entry leaving or changing in
  // index_), and of every keyed entry among `victims`.
  void ForgetEntryLocked(const ItemKey& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (key.kind == ItemKind::kAc) {
      entries_.Erase(key);
      ++entry_generation_;
    }
  }
  void ForgetEntriesLocked(const std::vector<LruIndex::Item>& victims)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const LruIndex::Item& v : victims) {
      ForgetEntryLocked(v.key);
    }
  }
  void UnlinkVictims(const std::vector<LruIndex::Item>& victims);
  // Runs `reserve` (an LruIndex reservation) under mu_ and unlinks the
  // items it evicted; RESOURCE_EXHAUSTED naming `what` if it fails.
  absl::Status ReserveWith(
      absl::string_view what,
      absl::FunctionRef<absl::StatusOr<std::vector<LruIndex::Item>>()> reserve);
  int64_t NextStampLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool KeyIdleLocked(const ItemKey& key) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !committing_.contains(key) && !unlinking_.contains(key) &&
           !refreshing_.contains(key);
  }

  // Checks the layout version file: OK for a store of this layout or an
  // older one (setting `*found` to its version, 0 for a new store);
  // FAILED_PRECONDITION for a newer layout.
  absl::Status CheckLayoutVersion(int* found);
  absl::Status WriteLayoutVersion(int version);
  // Rebuilds the index from the files and the small-item database (see the
  // notes on loading at the top), then trims the store to its budget and
  // ends the load (on the loader thread with load_index_in_background).
  absl::Status LoadIndex(absl::Time start);
  // Scans the small-item database's metadata in parts, one per thread.
  absl::StatusOr<std::vector<std::vector<LoadedItem>>> ScanSmall();
  // Indexes `found` (files, then small items) newest first, as least
  // recently used, a batch per hold of mu_; where a key is held twice (a
  // crash between the two steps of a move) keeps the newer and deletes the
  // other. Skips keys a request settled. False if the store is closing.
  bool IndexFound(const std::vector<std::vector<LoadedItem>>& found);
  // Ends the load: eviction resumes, the store is trimmed to its budget.
  void FinishLoad(absl::Time start);
  // While the index loads: makes index_ exact for `keys` (see the notes at
  // the top): a key neither indexed nor settled yet is looked up on disk
  // (a CAS key's zstd file with content size sizes[i], when not negative)
  // and indexed as found. A key found nowhere is settled only `for_write`
  // (a reader's size may be wrong; the loader still indexes what it finds).
  // An error if a lookup failed (that key stays unsettled: a miss for
  // readers; writers fail).
  absl::Status SettleForLoad(absl::Span<const ItemKey> keys,
                             absl::Span<const int64_t> sizes, bool for_write);
  // The copies of `key` on disk (database record, plain file, zstd file of
  // a blob of `size` bytes), newest first.
  absl::StatusOr<std::vector<LoadedItem>> ProbeDisk(const ItemKey& key,
                                                    int64_t size);
  // Indexes `item` found on disk at start-up (as least recently used if
  // `oldest`); an older copy of a key indexed already is added to `stale`
  // (for UnlinkVictims()). `item`'s key must not be settled.
  void IndexLoadedLocked(const LoadedItem& item, bool oldest,
                         std::vector<LruIndex::Item>* stale)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CreateLayout();
  absl::StatusOr<std::vector<LoadedItem>> ScanAll();
  absl::Status ScanShard(ItemKind kind, int shard,
                         std::vector<LoadedItem>* out);
  void CleanTmp();

  const DiskBlobStoreOptions options_;
  // The small-item database (set by Load()).
  std::unique_ptr<SmallItemStore> small_;
  const uint64_t temp_prefix_;
  std::atomic<uint64_t> temp_counter_{0};
  // The background loader (load_index_in_background) and its stop flag.
  std::thread loader_;
  std::atomic<bool> stop_loading_{false};
  // True while the index loads; written under mu_ (read without it only as
  // a hint: the answer is checked again under mu_).
  std::atomic<bool> loading_{false};

  absl::Mutex mu_;  // A leaf lock; never held across I/O.
  double load_seconds_ ABSL_GUARDED_BY(mu_) = 0;  // Set when the load ends.
  // While loading: keys for which index_ is exact (see the top notes).
  absl::flat_hash_set<ItemKey> settled_ ABSL_GUARDED_BY(mu_);
  // Signalled whenever a key leaves committing_ or unlinking_.
  absl::CondVar key_idle_;
  LruIndex index_ ABSL_GUARDED_BY(mu_);
  // Verified values of recently written or read keyed entries (see the
  // invariants above); entry_generation_ changes with every change to them.
  EntryCache entries_ ABSL_GUARDED_BY(mu_);
  uint64_t entry_generation_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<ItemKey, int> unlinking_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<ItemKey> committing_ ABSL_GUARDED_BY(mu_);
  // Small items whose access stamp is being written (counts per key).
  absl::flat_hash_map<ItemKey, int> refreshing_ ABSL_GUARDED_BY(mu_);
  int64_t last_stamp_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t corruptions_ ABSL_GUARDED_BY(mu_) = 0;
  // Reads that hashed an item's whole content (StoreStats::read_hashes).
  std::atomic<int64_t> read_hashes_{0};
  // Recompression at rest: the thread, blobs waiting (newest at the back),
  // whether one is in hand, and the counters of StoreStats.
  std::thread recompressor_;
  absl::CondVar rest_wanted_;  // Signalled on a new blob and on stop.
  bool stop_rest_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<ItemKey> rest_queue_ ABSL_GUARDED_BY(mu_);
  bool rest_busy_ ABSL_GUARDED_BY(mu_) = false;
  int64_t recompressed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rest_saved_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rest_skipped_ ABSL_GUARDED_BY(mu_) = 0;
  // Shard directories ([kind * kShards + shard]) that had a file renamed
  // into them since their last fsync; synced when the store closes.
  std::atomic<bool> dirty_dirs_[2 * kShards] = {};
};

namespace {

// What the two readers of a blob's file share: the open file (closed with
// the reader), whether it is unchanged since it was last found intact (then
// it is trusted and not hashed), the hash of the content read so far
// otherwise, and the removal of an item found corrupt.
class DiskFileReader : public BlobReader {
 public:
  // `verified`: the fingerprint of the item's file when it was last found
  // intact (0: never).
  DiskFileReader(DiskBlobStore* store, ItemKey key, Digest digest, int fd,
                 std::string path, uint64_t verified)
      : store_(store),
        key_(key),
        digest_(std::move(digest)),
        fd_(fd),
        path_(std::move(path)),
        verified_fingerprint_(verified) {}
  ~DiskFileReader() override { close(fd_); }

  // Checks the file and skips the first `offset` bytes the reader serves.
  virtual absl::Status Start(int64_t offset) = 0;

 protected:
  // Returns the file's size, noting its fingerprint and whether it is
  // trusted.
  absl::StatusOr<int64_t> StatFile();
  // Reads up to `max` bytes of the file; an error fails the reader.
  absl::StatusOr<size_t> ReadFile(char* buf, size_t max);
  // The answer of a reader used after it failed.
  absl::Status FailedError() const {
    return absl::FailedPreconditionError(
        absl::StrCat("cas blob ", digest_.ToString(), ": reader failed"));
  }
  absl::Status Corrupt(absl::string_view why) {
    store_->RemoveCorrupt(key_, fd_, path_);
    failed_ = true;
    return absl::DataLossError(
        absl::StrCat("cas blob ", digest_.ToString(), ": ", why));
  }
  // At the end of the content: unless trusted, checks the hash (DATA_LOSS
  // and removal on a mismatch) and records the file as verified.
  absl::Status CheckContent();

  DiskBlobStore* const store_;  // Not owned.
  const ItemKey key_;
  const Digest digest_;
  const int fd_;
  const std::string path_;
  const uint64_t verified_fingerprint_;
  uint64_t open_fingerprint_ = 0;  // The file's, when StatFile() ran.
  bool trusted_ = false;           // Unchanged since verified: no hashing.
  Sha256Hasher hasher_;            // Of the content, unless trusted.
  bool failed_ = false;
};

absl::StatusOr<int64_t> DiskFileReader::StatFile() {
  struct stat st;
  if (fstat(fd_, &st) != 0) {
    return ErrnoStatus(errno,
                       absl::StrCat("stat cas blob ", digest_.ToString()));
  }
  open_fingerprint_ = Fingerprint(st);
  trusted_ = open_fingerprint_ == verified_fingerprint_;
  return static_cast<int64_t>(st.st_size);
}

absl::StatusOr<size_t> DiskFileReader::ReadFile(char* buf, size_t max) {
  absl::StatusOr<size_t> n =
      ReadSome(fd_, buf, max, store_->fault(),
               absl::StrCat("cas blob ", digest_.ToString()));
  if (!n.ok()) {
    failed_ = true;
  }
  return n;
}

absl::Status DiskFileReader::CheckContent() {
  if (trusted_) {
    return absl::OkStatus();
  }
  store_->CountReadHash();
  if (hasher_.FinishDigest() != digest_) {
    return Corrupt("content does not match its digest");
  }
  store_->MarkVerified(key_, open_fingerprint_);
  return absl::OkStatus();
}

// Streams one blob from a plain file, hashing as it goes.
class DiskBlobReader final : public DiskFileReader {
 public:
  using DiskFileReader::DiskFileReader;

  // Checks the file's size and, unless the file is trusted, hashes the
  // first `offset` bytes (else seeks past them).
  absl::Status Start(int64_t offset) override;
  int64_t size() const override { return digest_.size_bytes(); }
  absl::StatusOr<size_t> Read(char* buf, size_t max) override;

 private:
  int64_t pos_ = 0;
  bool verified_ = false;  // The whole content was read and checked.
};

absl::Status DiskBlobReader::Start(int64_t offset) {
  absl::StatusOr<int64_t> file_size = StatFile();
  if (!file_size.ok()) {
    return file_size.status();
  }
  if (*file_size != digest_.size_bytes()) {
    return Corrupt(absl::StrCat("file holds ", *file_size, " bytes"));
  }
  if (trusted_) {
    if (offset > 0 && lseek(fd_, offset, SEEK_SET) != offset) {
      failed_ = true;
      return ErrnoStatus(errno,
                         absl::StrCat("seek cas blob ", digest_.ToString()));
    }
    pos_ = offset;
    verified_ = pos_ == size();
    return absl::OkStatus();
  }
  std::string buf(std::min<int64_t>(offset, 1 << 20), '\0');
  while (pos_ < offset) {
    size_t want =
        static_cast<size_t>(std::min<int64_t>(offset - pos_, buf.size()));
    absl::StatusOr<size_t> n = Read(buf.data(), want);
    if (!n.ok()) {
      return n.status();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> DiskBlobReader::Read(char* buf, size_t max) {
  if (failed_) {
    return FailedError();
  }
  if (verified_) {
    return 0;
  }
  size_t want = static_cast<size_t>(
      std::min<int64_t>(static_cast<int64_t>(max), size() - pos_));
  size_t got = 0;
  if (want > 0) {
    absl::StatusOr<size_t> n = ReadFile(buf, want);
    if (!n.ok()) {
      return n.status();
    }
    if (*n == 0) {
      return Corrupt("file is shorter than the blob");
    }
    got = *n;
    if (!trusted_) {
      hasher_.Update(absl::string_view(buf, got));
    }
    pos_ += static_cast<int64_t>(got);
  }
  if (pos_ == size()) {
    if (absl::Status s = CheckContent(); !s.ok()) {
      return s;
    }
    verified_ = true;
  }
  return got;
}

// Streams a blob held as a file of zstd frames: the frames as they are
// (`as_stored`) or the blob's plain bytes, decompressing. Unless the file is
// unchanged since it was verified, the frames are decompressed and hashed
// as they go (also when serving them as they are) and the end of the file
// is reported only once the content matched the digest; a mismatch, or
// frames that do not decode, is DATA_LOSS and removes the item.
class DiskZstdReader final : public DiskFileReader {
 public:
  DiskZstdReader(DiskBlobStore* store, ItemKey key, Digest digest, int fd,
                 std::string path, uint64_t verified, bool as_stored)
      : DiskFileReader(store, key, std::move(digest), fd, std::move(path),
                       verified),
        as_stored_(as_stored) {}

  // Reads the file's size and fingerprint and skips `offset` plain bytes
  // (0 when `as_stored`).
  absl::Status Start(int64_t offset) override;
  int64_t size() const override {
    return as_stored_ ? file_size_ : digest_.size_bytes();
  }
  absl::StatusOr<size_t> Read(char* buf, size_t max) override;

 private:
  // Decompresses `frames` only to check them (as_stored_, not trusted).
  absl::Status Check(absl::string_view frames);
  // Decompresses more of frames_ into plain_ (plain reads), hashing unless
  // trusted.
  absl::Status DecodeSome();
  // At the end of the file: checks the content, then reports the end.
  absl::StatusOr<size_t> Finish();
  // Reads the next piece of the file into frames_; false at its end.
  absl::StatusOr<bool> ReadFrames();

  const bool as_stored_;
  int64_t file_size_ = 0;
  ZstdDecompressor decompressor_;
  int64_t decoded_ = 0;  // Plain bytes decompressed so far.
  std::string frames_;   // The last piece of the file read (plain reads).
  size_t frames_pos_ = 0;  // Bytes of frames_ decompressed.
  std::string plain_;      // Decompressed bytes not yet returned.
  size_t plain_pos_ = 0;
  bool done_ = false;
};

absl::Status DiskZstdReader::Start(int64_t offset) {
  absl::StatusOr<int64_t> file_size = StatFile();
  if (!file_size.ok()) {
    return file_size.status();
  }
  file_size_ = *file_size;
  std::string skip(static_cast<size_t>(std::min<int64_t>(offset, 1 << 20)),
                   '\0');
  for (int64_t left = offset; left > 0;) {
    absl::StatusOr<size_t> n = Read(
        skip.data(),
        static_cast<size_t>(std::min<int64_t>(left, skip.size())));
    if (!n.ok()) {
      return n.status();
    }
    if (*n == 0) {
      return Corrupt("content is shorter than the blob");
    }
    left -= static_cast<int64_t>(*n);
  }
  return absl::OkStatus();
}

// Pieces of decompressed output a reader holds at once, however much the
// frames expand.
constexpr size_t kZstdPiece = 256 << 10;

absl::Status DiskZstdReader::Check(absl::string_view frames) {
  absl::Status s = decompressor_.DecompressTo(
      frames, digest_.size_bytes() - decoded_, kZstdPiece,
      [this](absl::string_view piece) {
        decoded_ += static_cast<int64_t>(piece.size());
        hasher_.Update(piece);
        return absl::OkStatus();
      });
  return s.ok() ? s : Corrupt(s.message());
}

absl::Status DiskZstdReader::DecodeSome() {
  plain_.clear();
  plain_pos_ = 0;
  absl::StatusOr<size_t> used = decompressor_.DecompressSome(
      absl::string_view(frames_).substr(frames_pos_),
      digest_.size_bytes() - decoded_, kZstdPiece, &plain_);
  if (!used.ok()) {
    return Corrupt(used.status().message());
  }
  frames_pos_ += *used;
  decoded_ += static_cast<int64_t>(plain_.size());
  if (!trusted_) {
    hasher_.Update(plain_);
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> DiskZstdReader::Finish() {
  if (trusted_ && as_stored_) {
    done_ = true;  // Served as they are, unchanged since verified.
    return 0;
  }
  if (!decompressor_.AtFrameEnd() || decoded_ != digest_.size_bytes()) {
    return Corrupt("zstd frames end early");
  }
  if (absl::Status s = CheckContent(); !s.ok()) {
    return s;
  }
  done_ = true;
  return 0;
}

absl::StatusOr<bool> DiskZstdReader::ReadFrames() {
  frames_.resize(128 << 10);
  absl::StatusOr<size_t> n = ReadFile(frames_.data(), frames_.size());
  if (!n.ok()) {
    return n.status();
  }
  frames_.resize(*n);
  frames_pos_ = 0;
  return *n > 0;
}

absl::StatusOr<size_t> DiskZstdReader::Read(char* buf, size_t max) {
  if (failed_) {
    return FailedError();
  }
  if (done_ || max == 0) {
    return 0;
  }
  if (as_stored_) {
    absl::StatusOr<size_t> n = ReadFile(buf, max);
    if (!n.ok()) {
      return n.status();
    }
    if (*n == 0) {
      return Finish();
    }
    if (!trusted_) {
      if (absl::Status s = Check(absl::string_view(buf, *n)); !s.ok()) {
        return s;
      }
    }
    return *n;
  }
  while (plain_pos_ == plain_.size()) {
    if (frames_pos_ == frames_.size()) {
      absl::StatusOr<bool> more = ReadFrames();
      if (!more.ok()) {
        return more.status();
      }
      if (!*more) {
        return Finish();
      }
    }
    if (absl::Status s = DecodeSome(); !s.ok()) {
      return s;
    }
  }
  const size_t n = std::min(max, plain_.size() - plain_pos_);
  std::memcpy(buf, plain_.data() + plain_pos_, n);
  plain_pos_ += n;
  return n;
}

// Streams one blob into a temp file; see BlobWriter.
class DiskBlobWriter final : public BlobWriter {
 public:
  // The writer has joined the store's writes of `digest` (see
  // LruIndex::JoinWrite) and leaves them when closed.
  DiskBlobWriter(DiskBlobStore* store, Digest digest,
                 std::unique_ptr<TempFile> temp)
      : store_(store),
        digest_(std::move(digest)),
        key_(CasKey(digest_)),
        temp_(std::move(temp)) {}
  ~DiskBlobWriter() override { Discard(); }

  absl::Status Append(absl::string_view data) override;
  int64_t committed_size() const override { return hasher_.bytes(); }
  absl::Status Commit() override;

 private:
  // Removes the temp file and leaves the writes of the digest.
  void Discard() {
    if (temp_ != nullptr) {
      temp_.reset();
      store_->LeaveWrite(key_);
    }
  }
  DiskBlobStore* const store_;  // Not owned.
  const Digest digest_;
  const ItemKey key_;
  std::unique_ptr<TempFile> temp_;  // Null once closed.
  Sha256Hasher hasher_;
};

absl::Status DiskBlobWriter::Append(absl::string_view data) {
  if (temp_ == nullptr) {
    return WriterClosedError(digest_);
  }
  absl::Cleanup discard = [this] { Discard(); };
  if (hasher_.bytes() + static_cast<int64_t>(data.size()) >
      digest_.size_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cas blob ", digest_.ToString(), ": more data than its size"));
  }
  if (absl::Status s = temp_->Append(data); !s.ok()) {
    return s;
  }
  hasher_.Update(data);
  std::move(discard).Cancel();
  return absl::OkStatus();
}

absl::Status DiskBlobWriter::Commit() {
  if (temp_ == nullptr) {
    return WriterClosedError(digest_);
  }
  absl::Cleanup discard = [this] { Discard(); };
  if (absl::Status s = CheckDigest(digest_, hasher_.FinishDigest()); !s.ok()) {
    return s;
  }
  if (store_->sync()) {
    if (absl::Status s = temp_->Sync(); !s.ok()) {
      return s;
    }
  }
  return store_->CommitTemp(key_, *temp_, digest_.size_bytes(),
                            store_->TakeWriteReservation(key_),
                            /*replace=*/false);
}

// Streams the zstd frames of a blob into a temp file, decompressing them to
// hash them; Commit() verifies the content and keeps the frames when they
// save enough (DiskBlobStore::KeepZstd()), else the decompressed bytes.
// The compressed size is not known in advance: the writer reserves room as
// the frames arrive (kZstdReserveStep at a time when there is room), and for
// the plain size before it decompresses them into a plain file, so that a
// compressed upload neither evicts for its plain size nor overshoots the
// budget.
// Frames that do not save enough over the first kZstdProbeBytes of content
// (random or already-compressed bytes: zstd's raw blocks) are not written
// and read back to be decoded at the end: the writer decodes what it has
// into a plain writer (DiskBlobStore::OpenWrite()) and hands it every later
// piece, so a large upload is written once. Should the rest compress after
// all, the blob is stored plain, as after the probe of recompression at rest.
class DiskZstdWriter final : public BlobWriter {
 public:
  static constexpr int64_t kZstdReserveStep = int64_t{64} << 10;
  static constexpr int64_t kZstdProbeBytes = int64_t{256} << 10;

  DiskZstdWriter(DiskBlobStore* store, Digest digest,
                 std::unique_ptr<TempFile> temp)
      : store_(store),
        digest_(std::move(digest)),
        key_(CasKey(digest_)),
        temp_(std::move(temp)) {}
  ~DiskZstdWriter() override { Discard(); }

  absl::Status Append(absl::string_view data) override;
  int64_t committed_size() const override { return compressed_; }
  absl::Status Commit() override;

 private:
  void Discard() {
    plain_.reset();
    DropFrames();
  }
  void DropFrames() {
    temp_.reset();
    store_->ReleaseSpace(std::exchange(reserved_, 0));
  }
  // Reserves room for `total` bytes in all.
  absl::Status ReserveUpTo(int64_t total) {
    if (total <= reserved_) {
      return absl::OkStatus();
    }
    // A step ahead (fewer reservations), or only what is needed when the
    // budget has no room for the step.
    const int64_t need = total - reserved_;
    const std::string what = absl::StrCat("cas blob ", digest_.ToString());
    int64_t step = std::max(need, kZstdReserveStep);
    absl::Status s = store_->ReserveSpace(step, what);
    if (absl::IsResourceExhausted(s) && step > need) {
      step = need;
      s = store_->ReserveSpace(step, what);
    }
    if (s.ok()) {
      reserved_ += step;
    }
    return s;
  }
  // Appends frames while they are kept in temp_.
  absl::Status AppendFrames(absl::string_view data);
  // Decompresses `data` into plain_.
  absl::Status AppendPlain(absl::string_view data);
  // Moves to plain_: decodes the frames in temp_ into it, then drops temp_.
  absl::Status GoPlain();

  DiskBlobStore* const store_;  // Not owned.
  const Digest digest_;
  const ItemKey key_;
  std::unique_ptr<TempFile> temp_;  // Null once closed or once plain.
  int64_t reserved_ = 0;            // Bytes of the budget held for temp_.
  std::unique_ptr<BlobWriter> plain_;  // Set once the frames are not kept.
  bool probed_ = false;                // The frames have been judged.
  ZstdDecompressor decompressor_;
  Sha256Hasher hasher_;  // Of the decompressed bytes, while in temp_.
  int64_t compressed_ = 0;
};

absl::Status DiskZstdWriter::Append(absl::string_view data) {
  if (plain_ != nullptr) {
    return AppendPlain(data);
  }
  if (temp_ == nullptr) {
    return WriterClosedError(digest_);
  }
  absl::Cleanup discard = [this] { Discard(); };
  if (absl::Status s = AppendFrames(data); !s.ok()) {
    return s;
  }
  if (!probed_ && hasher_.bytes() >= kZstdProbeBytes) {
    probed_ = true;
    if (!ZstdSavesEnough(compressed_, hasher_.bytes())) {
      if (absl::Status s = GoPlain(); !s.ok()) {
        return s;
      }
    }
  }
  std::move(discard).Cancel();
  return absl::OkStatus();
}

absl::Status DiskZstdWriter::AppendFrames(absl::string_view data) {
  if (absl::Status s = decompressor_.DecompressTo(
          data, digest_.size_bytes() - hasher_.bytes(), kZstdPiece,
          [this](absl::string_view piece) {
            hasher_.Update(piece);
            return absl::OkStatus();
          });
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cas blob ", digest_.ToString(), ": ", s.message()));
  }
  if (absl::Status s =
          ReserveUpTo(compressed_ + static_cast<int64_t>(data.size()));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = temp_->Append(data); !s.ok()) {
    return s;
  }
  compressed_ += static_cast<int64_t>(data.size());
  return absl::OkStatus();
}

absl::Status DiskZstdWriter::AppendPlain(absl::string_view data) {
  if (absl::Status s = DecodeFramesInto(decompressor_, digest_, data, *plain_);
      !s.ok()) {
    plain_.reset();
    return s;
  }
  compressed_ += static_cast<int64_t>(data.size());
  return absl::OkStatus();
}

absl::Status DiskZstdWriter::GoPlain() {
  absl::StatusOr<std::unique_ptr<BlobWriter>> plain =
      store_->OpenWrite(digest_);
  if (!plain.ok()) {
    return plain.status();
  }
  // A fresh decoder given the same frames yields the same bytes as
  // decompressor_ has (zstd's output depends on its input only).
  absl::StatusOr<int64_t> decoded = store_->DecodeTempTo(
      *temp_, digest_.size_bytes(),
      [&](absl::string_view piece) { return (*plain)->Append(piece); });
  if (!decoded.ok()) {
    return decoded.status();
  }
  if (*decoded != hasher_.bytes()) {
    return absl::InternalError(absl::StrCat("decode ", temp_->path(), ": ",
                                            *decoded, " bytes, expected ",
                                            hasher_.bytes()));
  }
  DropFrames();  // The plain writer holds its own reservation.
  plain_ = *std::move(plain);
  return absl::OkStatus();
}

absl::Status DiskZstdWriter::Commit() {
  if (plain_ != nullptr) {
    std::unique_ptr<BlobWriter> plain = std::move(plain_);
    if (!decompressor_.AtFrameEnd()) {
      return absl::InvalidArgumentError(
          absl::StrCat("Write: zstd data for cas blob ", digest_.ToString(),
                       " ends inside a frame"));
    }
    return plain->Commit();
  }
  if (temp_ == nullptr) {
    return WriterClosedError(digest_);
  }
  absl::Cleanup discard = [this] { Discard(); };
  if (!decompressor_.AtFrameEnd()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Write: zstd data for cas blob ", digest_.ToString(),
                     " ends inside a frame"));
  }
  if (absl::Status s = CheckDigest(digest_, hasher_.FinishDigest()); !s.ok()) {
    return s;
  }
  const bool keep = store_->KeepZstd(compressed_, digest_.size_bytes());
  std::unique_ptr<TempFile> plain;
  if (!keep) {
    if (absl::Status s = ReserveUpTo(digest_.size_bytes()); !s.ok()) {
      return s;
    }
    absl::StatusOr<std::unique_ptr<TempFile>> decoded =
        store_->DecodeTemp(*temp_, digest_.size_bytes());
    if (!decoded.ok()) {
      return decoded.status();
    }
    plain = *std::move(decoded);
  }
  TempFile& file = keep ? *temp_ : *plain;
  if (store_->sync()) {
    if (absl::Status s = file.Sync(); !s.ok()) {
      return s;
    }
  }
  absl::Status s = store_->CommitTemp(
      key_, file, keep ? compressed_ : digest_.size_bytes(),
      std::exchange(reserved_, 0), /*replace=*/false, nullptr,
      keep ? digest_.size_bytes() : -1);
  return s;
}

// Collects a small blob in memory; Commit() verifies it and stores it in
// the small-item database. See BlobWriter.
class SmallBlobWriter final : public BlobWriter {
 public:
  // The writer has joined the store's writes of `digest` (see
  // LruIndex::JoinWrite) and leaves them when closed.
  SmallBlobWriter(DiskBlobStore* store, Digest digest)
      : store_(store), digest_(std::move(digest)), key_(CasKey(digest_)) {
    data_.reserve(static_cast<size_t>(digest_.size_bytes()));
  }
  ~SmallBlobWriter() override { Close(); }

  absl::Status Append(absl::string_view data) override {
    if (closed_) {
      return WriterClosedError(digest_);
    }
    if (data_.size() + data.size() >
        static_cast<size_t>(digest_.size_bytes())) {
      Close();
      return absl::InvalidArgumentError(absl::StrCat(
          "cas blob ", digest_.ToString(), ": more data than its size"));
    }
    data_.append(data.data(), data.size());
    return absl::OkStatus();
  }
  int64_t committed_size() const override {
    return static_cast<int64_t>(data_.size());
  }
  absl::Status Commit() override {
    if (closed_) {
      return WriterClosedError(digest_);
    }
    absl::Cleanup close = [this] { Close(); };
    if (absl::Status s = CheckData(digest_, data_); !s.ok()) {
      return s;
    }
    return store_->CommitSmall(key_, data_, store_->TakeWriteReservation(key_),
                               /*replace=*/false);
  }

 private:
  void Close() {
    if (!std::exchange(closed_, true)) {
      store_->LeaveWrite(key_);
    }
  }
  DiskBlobStore* const store_;  // Not owned.
  const Digest digest_;
  const ItemKey key_;
  std::string data_;
  bool closed_ = false;
};

absl::Status NotFound(const Digest& digest) {
  return absl::NotFoundError(
      absl::StrCat("cas blob ", digest.ToString(), " not found"));
}

}  // namespace

DiskBlobStore::DiskBlobStore(const DiskBlobStoreOptions& options)
    : options_(options),
      temp_prefix_(std::random_device()() * 0x100000000ull ^
                   std::random_device()()),
      index_(options.max_size_bytes),
      entries_(options.entry_cache_bytes) {}

DiskBlobStore::~DiskBlobStore() {
  {
    absl::MutexLock lock(&mu_);
    stop_rest_ = true;
    rest_wanted_.SignalAll();
  }
  if (recompressor_.joinable()) {
    recompressor_.join();
  }
  stop_loading_.store(true, std::memory_order_relaxed);
  if (loader_.joinable()) {
    loader_.join();
  }
  if (small_ != nullptr && !options_.fsync) {
    small_->SyncForClose().IgnoreError();  // Best effort, as below.
  }
  small_.reset();  // Syncs and answers PutEntry() calls still waiting.
  for (int i = 0; i < 2 * kShards; ++i) {
    if (dirty_dirs_[i].load(std::memory_order_relaxed)) {
      std::string dir = absl::StrFormat(
          "%s/%s/%02x", options_.root, i < kShards ? "cas" : "ac", i % kShards);
      int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        fsync(dfd);  // Best effort.
        close(dfd);
      }
    }
  }
}

std::string DiskBlobStore::PathOf(const ItemKey& key, bool zstd,
                                  int64_t content_size) const {
  std::string hex = key.HexId();
  std::string path =
      absl::StrCat(options_.root, key.kind == ItemKind::kCas ? "/cas/" : "/ac/",
                   absl::string_view(hex).substr(0, 2), "/", hex);
  if (zstd) {
    absl::StrAppend(&path, ".", content_size, kZstdSuffix);
  }
  return path;
}

absl::StatusOr<std::unique_ptr<TempFile>> DiskBlobStore::DecodeTemp(
    TempFile& temp, int64_t content_size) {
  absl::StatusOr<std::unique_ptr<TempFile>> plain = NewTempFile();
  if (!plain.ok()) {
    return plain.status();
  }
  absl::StatusOr<int64_t> decoded =
      DecodeTempTo(temp, content_size, [&](absl::string_view piece) {
        return (*plain)->Append(piece);
      });
  if (!decoded.ok()) {
    return decoded.status();
  }
  if (*decoded != content_size) {
    return absl::InternalError(absl::StrCat("decode ", temp.path(), ": ",
                                            *decoded, " bytes, expected ",
                                            content_size));
  }
  return plain;
}

absl::StatusOr<int64_t> DiskBlobStore::DecodeTempTo(
    TempFile& temp, int64_t max_output,
    absl::FunctionRef<absl::Status(absl::string_view)> sink) {
  const std::string& path = temp.path();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoStatus(errno, absl::StrCat("open ", path));
  }
  absl::Cleanup closer = [fd] { close(fd); };
  ZstdDecompressor decompressor;
  std::string frames(1 << 20, '\0');
  int64_t decoded = 0;
  absl::Status written;  // The sink's error, if any.
  auto append = [&](absl::string_view piece) {
    decoded += static_cast<int64_t>(piece.size());
    written = sink(piece);
    return written;
  };
  for (;;) {
    absl::StatusOr<size_t> n =
        ReadSome(fd, frames.data(), frames.size(), fault(), path);
    if (!n.ok()) {
      return n.status();
    }
    if (*n == 0) {
      return decoded;
    }
    if (absl::Status s = decompressor.DecompressTo(
            absl::string_view(frames.data(), *n), max_output - decoded,
            kZstdPiece, append);
        !s.ok()) {
      return !written.ok() ? s
                           : absl::InternalError(absl::StrCat(
                                 "decode ", path, ": ", s.message()));
    }
  }
}

absl::StatusOr<std::unique_ptr<TempFile>> DiskBlobStore::NewTempFile() {
  return TempFile::Create(
      absl::StrFormat("%s/tmp/%016x-%d.tmp", options_.root, temp_prefix_,
                      temp_counter_.fetch_add(1)),
      &options_.fault_injector_for_test, options_.fsync);
}

int64_t DiskBlobStore::NextStampLocked() {
  last_stamp_ = std::max(absl::GetCurrentTimeNanos(), last_stamp_ + 1);
  return last_stamp_;
}

absl::Status DiskBlobStore::ReserveSpace(int64_t bytes,
                                         absl::string_view what) {
  return ReserveWith(what, [this, bytes]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return index_.Reserve(bytes);
  });
}

absl::Status DiskBlobStore::JoinWrite(const ItemKey& key, int64_t bytes,
                                      absl::string_view what) {
  return ReserveWith(what,
                     [this, &key, bytes]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
                       return index_.JoinWrite(key, bytes);
                     });
}

absl::Status DiskBlobStore::ReserveWith(
    absl::string_view what,
    absl::FunctionRef<absl::StatusOr<std::vector<LruIndex::Item>>()> reserve) {
  std::vector<LruIndex::Item> victims;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<std::vector<LruIndex::Item>> evicted = reserve();
    if (!evicted.ok()) {
      return absl::ResourceExhaustedError(
          absl::StrCat(what, ": ", evicted.status().message()));
    }
    victims = *std::move(evicted);
    for (const LruIndex::Item& v : victims) {
      ++unlinking_[v.key];
    }
    ForgetEntriesLocked(victims);
  }
  UnlinkVictims(victims);
  return absl::OkStatus();
}

void DiskBlobStore::ReleaseSpace(int64_t bytes) {
  if (bytes != 0) {
    absl::MutexLock lock(&mu_);
    index_.Release(bytes);
  }
}

void DiskBlobStore::UnlinkVictims(const std::vector<LruIndex::Item>& victims) {
  if (victims.empty()) {
    return;
  }
  std::vector<ItemKey> small;
  for (const LruIndex::Item& v : victims) {
    if (v.small) {
      small.push_back(v.key);
    } else {
      unlink(ItemPath(v).c_str());  // Open readers keep their file.
    }
  }
  if (!small.empty()) {
    {
      // A stamp written after the delete would bring back its metadata.
      absl::MutexLock lock(&mu_);
      for (const ItemKey& k : small) {
        while (refreshing_.contains(k)) {
          key_idle_.Wait(&mu_);
        }
      }
    }
    // Not synced: a delete lost in a crash brings back intact bytes, which
    // start-up trims to the budget again.
    small_->Delete(small).IgnoreError();
  }
  absl::MutexLock lock(&mu_);
  for (const LruIndex::Item& v : victims) {
    auto it = unlinking_.find(v.key);
    if (--it->second == 0) {
      unlinking_.erase(it);
      key_idle_.SignalAll();
    }
  }
}

absl::Status DiskBlobStore::CommitTemp(const ItemKey& key, TempFile& temp,
                                       int64_t size, int64_t reserved,
                                       bool replace,
                                       const absl::string_view* entry_value,
                                       int64_t zstd_content) {
  std::optional<LruIndex::Item> old;
  absl::StatusOr<int64_t> stamp = ClaimForCommit(key, size, replace, &reserved,
                                                 &old, zstd_content);
  if (!stamp.ok() || *stamp == 0) {
    return stamp.status();
  }
  // Durability: the file was fsynced before this (unless options_.fsync is
  // false), so whatever name it has after a crash, its content is whole. Its
  // directory is not fsynced per item (that was a second fsync per write):
  // after an OS crash or power loss a rename not yet on disk only loses the
  // item, which is a cache miss, never a corrupt entry; start-up rebuilds the
  // index from what is on disk, and ActionCache::Get() answers NOT_FOUND for
  // an entry whose outputs are gone. The directories written to are fsynced
  // when the store closes (a clean shutdown loses nothing), and file systems
  // commit their metadata on their own within seconds (ext4: 5 s).
  uint64_t fingerprint = 0;
  const std::string path = PathOf(key, zstd_content >= 0, zstd_content);
  absl::Status s = temp.Publish(path, *stamp, &fingerprint);
  if (s.ok() && options_.fsync) {
    dirty_dirs_[static_cast<int>(key.kind) * kShards + key.id[0]].store(
        true, std::memory_order_relaxed);
  }
  if (s.ok() && old.has_value() && old->small) {
    // The older version was small (an entry that grew). Should this delete
    // be lost in a crash, start-up keeps the newer of the two.
    small_->Delete({key}).IgnoreError();
  } else if (s.ok() && old.has_value() && ItemPath(*old) != path) {
    unlink(ItemPath(*old).c_str());  // Held in the other form of file.
  }
  EndCommit(key, s, size, *stamp, reserved, /*small=*/false, fingerprint,
            entry_value, zstd_content);
  return s;
}

absl::Status DiskBlobStore::CommitSmall(const ItemKey& key,
                                        absl::string_view value,
                                        int64_t reserved, bool replace,
                                        const absl::string_view* entry_value,
                                        PutCallback* then) {
  const int64_t size = static_cast<int64_t>(value.size());
  std::optional<LruIndex::Item> old;
  absl::StatusOr<int64_t> stamp =
      ClaimForCommit(key, size, replace, &reserved, &old);
  if (!stamp.ok() || *stamp == 0) {
    return Reply(stamp.status(), then);
  }
  // Durability: Put() returns once the item is in the database's log (and
  // the log synced, with options_.fsync), sharing that write and sync with
  // the concurrent commits (group commit). With `then` the sync is left to
  // the database's syncing thread, which syncs once for all waiting.
  absl::Status s;
  if (int err = Inject(fault(), "write"); err != 0) {
    s = ErrnoStatus(err, "store small item");
  } else if (then != nullptr) {
    const SmallItem item{key, *stamp, value};
    s = small_->PutManyUnsynced({&item, 1});
  } else {
    s = small_->Put(key, *stamp, value);
  }
  const bool old_file = s.ok() && old.has_value() && !old->small;
  std::string old_path = old_file ? ItemPath(*old) : std::string();
  if (old_file && then == nullptr) {
    // The older version was a file: remove it now that the new one is
    // durable (after a crash in between, start-up keeps the newer).
    unlink(old_path.c_str());
  }
  EndCommit(key, s, size, *stamp, reserved, /*small=*/true, 0, entry_value);
  if (then == nullptr || !s.ok()) {
    return Reply(s, then);
  }
  small_->WhenDurable([old_file, old_path = std::move(old_path),
                       done = std::move(*then)](absl::Status synced) mutable {
    if (old_file && synced.ok()) {
      unlink(old_path.c_str());  // As above, once durable.
    }
    std::move(done)(std::move(synced));
  });
  return absl::OkStatus();
}

void DiskBlobStore::EndCommit(const ItemKey& key, const absl::Status& s,
                              int64_t size, int64_t stamp, int64_t reserved,
                              bool small, uint64_t fingerprint,
                              const absl::string_view* entry_value,
                              int64_t zstd_content) {
  absl::MutexLock lock(&mu_);
  EndCommitLocked(key, s, size, stamp, reserved, small, fingerprint,
                  entry_value, zstd_content);
}

void DiskBlobStore::EndCommitLocked(const ItemKey& key, const absl::Status& s,
                                    int64_t size, int64_t stamp,
                                    int64_t reserved, bool small,
                                    uint64_t fingerprint,
                                    const absl::string_view* entry_value,
                                    int64_t zstd_content) {
  committing_.erase(key);
  key_idle_.SignalAll();
  index_.Release(reserved);
  if (s.ok()) {
    index_.Insert(key, size, stamp, small, WriteOwnerScope::Current());
    LruIndex::Item* item = index_.Find(key);
    // Its bytes were hashed on the way in: this process trusts the file
    // while its fingerprint is unchanged (small items are always hashed).
    item->verified = fingerprint;
    if (zstd_content >= 0) {
      item->zstd = true;
      item->content_size = zstd_content;
    }
    if (entry_value != nullptr) {
      ForgetEntryLocked(key);
      entries_.Put(key, *entry_value);
    }
    if (!small && key.kind == ItemKind::kCas) {
      QueueForRestLocked(key, zstd_content >= 0 ? zstd_content : size);
    }
  }
}

absl::StatusOr<int64_t> DiskBlobStore::ClaimForCommit(
    const ItemKey& key, int64_t size, bool replace, int64_t* reserved,
    std::optional<LruIndex::Item>* old, int64_t content_size) {
  const int64_t hint = content_size < 0 ? size : content_size;
  if (absl::Status s = SettleForLoad({&key, 1}, {&hint, 1}, true); !s.ok()) {
    ReleaseSpace(std::exchange(*reserved, 0));
    return s;
  }
  std::vector<LruIndex::Item> victims;
  absl::StatusOr<int64_t> stamp;
  {
    absl::MutexLock lock(&mu_);
    while (!KeyIdleLocked(key)) {
      key_idle_.Wait(&mu_);
    }
    stamp = ClaimLocked(key, size, replace, reserved, &victims, old,
                        content_size);
  }
  UnlinkVictims(victims);
  return stamp;
}

absl::StatusOr<int64_t> DiskBlobStore::ClaimLocked(
    const ItemKey& key, int64_t size, bool replace, int64_t* reserved,
    std::vector<LruIndex::Item>* victims, std::optional<LruIndex::Item>* old,
    int64_t content_size) {
  if (!replace && index_.Peek(key) == (content_size < 0 ? size : content_size)) {
    index_.Touch(key);
    index_.Release(std::exchange(*reserved, 0));
    return 0;  // Stored meanwhile by another writer.
  }
  if (*reserved == 0) {  // The shared reservation went to a failed commit.
    absl::StatusOr<std::vector<LruIndex::Item>> evicted = index_.Reserve(size);
    if (!evicted.ok()) {
      return absl::ResourceExhaustedError(evicted.status().message());
    }
    *victims = *std::move(evicted);
    for (const LruIndex::Item& v : *victims) {
      ++unlinking_[v.key];
    }
    ForgetEntriesLocked(*victims);
    *reserved = size;
  }
  // An older version leaves the index first, so that it cannot be evicted
  // (and its path unlinked) while the new file is being renamed over it.
  if (const LruIndex::Item* held = index_.Find(key); held != nullptr) {
    *old = *held;
  }
  index_.Erase(key);
  ForgetEntryLocked(key);
  committing_.insert(key);
  return NextStampLocked();
}

void DiskBlobStore::RemoveCorrupt(const ItemKey& key, int fd,
                                  const std::string& path) {
  struct stat open_st, path_st;
  if (fstat(fd, &open_st) != 0 || stat(path.c_str(), &path_st) != 0 ||
      open_st.st_ino != path_st.st_ino || open_st.st_dev != path_st.st_dev) {
    return;  // Already removed or replaced.
  }
  LruIndex::Item victim;
  {
    absl::MutexLock lock(&mu_);
    const LruIndex::Item* item = index_.Find(key);
    if (committing_.contains(key) || item == nullptr || item->small ||
        ItemPath(*item) != path) {
      return;  // Being replaced, gone, or held elsewhere.
    }
    victim = *item;
    index_.Erase(key);
    ForgetEntryLocked(key);
    ++corruptions_;
    ++unlinking_[key];
  }
  UnlinkVictims({victim});
}

void DiskBlobStore::DropSmall(const ItemKey& key, int64_t stamp, bool corrupt) {
  {
    absl::MutexLock lock(&mu_);
    const LruIndex::Item* item = index_.Find(key);
    if (item == nullptr || !item->small || item->stamp != stamp ||
        !KeyIdleLocked(key)) {
      return;  // Replaced, refreshed or gone meanwhile: leave it be.
    }
    index_.Erase(key);
    ForgetEntryLocked(key);
    if (!corrupt) {
      return;  // Its records are gone already.
    }
    ++corruptions_;
    ++unlinking_[key];
  }
  UnlinkVictims({LruIndex::Item{.key = key, .small = true}});
}

absl::StatusOr<std::string> DiskBlobStore::ReadSmall(
    const ItemKey& key, absl::string_view what, int64_t stamp,
    const std::function<bool(absl::string_view)>& intact) {
  absl::StatusOr<std::string> value;
  if (int err = Inject(fault(), "read"); err != 0) {
    return ErrnoStatus(err, absl::StrCat("read ", what));
  }
  value = small_->Get(key);
  if (value.status().code() == absl::StatusCode::kNotFound) {
    // Evicted or replaced since the lookup.
    DropSmall(key, stamp, /*corrupt=*/false);
    return absl::NotFoundError(absl::StrCat(what, " not found"));
  }
  if (value.ok()) {
    CountReadHash();
  }
  if (value.status().code() == absl::StatusCode::kDataLoss ||
      (value.ok() && !intact(*value))) {
    DropSmall(key, stamp, /*corrupt=*/true);
    return absl::DataLossError(
        absl::StrCat(what, ": stored bytes are corrupt; removed"));
  }
  if (!value.ok()) {
    return absl::Status(value.status().code(),
                        absl::StrCat(what, ": ", value.status().message()));
  }
  return value;
}

void DiskBlobStore::MarkVerified(const ItemKey& key, uint64_t fingerprint) {
  absl::MutexLock lock(&mu_);
  // A newer file of `key` may be in place by now: its fingerprint differs
  // (another inode, a later mtime), so recording this one only costs that
  // file a hash on its next read.
  if (LruIndex::Item* item = index_.Find(key); item != nullptr) {
    item->verified = fingerprint;
  }
}

std::optional<DiskBlobStore::Found> DiskBlobStore::TouchLocked(
    const ItemKey& key, int64_t want_size, std::vector<Refresh>* refreshes,
    int64_t now_ns) {
  LruIndex::Item* item = index_.FindAndTouch(key, want_size);
  if (item == nullptr) {
    return std::nullopt;
  }
  if (now_ns - item->stamp >=
      absl::ToInt64Nanoseconds(options_.touch_interval)) {
    item->stamp = NextStampLocked();
    refreshes->push_back(Refresh{key, item->stamp, item->small, item->size,
                                 item->zstd, item->content_size});
    if (item->small) {
      ++refreshing_[key];
    }
  }
  return Found{item->size,         item->small, item->zstd,
               item->content_size, item->stamp, item->verified};
}

void DiskBlobStore::RefreshMtimes(const std::vector<Refresh>& refreshes) {
  bool any_small = false;
  for (const Refresh& r : refreshes) {
    any_small = any_small || r.small;
    if (Inject(fault(), "touch") != 0) {
      continue;
    }
    if (r.small) {
      small_->SetStamp(r.key, r.size, r.stamp).IgnoreError();  // Best effort.
      continue;
    }
    struct timespec times[2];
    times[0].tv_sec = times[1].tv_sec = r.stamp / 1000000000;
    times[0].tv_nsec = times[1].tv_nsec = r.stamp % 1000000000;
    utimensat(AT_FDCWD, PathOf(r.key, r.zstd, r.content_size).c_str(), times,
              0);  // Best effort.
  }
  if (!any_small) {
    return;
  }
  absl::MutexLock lock(&mu_);
  for (const Refresh& r : refreshes) {
    if (r.small) {
      auto it = refreshing_.find(r.key);
      if (--it->second == 0) {
        refreshing_.erase(it);
      }
    }
  }
  key_idle_.SignalAll();
}

std::optional<DiskBlobStore::Found> DiskBlobStore::TouchItem(
    const ItemKey& key, int64_t want_size) {
  // A lookup that failed (an I/O error) answers a miss.
  SettleForLoad({&key, 1}, {&want_size, 1}, /*for_write=*/false).IgnoreError();
  std::vector<Refresh> refreshes;
  std::optional<Found> found;
  {
    absl::MutexLock lock(&mu_);
    found =
        TouchLocked(key, want_size, &refreshes, absl::GetCurrentTimeNanos());
  }
  RefreshMtimes(refreshes);
  return found;
}

absl::StatusOr<int> DiskBlobStore::OpenItem(const ItemKey& key,
                                            const Found& found,
                                            absl::string_view what) {
  std::string path = PathOf(key, found.zstd, found.content_size);
  int err = Inject(fault(), "open");
  int fd = err != 0 ? -1 : open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    return fd;
  }
  err = err != 0 ? err : errno;
  if (err != ENOENT) {
    return ErrnoStatus(err, absl::StrCat("open ", what));
  }
  {
    // Evicted since the lookup, or deleted behind our back, or re-encoded
    // (then the index names the new file: the caller looks it up again).
    absl::MutexLock lock(&mu_);
    const LruIndex::Item* item = index_.Find(key);
    if (item != nullptr && !item->small && ItemPath(*item) != path) {
      return MovedError(what);
    }
    if (KeyIdleLocked(key) && item != nullptr && !item->small &&
        ItemPath(*item) == path) {
      index_.Erase(key);
      ForgetEntryLocked(key);
    }
  }
  return absl::NotFoundError(absl::StrCat(what, " not found"));
}

absl::StatusOr<std::string> DiskBlobStore::ReadChecked(
    const ItemKey& key, const Found& found, absl::string_view what,
    const std::function<bool(absl::string_view)>& intact) {
  absl::StatusOr<int> fd = OpenItem(key, found, what);
  if (!fd.ok()) {
    return fd.status();
  }
  absl::Cleanup closer = [&fd] { close(*fd); };
  // The size comes from the open file, not the index: an entry may have
  // been replaced by one of another size since the lookup.
  struct stat st;
  if (fstat(*fd, &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("stat ", what));
  }
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    absl::StatusOr<size_t> n =
        ReadSome(*fd, data.data() + got, data.size() - got, fault(), what);
    if (!n.ok()) {
      return n.status();
    }
    if (*n == 0) {
      break;
    }
    got += *n;
  }
  const uint64_t fingerprint = Fingerprint(st);
  if (got == data.size() && fingerprint == found.verified) {
    // Unchanged since it was found intact (same size then and now, so no
    // need to look for a grown tail either).
    return data;
  }
  char extra;
  absl::StatusOr<size_t> more = ReadSome(*fd, &extra, 1, fault(), what);
  if (!more.ok()) {
    return more.status();
  }
  const bool whole = got == data.size() && *more == 0;
  if (whole) {
    CountReadHash();
  }
  if (!whole || !intact(data)) {
    RemoveCorrupt(key, *fd, PathOf(key, found.zstd, found.content_size));
    return absl::DataLossError(
        absl::StrCat(what, ": stored bytes are corrupt; removed"));
  }
  MarkVerified(key, fingerprint);
  return data;
}

absl::Status DiskBlobStore::StoreWhole(
    const ItemKey& key, absl::Span<const absl::string_view> parts, bool replace,
    absl::string_view what, const absl::string_view* entry_value,
    int64_t zstd_content) {
  int64_t size = 0;
  for (absl::string_view p : parts) {
    size += static_cast<int64_t>(p.size());
  }
  if (absl::Status s = ReserveSpace(size, what); !s.ok()) {
    return s;
  }
  absl::Cleanup release = [this, size] { ReleaseSpace(size); };
  absl::StatusOr<std::unique_ptr<TempFile>> temp = NewTempFile();
  if (!temp.ok()) {
    return temp.status();
  }
  for (absl::string_view p : parts) {
    if (absl::Status s = (*temp)->Append(p); !s.ok()) {
      return s;
    }
  }
  if (options_.fsync) {
    if (absl::Status s = (*temp)->Sync(); !s.ok()) {
      return s;
    }
  }
  std::move(release).Cancel();
  return CommitTemp(key, **temp, size, size, replace, entry_value,
                    zstd_content);
}

namespace {
// The index keys of `digests`, in order (FindMissing and TryFindMissing).
std::vector<ItemKey> CasKeys(absl::Span<const Digest> digests) {
  std::vector<ItemKey> keys;
  keys.reserve(digests.size());
  for (const Digest& d : digests) {
    keys.push_back(CasKey(d));
  }
  return keys;
}
}  // namespace

std::vector<Digest> DiskBlobStore::FindMissing(
    absl::Span<const Digest> digests) {
  const std::vector<ItemKey> keys = CasKeys(digests);
  if (loading_.load(std::memory_order_acquire)) {
    std::vector<int64_t> sizes;
    for (const Digest& d : digests) {
      sizes.push_back(d.size_bytes());
    }
    // A lookup that failed (an I/O error) answers missing.
    SettleForLoad(keys, sizes, /*for_write=*/false).IgnoreError();
  }
  std::vector<Digest> missing;
  std::vector<Refresh> refreshes;
  {
    absl::MutexLock lock(&mu_);  // Once for the whole batch.
    const int64_t now = absl::GetCurrentTimeNanos();
    for (size_t i = 0; i < digests.size(); ++i) {
      if (!digests[i].IsEmpty() &&
          !TouchLocked(keys[i], digests[i].size_bytes(), &refreshes, now)) {
        missing.push_back(digests[i]);
      }
    }
  }
  RefreshMtimes(refreshes);
  return missing;
}

std::optional<std::vector<Digest>> DiskBlobStore::TryFindMissing(
    absl::Span<const Digest> digests) {
  if (loading_.load(std::memory_order_acquire)) {
    return std::nullopt;  // Lookups may need the disk: FindMissing().
  }
  const std::vector<ItemKey> keys = CasKeys(digests);
  std::vector<Digest> missing;
  const int64_t now = absl::GetCurrentTimeNanos();
  const int64_t interval = absl::ToInt64Nanoseconds(options_.touch_interval);
  // mu_ is never held across I/O, so taking it here does not wait on disk.
  absl::MutexLock lock(&mu_);
  // One lookup per digest. Gives up if a present blob's access stamp is due
  // for a refresh (I/O): FindMissing() on a blocking thread does it (and
  // touches again the blobs touched here, which changes nothing).
  for (size_t i = 0; i < digests.size(); ++i) {
    if (digests[i].IsEmpty()) {
      continue;
    }
    const LruIndex::Item* item =
        index_.FindAndTouch(keys[i], digests[i].size_bytes());
    if (item == nullptr) {
      missing.push_back(digests[i]);
    } else if (now - item->stamp >= interval) {
      return std::nullopt;
    }
  }
  return missing;
}

std::optional<bool> DiskBlobStore::TryHasEntry(absl::string_view key) {
  absl::StatusOr<ItemKey> k = ItemKey::FromHex(ItemKind::kAc, key);
  if (!k.ok() || loading_.load(std::memory_order_acquire)) {
    return std::nullopt;  // While loading, lookups may need the disk.
  }
  absl::MutexLock lock(&mu_);
  return index_.Peek(*k).has_value();
}

std::optional<absl::StatusOr<std::string>> DiskBlobStore::TryGetEntry(
    absl::string_view key) {
  absl::StatusOr<ItemKey> k = ItemKey::FromHex(ItemKind::kAc, key);
  if (!k.ok() || loading_.load(std::memory_order_acquire)) {
    return std::nullopt;  // While loading, lookups may need the disk.
  }
  const int64_t now = absl::GetCurrentTimeNanos();
  std::shared_ptr<const std::string> value;
  {
    absl::MutexLock lock(&mu_);
    // One lookup; when this gives up, GetEntry() touches it again.
    const LruIndex::Item* item = index_.FindAndTouch(*k);
    if (item == nullptr) {  // A miss: kept cheap, callers name the key.
      return absl::StatusOr<std::string>(
          absl::NotFoundError("entry not found"));
    }
    value = entries_.Find(*k);
    // Not in memory, or its mtime is due for a refresh (I/O): GetEntry().
    if (value == nullptr || now - item->stamp >= absl::ToInt64Nanoseconds(
                                                     options_.touch_interval)) {
      return std::nullopt;
    }
  }
  return absl::StatusOr<std::string>(*value);
}

bool DiskBlobStore::Contains(const Digest& digest) {
  return digest.IsEmpty() ||
         TouchItem(CasKey(digest), digest.size_bytes()).has_value();
}

absl::StatusOr<std::string> DiskBlobStore::Read(const Digest& digest) {
  if (digest.IsEmpty()) {
    return std::string();
  }
  ItemKey key = CasKey(digest);
  absl::StatusOr<std::string> data = MovedError("");
  for (int i = 0; i < kLookups && Moved(data.status()); ++i) {
    std::optional<Found> found = TouchItem(key, digest.size_bytes());
    if (!found.has_value()) {
      return NotFound(digest);
    }
    data = ReadFound(digest, *found, /*as_stored=*/false);
  }
  return Moved(data.status()) ? NotFound(digest) : data;
}

absl::StatusOr<std::string> DiskBlobStore::ReadFound(const Digest& digest,
                                                     const Found& found,
                                                     bool as_stored) {
  if (found.zstd) {
    return ReadZstd(digest, found, as_stored);
  }
  auto intact = [&digest](absl::string_view data) {
    return Digest::OfData(data) == digest;
  };
  std::string what = absl::StrCat("cas blob ", digest.ToString());
  const ItemKey key = CasKey(digest);
  return found.small ? ReadSmall(key, what, found.stamp, intact)
                     : ReadChecked(key, found, what, intact);
}

absl::StatusOr<std::string> DiskBlobStore::ReadZstd(const Digest& digest,
                                                    const Found& found,
                                                    bool as_stored) {
  std::optional<std::string> plain;
  auto intact = [&digest, &plain](absl::string_view frames) {
    absl::StatusOr<std::string> decoded =
        ZstdDecompressAll(frames, digest.size_bytes());
    if (!decoded.ok() || Digest::OfData(*decoded) != digest) {
      return false;
    }
    plain = *std::move(decoded);
    return true;
  };
  absl::StatusOr<std::string> frames =
      ReadChecked(CasKey(digest), found,
                  absl::StrCat("cas blob ", digest.ToString()), intact);
  if (!frames.ok() || as_stored) {
    return frames;
  }
  if (plain.has_value()) {
    return *std::move(plain);
  }
  // Trusted (unchanged since verified): decompressed, not hashed.
  absl::StatusOr<std::string> decoded =
      ZstdDecompressAll(*frames, digest.size_bytes());
  if (!decoded.ok() ||
      static_cast<int64_t>(decoded->size()) != digest.size_bytes()) {
    return absl::DataLossError(absl::StrCat("cas blob ", digest.ToString(),
                                            ": stored frames do not decode"));
  }
  return decoded;
}

absl::StatusOr<StoredBlob> DiskBlobStore::ReadAsStored(const Digest& digest) {
  if (digest.IsEmpty()) {
    return StoredBlob{};
  }
  absl::StatusOr<std::string> data = MovedError("");
  std::optional<Found> found;
  for (int i = 0; i < kLookups && Moved(data.status()); ++i) {
    found = TouchItem(CasKey(digest), digest.size_bytes());
    if (!found.has_value()) {
      return NotFound(digest);
    }
    data = ReadFound(digest, *found, /*as_stored=*/true);
  }
  if (Moved(data.status())) {
    return NotFound(digest);
  }
  if (!data.ok()) {
    return data.status();
  }
  return StoredBlob{*std::move(data), found->zstd};
}

absl::StatusOr<StoredBlobReader> DiskBlobStore::OpenReadAsStored(
    const Digest& digest) {
  if (digest.IsEmpty()) {
    return StoredBlobReader{std::make_unique<EmptyBlobReader>(), false};
  }
  absl::StatusOr<std::unique_ptr<BlobReader>> reader = MovedError("");
  std::optional<Found> found;
  for (int i = 0; i < kLookups && Moved(reader.status()); ++i) {
    found = TouchItem(CasKey(digest), digest.size_bytes());
    if (!found.has_value()) {
      return NotFound(digest);
    }
    reader = OpenFound(digest, *found, 0, /*as_stored=*/true);
  }
  if (Moved(reader.status())) {
    return NotFound(digest);
  }
  if (!reader.ok()) {
    return reader.status();
  }
  return StoredBlobReader{*std::move(reader), found->zstd};
}

absl::StatusOr<std::unique_ptr<BlobReader>> DiskBlobStore::OpenFileReader(
    const Digest& digest, const Found& found, int64_t offset, bool as_stored) {
  const ItemKey key = CasKey(digest);
  absl::StatusOr<int> fd =
      OpenItem(key, found, absl::StrCat("cas blob ", digest.ToString()));
  if (!fd.ok()) {
    return fd.status();
  }
  std::string path = PathOf(key, found.zstd, found.content_size);
  std::unique_ptr<DiskFileReader> reader;
  if (found.zstd) {
    reader = std::make_unique<DiskZstdReader>(
        this, key, digest, *fd, std::move(path), found.verified, as_stored);
  } else {
    reader = std::make_unique<DiskBlobReader>(this, key, digest, *fd,
                                              std::move(path), found.verified);
  }
  if (absl::Status s = reader->Start(offset); !s.ok()) {
    return s;
  }
  return reader;
}

absl::StatusOr<std::unique_ptr<BlobReader>> DiskBlobStore::OpenRead(
    const Digest& digest, int64_t offset) {
  if (offset < 0 || (digest.IsEmpty() && offset > 0)) {
    return absl::OutOfRangeError(absl::StrCat("cas blob ", digest.ToString(),
                                              ": read offset ", offset,
                                              " out of range"));
  }
  if (digest.IsEmpty()) {
    return std::make_unique<EmptyBlobReader>();
  }
  ItemKey key = CasKey(digest);
  absl::StatusOr<std::unique_ptr<BlobReader>> reader = MovedError("");
  for (int i = 0; i < kLookups && Moved(reader.status()); ++i) {
    std::optional<Found> found = TouchItem(key, digest.size_bytes());
    if (!found.has_value()) {
      return NotFound(digest);
    }
    if (offset > digest.size_bytes()) {
      return absl::OutOfRangeError(absl::StrCat("cas blob ", digest.ToString(),
                                                ": read offset ", offset,
                                                " past the end"));
    }
    reader = OpenFound(digest, *found, offset, /*as_stored=*/false);
  }
  return Moved(reader.status()) ? NotFound(digest) : std::move(reader);
}

absl::StatusOr<std::unique_ptr<BlobReader>> DiskBlobStore::OpenFound(
    const Digest& digest, const Found& found, int64_t offset, bool as_stored) {
  if (found.small) {
    // Small: read and verified whole, then served from memory.
    absl::StatusOr<std::string> data = ReadFound(digest, found, false);
    if (!data.ok()) {
      return data.status();
    }
    return std::make_unique<StringBlobReader>(*std::move(data), offset);
  }
  return OpenFileReader(digest, found, offset, as_stored && found.zstd);
}

absl::Status DiskBlobStore::Write(const Digest& digest,
                                  absl::string_view data) {
  if (absl::Status s = CheckData(digest, data); !s.ok()) {
    return s;
  }
  return WriteVerified(digest, data);
}

absl::Status DiskBlobStore::WriteVerified(const Digest& digest,
                                          absl::string_view data,
                                          absl::string_view zstd) {
  if (Contains(digest)) {
    return absl::OkStatus();
  }
  if (!zstd.empty() &&
      KeepZstd(static_cast<int64_t>(zstd.size()), digest.size_bytes())) {
    absl::string_view parts[] = {zstd};
    return StoreWhole(CasKey(digest), parts, /*replace=*/false,
                      absl::StrCat("cas blob ", digest.ToString()), nullptr,
                      digest.size_bytes());
  }
  if (IsSmall(digest.size_bytes())) {
    if (absl::Status s = ReserveSpace(
            digest.size_bytes(), absl::StrCat("cas blob ", digest.ToString()));
        !s.ok()) {
      return s;
    }
    return CommitSmall(CasKey(digest), data, digest.size_bytes(),
                       /*replace=*/false);
  }
  absl::string_view parts[] = {data};
  return StoreWhole(CasKey(digest), parts, /*replace=*/false,
                    absl::StrCat("cas blob ", digest.ToString()));
}

std::vector<absl::Status> DiskBlobStore::WriteBlobs(
    absl::Span<const BlobWrite> blobs) {
  std::vector<absl::Status> out(blobs.size());
  std::vector<size_t> small;                      // For the one batch.
  absl::flat_hash_map<ItemKey, size_t> first;     // Its keys.
  std::vector<std::pair<size_t, size_t>> copies;  // (i, first i of digest).
  for (size_t i = 0; i < blobs.size(); ++i) {
    const Digest& digest = blobs[i].digest;
    if (out[i] = CheckData(digest, blobs[i].data);
        !out[i].ok() || digest.IsEmpty()) {
      continue;
    }
    if (!IsSmall(digest.size_bytes())) {
      // Hashed just above.
      out[i] = WriteVerified(digest, blobs[i].data, blobs[i].zstd);
      continue;
    }
    if (auto [it, added] = first.emplace(CasKey(digest), i); !added) {
      copies.emplace_back(i, it->second);
      continue;
    }
    if (Contains(digest)) {
      continue;
    }
    out[i] = ReserveSpace(digest.size_bytes(),
                          absl::StrCat("cas blob ", digest.ToString()));
    if (out[i].ok()) {
      small.push_back(i);
    }
  }
  CommitSmallBatch(blobs, small, &out);
  for (const auto& [i, j] : copies) {
    out[i] = out[j];
  }
  return out;
}

void DiskBlobStore::CommitSmallBatch(absl::Span<const BlobWrite> blobs,
                                     absl::Span<const size_t> which,
                                     std::vector<absl::Status>* out) {
  struct Claimed {
    size_t i;
    std::optional<LruIndex::Item> old;
  };
  std::vector<size_t> settled;
  for (size_t i : which) {
    const ItemKey key = CasKey(blobs[i].digest);
    const int64_t size = blobs[i].digest.size_bytes();
    if (absl::Status s = SettleForLoad({&key, 1}, {&size, 1}, true); !s.ok()) {
      (*out)[i] = s;
      ReleaseSpace(size);
      continue;
    }
    settled.push_back(i);
  }
  std::vector<Claimed> claimed;
  std::vector<SmallItem> items;
  std::vector<size_t> busy;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i : settled) {
      const ItemKey key = CasKey(blobs[i].digest);
      int64_t reserved = blobs[i].digest.size_bytes();
      std::optional<LruIndex::Item> old;
      if (!KeyIdleLocked(key)) {
        busy.push_back(i);
        continue;
      }
      // Never fails or evicts: `reserved` is held. 0: stored meanwhile.
      absl::StatusOr<int64_t> stamp = ClaimLocked(
          key, reserved, /*replace=*/false, &reserved, nullptr, &old);
      if (!stamp.ok()) {
        (*out)[i] = stamp.status();
        index_.Release(reserved);
      } else if (*stamp != 0) {
        claimed.push_back({i, old});
        items.push_back({key, *stamp, blobs[i].data});
      }
    }
  }
  absl::Status s;
  if (!items.empty()) {  // One batch, one log write, one sync.
    const int err = Inject(fault(), "write");
    s = err != 0 ? ErrnoStatus(err, "store small items")
                 : small_->PutMany(items);
  }
  for (size_t k = 0; s.ok() && k < claimed.size(); ++k) {
    if (claimed[k].old.has_value() && !claimed[k].old->small) {
      unlink(ItemPath(*claimed[k].old).c_str());  // See CommitSmall().
    }
  }
  {
    absl::MutexLock lock(&mu_);
    for (size_t k = 0; k < claimed.size(); ++k) {
      const int64_t size = blobs[claimed[k].i].digest.size_bytes();
      EndCommitLocked(items[k].key, s, size, items[k].stamp, size,
                      /*small=*/true, 0, nullptr);
      (*out)[claimed[k].i] = s;
    }
  }
  for (size_t i : busy) {
    (*out)[i] = CommitSmall(CasKey(blobs[i].digest), blobs[i].data,
                            blobs[i].digest.size_bytes(), /*replace=*/false);
  }
}

absl::StatusOr<std::unique_ptr<BlobWriter>> DiskBlobStore::OpenWrite(
    const Digest& digest) {
  if (digest.IsEmpty()) {
    return std::make_unique<EmptyBlobWriter>();
  }
  ItemKey key = CasKey(digest);
  if (absl::Status s = JoinWrite(key, digest.size_bytes(),
                                 absl::StrCat("cas blob ", digest.ToString()));
      !s.ok()) {
    return s;
  }
  if (IsSmall(digest.size_bytes())) {
    return std::make_unique<SmallBlobWriter>(this, digest);
  }
  absl::StatusOr<std::unique_ptr<TempFile>> temp = NewTempFile();
  if (!temp.ok()) {
    LeaveWrite(key);
    return temp.status();
  }
  return std::make_unique<DiskBlobWriter>(this, digest, *std::move(temp));
}

absl::StatusOr<std::unique_ptr<BlobWriter>> DiskBlobStore::OpenWriteZstd(
    const Digest& digest) {
  if (!KeepZstd(0, digest.size_bytes())) {
    return BlobStore::OpenWriteZstd(digest);  // Stored plain.
  }
  absl::StatusOr<std::unique_ptr<TempFile>> temp = NewTempFile();
  if (!temp.ok()) {
    return temp.status();
  }
  return std::make_unique<DiskZstdWriter>(this, digest, *std::move(temp));
}

absl::StatusOr<std::string> DiskBlobStore::GetEntry(absl::string_view key) {
  absl::StatusOr<ItemKey> k = ItemKey::FromHex(ItemKind::kAc, key);
  if (!k.ok()) {
    return k.status();
  }
  std::string what = absl::StrCat("entry ", key);
  uint64_t generation;
  {
    absl::MutexLock lock(&mu_);
    generation = entry_generation_;
  }
  std::optional<Found> found = TouchItem(*k, -1);
  if (!found.has_value()) {
    return absl::NotFoundError(absl::StrCat(what, " not found"));
  }
  absl::StatusOr<std::string> file =
      found->small ? ReadSmall(*k, what, found->stamp, AcEntryIntact)
                   : ReadChecked(*k, *found, what, AcEntryIntact);
  if (!file.ok()) {
    return file.status();
  }
  std::string value = file->substr(kAcHeaderSize);
  {
    // Keep the verified bytes for TryGetEntry() unless an entry changed or
    // left meanwhile (then this file may no longer be the one in place).
    absl::MutexLock lock(&mu_);
    if (entry_generation_ == generation && index_.Find(*k) != nullptr) {
      entries_.Put(*k, value);
    }
  }
  return value;
}

absl::Status DiskBlobStore::PutEntryImpl(absl::string_view key,
                                         absl::string_view value,
                                         absl::Span<const Digest> /*blobs*/,
                                         PutCallback* then) {
  absl::StatusOr<ItemKey> k = ItemKey::FromHex(ItemKind::kAc, key);
  if (!k.ok()) {
    return Reply(k.status(), then);
  }
  // One buffer, one write(2): entries are small, a copy costs less than a
  // second system call.
  std::string file = AcHeader(value);
  file.append(value.data(), value.size());
  if (IsSmall(static_cast<int64_t>(file.size()))) {
    if (absl::Status s = ReserveSpace(static_cast<int64_t>(file.size()),
                                      absl::StrCat("entry ", key));
        !s.ok()) {
      return Reply(s, then);
    }
    return CommitSmall(*k, file, static_cast<int64_t>(file.size()),
                       /*replace=*/true, &value, then);
  }
  absl::string_view parts[] = {file};
  return Reply(StoreWhole(*k, parts, /*replace=*/true,
                          absl::StrCat("entry ", key), &value),
               then);
}

// Recompression at rest. Lock order: mu_ only, never across I/O; the
// replacement claims the key in committing_ (as a commit does) so no other
// commit, unlink or corruption removal of it runs meanwhile; eviction still
// may, and is detected when the index is updated.
namespace {

// Adds `nice` to the calling thread's nice value (Linux: per thread).
void LowerThisThread(int nice) {
  const id_t tid = static_cast<id_t>(gettid());
  errno = 0;
  const int current = getpriority(PRIO_PROCESS, tid);
  if ((current == -1 && errno != 0) || nice <= 0) {
    return;
  }
  setpriority(PRIO_PROCESS, tid, std::min(19, current + nice));
}

// The most bytes one blob may have to be recompressed (it is held in memory
// twice, plain and encoded).
constexpr int64_t kMaxRestBlobBytes = int64_t{256} << 20;

// The sample LooksIncompressible() reads: three pieces of this many bytes.
constexpr int64_t kRestSample = 128 << 10;

// Whether three disjoint 128 KiB samples of the plain file `path` of
// `size` bytes (start, middle, end) shrink by less than 2% at zstd's fastest
// level: then the blob is not worth reading, hashing and encoding at a high
// level (16 MiB of random bytes cost seconds at level 19). Read with pread
// into `sample` (room for 3 * kRestSample bytes), unverified: only a guess.
// False when the file cannot be read.
bool LooksIncompressible(const std::string& path, int64_t size,
                         ZstdCompressor& fast, char* sample) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  absl::Cleanup closer = [fd] { close(fd); };
  size_t have = 0;
  auto take = [&](int64_t offset, int64_t n) {
    ssize_t got = pread(fd, sample + have, static_cast<size_t>(n), offset);
    have += static_cast<size_t>(std::max<ssize_t>(got, 0));
  };
  if (size <= 3 * kRestSample) {
    take(0, size);
  } else {
    take(0, kRestSample);
    take(size / 2 - kRestSample / 2, kRestSample);
    take(size - kRestSample, kRestSample);
  }
  if (have == 0) {
    return false;
  }
  absl::StatusOr<size_t> frames =
      fast.CompressedSize(absl::string_view(sample, have));
  return frames.ok() && *frames > have - have / 50;
}

}  // namespace

void DiskBlobStore::QueueForRestLocked(const ItemKey& key,
                                       int64_t content_size) {
  if (!RecompressingLocked() || content_size < options_.rest_min_bytes ||
      content_size > kMaxRestBlobBytes) {
    return;
  }
  rest_queue_.push_back(key);
  if (static_cast<int64_t>(rest_queue_.size()) > options_.rest_queue_max) {
    rest_queue_.pop_front();
    ++rest_skipped_;
  }
  rest_wanted_.Signal();
}

void DiskBlobStore::RecompressLoop() {
  LowerThisThread(options_.rest_nice);
  RestProbe probe;
  probe.sample.reset(new char[3 * kRestSample]);
  for (;;) {
    ItemKey key;
    {
      absl::MutexLock lock(&mu_);
      rest_busy_ = false;
      if (rest_queue_.empty() && options_.rest_hook_for_test) {
        mu_.Unlock();
        options_.rest_hook_for_test("idle");
        mu_.Lock();
      }
      while (!stop_rest_ && rest_queue_.empty()) {
        rest_wanted_.Wait(&mu_);
      }
      if (stop_rest_) {
        return;
      }
      key = rest_queue_.back();  // The most recently written first.
      rest_queue_.pop_back();
      rest_busy_ = true;
    }
    RecompressOne(key, probe);
  }
}

std::optional<std::string> DiskBlobStore::ReadForRecompress(
    const ItemKey& key, const RestItem& as) {
  const std::string path = PathOf(key, as.zstd, as.content_size);
  int err = Inject(fault(), "rest_open");
  int fd = err != 0 ? -1 : open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return std::nullopt;  // Evicted meanwhile, or unreadable.
  }
  absl::Cleanup closer = [fd] { close(fd); };
  std::string file(static_cast<size_t>(as.size), '\0');
  size_t got = 0;
  while (got < file.size()) {
    absl::StatusOr<size_t> n =
        ReadSome(fd, file.data() + got, file.size() - got, fault(), path);
    if (!n.ok() || *n == 0) {
      return std::nullopt;
    }
    got += *n;
  }
  std::optional<std::string> plain;
  if (as.zstd) {
    absl::StatusOr<std::string> decoded =
        ZstdDecompressAll(file, as.content_size);
    if (!decoded.ok()) {
      return std::nullopt;
    }
    plain = *std::move(decoded);
  } else {
    plain = std::move(file);
  }
  Sha256Hasher hasher;
  hasher.Update(*plain);
  if (static_cast<int64_t>(plain->size()) != as.content_size ||
      hasher.FinishRaw() !=
          absl::string_view(reinterpret_cast<const char*>(key.id.data()),
                            key.id.size())) {
    return std::nullopt;  // Corrupt: a read will find it and remove it.
  }
  return plain;
}

void DiskBlobStore::RecompressOne(const ItemKey& key, RestProbe& probe) {
  RestItem as;
  {
    absl::MutexLock lock(&mu_);
    const LruIndex::Item* item = index_.Find(key);
    if (item == nullptr || item->small) {
      ++rest_skipped_;  // Evicted (or replaced by a small item) meanwhile.
      return;
    }
    as = RestItem{item->size, item->zstd, item->content_size};
  }
  bool done = false;
  absl::Cleanup count = [this, &done] {
    if (!done) {
      absl::MutexLock lock(&mu_);
      ++rest_skipped_;
    }
  };
  if (!as.zstd && LooksIncompressible(PathOf(key, false, as.content_size),
                                      as.size, probe.fast,
                                      probe.sample.get())) {
    return;  // Random or already compressed: not worth a slow encode.
  }
  std::optional<std::string> plain = ReadForRecompress(key, as);
  if (!plain.has_value()) {
    return;
  }
  Inject(fault(), "rest_full_encode");  // Counted by tests.
  std::string frames;
  ZstdCompressor compressor(options_.rest_zstd_level);
  if (!compressor.Compress(*plain, /*last=*/true, &frames).ok() ||
      static_cast<int64_t>(frames.size()) > as.size - as.size / 64 ||
      !KeepZstd(static_cast<int64_t>(frames.size()), as.content_size)) {
    return;  // Not worth a new file.
  }
  if (Inject(fault(), "rest_encode") != 0) {
    frames[frames.size() / 2] ^= 0x55;  // A broken encoder, for tests.
  }
  // Nothing unverified is kept: the new frames must decode to the blob.
  absl::StatusOr<std::string> check =
      ZstdDecompressAll(frames, as.content_size);
  if (!check.ok() || *check != *plain) {
    return;
  }
  check = std::string();
  plain = std::nullopt;
  absl::StatusOr<std::unique_ptr<TempFile>> temp = NewTempFile();
  if (!temp.ok() || !(*temp)->Append(frames).ok() ||
      (options_.fsync && !(*temp)->Sync().ok())) {
    return;
  }
  done = ReplaceEncoding(key, as, **temp, static_cast<int64_t>(frames.size()));
}

bool DiskBlobStore::ReplaceEncoding(const ItemKey& key, const RestItem& as,
                                    TempFile& temp, int64_t frames) {
  auto same = [&as](const LruIndex::Item* item) {
    return item != nullptr && !item->small && item->zstd == as.zstd &&
           item->size == as.size;
  };
  int64_t stamp = 0;
  {
    absl::MutexLock lock(&mu_);
    while (!KeyIdleLocked(key)) {
      key_idle_.Wait(&mu_);
    }
    const LruIndex::Item* item = index_.Find(key);
    if (!same(item)) {
      return false;
    }
    stamp = item->stamp;  // The item keeps its place in the access order.
    committing_.insert(key);
  }
  absl::Cleanup release = [this, &key] {
    absl::MutexLock lock(&mu_);
    committing_.erase(key);
    key_idle_.SignalAll();
  };
  const std::string old_path = PathOf(key, as.zstd, as.content_size);
  const std::string path = PathOf(key, /*zstd=*/true, as.content_size);
  uint64_t fingerprint = 0;
  if (!temp.Publish(path, stamp, &fingerprint).ok()) {
    return false;
  }
  if (options_.fsync) {
    dirty_dirs_[static_cast<int>(key.kind) * kShards + key.id[0]].store(
        true, std::memory_order_relaxed);
  }
  if (Inject(fault(), "rest_crash") != 0) {
    return false;  // As if the process died here (tests).
  }
  bool kept = false;
  {
    absl::MutexLock lock(&mu_);
    LruIndex::Item* item = index_.Find(key);
    kept = same(item);
    if (kept) {
      index_.Resize(key, frames);
      item->zstd = true;
      item->content_size = as.content_size;
      item->verified = fingerprint;  // Hashed above, before the rename.
      ++recompressed_;
      rest_saved_ += as.size - frames;
    }
  }
  if (!kept) {
    // Evicted while the new file was renamed in (its unlink took the old
    // name, or this one before the rename): nothing may stay unindexed.
    unlink(path.c_str());
  } else if (old_path != path) {
    // A read that looked up the plain file and opens it now finds the index
    // naming the new one and looks again (MovedError()).
    unlink(old_path.c_str());
  }
  return kept;
}

StoreStats DiskBlobStore::Stats() {
  absl::MutexLock lock(&mu_);
  StoreStats s = index_.Stats();
  s.corruptions = corruptions_;
  s.read_hashes = read_hashes_.load(std::memory_order_relaxed);
  s.index_load_seconds = load_seconds_;
  s.index_loading = loading_.load(std::memory_order_relaxed);
  s.recompressed_blobs = recompressed_;
  s.recompressed_saved_bytes = rest_saved_;
  s.recompress_skipped = rest_skipped_;
  s.recompress_pending =
      static_cast<int64_t>(rest_queue_.size()) + (rest_busy_ ? 1 : 0);
  return s;
}

absl::Status DiskBlobStore::CreateLayout() {
  std::error_code ec;
  std::filesystem::create_directories(options_.root, ec);
  if (ec) {
    return ErrnoStatus(ec.value(), absl::StrCat("create ", options_.root));
  }
  for (const char* d : {"/cas", "/ac", "/tmp"}) {
    std::string path = options_.root + d;
    if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoStatus(errno, absl::StrCat("create ", path));
    }
  }
  return absl::OkStatus();
}

absl::Status DiskBlobStore::ScanShard(ItemKind kind, int shard,
                                      std::vector<LoadedItem>* out) {
  std::string dir =
      absl::StrFormat("%s/%s/%02x", options_.root,
                      kind == ItemKind::kCas ? "cas" : "ac", shard);
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return errno == ENOENT ? absl::OkStatus()  // Shard never used.
                           : ErrnoStatus(errno, absl::StrCat("scan ", dir));
  }
  absl::Cleanup closer = [d] { closedir(d); };
  std::string prefix = absl::StrFormat("%02x", shard);
  while (struct dirent* e = readdir(d)) {
    absl::string_view name = e->d_name;
    // <hash>, or for a CAS blob held as zstd frames <hash>.<size>.zst.
    absl::string_view hex = name.substr(0, 64);
    absl::string_view rest = name.substr(hex.size());
    int64_t content_size = -1;
    const bool zstd = kind == ItemKind::kCas && absl::ConsumePrefix(&rest, ".") &&
                      absl::ConsumeSuffix(&rest, kZstdSuffix) &&
                      absl::SimpleAtoi(rest, &content_size) &&
                      content_size >= 0;
    absl::StatusOr<ItemKey> key = ItemKey::FromHex(kind, hex);
    struct stat st;
    if (!key.ok() || (!zstd && !rest.empty()) || name.substr(0, 2) != prefix ||
        fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode)) {
      continue;  // Not ours, or gone meanwhile.
    }
    out->push_back(LoadedItem{*key, static_cast<int64_t>(st.st_size),
                              StampOf(st),
                              /*small=*/false, zstd, content_size});
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LoadedItem>> DiskBlobStore::ScanAll() {
  int threads = options_.load_threads > 0 ? options_.load_threads : 8;
  std::vector<std::vector<LoadedItem>> found(threads);
  std::vector<absl::Status> errors(threads);
  std::atomic<int> next{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int job = next++; job < 2 * kShards && errors[t].ok();
           job = next++) {
        ItemKind kind = job < kShards ? ItemKind::kCas : ItemKind::kAc;
        errors[t] = ScanShard(kind, job % kShards, &found[t]);
      }
    });
  }
  for (std::thread& w : workers) {
    w.join();
  }
  size_t total = 0;
  for (int t = 0; t < threads; ++t) {
    if (!errors[t].ok()) {
      return errors[t];
    }
    total += found[t].size();
  }
  std::vector<LoadedItem> all;
  all.reserve(total);
  for (std::vector<LoadedItem>& part : found) {
    all.insert(all.end(), part.begin(), part.end());
    std::vector<LoadedItem>().swap(part);
  }
  return all;
}

void DiskBlobStore::CleanTmp() {
  std::string dir = options_.root + "/tmp";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return;
  }
  while (struct dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      unlinkat(dirfd(d), e->d_name, 0);  // Best effort: a stray temp file.
    }
  }
  closedir(d);
}

absl::Status DiskBlobStore::CheckLayoutVersion(int* found) {
  *found = 0;
  const std::string path = absl::StrCat(options_.root, "/", kLayoutFile);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT && errno != ENOTDIR) {
      return ErrnoStatus(errno, absl::StrCat("read ", path));
    }
    // No version file: a new store, or one written before layout 2 (which
    // had cas/ and no version file).
    struct stat st;
    *found = stat((options_.root + "/cas").c_str(), &st) == 0 ? 1 : 0;
    return absl::OkStatus();
  }
  char buf[64];
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  absl::string_view text(buf, n > 0 ? static_cast<size_t>(n) : 0);
  int version = 0;
  if (!absl::ConsumePrefix(&text, kLayoutPrefix) ||
      !absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &version) ||
      version < 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("store ", options_.root, ": unreadable layout file ", path,
                     " (expected \"", kLayoutPrefix, "<n>\")"));
  }
  if (version > kLayoutVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store ", options_.root, " has layout version ", version,
        ", newer than this cairn-server understands (", kLayoutVersion,
        "); run a newer release on it, or use another directory"));
  }
  *found = version;
  return absl::OkStatus();
}

absl::Status DiskBlobStore::WriteLayoutVersion(int version) {
  const std::string path = absl::StrCat(options_.root, "/", kLayoutFile);
  const std::string temp = absl::StrCat(options_.root, "/tmp/", kLayoutFile);
  const std::string text = absl::StrCat(kLayoutPrefix, version, "\n");
  int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return ErrnoStatus(errno, absl::StrCat("create ", temp));
  }
  absl::Status s = WriteFully(fd, text, nullptr, temp);
  if (s.ok() && fsync(fd) != 0) {
    s = ErrnoStatus(errno, absl::StrCat("fsync ", temp));
  }
  close(fd);
  if (s.ok() && rename(temp.c_str(), path.c_str()) != 0) {
    s = ErrnoStatus(errno, absl::StrCat("rename to ", path));
  }
  if (!s.ok()) {
    unlink(temp.c_str());
    return s;
  }
  int dfd = open(options_.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<LoadedItem>>>
DiskBlobStore::ScanSmall() {
  const int parts =
      std::clamp(options_.load_threads > 0
                     ? options_.load_threads
                     : static_cast<int>(std::thread::hardware_concurrency()),
                 1, 8);
  std::vector<std::vector<LoadedItem>> found(parts);
  std::vector<absl::Status> errors(parts);
  const size_t expected = static_cast<size_t>(small_->ApproximateCount());
  auto scan = [&](int p) {
    found[p].reserve(expected / parts + expected / (4 * parts));
    errors[p] = small_->ForEachInPart(p, parts, [&](const SmallItemMeta& m) {
      found[p].push_back(LoadedItem{m.key, m.size, m.stamp, /*small=*/true});
    });
  };
  std::vector<std::thread> workers;
  for (int p = 1; p < parts; ++p) {
    workers.emplace_back(scan, p);
  }
  scan(0);
  for (std::thread& w : workers) {
    w.join();
  }
  for (const absl::Status& s : errors) {
    if (!s.ok()) {
      return s;
    }
  }
  return found;
}

void DiskBlobStore::IndexLoadedLocked(const LoadedItem& found, bool oldest,
                                      std::vector<LruIndex::Item>* stale) {
  auto [item, inserted] =
      oldest
          ? index_.InsertNewOldest(found.key, found.size, found.stamp,
                                   found.small)
          : index_.InsertNew(found.key, found.size, found.stamp, found.small);
  if (!inserted) {
    // Held twice, and this copy is the older (callers go newest first): a
    // crash came between storing the newer version and deleting the older,
    // or between evicting a blob and storing it again in its other form.
    stale->push_back(LruIndex::Item{.key = found.key,
                                    .small = found.small,
                                    .zstd = found.zstd,
                                    .content_size = found.content_size});
    ++unlinking_[found.key];
    return;
  }
  if (found.zstd) {
    item->zstd = true;
    item->content_size = found.content_size;
  }
  last_stamp_ = std::max(last_stamp_, found.stamp);
}

bool DiskBlobStore::IndexFound(
    const std::vector<std::vector<LoadedItem>>& found) {
  // Newest first (equal stamps in the order found: files first), each as
  // least recently used: the list ends in access order, behind whatever
  // requests indexed meanwhile, and the first copy of a key met is the newer.
  struct Ref {
    uint64_t order;  // Decreases with the stamp.
    uint32_t part;
    uint32_t i;
  };
  std::vector<Ref> refs;
  size_t total = 0;
  for (const std::vector<LoadedItem>& part : found) {
    total += part.size();
  }
  refs.reserve(total);
  for (size_t p = 0; p < found.size(); ++p) {
    for (size_t i = 0; i < found[p].size(); ++i) {
      // Flipping the sign bit orders signed stamps as unsigned numbers.
      const uint64_t biased =
          static_cast<uint64_t>(found[p][i].stamp) ^ (uint64_t{1} << 63);
      refs.push_back(
          {~biased, static_cast<uint32_t>(p), static_cast<uint32_t>(i)});
    }
  }
  std::sort(refs.begin(), refs.end(), [](const Ref& a, const Ref& b) {
    return std::tie(a.order, a.part, a.i) < std::tie(b.order, b.part, b.i);
  });
  // Batches keep each hold of mu_ short while requests are served.
  constexpr size_t kBatch = 4096;
  for (size_t b = 0; b < refs.size(); b += kBatch) {
    if (stop_loading_.load(std::memory_order_relaxed)) {
      return false;
    }
    std::vector<LruIndex::Item> stale;
    {
      absl::MutexLock lock(&mu_);
      if (b == 0) {
        index_.ReserveItems(index_.size() + refs.size());
      }
      for (size_t k = b; k < std::min(b + kBatch, refs.size()); ++k) {
        const LoadedItem& item = found[refs[k].part][refs[k].i];
        if (!settled_.contains(item.key)) {
          IndexLoadedLocked(item, /*oldest=*/true, &stale);
        }
      }
    }
    UnlinkVictims(stale);
  }
  return true;
}

void DiskBlobStore::FinishLoad(absl::Time start) {
  std::vector<LruIndex::Item> victims;
  {
    absl::MutexLock lock(&mu_);
    loading_.store(false, std::memory_order_release);
    absl::flat_hash_set<ItemKey>().swap(settled_);
    index_.DeferEviction(false);
    victims = index_.EvictToFit();
    for (const LruIndex::Item& v : victims) {
      ++unlinking_[v.key];
    }
    ForgetEntriesLocked(victims);
    load_seconds_ = absl::ToDoubleSeconds(absl::Now() - start);
  }
  UnlinkVictims(victims);
}

absl::Status DiskBlobStore::LoadIndex(absl::Time start) {
  absl::StatusOr<std::vector<LoadedItem>> files = ScanAll();
  if (!files.ok()) {
    return files.status();
  }
  absl::StatusOr<std::vector<std::vector<LoadedItem>>> found = ScanSmall();
  if (!found.ok()) {
    return found.status();
  }
  found->insert(found->begin(), *std::move(files));
  if (options_.index_load_hook_for_test) {
    options_.index_load_hook_for_test("scanned");
  }
  if (!IndexFound(*found)) {
    return absl::CancelledError(
        absl::StrCat("store ", options_.root, ": closed while loading"));
  }
  FinishLoad(start);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LoadedItem>> DiskBlobStore::ProbeDisk(
    const ItemKey& key, int64_t size) {
  std::vector<LoadedItem> copies;
  auto stat_file = [&](bool zstd) {
    const std::string path = PathOf(key, zstd, size);
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) {
      return errno == ENOENT || errno == ENOTDIR
                 ? absl::OkStatus()
                 : ErrnoStatus(errno, absl::StrCat("stat ", path));
    }
    if (S_ISREG(st.st_mode)) {
      copies.push_back(LoadedItem{key, static_cast<int64_t>(st.st_size),
                                  StampOf(st), /*small=*/false, zstd,
                                  zstd ? size : -1});
    }
    return absl::OkStatus();
  };
  if (absl::Status s = stat_file(/*zstd=*/false); !s.ok()) {
    return s;
  }
  if (key.kind == ItemKind::kCas && size >= 0) {
    if (absl::Status s = stat_file(/*zstd=*/true); !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<SmallItemMeta> meta = small_->GetMeta(key);
  if (meta.ok()) {
    copies.push_back(LoadedItem{key, meta->size, meta->stamp, /*small=*/true});
  } else if (meta.status().code() != absl::StatusCode::kNotFound) {
    return meta.status();
  }
  std::stable_sort(copies.begin(), copies.end(),
                   [](const LoadedItem& a, const LoadedItem& b) {
                     return a.stamp > b.stamp;
                   });
  return copies;
}

absl::Status DiskBlobStore::SettleForLoad(absl::Span<const ItemKey> keys,
                                          absl::Span<const int64_t> sizes,
                                          bool for_write) {
  if (!loading_.load(std::memory_order_acquire)) {
    return absl::OkStatus();
  }
  std::vector<size_t> unknown;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0;
         loading_.load(std::memory_order_relaxed) && i < keys.size(); ++i) {
      if (settled_.contains(keys[i])) {
        continue;
      }
      if (index_.Find(keys[i]) != nullptr) {  // Loaded already.
        settled_.insert(keys[i]);
        continue;
      }
      unknown.push_back(i);
    }
  }
  absl::Status status;
  for (size_t i : unknown) {
    absl::StatusOr<std::vector<LoadedItem>> copies =
        ProbeDisk(keys[i], sizes[i]);
    if (!copies.ok()) {
      status.Update(copies.status());
      continue;
    }
    if (copies->empty() && !for_write) {
      continue;  // Nothing to index, nothing changed: no need to settle.
    }
    std::vector<LruIndex::Item> stale;
    {
      absl::MutexLock lock(&mu_);
      // Nobody changes a key on disk before settling it, so what the probe
      // found is current unless someone settled the key meanwhile (or the
      // loader indexed it: then its copies are known).
      if (!loading_.load(std::memory_order_relaxed) ||
          !settled_.insert(keys[i]).second || index_.Find(keys[i]) != nullptr) {
        continue;
      }
      for (const LoadedItem& copy : *copies) {
        IndexLoadedLocked(copy, /*oldest=*/false, &stale);
      }
    }
    UnlinkVictims(stale);
  }
  return status;
}

absl::Status DiskBlobStore::Load() {
  const absl::Time start = absl::Now();
  int layout = 0;
  if (absl::Status s = CheckLayoutVersion(&layout); !s.ok()) {
    return s;
  }
  if (absl::Status s = CreateLayout(); !s.ok()) {
    return s;
  }
  CleanTmp();
  absl::StatusOr<std::unique_ptr<SmallItemStore>> small =
      OpenSmallItemStore({.dir = options_.root + "/small",
                          .sync = options_.fsync,
                          .cache_bytes = options_.small_item_cache_bytes});
  if (!small.ok()) {
    return small.status();
  }
  small_ = *std::move(small);
  // Layout 3 (zstd files) only when this store may write them: a store
  // opened with keep_zstd false stays readable by releases of layout 2.
  const int target = options_.keep_zstd ? kLayoutVersion
                                        : std::max(layout, kPlainLayoutVersion);
  if (layout != target) {
    // Layouts 1 and 2 need no change: their files stay where layout 3 keeps
    // them (and are verified on their first read, as ever). A read-only
    // directory keeps its version; the store refuses writes there anyway.
    if (absl::Status s = WriteLayoutVersion(target);
        !s.ok() && s.code() != absl::StatusCode::kUnavailable) {
      return s;
    }
  }
  if (options_.rest_zstd_level > 0 && options_.keep_zstd) {
    recompressor_ = std::thread([this] { RecompressLoop(); });
  }
  if (!options_.load_index_in_background) {
    return LoadIndex(start);
  }
  {
    absl::MutexLock lock(&mu_);
    loading_.store(true, std::memory_order_relaxed);
    index_.DeferEviction(true);
  }
  loader_ = std::thread([this, start] {
    absl::Status s = LoadIndex(start);
    if (options_.on_index_loaded &&
        !stop_loading_.load(std::memory_order_relaxed)) {
      options_.on_index_loaded(s, Stats());
    }
  });
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BlobStore>> NewDiskBlobStore(
    const DiskBlobStoreOptions& options) {
  if (options.root.empty() || options.max_size_bytes <= 0 ||
      options.small_item_max_bytes < 0) {
    return absl::InvalidArgumentError(
        "disk store: root must be set, max_size_bytes positive and "
        "small_item_max_bytes not negative");
  }
  if (options.rest_zstd_level < 0 || options.rest_zstd_level > 19) {
    return absl::InvalidArgumentError(
        absl::StrCat("disk store: rest_zstd_level must be 0 to 19, got ",
                     options.rest_zstd_level));
  }
  auto store = std::make_unique<DiskBlobStore>(options);
  if (absl::Status s = store->Load(); !s.ok()) {
    return s;
  }
  return store;
}

}  // namespace cairn::cas
