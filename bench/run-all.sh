#!/usr/bin/env bash
# Runs every Cairn benchmark and leaves the tables in $OUT (default
# build-bench/bench-out): builds the benchmark targets (Release, build-bench),
# installs gnuplot and bazel-remote if missing, then
#   1. compare.py      REAPI loads against cairn-server and bazel-remote
#   2. go_builds.sh    Go build scenarios (gh v2.63.0 and std), records the
#                      std request stream
#   3. shim_replay.py  shim per-request latency over that stream
# Usage: bench/run-all.sh [--quick]   (--quick: 1 repetition, small counts)
# Takes about 20 minutes on a quiet 2-core machine (18 min measured with
# NOCACHE_REPS=1, Release build included).
set -euo pipefail
cd "$(dirname "$0")/.."
export CAIRN_BUILD=${CAIRN_BUILD:-build-bench}
# ccache keys on paths relative to the checkout (as in tools/build.sh).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
out=${OUT:-$(pwd)/$CAIRN_BUILD/bench-out}
mkdir -p "$out"
# Overridable: REPS, REQUESTS, DURATION, GO_REPS, NOCACHE_REPS.
reps=${REPS:-3} requests=${REQUESTS:-20000} duration=${DURATION:-5}
go_reps=${GO_REPS:-3} nocache_reps=${NOCACHE_REPS:-2}
if [ "${1:-}" = "--quick" ]; then
  reps=1 requests=500 go_reps=1 nocache_reps=1
fi
tools/install-deps.sh --bench
tools/install-peers.sh
cmake -S . -B "$CAIRN_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$CAIRN_BUILD" -j2 reapi_load cairn-server cairn-gocacheprog
{
  echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -r), $(go version)"
  date -u +"run: %Y-%m-%dT%H:%M:%SZ"
} | tee "$out/machine.txt"
bench/compare.py --reps "$reps" --requests "$requests" --duration "$duration" \
  --out "$out" | tee "$out/compare.txt"
bench/go_builds.sh --reps "$go_reps" --nocache_reps "$nocache_reps" --out "$out" \
  --record "$out/std-stream.jsonl" | tee "$out/go_builds.txt"
bench/shim_replay.py --record "$out/std-stream.jsonl" --peer --out "$out" | tee "$out/shim_replay.txt"
bench/tables.py "$out" > "$out/tables.md"
echo "run-all: tables in $out (Markdown: $out/tables.md)" >&2
