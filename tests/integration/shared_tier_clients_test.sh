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

# shellcheck disable=SC1091
. "$here/lib.sh"
. "$here/genrule_workspace.sh"
have_bazel=1 have_go=1
command -v bazel >/dev/null 2>&1 || have_bazel=0
command -v go >/dev/null 2>&1 || have_go=0
[ $have_bazel = 1 ] || [ $have_go = 1 ] || skip "neither bazel nor go on PATH"

new_work nodes-it
rgw_dir="" bazel_bases=()
# lib.sh's cleanup: this hook, then kill -9 of $pids, then rm -rf $work.
cleanup_hook=stop_all
stop_all() {
  local b p
  for b in "${bazel_bases[@]}"; do
    (cd "$work/ws" && bazel --output_user_root="$work/bazel-root" \
      --output_base="$b" shutdown >/dev/null 2>&1) || true
  done
  for p in "${pids[@]}"; do stop_pid "$p"; done
  if [ -n "$rgw_dir" ]; then
    "$root/tools/rgw.sh" stop "$rgw_dir" >/dev/null 2>&1 || true
  fi
}

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
  mkdir -p "$work/node-$1"
  start_cairn "$server_bin" "$work/node-$1/store" "$work/node-$1/log" \
    --fsync=false --s3_endpoint="$endpoint" --s3_bucket="$bucket" \
    --s3_prefix=it/ --s3_path_style
}
node a
node_a=$addr
node b
node_b=$addr
echo "nodes: A=$node_a B=$node_b bucket=$bucket at $endpoint"

if [ $have_bazel = 1 ]; then
  ws="$work/ws"
  genrule_workspace "$ws" cairn_nodes_it
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
  go_offline
  export GOFLAGS=-trimpath
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
