#!/usr/bin/env bash
# Several nodes over one bucket: Cairn's tiered store against bazel-remote
# with its S3 proxy, both on the same throwaway Ceph RGW (tools/rgw.sh), two
# nodes each (A and B, empty local stores, one key prefix per server kind).
# Bucket requests are the engine's own counters (radosgw perf dump: req, put,
# put_b), so both servers are counted alike.
#   write A      client 1 uploads 1000 small blobs and 200 action results
#                through A (bench/nodes_bench --phase=write)
#   check B      right after: FindMissingBlobs of the 1000 and GetActionResult
#                of the 200 through B: the second node's hit rate
#   find B       FindMissingBlobs of the same 1000, now known to B: bucket
#                requests per call
#   write B      client 2 uploads the same workload through B; 5 s later the
#                PUTs the bucket received in all, per distinct object (1200)
#   go (--go)    a Go program built with cairn-gocacheprog through A on machine
#                1 (cold); then, alternating --reps times, fresh machines
#                through a fresh node (empty local tier, warm bucket) and
#                through A (warm node): median wall times and their ratio
# Writes nodes.csv (metric,cairn,bazel-remote,load) into --out and prints it.
# Usage: bench/nodes.sh [--out DIR] [--go] [--reps N]
# Needs: tools/install-deps.sh --s3 (Ceph), build/bin/{cairn-server,
# cairn-gocacheprog,nodes_bench}, build/peers/bin/bazel-remote
# (tools/install-peers.sh), go for --go. Take the lock:
#   flock /work/team/bench.lock bench/nodes.sh ...   (any shared lock file)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=build/bench-out
go_part=0
reps=3
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --go) go_part=1; shift ;;
    --reps) reps=$2; shift 2 ;;
    *) echo "usage: bench/nodes.sh [--out DIR] [--go] [--reps N]" >&2; exit 2 ;;
  esac
done
bin=${CAIRN_BIN_DIR:-build/bin}
br=${BAZEL_REMOTE:-build/peers/bin/bazel-remote}
for f in "$bin/cairn-server" "$bin/cairn-gocacheprog" "$bin/nodes_bench" "$br"; do
  [ -x "$f" ] || { echo "nodes.sh: $f missing" >&2; exit 1; }
done
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-nodes-bench.XXXXXX")
rgw_dir="" pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "$rgw_dir" ] && tools/rgw.sh stop "$rgw_dir" >/dev/null 2>&1 || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

tools/rgw.sh start >"$work/rgw.out"
rgw_dir=$(sed -n 's/^dir=//p' "$work/rgw.out")
# shellcheck disable=SC1091
. "$rgw_dir/env"
export AWS_ACCESS_KEY_ID="$access_key" AWS_SECRET_ACCESS_KEY="$secret_key"

rgw() {  # rgw FIELD: the gateway's counter (req, put, put_b, get).
  ceph --admin-daemon "$rgw_dir/run/client.rgw.a.asok" perf dump |
    python3 -c "import json,sys; print(json.load(sys.stdin)['rgw']['$1'])"
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
  for _ in $(seq 150); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nodes.sh: nothing listens on $1: $(tail -5 "$2")" >&2
  exit 1
}
node() {  # node KIND NAME: starts a node; sets $addr.
  local dir="$work/$1-$2" port
  mkdir -p "$dir"
  port=$(free_port)
  if [ "$1" = cairn ]; then
    "$bin/cairn-server" --listen="127.0.0.1:$port" --dir="$dir/store" \
      --fsync=false --s3_endpoint="$endpoint" --s3_bucket="$bucket" \
      --s3_prefix=cairn/ --s3_path_style >"$dir/log" 2>&1 &
  else
    "$br" --dir="$dir/store" --max_size=4 --grpc_address="127.0.0.1:$port" \
      --http_address="127.0.0.1:$(free_port)" --s3.endpoint="${endpoint#http://}" \
      --s3.bucket="$bucket" --s3.prefix=bazel-remote --s3.disable_ssl \
      --s3.bucket_lookup_type=path --s3.auth_method=access_key \
      --s3.access_key_id="$access_key" --s3.secret_access_key="$secret_key" \
      >"$dir/log" 2>&1 &
  fi
  pids+=($!)
  wait_port "$port" "$dir/log"
  addr="127.0.0.1:$port"
}
field() { sed -n "s/^$1=//p" "$2"; }
phase() {  # phase NAME ADDR: runs nodes_bench; output in $work/NAME.out
  "$bin/nodes_bench" --target="grpc://$2" --phase="${1%%-*}" >"$work/$1.out"
}

declare -A val
for kind in cairn bazel-remote; do
  node "$kind" a
  a=$addr
  node "$kind" b
  b=$addr
  p0=$(rgw put)
  phase write-a "$a"
  phase check-b "$b"
  val[$kind,hit_blobs]=$(awk "BEGIN{printf \"%.1f\", 100*$(field blobs_present "$work/check-b.out")/$(field blobs "$work/check-b.out")}")
  val[$kind,hit_ac]=$(awk "BEGIN{printf \"%.1f\", 100*$(field ac_hits "$work/check-b.out")/$(field actions "$work/check-b.out")}")
  r0=$(rgw req)
  phase find-b "$b"
  r1=$(rgw req)
  val[$kind,find_requests]=$((r1 - r0))
  phase write-b "$b"
  sleep 5  # Asynchronous uploads (bazel-remote) land.
  p1=$(rgw put)
  val[$kind,puts_per_object]=$(awk "BEGIN{printf \"%.2f\", ($p1-$p0)/1200}")
  echo "$kind: B right after A: blobs ${val[$kind,hit_blobs]}%, action results ${val[$kind,hit_ac]}%;" \
    "FindMissing(1000 known) on B: ${val[$kind,find_requests]} bucket requests;" \
    "PUTs per distinct object: ${val[$kind,puts_per_object]} (load $(cut -d' ' -f1-3 /proc/loadavg))"
  if [ $go_part = 1 ]; then
    export GOFLAGS=-trimpath GOPROXY=off GOTOOLCHAIN=local GOTELEMETRY=off \
      GOWORK=off GOENV=off CGO_ENABLED=0
    unset GOCACHEPROG
    go_build() {  # go_build MACHINE NODE: prints the wall time in seconds.
      local m="$work/go-$kind-$1"
      rm -rf "$m" && mkdir -p "$m/gocache" "$m/shim"
      cp -r tests/integration/testdata/gomod "$m/src"
      local t0 t1
      t0=$(date +%s.%N)
      (cd "$m/src" && GOCACHE="$m/gocache" \
        GOCACHEPROG="$root/$bin/cairn-gocacheprog --dir=$m/shim --remote=grpc://$2 --prefetch_scope=nodes-bench --flush_timeout=60s" \
        go build -o out/hello ./cmd/cairnhello) 2>"$m.log" ||
        { echo "nodes.sh: go build failed: $(tail -5 "$m.log")" >&2; exit 1; }
      t1=$(date +%s.%N)
      awk "BEGIN{printf \"%.2f\", $t1-$t0}"
    }
    val[$kind,go_cold]=$(go_build cold "$a")
    cold_node=() warm_node=()
    for i in $(seq "$reps"); do
      node "$kind" "b$i"  # A fresh node each time: empty local tier.
      cold_node+=("$(go_build b$i "$addr")")
      warm_node+=("$(go_build a$i "$a")")
    done
    median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
    val[$kind,go_cold_node]=$(median "${cold_node[@]}")
    val[$kind,go_warm_node]=$(median "${warm_node[@]}")
    val[$kind,go_ratio]=$(awk "BEGIN{printf \"%.2f\", ${val[$kind,go_cold_node]}/${val[$kind,go_warm_node]}}")
    echo "$kind: go build, cold machine: ${val[$kind,go_cold]} s; fresh machine through B (cold node):" \
      "${cold_node[*]} s; through A (warm node): ${warm_node[*]} s; ratio ${val[$kind,go_ratio]}" \
      "(load $(cut -d' ' -f1-3 /proc/loadavg))"
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
done

load=$(cut -d' ' -f1 /proc/loadavg)
{
  echo "metric,cairn,bazel-remote,load"
  for m in hit_blobs hit_ac find_requests puts_per_object go_cold go_cold_node go_warm_node go_ratio; do
    [ -n "${val[cairn,$m]:-}" ] || continue
    echo "$m,${val[cairn,$m]},${val[bazel-remote,$m]:-},$load"
  done
} >"$out/nodes.csv"
cat "$out/nodes.csv"
