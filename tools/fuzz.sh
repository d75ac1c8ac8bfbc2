#!/usr/bin/env bash
# Builds the libFuzzer targets (clang + ASan/UBSan, in build-asan/, the same
# build as tools/sanitize.sh address) and runs each for CAIRN_FUZZ_SECONDS
# (default 20) over its seed corpus. CI runs them as part of
# tools/sanitize.sh address.
set -euo pipefail
exec "$(dirname "$0")/sanitize.sh" fuzz
