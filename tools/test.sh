#!/usr/bin/env bash
# Builds Cairn and runs every test (ctest: unit, service, integration with the
# real binaries, the real go command and bazel-remote).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/build.sh
tools/install-peers.sh
cd "${CAIRN_BUILD_DIR:-build}"
ctest --output-on-failure -j "$(nproc)"
