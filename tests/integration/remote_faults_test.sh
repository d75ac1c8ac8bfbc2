#!/usr/bin/env bash
# A misbehaving remote never fails or hangs the go command: cairn-gocacheprog
# behind toxiproxy (timeout, slow_close, reset_peer, latency and bandwidth
# toxics) answers every get within its --get_budget (plus slack for a loaded
# machine) and close within --flush_timeout; hits where the remote is merely
# healthy. The shim is driven over its protocol by shim_driver.py.
# Usage: remote_faults_test.sh SHIM CAIRN_SERVER TOXIPROXY_SERVER
# Exits 77 (skipped) without toxiproxy (tools/install-peers.sh) or python3.
set -euo pipefail
shim=${1:?shim} server_bin=${2:?server} toxi=${3:?toxiproxy-server}
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/integration/lib.sh
. "$here/lib.sh"
command -v python3 >/dev/null 2>&1 || skip "no python3"
command -v curl >/dev/null 2>&1 || skip "no curl"
[ -x "$toxi" ] || skip "toxiproxy-server not installed at $toxi (run tools/install-peers.sh)"
new_work faults
start_cairn "$server_bin" "$work/store" "$work/server.log"
api_port=$(free_port) proxy_port=$(free_port)
"$toxi" -host 127.0.0.1 -port "$api_port" >"$work/toxi.log" 2>&1 &
pids+=($!)
api="http://127.0.0.1:$api_port"
for _ in $(seq 100); do curl -sf "$api/version" >/dev/null && break; sleep 0.1; done
curl -sf -X POST "$api/proxies" -d "{\"name\":\"cairn\",\"listen\":\"127.0.0.1:$proxy_port\",\"upstream\":\"$addr\"}" >/dev/null ||
  fail "cannot create the proxy: $(cat "$work/toxi.log")"

n=12
budget=1
flags="--timeout=30s --flush_timeout=2s --get_budget=${budget}s --stats --prefetch=false"
python3 "$here/shim_driver.py" fill $n -- "$shim" --dir="$work/fill" --remote="grpc://$addr" $flags 2>"$work/fill.err" ||
  fail "fill: $(cat "$work/fill.err")"
toxic() {  # toxic JSON: replaces the proxy's toxics with this one
  for name in $(curl -sf "$api/proxies/cairn/toxics" | python3 -c 'import json,sys; print(" ".join(t["name"] for t in json.load(sys.stdin)))'); do
    curl -sf -X DELETE "$api/proxies/cairn/toxics/$name" >/dev/null
  done
  [ -z "$1" ] || curl -sf -X POST "$api/proxies/cairn/toxics" -d "$1" >/dev/null || fail "toxic $1"
}
# bound: budget + 4 s for scheduling on a loaded machine (the call
# deadline, 30 s, is what the shim would wait without the budget).
bound=$((budget + 4))
run() {  # run NAME MIN_HITS TOXIC
  echo "== $1"
  toxic "$3"
  python3 "$here/shim_driver.py" get $n $bound "$2" -- "$shim" --dir="$work/$1" \
    --remote="grpc://127.0.0.1:$proxy_port" $flags 2>"$work/$1.err" ||
    fail "$1: $(cat "$work/$1.err")"
  grep -o 'over_budget=[0-9]* bodies_skipped=[0-9]* rtt=[0-9.]*ms link=[0-9.]*MB/s' "$work/$1.err" || true
}
run healthy $n ""
run timeout 0 '{"name":"t","type":"timeout","stream":"downstream","attributes":{"timeout":0}}'
run reset_peer 0 '{"name":"r","type":"reset_peer","stream":"downstream","attributes":{"timeout":200}}'
run slow_close 0 '{"name":"s","type":"slow_close","stream":"downstream","attributes":{"delay":20000}}'
run latency 0 '{"name":"l","type":"latency","stream":"downstream","attributes":{"latency":3000}}'
run bandwidth 0 '{"name":"b","type":"bandwidth","stream":"downstream","attributes":{"rate":200}}'
echo PASS
