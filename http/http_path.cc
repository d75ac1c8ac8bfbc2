#include "http/http_path.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cas/digest.h"
#include "cas/resource_name.h"

namespace cairn::http {

absl::StatusOr<CachePath> ParseCachePath(absl::string_view path) {
  if (!absl::ConsumePrefix(&path, "/")) {
    return absl::InvalidArgumentError("path must start with '/'");
  }
  if (absl::StrContains(path, '\0')) {
    return absl::InvalidArgumentError("NUL in path");
  }
  CachePath out;
  if (absl::ConsumePrefix(&path, "kv/")) {
    out.route = CachePath::Route::kKv;
    const size_t slash = path.find('/');
    if (slash == 0 || slash == absl::string_view::npos ||
        slash + 1 == path.size()) {
      return absl::InvalidArgumentError(
          "want /kv/NAMESPACE/KEY with a non-empty namespace and key");
    }
    if (path.size() > kMaxKvKeyBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("kv key longer than ", kMaxKvKeyBytes, " bytes"));
    }
    out.key = std::string(path);
    return out;
  }
  // [INSTANCE/](cas|ac)/HASH: the last two segments name the route.
  const size_t last = path.rfind('/');
  if (last == absl::string_view::npos) {
    return absl::NotFoundError("no such route");
  }
  const absl::string_view hash = path.substr(last + 1);
  absl::string_view rest = path.substr(0, last);
  const size_t prev = rest.rfind('/');
  const absl::string_view kind =
      prev == absl::string_view::npos ? rest : rest.substr(prev + 1);
  const absl::string_view instance =
      prev == absl::string_view::npos ? "" : rest.substr(0, prev);
  if (kind == "cas") {
    out.route = CachePath::Route::kCas;
  } else if (kind == "ac") {
    out.route = CachePath::Route::kAc;
  } else {
    return absl::NotFoundError("no such route");
  }
  if (absl::Status s = cas::ValidateSha256Hex(hash); !s.ok()) {
    return s;
  }
  if (absl::Status s = cas::ValidateInstanceName(instance); !s.ok()) {
    return s;
  }
  out.hash = std::string(hash);
  out.instance = std::string(instance);
  return out;
}

absl::string_view RouteName(CachePath::Route route) {
  switch (route) {
    case CachePath::Route::kCas:
      return "cas";
    case CachePath::Route::kAc:
      return "ac";
    case CachePath::Route::kKv:
      return "kv";
  }
  return "unknown";
}

}  // namespace cairn::http
