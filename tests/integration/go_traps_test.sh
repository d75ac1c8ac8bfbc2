#!/usr/bin/env bash
# The Go-side traps of a GOCACHEPROG, with the real go command, the shim and
# cairn-server (docs/go.md; docs/go-cache.md):
#   1  DiskPath files (go list -export) have no extension, are named by
#      their content, and stay valid after close, even after the next go
#      command's shim trims its directory far below their size;
#   2  an executable built from remote hits works, twice (go run);
#   3  a remote hit carries the original put Time: after go clean -testcache
#      the test reruns instead of showing (cached);
#   4  test results that read testdata/ hit on another machine (fresh copy,
#      fresh mtimes) after cairn-gocacheprog normalize-mtimes, and miss
#      without it;
#   5  a remote that accepts connections and never answers: puts succeed
#      locally, the build succeeds, close returns.
# Usage: go_traps_test.sh SHIM CAIRN_SERVER. Exits 77 (skipped) without go.
set -euo pipefail

shim=${1:?shim binary}
server_bin=${2:?server binary}
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/integration/lib.sh
. "$here/lib.sh"

command -v python3 >/dev/null 2>&1 || skip "no python3 (the hanging remote)"
go_shim_test go-traps
export GOFLAGS=-trimpath TZ=UTC

start_cairn "$server_bin" "$work/store" "$work/server.log"
remote="grpc://$addr"

# machine NAME [cp flags]: own caches and a fresh checkout. Every machine
# checks out at the same path, as CI runners do: the go command hashes the
# absolute path of each file a test opens into the result's key.
src="$work/src"
machine() {
  local m="$work/m-$1"
  mkdir -p "$m/gocache" "$m/shim"
  rm -rf "$src"
  cp -r ${2:-} "$here/testdata/gotraps" "$src"
  echo "$m"
}
# run_go MACHINE SHIMFLAGS GOARGS...: go in the checkout with the machine's
# caches; stderr (shim stats) appended to MACHINE/log, stdout printed.
run_go() {
  local m=$1 flags=$2
  shift 2
  (cd "$src" && GOCACHE="$m/gocache" \
    GOCACHEPROG="$shim --dir=$m/shim --stats --timeout=5s --flush_timeout=10s $flags" \
    go "$@") 2>>"$m/log"
}
stat_of() { grep -o "$2=[0-9]*" "$1" | tail -1 | cut -d= -f2; }
start=$(date +%s)

echo "== 1: DiskPath files after close"
A=$(machine A -p)
run_go "$A" "--remote=$remote" test ./... >"$A/test.out" || fail "go test on A: $(cat "$A/test.out" "$A/log")"
exports=$(run_go "$A" "--remote=$remote" list -export -f '{{.Export}}' ./... fmt) ||
  fail "go list -export: $(tail "$A/log")"
[ "$(echo "$exports" | grep -c .)" -eq 3 ] || fail "want 3 export files, got: $exports"
# The next go command's shim trims its directory to 1 byte.
run_go "$A" "--remote=$remote --local_max_size=1" vet ./... || fail "go vet on A"
for f in $exports; do
  base=$(basename "$f")
  [[ "$f" == /* ]] || fail "DiskPath $f is not absolute"
  [[ "$base" =~ ^[0-9a-f]{64}$ ]] || fail "DiskPath $f: name is not a bare hex OutputID"
  [ -f "$f" ] || fail "DiskPath $f is gone after close"
  [ "$(sha256sum "$f" | cut -c1-64)" = "$base" ] || fail "DiskPath $f: content changed"
done

echo "== 2: go run from remote hits, twice"
B=$(machine B -p)
for i in 1 2; do
  out=$(run_go "$B" "--remote=$remote" run ./cmd/wc one two three) || fail "go run $i on B: $(tail "$B/log")"
  [ "$out" = "words: 3" ] || fail "go run $i on B printed '$out'"
  [ "$i" = 2 ] || [ "$(stat_of "$B/log" remote_hits)" -gt 0 ] || fail "go run on B had no remote hits"
done

echo "== 3: original put Time on a remote hit (go clean -testcache)"
C=$(machine C -p)
run_go "$C" "--remote=$remote" clean -testcache || fail "go clean -testcache on C"
run_go "$C" "--remote=$remote" test ./words >"$C/test1.out" ||
  fail "go test on C: $(cat "$C/test1.out") $(tail "$C/log")"
grep -q '^ok.*(cached)' "$C/test1.out" &&
  fail "test result from before go clean -testcache was used: $(cat "$C/test1.out")"
run_go "$C" "--remote=$remote" test ./words >"$C/test2.out" || fail "go test 2 on C"
grep -q '^ok.*(cached)' "$C/test2.out" || fail "rerun result not cached: $(cat "$C/test2.out")"
D=$(machine D -p)  # Control: without the clean, the remote result is used.
run_go "$D" "--remote=$remote" test ./words >"$D/test.out" || fail "go test on D"
grep -q '^ok.*(cached)' "$D/test.out" || fail "control machine D missed: $(cat "$D/test.out")"

echo "== 4: testdata/ across machines with normalize-mtimes"
N1=$(machine N1)
"$shim" normalize-mtimes "$src" || fail "normalize-mtimes on N1"
run_go "$N1" "--remote=$remote" test ./words >"$N1/test.out" || fail "go test on N1"
N2=$(machine N2)
touch "$src/words/testdata/input.txt"  # A fresh clone's mtimes.
"$shim" normalize-mtimes "$src" || fail "normalize-mtimes on N2"
run_go "$N2" "--remote=$remote" test ./words >"$N2/test.out" || fail "go test on N2"
cat "$N2/test.out"
grep -q '^ok.*(cached)' "$N2/test.out" || fail "normalized copy missed: $(cat "$N2/test.out")"
N3=$(machine N3)  # Control: the same fresh copy without normalizing misses.
touch "$src/words/testdata/input.txt"
sleep 2.1  # The go command refuses to cache results reading newer files.
run_go "$N3" "--remote=$remote" test ./words >"$N3/test.out" || fail "go test on N3"
grep -q '^ok.*(cached)' "$N3/test.out" && fail "control N3 hit without normalizing"

echo "== 5: a remote that never answers"
python3 -c 'import socket,sys,time
s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(128); time.sleep(3600)' \
  "$work/hang.sock" &
pids+=($!)
for _ in $(seq 50); do [ -S "$work/hang.sock" ] && break; sleep 0.1; done
E=$(machine E -p)
t=$(date +%s)
run_go "$E" "--remote=unix://$work/hang.sock --timeout=3s --flush_timeout=2s" build ./words >"$E/test.out" ||
  fail "go build with a hanging remote: $(cat "$E/test.out") $(tail "$E/log")"
[ "$(stat_of "$E/log" puts)" -gt 0 ] || fail "no puts with the hanging remote"
[ "$(stat_of "$E/log" errors)" -eq 0 ] || fail "put errors with the hanging remote"
[ "$(stat_of "$E/log" uploads)" -eq 0 ] || fail "uploads succeeded to a remote that never answers?"
echo "hanging remote: go build ok in $(( $(date +%s) - t ))s"
echo "PASS in $(( $(date +%s) - start ))s"
