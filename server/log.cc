#include "server/log.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "spdlog/sinks/basic_file_sink.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace cairn::server {
namespace {

std::shared_ptr<spdlog::logger>& AccessLogSlot() {
  static auto* slot = new std::shared_ptr<spdlog::logger>();
  return *slot;
}

}  // namespace

absl::Status InitLogging(absl::string_view level,
                         absl::string_view access_log) {
  spdlog::level::level_enum lvl;
  if (level == "debug") {
    lvl = spdlog::level::debug;
  } else if (level == "info") {
    lvl = spdlog::level::info;
  } else if (level == "warning" || level == "warn") {
    lvl = spdlog::level::warn;
  } else if (level == "error") {
    lvl = spdlog::level::err;
  } else if (level == "off") {
    lvl = spdlog::level::off;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "log level \"", level, "\": want debug, info, warning, error or off"));
  }
  auto main = std::make_shared<spdlog::logger>(
      "cairn", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  main->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v",
                    spdlog::pattern_time_type::utc);
  main->set_level(lvl);
  main->flush_on(spdlog::level::info);
  spdlog::set_default_logger(main);
  if (access_log.empty()) {
    AccessLogSlot().reset();
    return absl::OkStatus();
  }
  std::shared_ptr<spdlog::sinks::sink> sink;
  if (access_log == "-") {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    // spdlog reports open failures by exception; this is the boundary.
    try {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(
          std::string(access_log));
    } catch (const spdlog::spdlog_ex& e) {
      return absl::UnavailableError(
          absl::StrCat("access log ", access_log, ": ", e.what()));
    }
  }
  auto access = std::make_shared<spdlog::logger>("access", sink);
  access->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ access %v",
                      spdlog::pattern_time_type::utc);
  access->flush_on(spdlog::level::info);
  AccessLogSlot() = access;
  return absl::OkStatus();
}

std::shared_ptr<spdlog::logger> AccessLog() { return AccessLogSlot(); }

}  // namespace cairn::server
