#!/usr/bin/env bash
# End-to-end test of cairn-gocacheprog with the real go command against a real
# REAPI server (bazel-remote or cairn-server).
#
# Usage: go_cacheprog_test.sh SHIM SERVER_KIND SERVER_BINARY
#   SERVER_KIND: bazel-remote | cairn-server
# Exits 77 (ctest: skipped) with a message when go or the server is absent.
#
# Scenarios, each a separate "machine" (own GOCACHE, own shim dir, own
# checkout path, -trimpath):
#   A  cold build + go test: empty remote, empty local             (measured)
#   B  fresh machine: zero compile actions, identical binary,
#      every package of go test "(cached)"                         (measured)
#   B2 same machine again, empty GOCACHE: answered by the local tier (measured)
#   C  --read_only on changed sources: builds, uploads nothing (D proves it)
#   E  remote down from the start: the build succeeds
#   F  server killed in the middle of a cold build: the build succeeds
set -euo pipefail

shim=${1:?shim binary}
kind=${2:?server kind}
server_bin=${3:?server binary}
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/integration/lib.sh
. "$here/lib.sh"

command -v go >/dev/null 2>&1 || skip "no go command on PATH"
[ -x "$shim" ] || fail "shim $shim not built"
shim=$(absolute "$shim")
if [ ! -x "$server_bin" ]; then
  case $kind in
    bazel-remote) skip "bazel-remote not installed at $server_bin (run tools/install-peers.sh)" ;;
    *) skip "$kind not built at $server_bin" ;;
  esac
fi

new_work go-it
server_pid=""
stop_server() {
  stop_pid "$server_pid"
  server_pid=""
}
go_offline
export GOFLAGS=-trimpath

# start_server NAME: starts a server with an empty store; sets $remote.
start_server() {
  local dir="$work/server-$1"
  mkdir -p "$dir"
  case $kind in
    bazel-remote)
      "$server_bin" --dir="$dir/store" --max_size=4 --http_address=127.0.0.1:0 \
        --grpc_address="unix://$dir/grpc.sock" >"$dir/log" 2>&1 &
      server_pid=$!
      pids+=("$server_pid")
      remote="unix://$dir/grpc.sock"
      for _ in $(seq 100); do [ -S "$dir/grpc.sock" ] && break; sleep 0.1; done
      [ -S "$dir/grpc.sock" ] || fail "bazel-remote did not start: $(cat "$dir/log")"
      ;;
    cairn-server)
      start_cairn "$server_bin" "$dir/store" "$dir/log"
      remote="grpc://$addr"
      ;;
    *) fail "unknown server kind $kind" ;;
  esac
}

# machine NAME: a fresh checkout of the test module with its own caches.
machine() {
  local m="$work/machine-$1"
  mkdir -p "$m/gocache" "$m/shim"
  cp -r "$here/testdata/gomod" "$m/src"
  echo "$m"
}

# run_go MACHINE LOG SHIMFLAGS GOARGS...: runs go in the machine's checkout
# with GOCACHEPROG set; stderr (go -x output and shim stats) goes to LOG.
run_go() {
  local m=$1 log=$2 flags=$3
  shift 3
  (cd "$m/src" && GOCACHE="$m/gocache" \
    GOCACHEPROG="$shim --dir=$m/shim --stats --timeout=5s --flush_timeout=20s $flags" \
    go "$@") 2>"$log"
}

stat_of() { grep -o "$2=[0-9.]*" "$1" | tail -1 | cut -d= -f2; }
compiles() { grep -cE '/compile( |$)' "$1" || true; }

# budget_explains LOG: true when the run missed and every miss is one the
# latency budget answered by design (over_budget: the get waited its
# --get_budget; bodies_skipped: the body would have arrived after it). On a
# starved machine a remote hit can take longer than the budget; any other
# miss of a filled remote is a bug.
budget_explains() {
  local misses explained
  misses=$(stat_of "$1" misses)
  explained=$(($(stat_of "$1" over_budget) + $(stat_of "$1" bodies_skipped)))
  [ "$misses" -gt 0 ] && [ "$misses" -le "$explained" ] || return 1
  echo "note: $misses miss(es) in $(basename "$1"), all answered by the latency budget (over_budget + bodies_skipped = $explained; load $(cut -d' ' -f1 /proc/loadavg))"
}

report() {  # report LABEL LOG SECONDS
  printf 'MEASURE %-13s %-28s wall=%6ss gets=%s local_hits=%s remote_hits=%s misses=%s puts=%s uploads=%s bytes_down=%s bytes_up=%s remote_wait=%ss prefetch_hits=%s bundle_hits=%s compiles=%s\n' \
    "$kind" "$1" "$3" "$(stat_of "$2" gets)" "$(stat_of "$2" local_hits)" \
    "$(stat_of "$2" remote_hits)" "$(stat_of "$2" misses)" "$(stat_of "$2" puts)" \
    "$(stat_of "$2" uploads)" "$(stat_of "$2" bytes_down)" "$(stat_of "$2" bytes_up)" \
    "$(stat_of "$2" remote_wait)" "$(stat_of "$2" prefetch_hits)" \
    "$(stat_of "$2" bundle_hits)" "$(compiles "$2")"
}

echo "== $kind: cold build on machine A"
start_server main
A=$(machine A)
t=$(now)
# Machines A and B check out into different directories: one explicit
# prefetch scope makes them "the same build" (docs/go.md, Prefetch).
scope="--prefetch_scope=integration-cairnhello"
run_go "$A" "$work/a.log" "--remote=$remote $scope" build -x -o out/hello ./cmd/cairnhello ||
  fail "cold build failed: $(tail -20 "$work/a.log")"
report "A cold build" "$work/a.log" "$(elapsed "$t")"
[ "$(stat_of "$work/a.log" uploads)" -gt 0 ] || fail "machine A uploaded nothing"
[ "$(stat_of "$work/a.log" manifests_stored)" -eq 1 ] || fail "machine A stored no prefetch manifest"
[ "$(stat_of "$work/a.log" bundles_stored)" -eq 1 ] || fail "machine A stored no prefetch bundle"
run_go "$A" "$work/a-test.log" "--remote=$remote" test ./... >"$work/a-test.out" ||
  fail "go test on A failed: $(cat "$work/a-test.out") $(tail "$work/a-test.log")"

echo "== $kind: fresh machine B (other path, empty GOCACHE and shim dir)"
B=$(machine B)
t=$(now)
run_go "$B" "$work/b.log" "--remote=$remote $scope" build -x -o out/hello ./cmd/cairnhello ||
  fail "build on B failed: $(tail -20 "$work/b.log")"
report "B warm remote, cold local" "$work/b.log" "$(elapsed "$t")"
# Zero compile actions, except one per miss the latency budget explains.
b_compiles=$(compiles "$work/b.log")
[ "$b_compiles" -eq 0 ] ||
  { budget_explains "$work/b.log" && [ "$b_compiles" -le "$(stat_of "$work/b.log" misses)" ]; } ||
  fail "fresh machine ran $b_compiles compile actions with $(stat_of "$work/b.log" misses) misses, want 0 (or only budget misses): $(grep 'stats:' "$work/b.log" | tail -1)"
cmp "$A/src/out/hello" "$B/src/out/hello" || fail "binaries differ between machines"
# The bundle A stored warms B: entries from its parts, no per-entry prefetch.
[ "$(stat_of "$work/b.log" bundle_hits)" -gt 0 ] || fail "fresh machine had no bundle hits"
run_go "$B" "$work/b-test.log" "--remote=$remote" test ./... >"$work/b-test.out" ||
  fail "go test on B failed: $(cat "$work/b-test.out")"
cat "$work/b-test.out"
pkgs=$(grep -c '^ok' "$work/b-test.out" || true)
cached=$(grep -c '^ok.*(cached)' "$work/b-test.out" || true)
[ "$pkgs" -eq 4 ] && { [ "$cached" -eq 4 ] || budget_explains "$work/b-test.log"; } ||
  fail "go test on B: $cached of $pkgs packages (cached), want 4 of 4 (or only budget misses): $(grep 'stats:' "$work/b-test.log" | tail -1)"

echo "== $kind: machine B again with an empty GOCACHE (local tier)"
rm -rf "$B/gocache" "$B/src/out" && mkdir -p "$B/gocache"
t=$(now)
run_go "$B" "$work/b2.log" "--remote=$remote" build -x -o out/hello ./cmd/cairnhello ||
  fail "warm-local build failed"
report "B2 warm local" "$work/b2.log" "$(elapsed "$t")"
[ "$(stat_of "$work/b2.log" remote_hits)" -eq 0 ] || fail "warm-local build went to the remote"
[ "$(compiles "$work/b2.log")" -eq 0 ] || fail "warm-local build compiled"

echo "== $kind: --read_only uploads nothing"
C=$(machine C)
printf 'package mathx\n\n// Triple returns 3x.\nfunc Triple(x int) int { return 3 * x }\n' \
  >"$C/src/internal/mathx/triple.go"
run_go "$C" "$work/c.log" "--remote=$remote --read_only" build ./... ||
  fail "read-only build failed: $(tail "$work/c.log")"
[ "$(stat_of "$work/c.log" puts)" -gt 0 ] || fail "read-only build put nothing locally"
[ "$(stat_of "$work/c.log" uploads)" -eq 0 ] || fail "read-only build uploaded"
D=$(machine D)
cp "$C/src/internal/mathx/triple.go" "$D/src/internal/mathx/"
run_go "$D" "$work/d.log" "--remote=$remote --read_only" build -x ./... ||
  fail "build on D failed"
[ "$(compiles "$work/d.log")" -gt 0 ] || fail "the read-only machine's outputs reached the server"

echo "== $kind: remote down from the start"
stop_server
E=$(machine E)
t=$(now)
run_go "$E" "$work/e.log" "--remote=$remote" build ./internal/... ||
  fail "build with the remote down failed: $(tail "$work/e.log")"
echo "remote down: build ok in $(elapsed "$t")s; $(grep -c 'warning: remote cache' "$work/e.log") warning(s)"
[ "$(grep -c 'warning: remote cache' "$work/e.log")" -eq 1 ] || fail "want exactly one warning"

echo "== $kind: server killed in the middle of a cold build"
start_server kill
F=$(machine F)
t=$(now)
run_go "$F" "$work/f.log" "--remote=$remote" build -o out/hello ./cmd/cairnhello &
go_pid=$!
for _ in $(seq 300); do  # Kill once uploads are flowing.
  [ "$(wc -l < "$F/shim/entries" 2>/dev/null || echo 0)" -ge 20 ] && break  # Entries journaled.
  sleep 0.1
done
stop_server
wait "$go_pid" || fail "build failed after the server was killed: $(tail "$work/f.log")"
echo "server killed mid-build: build ok in $(elapsed "$t")s"
grep -q 'warning: remote cache' "$work/f.log" || fail "the outage went unnoticed (killed too late?)"
cmp "$A/src/out/hello" "$F/src/out/hello" || fail "binary differs after the outage"
echo "PASS ($kind)"
