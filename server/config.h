// YAML configuration file support for cairn-server. A config file is a YAML
// map whose keys are flag names (with '_' or '-') and whose values are what
// the flag would take on the command line; lists are joined with commas.
// Every flag can be set this way. main() applies the file before parsing the
// command line, so a flag given on the command line wins over the file. Unknown
// keys and values a flag rejects are errors that name the key, so a typo never
// passes silently.
//
// Example:
//   listen: 0.0.0.0:9092
//   dir: /var/cache/cairn
//   max_size: 200GiB
//
// Thread safety: call from main() before other threads start.
#ifndef CAIRN_SERVER_CONFIG_H_
#define CAIRN_SERVER_CONFIG_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace cairn::server {

// Returns the value of --config in argv ("--config=P", "--config P", one or
// two dashes), if any, without parsing anything else.
std::optional<std::string> FindConfigArg(int argc, char** argv);

// Reads `path` and sets every flag it names. NOT_FOUND when the file is
// missing; INVALID_ARGUMENT for YAML syntax errors, non-map documents, unknown
// flags or rejected values.
absl::Status ApplyConfigFile(absl::string_view path);

// Same, from YAML text (tests).
absl::Status ApplyConfigText(absl::string_view yaml_text,
                             absl::string_view source_name);

}  // namespace cairn::server

#endif  // CAIRN_SERVER_CONFIG_H_
