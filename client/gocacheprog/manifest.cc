#include "client/gocacheprog/manifest.h"

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace cairn::client::gocacheprog {
namespace {

constexpr size_t kIdSize = 32;
constexpr absl::string_view kKeyPrefix("cairn-gocacheprog/v1 manifest\0", 30);

// go flags that take no value: a word after them is a package argument.
bool IsBoolFlag(absl::string_view flag) {
  static const auto* const kBool = new absl::flat_hash_set<absl::string_view>{
      "a",      "n",          "v",         "x",       "race",   "msan",
      "asan",   "trimpath",   "work",      "linkshared", "modcacherw",
      "json",   "cover",      "i",         "short",   "failfast", "benchmem",
      "buildvcs", "fullpath", "c"};
  return kBool->contains(flag);
}

}  // namespace

std::string EncodeManifest(absl::Span<const std::string> ids) {
  std::string out(kManifestMagic);
  size_t n = 0;
  for (const std::string& id : ids) {
    if (id.size() != kIdSize || n == kMaxManifestIds) {
      continue;
    }
    out.append(id);
    ++n;
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> DecodeManifest(
    absl::string_view blob) {
  if (!absl::ConsumePrefix(&blob, kManifestMagic)) {
    return absl::InvalidArgumentError("prefetch manifest: wrong header");
  }
  if (blob.size() % kIdSize != 0 || blob.size() / kIdSize > kMaxManifestIds) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prefetch manifest: ", blob.size(), " bytes after the header"));
  }
  std::vector<std::string> ids;
  ids.reserve(blob.size() / kIdSize);
  for (size_t i = 0; i < blob.size(); i += kIdSize) {
    ids.emplace_back(blob.substr(i, kIdSize));
  }
  return ids;
}

cas::Digest ManifestKey(absl::string_view scope) {
  cas::Sha256Hasher h;
  h.Update(kKeyPrefix);
  h.Update(scope);
  return h.FinishDigest();
}

std::string DefaultPrefetchScope(
    absl::string_view cwd, absl::Span<const std::string> go_args,
    const std::function<const char*(const char*)>& getenv) {
  std::string scope = absl::StrCat("cwd=", cwd, "\n");
  bool value_next = false;  // The previous word was a flag taking a value.
  bool first = true;
  for (const std::string& arg : go_args) {
    absl::string_view a = arg;
    if (value_next) {
      value_next = false;
      continue;
    }
    if (a == "--") {
      break;  // Program arguments (go run / go test) follow.
    }
    if (absl::StartsWith(a, "-")) {
      a = absl::StripPrefix(absl::StripPrefix(a, "-"), "-");
      value_next = !absl::StrContains(a, '=') && !IsBoolFlag(a);
      continue;
    }
    absl::StrAppend(&scope, first ? "cmd=" : "arg=", a, "\n");
    first = false;
  }
  for (const char* name : {"GOOS", "GOARCH", "GOFLAGS", "GOEXPERIMENT",
                           "CGO_ENABLED", "GOAMD64", "GOARM64", "GOTOOLCHAIN"}) {
    const char* v = getenv(name);
    if (v != nullptr) {
      absl::StrAppend(&scope, name, "=", v, "\n");
    }
  }
  return scope;
}

}  // namespace cairn::client::gocacheprog
