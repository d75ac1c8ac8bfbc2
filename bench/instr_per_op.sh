#!/usr/bin/env bash
# Server instructions per operation, counted by callgrind: a figure that does
# not move with the machine's load, unlike CPU seconds (this 2-core machine
# is shared; server CPU per op moves ~30% between runs), for A/B of changes
# to the server's own code. Kernel time (syscalls, the network stack) is not
# counted, and under valgrind the threads run one at a time, so calls batch
# differently: compare binaries with this, report CPU with compare.py.
#
# Each SERVER runs under `valgrind --tool=callgrind` with a fresh store;
# reapi_load runs MIX at 32 streams three times with the same seed: a
# warm-up, then 500 and 3500 operations, each with callgrind's counters
# zeroed before and dumped after. Both dumps include the mix's set-up
# (identical), so (Ir of 3500 - Ir of 500) / 3000 is the instructions one
# operation costs the server. The dumps stay in OUT for callgrind_annotate.
#
# Usage: bench/instr_per_op.sh [--mix ac_get_miss] [--out DIR] SERVER...
# Needs: valgrind, $CAIRN_BUILD/bin/reapi_load (default build-bench).
# About 30 s per server and mix.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=${CAIRN_BUILD:-build-bench}
mix=ac_get_miss
out=$root/$build/bench-out/instr
while [ $# -gt 0 ]; do
  case "$1" in
    --mix) mix=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --*) echo "instr_per_op: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--mix MIX] [--out DIR] SERVER..." >&2; exit 2; }
load=$root/$build/bin/reapi_load
[ -x "$load" ] || { echo "instr_per_op: missing $load" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "instr_per_op: no valgrind" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-instr.XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

total() {
  callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}

n=0
for server in "$@"; do
  n=$((n + 1))
  name="$n-$(basename "$server").$mix"
  port=$(free_port)
  valgrind --tool=callgrind --callgrind-out-file="$out/$name.cg" "$server" \
    --listen "127.0.0.1:$port" --dir "$work/store$n" --max_size 20GiB \
    --metrics_listen "127.0.0.1:$(free_port)" >"$out/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  run() {
    timeout 600 "$load" --target "grpc://127.0.0.1:$port" --mix "$mix" \
      --concurrency 32 --requests "$1" --duration 300 --warmup 0 --seed 7 \
      >/dev/null
  }
  run 300
  callgrind_control -z "$pid" >/dev/null 2>&1
  run 500
  callgrind_control -d "$pid" >/dev/null 2>&1
  callgrind_control -z "$pid" >/dev/null 2>&1
  run 3500
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  a=$(total "$out/$name.cg.1")
  b=$(total "$out/$name.cg.2")
  echo "$server $mix: $(((b - a) / 3000)) instructions per operation"
done
