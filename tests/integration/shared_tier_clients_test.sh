#!/usr/bin/env bash
# Real clients across two cairn-server nodes sharing one bucket of a
# throwaway Ceph RGW (tools/rgw.sh), each node with its own empty local tier:
#   Bazel  a build writing through node A; `bazel clean --expunge`; the same
#          build through node B: every action a remote cache hit, same outputs.
#   Go     a build with cairn-gocacheprog through A on machine A; a fresh
#          machine (other path, empty GOCACHE and shim dir) through B: zero
#          compile actions, identical binary.
# Usage: shared_tier_clients_test.sh SERVER_BINARY SHIM_BINARY
# Exits 77 (ctest: skipped) when Ceph, or both bazel and go, are absent; a
# client that is absent is skipped with a line saying so. Prints RESULT lines.
set -euo pipefail
server_bin=${1:?server binary}
shim=${2:?shim binary}
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
have_bazel=1 have_go=1
command -v bazel >/dev/null 2>&1 || have_bazel=0
command -v go >/dev/null 2>&1 || have_go=0
[ $have_bazel = 1 ] || [ $have_go = 1 ] || skip "neither bazel nor go on PATH"

work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-nodes-it.XXXXXX")
rgw_dir="" pids=() bazel_bases=()
cleanup() {
  for b in "${bazel_bases[@]}"; do
    (cd "$work/ws" && bazel --output_user_root="$work/bazel-root" \
      --output_base="$b" shutdown >/dev/null 2>&1) || true
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "$rgw_dir" ] && "$root/tools/rgw.sh" stop "$rgw_dir" >/dev/null 2>&1 || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

set +e
"$root/tools/rgw.sh" start >"$work/rgw.out" 2>&1
rc=$?
set -e
[ $rc = 77 ] && skip "Ceph RGW not installed (tools/install-deps.sh --s3)"
[ $rc = 0 ] || fail "rgw.sh start failed: $(tail -20 "$work/rgw.out")"
rgw_dir=$(sed -n 's/^dir=//p' "$work/rgw.out")
# shellcheck disable=SC1091
. "$rgw_dir/env"
export AWS_ACCESS_KEY_ID="$access_key" AWS_SECRET_ACCESS_KEY="$secret_key"

# node NAME: starts a node with an empty local tier; sets $addr.
node() {
  local dir="$work/node-$1"
  mkdir -p "$dir"
  "$server_bin" --listen=127.0.0.1:0 --dir="$dir/store" --fsync=false \
    --s3_endpoint="$endpoint" --s3_bucket="$bucket" --s3_prefix=it/ \
    --s3_path_style >"$dir/log" 2>&1 &
  pids+=($!)
  addr=""
  for _ in $(seq 150); do
    addr=$(grep -o 'listening on [0-9.]*:[0-9]*' "$dir/log" | awk '{print $3}' || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || fail "node $1 did not start: $(cat "$dir/log")"
}
node a
node_a=$addr
node b
node_b=$addr
echo "nodes: A=$node_a B=$node_b bucket=$bucket at $endpoint"

if [ $have_bazel = 1 ]; then
  ws="$work/ws"
  mkdir -p "$ws"
  echo 'workspace(name = "cairn_nodes_it")' >"$ws/WORKSPACE"
  echo "seed text" >"$ws/seed.txt"
  {
    prev="seed.txt"
    for i in 1 2 3 4 5 6; do
      echo "genrule(name = \"g$i\", srcs = [\"$prev\"], outs = [\"g$i.txt\"],"
      echo "        cmd = \"cat \$< > \$@ && echo step $i >> \$@\")"
      prev=":g$i"
    done
  } >"$ws/BUILD"
  base="$work/bazel-root/base"
  bazel_bases+=("$base")
  bz() {  # bz NODE LOG: builds //:all through NODE.
    (cd "$ws" && bazel --output_user_root="$work/bazel-root" --output_base="$base" \
      build --experimental_repository_disable_download \
      --remote_cache="grpc://$1" //:all >"$2" 2>&1) ||
      fail "bazel build through $1 failed: $(tail -30 "$2")"
  }
  bz "$node_a" "$work/bazel-a.log"
  cp -rL "$ws/bazel-bin" "$work/out-a"
  (cd "$ws" && bazel --output_user_root="$work/bazel-root" --output_base="$base" \
    clean --expunge >/dev/null 2>&1) || fail "bazel clean --expunge failed"
  bz "$node_b" "$work/bazel-b.log"
  summary=$(grep -o '[0-9]* processes*: .*' "$work/bazel-b.log" | tail -1 || true)
  hits=$(echo "$summary" | grep -o '[0-9]* remote cache hit' | awk '{print $1}' || true)
  for i in 1 2 3 4 5 6; do
    cmp -s "$work/out-a/g$i.txt" "$ws/bazel-bin/g$i.txt" || fail "g$i.txt differs"
  done
  echo "RESULT bazel through B after clean --expunge: $summary (${hits:-0} of 6 remote hits)"
  [ "${hits:-0}" = 6 ] || fail "expected 6 remote cache hits through B: $(tail -20 "$work/bazel-b.log")"
else
  echo "SKIPPED bazel part: no bazel on PATH"
fi

if [ $have_go = 1 ]; then
  export GOFLAGS=-trimpath GOPROXY=off GOTOOLCHAIN=local GOTELEMETRY=off \
    GOWORK=off GOENV=off CGO_ENABLED=0
  unset GOCACHEPROG
  machine() {
    local m="$work/machine-$1"
    mkdir -p "$m/gocache" "$m/shim"
    cp -r "$here/testdata/gomod" "$m/src"
    echo "$m"
  }
  run_go() {  # run_go MACHINE NODE LOG: go build -x through NODE.
    (cd "$1/src" && GOCACHE="$1/gocache" \
      GOCACHEPROG="$shim --dir=$1/shim --stats --timeout=5s --flush_timeout=20s --remote=grpc://$2 --prefetch_scope=nodes-it" \
      go build -x -o out/hello ./cmd/cairnhello) 2>"$3" ||
      fail "go build through $2 failed: $(tail -20 "$3")"
  }
  compiles() { grep -cE '/compile( |$)' "$1" || true; }
  A=$(machine A)
  run_go "$A" "$node_a" "$work/go-a.log"
  [ "$(compiles "$work/go-a.log")" -gt 0 ] || fail "machine A compiled nothing (not cold?)"
  B=$(machine B)
  run_go "$B" "$node_b" "$work/go-b.log"
  n=$(compiles "$work/go-b.log")
  echo "RESULT go fresh machine through B: $n compile actions (A: $(compiles "$work/go-a.log"))"
  [ "$n" -eq 0 ] || fail "fresh machine through B ran $n compile actions, want 0"
  cmp "$A/src/out/hello" "$B/src/out/hello" || fail "binaries differ between machines"
else
  echo "SKIPPED go part: no go on PATH"
fi
echo "PASS"
