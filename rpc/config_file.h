// Reads the small files the server is configured with (TLS certificates and
// keys, the auth tokens file) with errors that name the flag and the path.
//
// Thread safety: free function; safe from any thread.
#ifndef CAIRN_RPC_CONFIG_FILE_H_
#define CAIRN_RPC_CONFIG_FILE_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace cairn::rpc {

// Returns the contents of `path` (at most `max_bytes`), naming `what` (a flag
// such as "--tls_cert") in errors: NOT_FOUND when absent, PERMISSION_DENIED
// when unreadable, INVALID_ARGUMENT when it is not a regular file or larger
// than `max_bytes`, UNAVAILABLE on other I/O errors.
absl::StatusOr<std::string> ReadConfigFile(const std::string& path,
                                           const char* what,
                                           size_t max_bytes = 1 << 20);

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_CONFIG_FILE_H_
