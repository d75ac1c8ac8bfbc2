// Logging for cairn-server, on spdlog: one line per event on stderr,
// "TIME LEVEL message key=value ...", with a level chosen by --log_level, and
// an optional access log (one line per finished RPC) to a file or stderr.
//
// Thread safety: InitLogging is called once from main() before serving; the
// loggers are thread-safe afterwards.
#ifndef CAIRN_SERVER_LOG_H_
#define CAIRN_SERVER_LOG_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

namespace cairn::server {

// Sets the default logger to stderr at `level` (debug, info, warning, error,
// off) and, when `access_log` is non-empty, opens the access log ("-" means
// stderr, anything else is a file appended to). INVALID_ARGUMENT for an
// unknown level; UNAVAILABLE when the file cannot be opened.
absl::Status InitLogging(absl::string_view level, absl::string_view access_log);

// Returns the access logger, or nullptr when the access log is off.
std::shared_ptr<spdlog::logger> AccessLog();

}  // namespace cairn::server

#endif  // CAIRN_SERVER_LOG_H_
