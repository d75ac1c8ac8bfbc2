# Shared helpers of the real-client tests (sourced): skip/fail, a scratch
# directory removed at exit, and starting cairn-server or bazel-remote with
# an empty store on free loopback ports.
#   start_server KIND BINARY DIR  sets $grpc_addr (HOST:PORT) and $http_addr
#     (HOST:PORT); KIND is cairn-server or bazel-remote. bazel-remote gets
#     --disable_http_ac_validation only when $BAZEL_REMOTE_NO_AC_CHECK=1.
#     Extra flags: $CAIRN_SERVER_FLAGS, $BAZEL_REMOTE_FLAGS (split on spaces).
#   measure NAME COMMAND...       runs a command and prints its wall time.
#   not_installed NAME DIR WHAT   skips with the reason install-clients gave.
# Every test takes SERVER_KIND SERVER_BINARY [CLIENTS_DIR] (where
# tools/install-clients.sh put the clients); sourced without arguments, this
# file reads them into $kind, $server_bin and $clients.
kind=${1:?server kind}
server_bin=${2:?server binary}
clients=${3:-}
exec 3>&2  # measure() reports here, even when the command's output is redirected.
skip() { echo "SKIPPED: $*"; exit 77; }
# not_installed NAME CLIENTS_DIR WHAT: skips naming WHAT and, when
# tools/install-clients.sh recorded one, why its install step failed.
not_installed() {
  local why="$2/$1.skip-reason"
  if [ -f "$why" ]; then
    skip "$3: $(tr '\n' ' ' <"$why")"
  fi
  skip "$3 (tools/install-clients.sh installs it)"
}
fail() { echo "FAIL: $*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-client-it.XXXXXX")
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
cleanup() {
  stop_server
  if [ -n "${cleanup_hook:-}" ]; then
    $cleanup_hook || true
  fi
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_server() {
  local kind=$1 bin=$2 dir=$3
  mkdir -p "$dir"
  case $kind in
    cairn-server)
      # shellcheck disable=SC2086  # $CAIRN_SERVER_FLAGS: words on purpose.
      "$bin" --listen=127.0.0.1:0 --http_listen=127.0.0.1:0 --dir="$dir/store" \
        --fsync=false ${CAIRN_SERVER_FLAGS:-} >"$dir/log" 2>&1 &
      server_pid=$!
      local line=""
      for _ in $(seq 100); do
        line=$(grep -o 'listening on [0-9.]*:[0-9]*.*HTTP cache on http://[0-9.]*:[0-9]*' \
          "$dir/log" || true)
        [ -n "$line" ] && break
        sleep 0.1
      done
      [ -n "$line" ] || fail "cairn-server did not start: $(cat "$dir/log")"
      grpc_addr=$(echo "$line" | awk '{print $3}' | tr -d ,)
      http_addr=${line##*http://}
      ;;
    bazel-remote)
      local gp hp
      gp=$(free_port)
      hp=$(free_port)
      local extra=()
      [ "${BAZEL_REMOTE_NO_AC_CHECK:-0}" = 1 ] && extra+=(--disable_http_ac_validation)
      # shellcheck disable=SC2206  # $BAZEL_REMOTE_FLAGS: words on purpose.
      extra+=(${BAZEL_REMOTE_FLAGS:-})
      "$bin" --dir="$dir/store" --max_size=4 --http_address="127.0.0.1:$hp" \
        --grpc_address="127.0.0.1:$gp" "${extra[@]}" >"$dir/log" 2>&1 &
      server_pid=$!
      for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$hp/status" && break
        sleep 0.1
      done
      curl -s -o /dev/null "http://127.0.0.1:$hp/status" ||
        fail "bazel-remote did not start: $(cat "$dir/log")"
      grpc_addr="127.0.0.1:$gp"
      http_addr="127.0.0.1:$hp"
      ;;
    *) fail "unknown server kind $kind" ;;
  esac
}

measure() {
  local name=$1 start rc=0 ms
  shift
  start=$(date +%s%N)
  "$@" || rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf 'TIME %s %d.%03d s\n' "$name" $((ms / 1000)) $((ms % 1000)) >&3
  return $rc
}
