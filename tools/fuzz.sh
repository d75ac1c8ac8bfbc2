#!/usr/bin/env bash
# Builds the libFuzzer targets (clang + ASan/UBSan, in build-asan/, the same
# build as tools/sanitize.sh address) and runs each for CAIRN_FUZZ_SECONDS
# (default 20) over its seed corpus. CI runs them as part of
# tools/sanitize.sh address with a fixed seed; this script is the campaign:
# a new random seed per run (CAIRN_FUZZ_SEED=0) unless one is given. Add each
# crashing input it finds, once fixed, to tests/fuzz/corpus/<target>/.
set -euo pipefail
export CAIRN_FUZZ_SEED="${CAIRN_FUZZ_SEED:-0}"
exec "$(dirname "$0")/sanitize.sh" fuzz
