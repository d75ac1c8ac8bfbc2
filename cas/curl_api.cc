// The loader keeps one table per library name it loaded, never unloaded:
// clients hold references into it for their lifetime.
#include "cas/curl_api.h"

#include <dlfcn.h>

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace cairn::cas {
namespace {

constexpr char kDefaultLibrary[] = "libcurl.so.4";

struct Loader {
  absl::Mutex mu;
  std::string library ABSL_GUARDED_BY(mu) = kDefaultLibrary;
  absl::flat_hash_map<std::string, const CurlApi*> loaded ABSL_GUARDED_BY(mu);
};

Loader& TheLoader() {
  static Loader* const loader = new Loader;
  return *loader;
}

absl::StatusOr<const CurlApi*> Load(const std::string& library) {
  const std::string what = absl::StrCat(
      "cannot load libcurl (", library,
      ", Debian package libcurl4; needed for the shared tier and asset "
      "origins): ");
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(what, dlerror()));
  }
  auto api = std::make_unique<CurlApi>();
  std::string missing;
#define CAIRN_CURL_LOOKUP(name)                                 \
  api->name = reinterpret_cast<decltype(api->name)>(            \
      dlsym(handle, "curl_" #name));                            \
  if (api->name == nullptr && missing.empty()) {                \
    missing = "curl_" #name;                                    \
  }
  CAIRN_CURL_FUNCTIONS(CAIRN_CURL_LOOKUP)
#undef CAIRN_CURL_LOOKUP
  if (!missing.empty()) {
    dlclose(handle);
    return absl::FailedPreconditionError(
        absl::StrCat(what, "it has no ", missing));
  }
  if (CURLcode rc = api->global_init(CURL_GLOBAL_DEFAULT); rc != CURLE_OK) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, "curl_global_init failed: ", api->easy_strerror(rc)));
  }
  return api.release();
}

}  // namespace

absl::StatusOr<const CurlApi*> LoadCurl() {
  Loader& l = TheLoader();
  absl::MutexLock lock(&l.mu);
  if (auto it = l.loaded.find(l.library); it != l.loaded.end()) {
    return it->second;
  }
  absl::StatusOr<const CurlApi*> api = Load(l.library);
  if (api.ok()) {
    l.loaded[l.library] = *api;
  }
  return api;
}

void SetCurlLibraryForTest(const std::string& library) {
  Loader& l = TheLoader();
  absl::MutexLock lock(&l.mu);
  l.library = library.empty() ? kDefaultLibrary : library;
}

}  // namespace cairn::cas
