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
#   go (--go)    a Go program (tests/integration/testdata/gomod's cairnhello;
#                --go_target gh: gh v2.63.0, as bench/go_builds.sh builds it)
#                built with cairn-gocacheprog through A on machine
#                1 (cold, fills the bucket) and through W, a bucketless node
#                of the same kind (cold, fills W); then, alternating --reps
#                times, fresh machines through a fresh node (empty local
#                tier, warm bucket), through W (warm single node) and through
#                A (warm node over the bucket): medians, and the ratio cold
#                node / W (the target: within 1.5x)
#   bazel (--bazel)  the same with Bazel: a workspace of 200 genrules built
#                with --remote_cache through A and W; then, alternating,
#                `bazel clean` and a build through a fresh node and through W
#                (every action a remote cache hit: checked)
# Writes nodes.csv (metric,cairn,bazel-remote,load) into --out and prints it,
# and for each Cairn cold node its metrics (metrics-go-bN.txt, -bzN.txt)
# with a line of its bucket requests by kind (count, mean latency).
# Usage: bench/nodes.sh [--out DIR] [--go] [--go_target hello|gh] [--bazel]
#                       [--reps N]
# Env: NODES_SHIM_FLAGS, extra cairn-gocacheprog flags for every Go build of
# both servers (an A/B of a shim setting, e.g. --zstd=never);
# CAIRN_GH_MODULE_DIR, where gh's scratch module is kept between runs
# (default build/gh-module; its dependencies are downloaded once through
# the module proxy, the timed builds run with GOPROXY=off).
# Needs: tools/install-deps.sh --s3 (Ceph), build/bin/{cairn-server,
# cairn-gocacheprog,nodes_bench}, build/peers/bin/bazel-remote
# (tools/install-peers.sh), go for --go, bazel for --bazel. Take the lock:
#   flock LOCK bench/nodes.sh ...   (LOCK: the lock file benchmarks share)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
out=build/bench-out
go_part=0
go_target=hello
bazel_part=0
reps=3
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --go) go_part=1; shift ;;
    --go_target) go_target=$2; shift 2 ;;
    --bazel) bazel_part=1; shift ;;
    --reps) reps=$2; shift 2 ;;
    *) echo "usage: bench/nodes.sh [--out DIR] [--go] [--go_target hello|gh] [--bazel] [--reps N]" >&2; exit 2 ;;
  esac
done
case $go_target in
  hello | gh) ;;
  *) echo "nodes.sh: --go_target is hello or gh, not $go_target" >&2; exit 2 ;;
esac
gh_mod=""
if [ $go_part = 1 ] && [ "$go_target" = gh ]; then
  gh_mod=${CAIRN_GH_MODULE_DIR:-$(pwd)/build/gh-module}
  prepare_gh "$gh_mod"  # Before GOPROXY=off below.
fi
bin=$(cd "${CAIRN_BIN_DIR:-build/bin}" && pwd)  # Absolute: go runs the shim elsewhere.
br=${BAZEL_REMOTE:-build/peers/bin/bazel-remote}
for f in "$bin/cairn-server" "$bin/cairn-gocacheprog" "$bin/nodes_bench" "$br"; do
  [ -x "$f" ] || { echo "nodes.sh: $f missing" >&2; exit 1; }
done
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-nodes-bench.XXXXXX")
rgw_dir="" pids=() bazel_base=""
cleanup() {
  [ -n "$bazel_base" ] && (cd "$work/ws" && bazel --output_user_root="$work/bazel-root" \
    --output_base="$bazel_base" shutdown) >/dev/null 2>&1 || true
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
node() {  # node KIND NAME [local]: starts a node (local: no bucket); sets
  # $addr and, for Cairn, $mport (its metrics port).
  local dir="$work/$1-$2" port s3=()
  mkdir -p "$dir"
  port=$(free_port)
  if [ "$1" = cairn ]; then
    [ "${3:-}" = local ] || s3=(--s3_endpoint="$endpoint" --s3_bucket="$bucket"
      --s3_prefix=cairn/ --s3_path_style)
    mport=$(free_port)
    "$bin/cairn-server" --listen="127.0.0.1:$port" --dir="$dir/store" \
      --fsync=false --metrics_listen="127.0.0.1:$mport" "${s3[@]}" >"$dir/log" 2>&1 &
  else
    [ "${3:-}" = local ] || s3=(--s3.endpoint="${endpoint#http://}"
      --s3.bucket="$bucket" --s3.prefix=bazel-remote --s3.disable_ssl
      --s3.bucket_lookup_type=path --s3.auth_method=access_key
      --s3.access_key_id="$access_key" --s3.secret_access_key="$secret_key")
    "$br" --dir="$dir/store" --max_size=4 --grpc_address="127.0.0.1:$port" \
      --http_address="127.0.0.1:$(free_port)" "${s3[@]}" >"$dir/log" 2>&1 &
  fi
  pids+=($!)
  wait_port "$port" "$dir/log" || exit 1
  addr="127.0.0.1:$port"
}
field() { sed -n "s/^$1=//p" "$2"; }
phase() {  # phase NAME ADDR: runs nodes_bench; output in $work/NAME.out
  "$bin/nodes_bench" --target="grpc://$2" --phase="${1%%-*}" >"$work/$1.out"
}

# bucket_use KIND NAME: for a Cairn node (metrics on $mport), saves its
# metrics as $out/metrics-NAME.txt and prints its bucket requests by kind
# with their mean latency; nothing for bazel-remote.
bucket_use() {
  [ "$1" = cairn ] || return 0
  python3 - "$mport" "$out/metrics-$2.txt" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
open(sys.argv[2], "w").write(text)
n, secs = {}, {}
for m in re.finditer(r'^cairn_s3_requests_total\{kind="(\w+)",code="\w+"\} (\S+)$', text, re.M):
    n[m[1]] = n.get(m[1], 0) + float(m[2])
for m in re.finditer(r'^cairn_s3_request_seconds_sum\{kind="(\w+)"\} (\S+)$', text, re.M):
    secs[m[1]] = float(m[2])
print(", ".join(f"{k} {int(v)} ({1000 * secs.get(k, 0) / v:.0f} ms)"
                for k, v in sorted(n.items()) if v))
PY
}
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
ratio() { awk "BEGIN{printf \"%.2f\", $1/$2}"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# medians KIND TOOL "COLD_NODE_TIMES" "W_TIMES": the medians as
# val[KIND,TOOL_cold_node] and val[KIND,TOOL_warm_single], and cold node / W
# as val[KIND,TOOL_ratio].
medians() {
  local kind=$1 tool=$2
  # shellcheck disable=SC2086  # the times are words
  val[$kind,${tool}_cold_node]=$(median $3)
  # shellcheck disable=SC2086
  val[$kind,${tool}_warm_single]=$(median $4)
  val[$kind,${tool}_ratio]=$(ratio "${val[$kind,${tool}_cold_node]}" "${val[$kind,${tool}_warm_single]}")
}
declare -A val
# The Bazel workspace: 200 independent genrules of about 4 KB output each
# (build caches hold mostly small blobs) and a 5-step chain over them.
bazel_workspace() {
  local ws=$work/ws i
  mkdir -p "$ws"
  echo 'workspace(name = "cairn_nodes_bench")' >"$ws/WORKSPACE"
  {
    for i in $(seq 200); do
      echo "genrule(name = \"g$i\", outs = [\"g$i.txt\"],"
      echo "        cmd = \"for j in \$\$(seq 200); do echo rule $i line \$\$j; done > \$@\")"
    done
    echo 'genrule(name = "c0", srcs = [":g%d" % i for i in range(1, 201)], outs = ["c0.txt"], cmd = "cat $(SRCS) | sha256sum > $@")'
    for i in 1 2 3 4 5; do
      echo "genrule(name = \"c$i\", srcs = [\":c$((i - 1))\"], outs = [\"c$i.txt\"], cmd = \"cat \$< \$< > \$@\")"
    done
  } >"$ws/BUILD"
}
# bazel_build NODE LOG: `bazel clean`, then builds //:all through NODE;
# prints the build's wall time. CHECK_HITS=1: fails unless every action
# was a remote cache hit.
bazel_build() {
  local t0 t1
  (cd "$work/ws" && bazel --output_user_root="$work/bazel-root" \
    --output_base="$bazel_base" clean) >/dev/null 2>&1
  t0=$(date +%s.%N)
  (cd "$work/ws" && bazel --output_user_root="$work/bazel-root" \
    --output_base="$bazel_base" build --experimental_repository_disable_download \
    --remote_cache="grpc://$1" //:all) >"$2" 2>&1 ||
    { echo "nodes.sh: bazel build failed: $(tail -5 "$2")" >&2; exit 1; }
  t1=$(date +%s.%N)
  if [ "${CHECK_HITS:-0}" = 1 ] &&
    ! grep -q '206 remote cache hit' "$2"; then
    echo "nodes.sh: not every action hit through $1: $(grep processes "$2")" >&2
    exit 1
  fi
  awk "BEGIN{printf \"%.2f\", $t1-$t0}"
}
bazel_runs() {  # bazel_runs KIND (nodes A at $a and W at $w running)
  local kind=$1 i cold_node=() warm_single=()
  [ -d "$work/ws" ] || bazel_workspace
  bazel_base=$work/bazel-root/base
  val[$kind,bazel_cold]=$(bazel_build "$a" "$work/bz-$kind-a.log")
  if [ -z "${w:-}" ]; then
    node "$kind" w local
    w=$addr
  fi
  bazel_build "$w" "$work/bz-$kind-w.log" >/dev/null
  for i in $(seq "$reps"); do
    node "$kind" "bz$i"
    cold_node+=("$(CHECK_HITS=1 bazel_build "$addr" "$work/bz-$kind-b$i.log")")
    [ "$kind" != cairn ] || echo "cairn: bucket requests of cold node bz$i: $(bucket_use "$kind" "bz$i")"
    warm_single+=("$(CHECK_HITS=1 bazel_build "$w" "$work/bz-$kind-w$i.log")")
  done
  medians "$kind" bazel "${cold_node[*]}" "${warm_single[*]}"
  echo "$kind: bazel build (206 actions), first through A: ${val[$kind,bazel_cold]} s;" \
    "after bazel clean, through a cold node: ${cold_node[*]} s; through W (warm, no" \
    "bucket): ${warm_single[*]} s; cold node / W ${val[$kind,bazel_ratio]} (load $(loadavg))"
}
for kind in cairn bazel-remote; do
  w=""
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
    "PUTs per distinct object: ${val[$kind,puts_per_object]} (load $(loadavg))"
  if [ $go_part = 1 ]; then
    export GOFLAGS=-trimpath GOPROXY=off GOTOOLCHAIN=local GOTELEMETRY=off \
      GOWORK=off GOENV=off CGO_ENABLED=0
    unset GOCACHEPROG
    go_build() {  # go_build MACHINE NODE: prints the wall time in seconds.
      local m="$work/go-$kind-$1"
      rm -rf "$m" && mkdir -p "$m/gocache" "$m/shim"
      local src=$m/src pkg=./cmd/cairnhello
      if [ "$go_target" = gh ]; then
        src=$gh_mod pkg=github.com/cli/cli/v2/cmd/gh
      else
        cp -r tests/integration/testdata/gomod "$src"
      fi
      local t0 t1
      t0=$(date +%s.%N)
      (cd "$src" && GOCACHE="$m/gocache" \
        GOCACHEPROG="$bin/cairn-gocacheprog --dir=$m/shim --remote=grpc://$2 --prefetch_scope=nodes-bench --flush_timeout=60s ${NODES_SHIM_FLAGS:-}" \
        go build -o "$m/out" "$pkg") 2>"$m.log" ||
        { echo "nodes.sh: go build failed: $(tail -5 "$m.log")" >&2; exit 1; }
      t1=$(date +%s.%N)
      awk "BEGIN{printf \"%.2f\", $t1-$t0}"
    }
    val[$kind,go_cold]=$(go_build cold "$a")
    node "$kind" w local  # The baseline: a single node, no bucket.
    w=$addr
    go_build coldw "$w" >/dev/null
    cold_node=() warm_single=() warm_node=()
    for i in $(seq "$reps"); do
      node "$kind" "b$i"  # A fresh node each time: empty local tier.
      cold_node+=("$(go_build b$i "$addr")")
      [ "$kind" != cairn ] || echo "cairn: bucket requests of cold node b$i: $(bucket_use "$kind" "go-b$i")"
      warm_single+=("$(go_build w$i "$w")")
      warm_node+=("$(go_build a$i "$a")")
    done
    medians "$kind" go "${cold_node[*]}" "${warm_single[*]}"
    val[$kind,go_warm_node]=$(median "${warm_node[@]}")
    echo "$kind: go build, cold machine: ${val[$kind,go_cold]} s; fresh machine through a cold node:" \
      "${cold_node[*]} s; through W (warm, no bucket): ${warm_single[*]} s; through A (warm," \
      "bucket): ${warm_node[*]} s; cold node / W ${val[$kind,go_ratio]} (load $(loadavg))"
  fi
  if [ $bazel_part = 1 ]; then
    bazel_runs "$kind"
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
done

load=$(cut -d' ' -f1 /proc/loadavg)
{
  echo "metric,cairn,bazel-remote,load"
  for m in hit_blobs hit_ac find_requests puts_per_object go_cold go_cold_node \
    go_warm_single go_warm_node go_ratio bazel_cold bazel_cold_node \
    bazel_warm_single bazel_ratio; do
    [ -n "${val[cairn,$m]:-}" ] || continue
    echo "$m,${val[cairn,$m]},${val[bazel-remote,$m]:-},$load"
  done
} >"$out/nodes.csv"
cat "$out/nodes.csv"
