// Fuzzes the tokens file parser and the authorization header check
// (rpc/auth.h). The input is split at its first "\n--\n": the part
// before is the tokens file, the part after the `authorization` header of
// one call (certificate identities are the header's words). Invariants:
// nothing crashes or hangs; a file is refused only with INVALID_ARGUMENT;
// a call is answered OK, UNAUTHENTICATED or PERMISSION_DENIED, and an error
// message never contains the presented token; a read is allowed whenever a
// write is.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "rpc/auth.h"

namespace {

using cairn::rpc::Access;

// One file per process, rewritten for every input.
const std::string& TokensPath() {
  static const std::string* path = [] {
    // Memory-backed when there is /dev/shm: a file is written per input.
    const char* tmp = getenv("TMPDIR");
    std::string dir = tmp != nullptr                  ? tmp
                      : access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                      : "/tmp";
    std::string templ = dir + "/cairn_auth_fuzz_XXXXXX";
    int fd = mkstemp(templ.data());
    if (fd < 0) {
      abort();
    }
    close(fd);
    return new std::string(templ);
  }();
  return *path;
}

bool Allowed(const absl::Status& s) {
  return s.ok() || s.code() == absl::StatusCode::kUnauthenticated ||
         s.code() == absl::StatusCode::kPermissionDenied;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(input, absl::MaxSplits("\n--\n", 1));
  {
    std::ofstream out(TokensPath(), std::ios::binary | std::ios::trunc);
    out.write(parts.first.data(),
              static_cast<std::streamsize>(parts.first.size()));
  }
  cairn::rpc::AuthOptions options;
  options.tokens_file = TokensPath();
  options.anonymous = Access::kNone;
  options.tls_client_access = Access::kRead;
  auto authorizer = cairn::rpc::NewAuthorizer(options);
  if (!authorizer.ok()) {
    if (authorizer.status().code() != absl::StatusCode::kInvalidArgument) {
      abort();
    }
    return 0;
  }
  cairn::rpc::CallCredentials credentials;
  if (!parts.second.empty()) {
    credentials.authorization = std::string(parts.second);
  }
  for (absl::string_view word :
       absl::StrSplit(parts.second, ' ', absl::SkipEmpty())) {
    credentials.peer_identities.emplace_back(word);
  }
  absl::Status read =
      (*authorizer)->AuthorizeCredentials(credentials, Access::kRead);
  absl::Status write =
      (*authorizer)->AuthorizeCredentials(credentials, Access::kWrite);
  if (!Allowed(read) || !Allowed(write) || (write.ok() && !read.ok())) {
    abort();
  }
  // A token (16+ characters, no whitespace) never appears in a message,
  // unless the same text comes for a canary token of the same length (then
  // it is the message's own wording).
  size_t space = parts.second.find(' ');
  absl::string_view token =
      space == absl::string_view::npos ? "" : parts.second.substr(space + 1);
  if (token.size() >= 16 &&
      token.find_first_of(" \t\r\n\v\f") == absl::string_view::npos) {
    cairn::rpc::CallCredentials canary;
    canary.authorization = absl::StrCat(parts.second.substr(0, space + 1),
                                        std::string(token.size(), '~'));
    std::string canary_message =
        (*authorizer)->AuthorizeCredentials(canary, Access::kWrite).ToString();
    for (const absl::Status* s : {&read, &write}) {
      if (absl::StrContains(s->message(), token) &&
          !absl::StrContains(canary_message, token)) {
        abort();
      }
    }
  }
  return 0;
}
