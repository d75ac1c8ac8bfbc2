# Shared helpers of the shell integration tests in this folder (sourced after
# `set -euo pipefail`; tests/integration/clients/ has its own lib.sh):
#   skip REASON / fail REASON   exit 77 (ctest: skipped) / 1 with the reason
#   new_work NAME               sets $work, a scratch directory removed at exit
#                               after every process in $pids is killed (-9);
#                               $cleanup_hook, when set, runs first
#   absolute PATH               prints PATH made absolute (go starts
#                               GOCACHEPROG from each checkout, and Bazel
#                               passes relative runfiles paths)
#   start_cairn BINARY STORE LOG [FLAGS...]
#                               starts cairn-server on 127.0.0.1:0 over STORE,
#                               adds it to $pids, sets $server_pid and $addr
#                               (HOST:PORT) once it listens
#   stop_pid PID                kill -9 and reap (no-op on an empty PID)
#   go_offline                  exports the settings that keep go off the
#                               network and away from the caller's config
#   free_port                   prints a free loopback TCP port
#   go_shim_test NAME           the start of a go test of the shim against
#                               cairn-server: skips without go, fails when
#                               $shim or $server_bin is not built, makes
#                               $shim absolute, then new_work NAME, go_offline
#   now / elapsed START         a timestamp / the seconds since START (%.2f)
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

pids=()
cleanup() {
  if [ -n "${cleanup_hook:-}" ]; then
    $cleanup_hook || true
  fi
  local p
  for p in "${pids[@]}"; do stop_pid "$p"; done
  if [ -n "${work:-}" ]; then
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf "$work"
  fi
}

new_work() {
  local base=${TMPDIR:-/tmp}
  # Sockets go in $work: a long TMPDIR (Bazel's) leaves no room for one.
  [ "${#base}" -le 60 ] || base=/tmp
  work=$(mktemp -d "$base/cairn-$1.XXXXXX")
  trap cleanup EXIT
}

absolute() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }

stop_pid() {
  if [ -n "$1" ]; then
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}

start_cairn() {
  local bin=$1 store=$2 log=$3
  shift 3
  "$bin" --listen=127.0.0.1:0 --dir="$store" "$@" >"$log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  addr=""
  for _ in $(seq 150); do  # 15 s: a node with a shared tier, on a busy machine.
    addr=$(grep -o 'listening on [0-9.]*:[0-9]*' "$log" | awk '{print $3}' || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || fail "cairn-server did not start: $(cat "$log")"
}

go_offline() {
  export GOPROXY=off GOTOOLCHAIN=local GOTELEMETRY=off GOWORK=off GOENV=off \
    CGO_ENABLED=0
  unset GOCACHEPROG
}

go_shim_test() {
  command -v go >/dev/null 2>&1 || skip "no go command on PATH"
  [ -x "$shim" ] || fail "shim $shim not built"
  [ -x "$server_bin" ] || fail "cairn-server not built at $server_bin"
  shim=$(absolute "$shim")
  new_work "$1"
  go_offline
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
