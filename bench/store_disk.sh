#!/usr/bin/env bash
# Disk used by the `gh` cache with blobs kept compressed at rest
# (--store_compressed=auto) and without (never).
#
# One cold `gh` build (github.com/cli/cli/v2 v2.63.0, as bench/go_builds.sh
# builds it: empty GOCACHE, GOCACHEPROG shim with an empty --dir) fills a
# cairn-server with --store_compressed=auto; the shim's request stream is
# recorded (bench/shim_tee.sh). The same stream is then replayed through a
# fresh shim into a server with --store_compressed=never and into a second
# one with auto, so that both stores receive the same uploads (the shim
# compresses its uploads whenever the server advertises zstd). Each server
# is stopped (SIGTERM) before its directory is measured: du's allocated
# bytes and apparent bytes of the whole store (RocksDB's small/ included),
# and the count and bytes of the cas/ files.
#
# Usage: bench/store_disk.sh [--out DIR]
# Needs: go >= 1.24, build-bench/bin/{cairn-server,cairn-gocacheprog}
# (CAIRN_BUILD names another build dir).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=${CAIRN_BUILD:-build-bench}
out=$root/$build/bench-out
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    *) echo "store_disk: unknown option $1" >&2; exit 2 ;;
  esac
done
server=$root/$build/bin/cairn-server
shim=$root/$build/bin/cairn-gocacheprog
for b in "$server" "$shim"; do
  [ -x "$b" ] || { echo "store_disk: missing $b" >&2; exit 1; }
done
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-store-disk.XXXXXX")
mod=${CAIRN_GH_MODULE_DIR:-$root/$build/gh-module}
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
export GOFLAGS="-mod=mod -buildvcs=false"
export GOTOOLCHAIN=local

start_server() {  # start_server MODE DIR: sets $port and $pid
  port=$(free_port)
  "$server" --listen "127.0.0.1:$port" --dir "$2" --max_size 20GiB \
    --store_compressed "$1" >"$work/server-$(basename "$2").log" 2>&1 &
  pid=$!
  wait_port "$port" "$work/server-$(basename "$2").log" || exit 1
}

stop_server() {
  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
}

# measure NAME MODE DIR: one CSV row.
measure() {
  local alloc apparent files cas_bytes zst
  alloc=$(du -sB1 "$3" | cut -f1)
  apparent=$(du -sb --apparent-size "$3" | cut -f1)
  files=$(find "$3/cas" -type f | wc -l)
  zst=$(find "$3/cas" -type f -name '*.zst' | wc -l)
  cas_bytes=$(find "$3/cas" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d", s}')
  echo "$1,$2,$alloc,$apparent,$files,$zst,$cas_bytes" >>"$csv"
  printf 'store_disk: %-12s %-6s allocated=%s apparent=%s cas_files=%s zst_files=%s cas_file_bytes=%s\n' \
    "$1" "$2" "$alloc" "$apparent" "$files" "$zst" "$cas_bytes" >&2
}

csv=$out/store_disk.csv
echo "run,store_compressed,allocated_bytes,apparent_bytes,cas_files,zst_files,cas_file_bytes" >"$csv"

prepare_gh "$mod"  # As bench/go_builds.sh builds it (downloads untimed).

stream=$work/gh.stream
start_server auto "$work/build-auto"
(
  cd "$mod"
  export GOCACHE=$work/gocache
  export GOCACHEPROG="$root/bench/shim_tee.sh $stream $shim --remote=grpc://127.0.0.1:$port --dir=$work/shim-build --stats"
  timeout 1800 go build -trimpath -o "$work/gh" github.com/cli/cli/v2/cmd/gh
) >"$work/build.log" 2>&1 || { tail -20 "$work/build.log" >&2; exit 1; }
grep -o 'cairn-gocacheprog: stats: .*' "$work/build.log" | tail -1 >&2 || true
stop_server
measure build auto "$work/build-auto"

for mode in never auto; do
  start_server "$mode" "$work/replay-$mode"
  "$shim" --remote="grpc://127.0.0.1:$port" --dir="$work/shim-$mode" --stats \
    <"$stream" >/dev/null 2>"$work/replay-$mode.log"
  grep -o 'stats: .*' "$work/replay-$mode.log" | tail -1 >&2 || true
  stop_server
  measure replay "$mode" "$work/replay-$mode"
done

python3 - "$csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
never = next(r for r in rows if r["run"] == "replay" and r["store_compressed"] == "never")
print("| run | --store_compressed | allocated (MB) | apparent (MB) | cas files (.zst) | vs never |")
print("|---|---|---:|---:|---:|---:|")
for r in rows:
    a = int(r["allocated_bytes"])
    print(f"| {r['run']} | {r['store_compressed']} | {a / 1e6:.1f} | "
          f"{int(r['apparent_bytes']) / 1e6:.1f} | {r['cas_files']} ({r['zst_files']}) | "
          f"{a / int(never['allocated_bytes']):.2f}x |")
EOF
