#!/usr/bin/env bash
# The long soak: runs tests/integration/soak_test (the same program ctest runs
# for 60 s under label "soak") for CAIRN_SOAK_SECONDS (default 900) against
# the real cairn-server: 64 concurrent clients, mixed workload, a store
# smaller than the data. Prints ops/s, MiB written/read, misses, shed load,
# unexpected errors, data mismatches and the server's RSS early vs late, then
# verifies every stored blob. Loopback only.
# Usage: bench/soak.sh [build-dir]   (default: build; builds what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j "${CAIRN_JOBS:-2}" --target soak_test cairn-server
CAIRN_SOAK_SECONDS="${CAIRN_SOAK_SECONDS:-900}" \
  "$build/tests/soak_test" --gtest_brief=0
