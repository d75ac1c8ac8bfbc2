// Digest: the value type naming a CAS blob (lowercase hex SHA-256 + size), its
// parsing and validation, and streaming SHA-256 through the libcrypto EVP API
// (OpenSSL and BoringSSL alike).
//
// Thread safety: Digest is an immutable value, safe to share. A Sha256Hasher is
// not thread-safe; use one per stream.
#ifndef CAIRN_CAS_DIGEST_H_
#define CAIRN_CAS_DIGEST_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace cairn::cas {

// Length of a SHA-256 hash in lowercase hex.
inline constexpr size_t kSha256HexLength = 64;

class Digest {
 public:
  // The empty blob's digest (e3b0c442...b855/0).
  Digest();

  // Returns the digest for `hash`/`size_bytes`, or INVALID_ARGUMENT when the
  // hash is not 64 lowercase hex characters or the size is negative.
  static absl::StatusOr<Digest> Create(absl::string_view hash,
                                       int64_t size_bytes);

  // Returns what Create() would answer for `hash`/`size_bytes`, without
  // making a Digest (no allocation): OK or INVALID_ARGUMENT.
  static absl::Status Check(absl::string_view hash, int64_t size_bytes);

  // Returns the SHA-256 digest of `data`.
  static Digest OfData(absl::string_view data);

  // Returns the digest of the empty blob.
  static const Digest& Empty();

  const std::string& hash() const { return hash_; }
  int64_t size_bytes() const { return size_bytes_; }
  // Returns true for the empty blob, which always exists and is never stored.
  bool IsEmpty() const { return size_bytes_ == 0; }

  // Returns "hash/size", the form used in logs and error messages.
  std::string ToString() const;

  friend bool operator==(const Digest& a, const Digest& b) {
    return a.size_bytes_ == b.size_bytes_ && a.hash_ == b.hash_;
  }
  friend bool operator!=(const Digest& a, const Digest& b) { return !(a == b); }
  template <typename H>
  friend H AbslHashValue(H h, const Digest& d) {
    return H::combine(std::move(h), d.hash_, d.size_bytes_);
  }

 private:
  friend class Sha256Hasher;  // FinishDigest() makes well-formed digests.
  Digest(std::string hash, int64_t size_bytes)
      : hash_(std::move(hash)), size_bytes_(size_bytes) {}

  std::string hash_;
  int64_t size_bytes_;
};

// Returns the Digest that a REAPI Digest message names (any type with hash()
// and size_bytes(), so this library needs no protobuf): the one conversion
// used by the ActionCache, the asset store and the services. A malformed one
// is INVALID_ARGUMENT "<prefix><field>: <reason>".
template <typename DigestMessage>
absl::StatusOr<Digest> DigestFromMessage(const DigestMessage& message,
                                         absl::string_view field,
                                         absl::string_view prefix = "") {
  absl::StatusOr<Digest> digest =
      Digest::Create(message.hash(), message.size_bytes());
  if (!digest.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, field, ": ", digest.status().message()));
  }
  return digest;
}

// Returns OK when `hash` is 64 lowercase hex characters, else INVALID_ARGUMENT.
absl::Status ValidateSha256Hex(absl::string_view hash);

// Returns OK when `actual` (the digest of the bytes a store received) is
// `expected`, else INVALID_ARGUMENT "cas blob <expected>: data hashes to
// <actual>": the check every store's Write and BlobWriter::Commit make.
absl::Status CheckDigest(const Digest& expected, const Digest& actual);

// Returns CheckDigest(digest, Digest::OfData(data)).
absl::Status CheckData(const Digest& digest, absl::string_view data);

// Returns the 32 raw bytes of the SHA-256 of `data`, hashed at once on the
// calling thread's reused context (as Digest::OfData).
std::string Sha256Raw(absl::string_view data);

// Returns the lowercase hex encoding of `bytes`.
std::string HexEncode(absl::string_view bytes);

// Incremental SHA-256. Feed bytes with Update(), then call one of the Finish
// methods exactly once.
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;

  // Adds `data` to the hash.
  void Update(absl::string_view data);
  // Returns the number of bytes hashed so far.
  int64_t bytes() const { return bytes_; }
  // Returns the 32 raw bytes of the hash.
  std::string FinishRaw();
  // Returns the digest (hex hash and byte count).
  Digest FinishDigest();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
  int64_t bytes_ = 0;
};

}  // namespace cairn::cas

#endif  // CAIRN_CAS_DIGEST_H_
