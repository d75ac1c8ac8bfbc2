#!/usr/bin/env bash
# Runs each fuzz target exactly as CI does (seed CAIRN_FUZZ_SEED, default 1,
# and the target's RUNS from tests/fuzz/CMakeLists.txt) but without CI's time
# cap, from an empty work corpus: what CI runs on any machine, checked here
# before landing a change to fuzzed code. Builds build-asan/ first
# (tools/sanitize.sh fuzz's configuration).
# Usage: tools/fuzz-check.sh [TARGET...]   (default: every target)
set -euo pipefail
cd "$(dirname "$0")/.."
list="tests/fuzz/CMakeLists.txt"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^cairn_fuzz(\([a-z_0-9]*\).*/\1/p' "$list")
fi
[ -f build-asan/CMakeCache.txt ] || CAIRN_FUZZ_SECONDS=1 tools/sanitize.sh fuzz
cmake --build build-asan --target "${targets[@]}" -j"${CAIRN_JOBS:-2}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/tools/lsan.supp:print_suppressions=0"
failed=0
for t in "${targets[@]}"; do
  runs=$(perl -0ne 'print $1 if /cairn_fuzz\('"$t"'\b[^)]*RUNS (\d+)/' "$list")
  work=$(mktemp -d)
  mkdir "$work/corpus"
  start=$SECONDS
  if build-asan/fuzz/"$t" -seed="${CAIRN_FUZZ_SEED:-1}" -runs="${runs:?no RUNS for $t}" \
      -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/" \
      "$work/corpus" "tests/fuzz/corpus/$t" >"$work/log" 2>&1; then
    echo "fuzz-check: $t: $runs runs, no finding ($((SECONDS - start)) s)"
    rm -rf "$work"
  else
    echo "fuzz-check: $t FAILED; log and input in $work" >&2
    tail -30 "$work/log" >&2
    failed=1
  fi
done
exit $failed
