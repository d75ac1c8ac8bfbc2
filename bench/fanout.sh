#!/usr/bin/env bash
# Runs bench/fanout (a thousand concurrent readers and small callers) against
# cairn-server and bazel-remote (tools/install-peers.sh) one after the other,
# a fresh server and store for every scenario (so each peak RSS is its own),
# and appends the rows to one CSV. Heavy: by default
# 1,000 clients per scenario, a 64 MiB blob and 1,000 1 MiB blobs per server.
# Loopback only; peers that are absent are skipped.
# Usage: bench/fanout.sh [out.csv] [-- extra fanout flags]
#   env: CAIRN_BUILD (default build), FANOUT_SERVERS (default
#   "cairn bazel-remote"), FANOUT_SCENARIOS (default all three),
#   CAIRN_SERVER (default $CAIRN_BUILD/bin/cairn-server),
#   CAIRN_SERVER_FLAGS (extra cairn-server flags), FANOUT_SESSIONS=1 (start
#   the server and the probe each in a session of its own, setsid: with the
#   kernel's autogroup scheduling each session is one scheduling group),
#   FANOUT_PIN=1 (taskset: the readers on CPU 0, the server and the probe on
#   CPU 1, as when the readers are other machines; a 2-core stand-in for a
#   farm, so report it beside the default, unpinned figure: bench/README.md),
#   FANOUT_LOADER_IDLE=1 (fanout --loader_idle: the loader under SCHED_IDLE,
#   unpinned, so the server has both cores and the readers only the CPU it
#   leaves; the probe stays at SCHED_OTHER).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
build="${CAIRN_BUILD:-build}"
out="${1:-fanout.csv}"
shift || true
[ "${1:-}" = "--" ] && shift
cmake --build "$build" -j "${CAIRN_JOBS:-2}" --target fanout cairn-server >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/fanout.XXXXXX")
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

scenarios="${FANOUT_SCENARIOS:-same_blob distinct_blobs small_calls}"
session=()
if [ "${FANOUT_SESSIONS:-0}" = 1 ]; then
  session=(setsid)
  set -- --probe_session "$@"
fi
pin_server=()
pin_clients=()
if [ "${FANOUT_PIN:-0}" = 1 ]; then
  pin_server=(taskset -c 1)
  pin_clients=(taskset -c 0)
  set -- --probe_cpus 1 "$@"
fi
if [ "${FANOUT_LOADER_IDLE:-0}" = 1 ]; then
  set -- --loader_idle "$@"
fi
for scenario in $scenarios; do
for server in ${FANOUT_SERVERS:-cairn bazel-remote}; do
  port=$(free_port)
  dir="$work/$server"
  mkdir -p "$dir"
  case "$server" in
    cairn)
      # shellcheck disable=SC2086
      "${session[@]}" "${pin_server[@]}" "${CAIRN_SERVER:-$build/bin/cairn-server}" --listen "127.0.0.1:$port" --dir "$dir" \
        --max_size 16GiB ${CAIRN_SERVER_FLAGS:-} >"$work/$server.log" 2>&1 &
      ;;
    bazel-remote)
      peer="$build/peers/bin/bazel-remote"
      if [ ! -x "$peer" ]; then
        echo "fanout.sh: $peer absent (tools/install-peers.sh); skipped" >&2
        continue
      fi
      "${session[@]}" "${pin_server[@]}" "$peer" --dir "$dir" --max_size 16 --storage_mode uncompressed \
        --grpc_address "127.0.0.1:$port" --http_address "127.0.0.1:$(free_port)" \
        --access_log_level none >"$work/$server.log" 2>&1 &
      ;;
    *) echo "fanout.sh: unknown server $server" >&2; exit 2 ;;
  esac
  server_pid=$!
  if ! wait_port "$port"; then
    echo "fanout.sh: $server did not start:" >&2
    cat "$work/$server.log" >&2
    exit 1
  fi
  "${pin_clients[@]}" "$build/bin/fanout" --target "grpc://127.0.0.1:$port" --server_pid "$server_pid" \
    --label "$server" --scenario "$scenario" --csv "$out" "$@" ||
    echo "fanout.sh: $server had errors in $scenario" >&2
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  rm -rf "$dir"
done
done
