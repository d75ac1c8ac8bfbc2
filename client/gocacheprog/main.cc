// cairn-gocacheprog: Go's GOCACHEPROG protocol over a REAPI cache.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"

ABSL_FLAG(std::string, remote, "",
          "REAPI cache: grpc://HOST:PORT, grpcs://HOST:PORT or unix:///PATH.");
ABSL_FLAG(std::string, dir, "",
          "Local directory of bodies and index (default: user cache dir).");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "GOCACHEPROG for the go command, backed by a REAPI cache.\n"
      "Usage: GOCACHEPROG='cairn-gocacheprog --remote=grpc://HOST:PORT' go build");
  absl::ParseCommandLine(argc, argv);
  std::fprintf(stderr, "cairn-gocacheprog: not implemented yet\n");
  return 1;
}
