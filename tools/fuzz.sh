#!/usr/bin/env bash
# Builds the libFuzzer targets with clang + ASan/UBSan into build-fuzz/ and
# runs each for CAIRN_FUZZ_SECONDS (default 20) over its seed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh --fuzz
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAIRN_FUZZ=ON -DCAIRN_SANITIZE=address \
  -DCAIRN_BENCH=OFF -DCAIRN_FUZZ_SECONDS="${CAIRN_FUZZ_SECONDS:-20}" >/dev/null
targets=$(sed -n 's/^cairn_fuzz(\([a-z_]*\).*/\1/p' tests/fuzz/CMakeLists.txt)
# shellcheck disable=SC2086
cmake --build build-fuzz --target $targets
cd build-fuzz
ctest -L fuzz --output-on-failure
