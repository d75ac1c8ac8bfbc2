// cairn-server: a Remote Execution API v2 cache server.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:9092",
          "Address to serve gRPC on, HOST:PORT (port 0 picks a free port).");
ABSL_FLAG(std::string, dir, "~/.cache/cairn",
          "Directory holding the store (created if absent).");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "A Remote Execution API v2 cache server.\n"
      "Usage: cairn-server [--listen=HOST:PORT] [--dir=PATH] ...");
  absl::ParseCommandLine(argc, argv);
  std::fprintf(stderr, "cairn-server: not implemented yet\n");
  return 1;
}
