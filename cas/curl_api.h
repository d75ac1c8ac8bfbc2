// libcurl, loaded on first use (dlopen of "libcurl.so.4") instead of at
// start: only a server with a shared tier (S3) or asset origins maps it and
// the libraries it pulls in (GnuTLS, Kerberos, LDAP, SSH, RTMP...), about
// 4 MiB of mapped code that every other server would carry for nothing.
// The S3 client (cas/s3_client.cc) and the origin fetcher
// (asset/origin_fetcher.cc) call libcurl only through CurlApi, with
// curl.h's own prototypes; nothing links -lcurl.
//
// Thread safety: LoadCurl() and Curl() may be called from any thread; the
// table they return is immutable and lives for the process.
#ifndef CAIRN_CAS_CURL_API_H_
#define CAIRN_CAS_CURL_API_H_

#include <curl/curl.h>

#include <string>

#include "absl/status/statusor.h"

namespace cairn::cas {

// The libcurl functions Cairn calls, without their "curl_" prefix.
#define CAIRN_CURL_FUNCTIONS(X)                                          \
  X(global_init)                                                         \
  X(easy_init) X(easy_cleanup) X(easy_reset) X(easy_setopt)              \
  X(easy_getinfo) X(easy_perform) X(easy_strerror)                       \
  X(slist_append) X(slist_free_all) X(getdate)                           \
  X(share_init) X(share_setopt) X(share_cleanup)                         \
  X(multi_init) X(multi_setopt) X(multi_add_handle)                      \
  X(multi_remove_handle) X(multi_perform) X(multi_info_read)             \
  X(multi_poll) X(multi_cleanup)

// Pointers to libcurl's functions: `api.easy_setopt(...)` calls
// curl_easy_setopt.
struct CurlApi {
#define CAIRN_CURL_POINTER(name) decltype(&::curl_##name) name = nullptr;
  CAIRN_CURL_FUNCTIONS(CAIRN_CURL_POINTER)
#undef CAIRN_CURL_POINTER
};

// Returns libcurl's functions, loading the library and running
// curl_global_init(CURL_GLOBAL_DEFAULT) on the first call. FAILED_PRECONDITION
// naming the library and the loader's reason when it cannot be loaded, lacks
// one of the functions, or fails to initialise (a later call tries again).
absl::StatusOr<const CurlApi*> LoadCurl();

// Makes later LoadCurl() calls load `library` (a soname or path) instead of
// "libcurl.so.4"; "" restores the default.
void SetCurlLibraryForTest(const std::string& library);

}  // namespace cairn::cas

#endif  // CAIRN_CAS_CURL_API_H_
