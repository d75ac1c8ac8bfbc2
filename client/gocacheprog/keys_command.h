// `cairn-gocacheprog keys record|explain`: reads a GODEBUG=gocachehash=1
// stream, then records its actions' inputs in the remote cache or explains
// how they differ from the recorded ones (keys.h, keys_remote.h).
//
// Thread safety: one call at a time per stream.
#ifndef CAIRN_CLIENT_GOCACHEPROG_KEYS_COMMAND_H_
#define CAIRN_CLIENT_GOCACHEPROG_KEYS_COMMAND_H_

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "client/gocacheprog/keys.h"
#include "client/reapi_client.h"

namespace cairn::client::gocacheprog {

struct KeysCommandOptions {
  std::string subcommand;  // "record" or "explain"
  std::string machine;     // label stored with records / shown as "here"
  std::string scope;       // see RecordKey()
  RecordOptions record;
  bool json = false;       // explain: JSON instead of text
  size_t max_diffs = 8;    // explain: differing inputs shown per cause
  bool verbose = false;    // print parse counters on `err`
};

// Parses the stream read from `in` (to its end) and runs the subcommand
// against `client`, writing the report (explain) or a one-line summary
// (record) to `out`. INVALID_ARGUMENT for an unknown subcommand; record
// returns the first remote error after trying every action (explain treats
// a failing lookup as "no record" and says so).
absl::Status RunKeysCommand(const KeysCommandOptions& options,
                            ReapiClient& client, std::FILE* in,
                            std::FILE* out, std::FILE* err);

}  // namespace cairn::client::gocacheprog

#endif  // CAIRN_CLIENT_GOCACHEPROG_KEYS_COMMAND_H_
