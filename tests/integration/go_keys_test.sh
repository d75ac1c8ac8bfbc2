#!/usr/bin/env bash
# End-to-end test of `cairn-gocacheprog keys record|explain` ("why did it
# miss?") with the real go command and a real cairn-server.
#
# Usage: go_keys_test.sh SHIM SERVER_BINARY
# Exits 77 (ctest: skipped) with a message when go is absent.
#
# Each "machine" has its own checkout path, GOCACHE and shim directory, and
# builds testdata/gokeys (one library with a test that reads
# GOKEYS_GREETING, one command) with GODEBUG=gocachehash=1 through the shim
# as GOCACHEPROG (so the second machine gets the standard library from the
# first through the server). Machine A records its key inputs; the other
# machine explains its misses:
#   a  no -trimpath, another checkout path -> names the directory, -trimpath
#   b  GOFLAGS=-tags=x on one side only    -> names the flag -tags
#   c  GOKEYS_GREETING set on one side     -> names the variable
set -euo pipefail

shim=${1:?shim binary}
server_bin=${2:?server binary}
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/integration/lib.sh
. "$here/lib.sh"

go_shim_test go-keys
unset GOFLAGS GOKEYS_GREETING

start_cairn "$server_bin" "$work/store" "$work/server.log"
remote="grpc://$addr"

# build MACHINE WHAT: a fresh checkout built with gocachehash on; the hash
# lines go to $work/MACHINE.log. GOFLAGS and GOKEYS_GREETING come from the
# caller's environment. WHAT: "lib" builds the library alone (no standard
# package to compile), "cmd" the command, "all" also runs go test (vet off:
# not what is under test, and it would build vet facts for the standard
# library).
build() {
  local m="$work/machine-$1" t
  t=$(now)
  mkdir -p "$m/gocache" "$m/shim"
  cp -r "$here/testdata/gokeys" "$m/src"
  local gocacheprog="$shim --remote=$remote --dir=$m/shim"
  (
    cd "$m/src"
    export GOCACHE="$m/gocache" GOCACHEPROG="$gocacheprog" GODEBUG=gocachehash=1
    case $2 in
      lib) go build ./greet ;;
      cmd) go build -o "$m/bin/" ./cmd/gokeys ;;
      all) go test -vet=off ./... >"$m/test.out"
           go build -o "$m/bin/" ./cmd/gokeys ;;
    esac
  ) 2>"$work/$1.log" || fail "go failed on machine $1: $(tail -5 "$work/$1.log")"
  echo "MEASURE go_keys build $1 ($2) $(elapsed "$t")s"
}

keys() {  # keys MACHINE SCOPE SUBCOMMAND [FLAGS...]
  local m=$1 scope=$2 sub=$3
  shift 3
  "$shim" --remote="$remote" --machine="$m" --keys_scope="$scope" "$@" \
    keys "$sub" "$work/$m.log"
}

expect() {  # expect FILE PATTERN WHAT
  grep -qF -- "$2" "$1" || { cat "$1" >&2; fail "$3: no '$2' in the output above"; }
}

start=$(now)

echo "== a: two checkout paths, no -trimpath"
build A0 lib
keys A0 a record
build B0 lib
keys B0 a explain | tee "$work/a.txt"
expect "$work/a.txt" "diagnosis (trimpath)" "a: the cause is the source directory"
expect "$work/a.txt" "$work/machine-B0/src/greet here" "a: names this machine's directory"
expect "$work/a.txt" "$work/machine-A0/src/greet there" "a: names the recorded directory"
expect "$work/a.txt" "build with -trimpath" "a: suggests -trimpath"

echo "== b: GOFLAGS=-tags=x on one machine only"
GOFLAGS=-trimpath build A1 all
keys A1 t record
GOFLAGS="-trimpath -tags=x" build B1 cmd
keys B1 t explain | tee "$work/b.txt"
expect "$work/b.txt" "diagnosis (build_setting): the build flag -tags differs (-tags=x here, unset there)" \
  "b: names the flag"
if grep "diagnosis (" "$work/b.txt" | grep -vq "build_setting"; then
  fail "b: blames something other than the flag"
fi

echo "== c: an environment variable a test reads"
GOFLAGS=-trimpath GOKEYS_GREETING=gopher build C1 all
keys C1 t explain | tee "$work/c.txt"
expect "$work/c.txt" "1 root cause(s)" "c: one cause"
expect "$work/c.txt" "diagnosis (test_env): the test reads the environment variable GOKEYS_GREETING" \
  "c: names the variable"
if grep -q gopher "$work/c.txt"; then
  fail "c: the variable's value is shown in clear"
fi
keys C1 t explain --json >"$work/c.json"
expect "$work/c.json" '"subject": "GOKEYS_GREETING"' "c: JSON names the variable"

echo "MEASURE go_keys total=$(elapsed "$start")s"
echo "PASS"
