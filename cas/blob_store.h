// BlobStore: the storage interface behind every Cairn service. It holds two
// kinds of items under one size budget and one LRU:
//   - CAS blobs, addressed by their SHA-256 Digest and verified on the way in
//     and on the way out;
//   - keyed entries (the action cache), addressed by an opaque key of 64
//     lowercase hex characters chosen by the caller, protected by a checksum.
//
// Error codes (see ../STYLE §3): malformed input or bytes that do not match
// their digest -> INVALID_ARGUMENT; absent -> NOT_FOUND; read offset past the
// end -> OUT_OF_RANGE; no room even after eviction -> RESOURCE_EXHAUSTED; a
// stored item failing its check -> DATA_LOSS (the item is removed and counted);
// other I/O failures -> INTERNAL or UNAVAILABLE.
//
// The empty blob always exists, is always readable and never stored.
//
// Thread safety: every method of BlobStore is safe to call concurrently.
// A BlobReader or BlobWriter is used by one thread at a time, may be handed
// between threads, and must not outlive the store that made it.
#ifndef CAIRN_CAS_BLOB_STORE_H_
#define CAIRN_CAS_BLOB_STORE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "cas/digest.h"

namespace cairn::cas {

// A point-in-time view of a store's counters.
struct StoreStats {
  int64_t max_bytes = 0;          // Size budget.
  int64_t used_bytes = 0;         // Bytes held by committed items.
  int64_t reserved_bytes = 0;     // Bytes reserved by writes in progress.
  int64_t cas_entries = 0;        // CAS blobs stored.
  int64_t ac_entries = 0;         // Keyed entries stored.
  int64_t evictions = 0;          // Items evicted since start.
  int64_t evicted_bytes = 0;      // Bytes evicted since start.
  int64_t corruptions = 0;        // Items found corrupt and removed.
  int64_t read_hashes = 0;        // Reads that hashed a whole stored item.
  // Seconds from opening until the index was complete (0 while loading).
  double index_load_seconds = 0;
  bool index_loading = false;  // The index is still loading (in background).
  // Recompression at rest (the disk store's rest_zstd_level): blobs
  // re-encoded, the bytes that saved, blobs looked at and left as they were
  // (gone, not smaller, unreadable), and blobs waiting (queued or in hand).
  int64_t recompressed_blobs = 0;
  int64_t recompressed_saved_bytes = 0;
  int64_t recompress_skipped = 0;
  int64_t recompress_pending = 0;
};

// Sequential reader of one blob. Verifies the content's SHA-256 as it is
// read (a store may skip this for content it has already verified and knows
// unchanged; see its header): when the final byte has been read and the
// content does not match the digest, Read() returns DATA_LOSS instead of
// reporting the end, and the store removes the item. A reader keeps working
// if its blob is evicted meanwhile.
class BlobReader {
 public:
  virtual ~BlobReader() = default;

  // Returns the size of the whole blob.
  virtual int64_t size() const = 0;

  // Reads up to `max` bytes into `buf` from the current position and returns
  // the count; 0 means end of blob (content verified). DATA_LOSS on a
  // mismatch, INTERNAL on an I/O error.
  virtual absl::StatusOr<size_t> Read(char* buf, size_t max) = 0;
};

// Streaming writer of one blob. Bytes go to a temporary place; nothing is
// visible until Commit() succeeds. Destroying an uncommitted writer discards
// its bytes and releases its reserved space.
class BlobWriter {
 public:
  virtual ~BlobWriter() = default;

  // Appends `data`. INVALID_ARGUMENT when the total would exceed the digest's
  // size; RESOURCE_EXHAUSTED when the disk is full; INTERNAL on I/O errors.
  // After an error the writer is unusable.
  virtual absl::Status Append(absl::string_view data) = 0;

  // Returns the number of bytes appended so far.
  virtual int64_t committed_size() const = 0;

  // Verifies size and SHA-256, makes the blob durable and visible. On a
  // mismatch returns INVALID_ARGUMENT and stores nothing. Committing a blob
  // that another writer stored meanwhile succeeds. Call at most once.
  virtual absl::Status Commit() = 0;
};

// Returns FAILED_PRECONDITION "cas blob <digest>: writer is closed", the
// answer of a BlobWriter used after Commit() or after an error.
inline absl::Status WriterClosedError(const Digest& digest) {
  return absl::FailedPreconditionError(
      absl::StrCat("cas blob ", digest.ToString(), ": writer is closed"));
}

// Who writes on the calling thread, for counting evictions per writer: a
// small number chosen by the caller (the services use one per principal,
// rpc::WriteQuota::OwnerIdOf); 0 means unknown. A store notes the calling
// thread's owner on each item a write adds (the last writer of a replaced
// entry) and counts the evictions of each owner's items
// (BlobStore::EvictionsByOwner). Set it around the store calls that write
// (Write, WriteBlobs, BlobWriter::Commit, PutEntry...); it ends with the
// scope. Owners are not persisted: after a restart every item is owner 0.
class WriteOwnerScope {
 public:
  explicit WriteOwnerScope(uint32_t owner) : previous_(current_) {
    current_ = owner;
  }
  ~WriteOwnerScope() { current_ = previous_; }
  WriteOwnerScope(const WriteOwnerScope&) = delete;
  WriteOwnerScope& operator=(const WriteOwnerScope&) = delete;

  // Returns the owner of the innermost scope on this thread, or 0.
  static uint32_t Current() { return current_; }

 private:
  static inline thread_local uint32_t current_ = 0;
  const uint32_t previous_;
};

// Evictions of one owner's items (see WriteOwnerScope).
struct OwnerEvictions {
  uint32_t owner = 0;
  int64_t items = 0;
  int64_t bytes = 0;
};

// One blob of a BlobStore::WriteBlobs() call.
struct BlobWrite {
  Digest digest;
  absl::string_view data;  // Not owned; must outlive the call.
  // When not empty: zstd frames (RFC 8878) that decompress to `data`, as a
  // client sent them; a store that keeps blobs compressed at rest may store
  // these instead of `data` (it still verifies `data`). Not owned.
  absl::string_view zstd = {};
};

// A blob as a store holds it (BlobStore::ReadAsStored()).
struct StoredBlob {
  std::string data;   // The blob, or zstd frames of it when `zstd`.
  bool zstd = false;  // `data` is zstd frames (RFC 8878).
};

// A reader of a blob as a store holds it (BlobStore::OpenReadAsStored()).
struct StoredBlobReader {
  // Reads the blob, or zstd frames of it when `zstd` (then size() is the
  // number of compressed bytes). Verified as any BlobReader: the SHA-256 of
  // the decompressed content is checked before the end is reported.
  std::unique_ptr<BlobReader> reader;
  bool zstd = false;
};

// Returns a BlobWriter that takes zstd frames (RFC 8878): it decompresses
// them (bounded by the digest's size, windows limited as in
// cas/zstd_codec.h) and appends the plain bytes to `plain`. Its
// committed_size() counts compressed bytes; Commit() answers
// INVALID_ARGUMENT when the data ends inside a frame. Append() answers
// INVALID_ARGUMENT for corrupt frames or too many bytes. The default of
// BlobStore::OpenWriteZstd().
std::unique_ptr<BlobWriter> NewZstdDecodingWriter(
    Digest digest, std::unique_ptr<BlobWriter> plain);

class ZstdDecompressor;

// The step of a zstd decoding writer: decompresses `frames`, the next bytes
// of an upload of `digest`, with `decompressor` and appends the plain bytes
// to `plain` in pieces of 256 KiB (however much the frames expand), at most
// what the blob has left beyond plain.committed_size(). An error from
// `plain` is returned as it is; frames that do not decode, or too many
// bytes, are INVALID_ARGUMENT naming the blob. Not thread-safe: the caller
// owns both objects.
absl::Status DecodeFramesInto(ZstdDecompressor& decompressor,
                              const Digest& digest, absl::string_view frames,
                              BlobWriter& plain);

class BlobStore {
 public:
  virtual ~BlobStore() = default;

  // Returns the digests in `digests` that are not stored (the empty blob is
  // always present). Present blobs are marked as recently used.
  virtual std::vector<Digest> FindMissing(absl::Span<const Digest> digests) = 0;

  // Like FindMissing(), but answers an error instead of guessing when the
  // store cannot tell (UNAVAILABLE: a shared tier that cannot be asked).
  // Stores that always know use this default.
  virtual absl::StatusOr<std::vector<Digest>> FindMissingChecked(
      absl::Span<const Digest> digests) {
    return FindMissing(digests);
  }

  // Like FindMissingChecked(), for blobs the caller expects to be read soon
  // (the outputs of an action-cache hit). A store whose blobs may live in a
  // slower shared tier may fetch a few small ones into its fast tier instead
  // of only checking that they exist, so that the reads that follow are
  // local. Stores with one tier use this default.
  virtual absl::StatusOr<std::vector<Digest>> FindMissingForRead(
      absl::Span<const Digest> digests) {
    return FindMissingChecked(digests);
  }

  // Returns true if `digest` is stored, marking it recently used.
  virtual bool Contains(const Digest& digest) = 0;

  // Returns the whole blob after verifying it. NOT_FOUND, DATA_LOSS.
  // Meant for small blobs; large ones go through OpenRead().
  virtual absl::StatusOr<std::string> Read(const Digest& digest) = 0;

  // Opens a reader positioned at `offset` (0 <= offset <= size; OUT_OF_RANGE
  // otherwise). NOT_FOUND when absent.
  virtual absl::StatusOr<std::unique_ptr<BlobReader>> OpenRead(
      const Digest& digest, int64_t offset) = 0;

  // Stores `data` under `digest` after checking that it matches
  // (INVALID_ARGUMENT otherwise). Storing a present blob is a cheap success.
  virtual absl::Status Write(const Digest& digest, absl::string_view data) = 0;

  // Stores every blob of `blobs` as Write() would and returns one status per
  // blob, in order (one blob's failure does not fail the others). A store
  // may make them durable together: the disk store puts all its small items
  // in one database batch behind one log sync. Safe to call concurrently,
  // like every method; the default calls Write() for each blob.
  virtual std::vector<absl::Status> WriteBlobs(
      absl::Span<const BlobWrite> blobs) {
    std::vector<absl::Status> out;
    out.reserve(blobs.size());
    for (const BlobWrite& b : blobs) {
      out.push_back(Write(b.digest, b.data));
    }
    return out;
  }

  // Returns the evictions since start per owner of the evicted items (see
  // WriteOwnerScope), in no particular order; owner 0 collects the items
  // whose writer is unknown. This default (a store without an LRU) has none.
  virtual std::vector<OwnerEvictions> EvictionsByOwner() { return {}; }

  // Reserves room for `digest.size_bytes()` and returns a writer for it.
  // RESOURCE_EXHAUSTED when the blob cannot fit even after eviction.
  virtual absl::StatusOr<std::unique_ptr<BlobWriter>> OpenWrite(
      const Digest& digest) = 0;

  // Compressed at rest (REAPI compressed-blobs). A store may keep a blob
  // that arrived as zstd frames in that form when it is smaller, so that a
  // compressed read costs no recompression; Read() and OpenRead() still
  // serve the plain bytes (decompressing on the way out), and the SHA-256 is
  // always that of the plain bytes, checked on the way in and out.

  // Like OpenWrite(), for a blob that arrives as zstd frames: Append()
  // takes compressed bytes (see NewZstdDecodingWriter() for the errors).
  // The default decompresses into OpenWrite()'s writer.
  virtual absl::StatusOr<std::unique_ptr<BlobWriter>> OpenWriteZstd(
      const Digest& digest) {
    absl::StatusOr<std::unique_ptr<BlobWriter>> plain = OpenWrite(digest);
    if (!plain.ok()) {
      return plain.status();
    }
    return NewZstdDecodingWriter(digest, *std::move(plain));
  }

  // Like Read(), but answers the bytes as held: zstd frames for a blob kept
  // compressed (verified like Read(): their content's SHA-256 is checked,
  // unless the store knows them unchanged since it did). The default reads
  // the plain bytes.
  virtual absl::StatusOr<StoredBlob> ReadAsStored(const Digest& digest) {
    absl::StatusOr<std::string> data = Read(digest);
    if (!data.ok()) {
      return data.status();
    }
    return StoredBlob{*std::move(data), false};
  }

  // Like OpenRead(digest, 0), but reads the bytes as held (see
  // StoredBlobReader). The default reads the plain bytes.
  virtual absl::StatusOr<StoredBlobReader> OpenReadAsStored(
      const Digest& digest) {
    absl::StatusOr<std::unique_ptr<BlobReader>> reader = OpenRead(digest, 0);
    if (!reader.ok()) {
      return reader.status();
    }
    return StoredBlobReader{*std::move(reader), false};
  }

  // Returns the value stored under `key` (64 lowercase hex characters),
  // marking it recently used. NOT_FOUND, DATA_LOSS, INVALID_ARGUMENT (key).
  virtual absl::StatusOr<std::string> GetEntry(absl::string_view key) = 0;

  // Stores `value` under `key` (64 lowercase hex characters), replacing any
  // previous value. INVALID_ARGUMENT (key), RESOURCE_EXHAUSTED, INTERNAL.
  //
  // `blobs` names the blobs `value` references that a reader of the entry
  // reads next (an action result's outputs). A store whose blobs live in a
  // slower shared tier may keep copies of small ones with the entry, so that
  // a node fetching the entry gets them in the same request (each verified
  // against its digest before it is kept or served); other stores ignore it.
  //
  // Without `done`, returns once the entry is durable. With `done` (for a
  // thread that should not wait for the disk to sync), returns OK and calls
  // `done` exactly once with what the call would have returned, on this
  // thread or later on a thread of the store's (`done` must then be quick and
  // must not block). A store may make the entry readable before `done`
  // reports it durable; an error then means it may or may not survive a
  // crash. The arguments need not outlive the call.
  using PutCallback = absl::AnyInvocable<void(absl::Status) &&>;
  absl::Status PutEntry(absl::string_view key, absl::string_view value,
                        absl::Span<const Digest> blobs = {},
                        PutCallback done = nullptr) {
    return PutEntryImpl(key, value, blobs, done ? &done : nullptr);
  }

  // Returns the current counters.
  virtual StoreStats Stats() = 0;

  // Non-blocking lookups, for threads that must never wait on the disk (gRPC
  // reactor threads). Each answers from memory alone, or returns std::nullopt
  // ("would block") when the answer needs I/O or the store cannot tell; the
  // caller then uses the blocking method on a thread that may block. They
  // never do I/O and never wait for a lock held across I/O. The defaults
  // always return std::nullopt.
  //
  // Like FindMissing(), including marking present blobs recently used; a
  // store returns std::nullopt rather than do I/O that doing so needs.
  virtual std::optional<std::vector<Digest>> TryFindMissing(
      absl::Span<const Digest> digests) {
    return std::nullopt;
  }

  // Returns whether an entry is stored under `key` (GetEntry() may still fail
  // reading it); std::nullopt when malformed or unknown without I/O.
  virtual std::optional<bool> TryHasEntry(absl::string_view key) {
    return std::nullopt;
  }

  // Like GetEntry() (NOT_FOUND when no entry is stored under `key`, marking
  // a found one recently used), answered from memory: the value returned is
  // one the store verified. std::nullopt when malformed or when the value is
  // not in memory or cannot be served without I/O.
  virtual std::optional<absl::StatusOr<std::string>> TryGetEntry(
      absl::string_view key) {
    return std::nullopt;
  }

 protected:
  // Does PutEntry(); `then` is null when the caller waits for durability,
  // else it is to be moved from and called as PutEntry() says of `done`.
  virtual absl::Status PutEntryImpl(absl::string_view key,
                                    absl::string_view value,
                                    absl::Span<const Digest> blobs,
                                    PutCallback* then) = 0;

  // Returns `s`, or with `then` calls it with `s` and returns OK: the answer
  // of a PutEntryImpl() that has finished.
  static absl::Status Reply(absl::Status s, PutCallback* then) {
    if (then == nullptr) {
      return s;
    }
    std::move(*then)(std::move(s));
    return absl::OkStatus();
  }
};

}  // namespace cairn::cas

#endif  // CAIRN_CAS_BLOB_STORE_H_
