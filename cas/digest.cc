#include "cas/digest.h"

#include <openssl/evp.h>

#include <array>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace cairn::cas {
namespace {

constexpr char kEmptySha256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

}  // namespace

Digest::Digest() : hash_(kEmptySha256), size_bytes_(0) {}

absl::StatusOr<Digest> Digest::Create(absl::string_view hash,
                                      int64_t size_bytes) {
  if (absl::Status s = Check(hash, size_bytes); !s.ok()) {
    return s;
  }
  return Digest(std::string(hash), size_bytes);
}

absl::Status Digest::Check(absl::string_view hash, int64_t size_bytes) {
  if (absl::Status s = ValidateSha256Hex(hash); !s.ok()) {
    return s;
  }
  if (size_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("digest ", hash, "/", size_bytes, ": negative size"));
  }
  if (size_bytes == 0 && hash != kEmptySha256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "digest ", hash, "/0: size 0 but not the empty blob's hash"));
  }
  return absl::OkStatus();
}


const Digest& Digest::Empty() {
  static const Digest* const kEmpty = new Digest();
  return *kEmpty;
}

std::string Digest::ToString() const {
  return absl::StrCat(hash_, "/", size_bytes_);
}

absl::Status ValidateSha256Hex(absl::string_view hash) {
  if (hash.size() != kSha256HexLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("digest hash \"", hash.substr(0, 80), "\": length ",
                     hash.size(), ", want 64 lowercase hex characters"));
  }
  // One table lookup per character: this runs for every digest of every
  // FindMissingBlobs batch.
  static constexpr auto kIsLowerHex = [] {
    std::array<bool, 256> t{};
    for (char c = '0'; c <= '9'; ++c) t[static_cast<unsigned char>(c)] = true;
    for (char c = 'a'; c <= 'f'; ++c) t[static_cast<unsigned char>(c)] = true;
    return t;
  }();
  for (char c : hash) {
    if (!kIsLowerHex[static_cast<unsigned char>(c)]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "digest hash \"", hash, "\": not lowercase hex (SHA-256 expected)"));
    }
  }
  return absl::OkStatus();
}

std::string HexEncode(absl::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto b = static_cast<unsigned char>(bytes[i]);
    out[2 * i] = kHex[b >> 4];
    out[2 * i + 1] = kHex[b & 0xf];
  }
  return out;
}

struct Sha256Hasher::Ctx {
  EVP_MD_CTX* md = nullptr;
};

namespace {

// SHA-256 fetched from the default provider once. EVP_sha256() would make
// every EVP_DigestInit_ex() look the algorithm up again (OpenSSL 3's
// implicit fetch: a provider query under a lock), which cost more than
// hashing a 100-byte action-cache key itself.
const EVP_MD* Sha256Md() {
  static const EVP_MD* const kMd = [] {
    const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return md != nullptr ? md : EVP_sha256();
  }();
  return kMd;
}

// The calling thread's context for one-shot hashes (Digest::OfData),
// reused: creating and freeing one per hash cost as much as hashing a
// 100-byte action-cache key (about 1,800 instructions of a 4,000).
EVP_MD_CTX* ThreadSha256Ctx() {
  thread_local const std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(
      EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  return ctx.get();
}

}  // namespace

std::string Sha256Raw(absl::string_view data) {
  EVP_MD_CTX* ctx = ThreadSha256Ctx();
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // Failure of a few hundred bytes' allocation is not a state we recover
  // from (as in Sha256Hasher).
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, Sha256Md(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx, out, &len) != 1) {
    abort();
  }
  return std::string(reinterpret_cast<char*>(out), len);
}

Digest Digest::OfData(absl::string_view data) {
  // Lowercase hex of 32 bytes by construction: no need to validate it.
  return Digest(HexEncode(Sha256Raw(data)), static_cast<int64_t>(data.size()));
}

absl::Status CheckDigest(const Digest& expected, const Digest& actual) {
  if (actual != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("cas blob ", expected.ToString(), ": data hashes to ",
                     actual.ToString()));
  }
  return absl::OkStatus();
}

absl::Status CheckData(const Digest& digest, absl::string_view data) {
  return CheckDigest(digest, Digest::OfData(data));
}

Sha256Hasher::Sha256Hasher() : ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  // Allocation failure of a few hundred bytes is not a state we recover from.
  if (ctx_->md == nullptr ||
      EVP_DigestInit_ex(ctx_->md, Sha256Md(), nullptr) != 1) {
    abort();
  }
}

Sha256Hasher::~Sha256Hasher() { EVP_MD_CTX_free(ctx_->md); }

void Sha256Hasher::Update(absl::string_view data) {
  EVP_DigestUpdate(ctx_->md, data.data(), data.size());
  bytes_ += static_cast<int64_t>(data.size());
}

std::string Sha256Hasher::FinishRaw() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_->md, out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

Digest Sha256Hasher::FinishDigest() {
  // Lowercase hex of 32 bytes by construction: no need to validate it.
  return Digest(HexEncode(FinishRaw()), bytes_);
}

}  // namespace cairn::cas
