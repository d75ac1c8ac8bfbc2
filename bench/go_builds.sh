#!/usr/bin/env bash
# Go build scenarios: `gh` (github.com/cli/cli/v2 v2.63.0, fetched through the
# module proxy into a scratch module) and `go build std`, each built:
#   nocache        empty GOCACHE, no GOCACHEPROG
#   warm_local     Go's own GOCACHE, already filled by a previous build
#   cold_cairn     empty GOCACHE, GOCACHEPROG shim with an empty --dir, to an
#                  empty cairn-server (fills the remote; reported, not a target)
#   warm_cairn     empty GOCACHE, shim with an empty --dir, remote filled
#   cold_bazel-remote / warm_bazel-remote   the same against bazel-remote
#   cold_go-tool-cache / warm_go-tool-cache   go-cacher (GOCACHEPROG) with an
#                  empty -cache-dir against go-cacher-server (when installed)
#   warm_shim_dir  the shim's --dir kept from the previous warm_cairn run
#   warm_cairn_base  with --baseline_shim BIN: warm_cairn through BIN (e.g.
#                  main's shim), right after each warm_cairn rep, same server
#                  and profile: a before/after pair under the same load
# The cold runs fill the remotes directly. The warm runs then go through each
# network profile (--profile, comma-separated):
#   loopback  no proxy
#   lan       toxiproxy: 1 ms added one way (toxiproxy latency is whole ms;
#             0.5 ms each way), 1 Gbit/s each way
#   cloud     5 ms each way, 200 Mbit/s
#   far       25 ms each way, 50 Mbit/s
# Prints wall-time medians, shim hit counts (--stats), bytes on the wire
# (through the proxy: toxiproxy's downstream byte counter, framing included;
# loopback: the shim's wire_down, compressed body bytes) and ratios to
# warm_local and nocache; writes go_builds.csv into --out.
#
# Usage: bench/go_builds.sh [--reps N] [--nocache_reps N] [--targets gh,std]
#                           [--profile loopback,lan,cloud,far] [--out DIR]
#                           [--record FILE] [--baseline_shim BIN]
#                           [--peers cairn,bazel-remote,go-tool-cache]
#                           [--server_flags "FLAGS"]
# --peers leaves out the peers not named (Cairn always runs).
# --server_flags "FLAGS" adds flags to cairn-server (e.g.
# "--zstd_rest_level=19"). After the cold_cairn fill the script waits until
# the server's recompression at rest is idle (cairn_store_recompress_pending
# 0) and reports how long that took, the blobs and bytes it recompressed and
# the store's bytes before and after (go_builds_rest.csv in --out).
# --record FILE tees the request stream of the cold_cairn std build into FILE
# (input for bench/shim_replay.py). Needs: go >= 1.24, build-bench/bin/
# {cairn-server,cairn-gocacheprog}, build/peers/bin/bazel-remote; for
# profiles other than loopback build/peers/bin/toxiproxy-server; optional
# build/peers/bin/go-cacher{,-server} (tools/install-peers.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
build=${CAIRN_BUILD:-build-bench}
reps=3
nocache_reps=2
targets=gh,std
profiles=loopback
out=$root/$build/bench-out
record=""
baseline_shim=""
peers=cairn,bazel-remote,go-tool-cache
server_flags=""
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps=$2; shift 2 ;;
    --nocache_reps) nocache_reps=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --profile) profiles=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --record) record=$2; shift 2 ;;
    --baseline_shim) baseline_shim=$2; shift 2 ;;
    --peers) peers=$2; shift 2 ;;
    --server_flags) server_flags=$2; shift 2 ;;
    *) echo "go_builds: unknown option $1" >&2; exit 2 ;;
  esac
done
server=$root/$build/bin/cairn-server
shim=$root/$build/bin/cairn-gocacheprog
peer=$root/build/peers/bin/bazel-remote
toxi=$root/build/peers/bin/toxiproxy-server
gtc=$root/build/peers/bin/go-cacher
gtc_server=$root/build/peers/bin/go-cacher-server
for b in "$server" "$shim" "$peer"; do
  [ -x "$b" ] || { echo "go_builds: missing $b" >&2; exit 1; }
done
if [ "$profiles" != loopback ] && [ ! -x "$toxi" ]; then
  echo "go_builds: missing $toxi (tools/install-peers.sh)" >&2; exit 1
fi
have_gtc=false
if [ -x "$gtc" ] && [ -x "$gtc_server" ]; then have_gtc=true; fi
case ",$peers," in *,go-tool-cache,*) ;; *) have_gtc=false ;; esac
have_br=true
case ",$peers," in *,bazel-remote,*) ;; *) have_br=false ;; esac
if [ -n "$baseline_shim" ] && [ ! -x "$baseline_shim" ]; then
  echo "go_builds: missing $baseline_shim" >&2; exit 1
fi
mkdir -p "$out"
if [ -n "$record" ]; then
  case "$record" in /*) ;; *) record=$root/$record ;; esac  # builds run in $mod
  rm -f "$record"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-go-builds.XXXXXX")
# The gh scratch module stays between runs (downloads once), inside the
# checkout's bench build directory unless CAIRN_GH_MODULE_DIR names another.
mod=${CAIRN_GH_MODULE_DIR:-$root/$build/gh-module}
csv=$out/go_builds.csv
raw=$out/go_builds_raw.csv
echo "target,profile,scenario,rep,seconds,gets,local_hits,remote_hits,misses,puts,errors,bytes_down,wire_bytes,rpcs" >"$raw"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export GOFLAGS="-mod=mod -buildvcs=false"
export GOTOOLCHAIN=local

start_servers() {
  cairn_port=$(free_port)
  metrics_port=$(free_port)
  mkdir -p "$work/cairn-store"
  # shellcheck disable=SC2086  # --server_flags holds several words.
  "$server" --listen "127.0.0.1:$cairn_port" --dir "$work/cairn-store" \
    --max_size 20GiB --metrics_listen "127.0.0.1:$metrics_port" \
    $server_flags >"$out/go_builds_cairn.log" 2>&1 &
  pids+=($!)
  peer_port=$(free_port)
  mkdir -p "$work/peer-store"
  "$peer" --dir "$work/peer-store" --max_size 20 --storage_mode uncompressed \
    --grpc_address "127.0.0.1:$peer_port" \
    --http_address "127.0.0.1:$(free_port)" --access_log_level none \
    >"$out/go_builds_bazel-remote.log" 2>&1 &
  pids+=($!)
  wait_port "$cairn_port"
  wait_port "$peer_port"
  if $have_gtc; then
    gtc_port=$(free_port)
    mkdir -p "$work/gtc-store"
    "$gtc_server" -cache-dir "$work/gtc-store" -listen "127.0.0.1:$gtc_port" \
      >"$out/go_builds_go-tool-cache.log" 2>&1 &
    pids+=($!)
    wait_port "$gtc_port"
  fi
  if [ "$profiles" != loopback ]; then
    toxi_port=$(free_port)
    "$toxi" -host 127.0.0.1 -port "$toxi_port" -proxy-metrics \
      >"$out/go_builds_toxiproxy.log" 2>&1 &
    pids+=($!)
    wait_port "$toxi_port"
    local name up
    for name in cairn bazel-remote go-tool-cache; do
      case $name in
        cairn) up=$cairn_port ;;
        bazel-remote) up=$peer_port ;;
        go-tool-cache) $have_gtc || continue; up=$gtc_port ;;
      esac
      proxy_port[$name]=$(free_port)
      curl -sf -X POST "http://127.0.0.1:$toxi_port/proxies" -d "{\"name\":\"$name\",\"listen\":\"127.0.0.1:${proxy_port[$name]}\",\"upstream\":\"127.0.0.1:$up\"}" >/dev/null
    done
  fi
}

declare -A proxy_port
# set_profile NAME: replaces every proxy's toxics with the profile's.
set_profile() {
  local lat_up lat_down rate
  case $1 in
    loopback) return 0 ;;
    lan) lat_up=1 lat_down=0 rate=125000 ;;  # KB/s: 1 Gbit/s
    cloud) lat_up=5 lat_down=5 rate=25000 ;;
    far) lat_up=25 lat_down=25 rate=6250 ;;
    *) echo "go_builds: unknown profile $1" >&2; exit 2 ;;
  esac
  local api="http://127.0.0.1:$toxi_port" name dir lat
  for name in "${!proxy_port[@]}"; do
    for dir in upstream downstream; do
      curl -sf -X DELETE "$api/proxies/$name/toxics/lat_$dir" >/dev/null || true
      curl -sf -X DELETE "$api/proxies/$name/toxics/bw_$dir" >/dev/null || true
      lat=$lat_down
      if [ $dir = upstream ]; then lat=$lat_up; fi
      curl -sf -X POST "$api/proxies/$name/toxics" -d "{\"name\":\"lat_$dir\",\"type\":\"latency\",\"stream\":\"$dir\",\"attributes\":{\"latency\":$lat}}" >/dev/null
      curl -sf -X POST "$api/proxies/$name/toxics" -d "{\"name\":\"bw_$dir\",\"type\":\"bandwidth\",\"stream\":\"$dir\",\"attributes\":{\"rate\":$rate}}" >/dev/null
    done
  done
}

# proxy_bytes NAME: bytes the proxy has sent towards the client so far.
proxy_bytes() {
  curl -sf "http://127.0.0.1:$toxi_port/metrics" |
    awk -v p="proxy=\"$1\"" '/^toxiproxy_proxy_sent_bytes_total/ && index($0, p) && /direction="downstream"/ {s += $NF} END {printf "%d", s}'
}

# endpoint NAME PROFILE: host:port the clients of NAME use under PROFILE.
endpoint() {
  if [ "$2" = loopback ]; then
    case $1 in
      cairn) echo "127.0.0.1:$cairn_port" ;;
      bazel-remote) echo "127.0.0.1:$peer_port" ;;
      go-tool-cache) echo "127.0.0.1:$gtc_port" ;;
    esac
  else
    echo "127.0.0.1:${proxy_port[$1]}"
  fi
}

build_cmd() {  # build_cmd TARGET OUTDIR (in $mod, bounded to 30 min)
  cd "$mod"
  case "$1" in
    gh) timeout 1800 go build -trimpath -o "$2/gh" github.com/cli/cli/v2/cmd/gh ;;
    std) timeout 1800 go build -trimpath std ;;
    fmt) timeout 1800 go build -trimpath fmt ;;  # smoke runs only
  esac
}

# run TARGET SCENARIO REP GOCACHE [SHIM ARGS...]: one timed build under
# $profile; $via names the proxy whose bytes are counted (empty: none).
profile=loopback
via=""
run() {
  local target=$1 scenario=$2 rep=$3 gocache=$4
  shift 4
  local before=0
  if [ -n "$via" ] && [ "$profile" != loopback ]; then before=$(proxy_bytes "$via"); fi
  local log=$work/build.log bin=$work/bin
  rm -rf "$bin" && mkdir -p "$bin" "$gocache"
  local prog=""
  if [ $# -gt 0 ]; then prog="$*"; fi
  local t0 t1
  t0=$(date +%s.%N)
  if ! (
    export GOCACHE=$gocache
    if [ -n "$prog" ]; then export GOCACHEPROG=$prog; else unset GOCACHEPROG; fi
    build_cmd "$target" "$bin"
  ) >"$log" 2>&1; then
    echo "go_builds: $target $scenario failed:" >&2
    tail -20 "$log" >&2
    return 1
  fi
  t1=$(date +%s.%N)
  local stats
  stats=$(grep -o 'cairn-gocacheprog: stats: .*' "$log" | tail -1 || true)
  field() { echo "$stats" | grep -o "$1=[0-9]*" | cut -d= -f2; }
  local secs wire
  secs=$(python3 -c "print('%.2f' % ($t1 - $t0))")
  wire=$(field wire_down || true)
  if [ -n "$via" ] && [ "$profile" != loopback ]; then
    wire=$(( $(proxy_bytes "$via") - before ))
  fi
  echo "$target,$profile,$scenario,$rep,$secs,$(field gets),$(field local_hits),$(field remote_hits),$(field misses),$(field puts),$(field errors),$(field bytes_down),$wire,$(field rpcs)" >>"$raw"
  printf 'go_builds: %-4s %-8s %-20s rep %d %8ss wire=%s %s\n' "$target" "$profile" "$scenario" "$rep" "$secs" "$wire" "${stats#cairn-gocacheprog: stats: }" >&2
}

# cairn_metric NAME: the value of one of cairn-server's metrics (0 if absent).
cairn_metric() {
  curl -sf "http://127.0.0.1:$metrics_port/metrics" |
    awk -v m="$1" '$1 == m {v = $2} END {printf "%d", v + 0}'
}

# wait_rest TARGET: waits (up to 30 min) until the server's recompression at
# rest has nothing pending, and records what it did.
wait_rest() {
  local t0 t1 before
  t0=$(date +%s.%N)
  before=$(cairn_metric cairn_store_bytes)
  local i=0
  while [ "$(cairn_metric cairn_store_recompress_pending)" != 0 ] && [ $i -lt 18000 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  t1=$(date +%s.%N)
  local secs after blobs saved
  secs=$(python3 -c "print('%.1f' % ($t1 - $t0))")
  after=$(cairn_metric cairn_store_bytes)
  blobs=$(cairn_metric cairn_store_recompressed_blobs_total)
  saved=$(cairn_metric cairn_store_recompressed_saved_bytes_total)
  [ -f "$out/go_builds_rest.csv" ] ||
    echo "target,idle_after_s,recompressed_blobs,saved_bytes,store_bytes_before,store_bytes_after" >"$out/go_builds_rest.csv"
  echo "$1,$secs,$blobs,$saved,$before,$after" >>"$out/go_builds_rest.csv"
  echo "go_builds: $1 recompression at rest idle after ${secs}s: $blobs blobs recompressed since start, saving $saved bytes; store $before bytes when the wait began, $after after" >&2
}

shim_cmd() {  # shim_cmd HOST:PORT DIR [RECORD [BIN]]
  local bin=${4:-$shim}
  if [ -n "${3:-}" ]; then
    echo "$root/bench/shim_tee.sh $3 $bin --remote=grpc://$1 --dir=$2 --stats"
  else
    echo "$bin --remote=grpc://$1 --dir=$2 --stats"
  fi
}

gtc_cmd() {  # gtc_cmd HOST:PORT DIR
  echo "$gtc -cache-dir $2 -cache-server http://$1"
}

scenarios() {  # scenarios TARGET
  local t=$1 r p
  profile=loopback via=""
  for r in $(seq "$nocache_reps"); do
    run "$t" nocache "$r" "$work/gc-$t-nocache-$r"
  done
  local warm=$work/gc-$t-nocache-$nocache_reps
  for r in $(seq "$reps"); do
    run "$t" warm_local "$r" "$warm"
  done
  local rec=""
  if [ "$t" != gh ] && [ -n "$record" ]; then rec=$record; fi
  # The cold runs fill each remote directly (loopback).
  run "$t" cold_cairn 1 "$work/gc-$t-cc" "$(shim_cmd "127.0.0.1:$cairn_port" "$work/sd-$t-cc" "$rec")"
  wait_rest "$t"
  if $have_br; then
    run "$t" cold_bazel-remote 1 "$work/gc-$t-cb" "$(shim_cmd "127.0.0.1:$peer_port" "$work/sd-$t-cb")"
  fi
  if $have_gtc; then
    run "$t" cold_go-tool-cache 1 "$work/gc-$t-cg" "$(gtc_cmd "127.0.0.1:$gtc_port" "$work/gd-$t-cg")"
  fi
  # Each warm rep gets its own empty shim dir; none is deleted until exit.
  # (On ext4 without a journal, as on the benchmark VM, creating files right
  # after thousands were deleted makes the inode allocator scan past every
  # recently deleted inode: deleting the previous rep's dir just before a rep
  # measured 2.7-4.4 s against 1.4-1.8 s for a fresh dir, same binary. A CI
  # machine starting with an empty --dir has no such deletes.)
  for p in ${profiles//,/ }; do
    profile=$p
    set_profile "$p"
    for r in $(seq "$reps"); do
      via=cairn
      # With a baseline, even reps run it first (neither always goes first).
      if [ -n "$baseline_shim" ] && [ $((r % 2)) = 0 ]; then
        run "$t" warm_cairn_base "$r" "$work/gc-$t-$p-wcb-$r" "$(shim_cmd "$(endpoint cairn "$p")" "$work/sd-$t-$p-wcb-$r" "" "$baseline_shim")"
      fi
      run "$t" warm_cairn "$r" "$work/gc-$t-$p-wc-$r" "$(shim_cmd "$(endpoint cairn "$p")" "$work/sd-$t-$p-wc-$r")"
      if [ -n "$baseline_shim" ] && [ $((r % 2)) = 1 ]; then
        run "$t" warm_cairn_base "$r" "$work/gc-$t-$p-wcb-$r" "$(shim_cmd "$(endpoint cairn "$p")" "$work/sd-$t-$p-wcb-$r" "" "$baseline_shim")"
      fi
      if $have_br; then
        via=bazel-remote
        run "$t" warm_bazel-remote "$r" "$work/gc-$t-$p-wb-$r" "$(shim_cmd "$(endpoint bazel-remote "$p")" "$work/sd-$t-$p-wb-$r")"
      fi
      if $have_gtc; then
        via=go-tool-cache
        run "$t" warm_go-tool-cache "$r" "$work/gc-$t-$p-wg-$r" "$(gtc_cmd "$(endpoint go-tool-cache "$p")" "$work/gd-$t-$p-wg-$r")"
      fi
    done
    via=""
    if [ "$p" = loopback ]; then
      for r in $(seq "$reps"); do
        run "$t" warm_shim_dir "$r" "$work/gc-$t-ws-$r" "$(shim_cmd "127.0.0.1:$cairn_port" "$work/sd-$t-loopback-wc-$reps")"
      done
    fi
  done
  profile=loopback via=""
}

summarize() {
  python3 - "$raw" "$csv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
order = ["nocache", "warm_local", "cold_cairn", "cold_bazel-remote",
         "cold_go-tool-cache", "warm_cairn", "warm_cairn_base",
         "warm_bazel-remote", "warm_go-tool-cache", "warm_shim_dir"]
out = []
for t in dict.fromkeys(r["target"] for r in rows):
    base = {}
    for s in ("nocache", "warm_local"):
        rs = [float(r["seconds"]) for r in rows if r["target"] == t and r["scenario"] == s]
        base[s] = statistics.median(rs) if rs else None
    for p in dict.fromkeys(r["profile"] for r in rows if r["target"] == t):
        for s in order:
            rs = [r for r in rows if r["target"] == t and r["profile"] == p and r["scenario"] == s]
            if not rs:
                continue
            def m(k):
                v = [int(r[k]) for r in rs if r.get(k)]
                return int(statistics.median(v)) if v else None
            secs = statistics.median(float(r["seconds"]) for r in rs)
            wl, nc = base["warm_local"], base["nocache"]
            out.append(dict(target=t, profile=p, scenario=s, runs=len(rs),
                            median_s="%.2f" % secs,
                            min_s="%.2f" % min(float(r["seconds"]) for r in rs),
                            max_s="%.2f" % max(float(r["seconds"]) for r in rs),
                            vs_warm_local="%.2f" % (secs / wl) if wl else "",
                            speedup_vs_nocache="%.2f" % (nc / secs) if nc else "",
                            gets=m("gets"), remote_hits=m("remote_hits"),
                            misses=m("misses"), bytes_down=m("bytes_down"),
                            wire_bytes=m("wire_bytes"), rpcs=m("rpcs")))
cols = list(out[0].keys())
with open(sys.argv[2], "w", newline="") as f:
    w = csv.DictWriter(f, cols); w.writeheader(); w.writerows(out)
fmt = "%-4s %-8s %-19s %4s %9s %7s %7s %7s %8s %6s %6s %6s %11s %11s %6s"
print(fmt % ("tgt", "profile", "scenario", "runs", "median s", "min", "max", "/warm",
             "nocache/", "gets", "r.hit", "miss", "body bytes", "wire bytes", "rpcs"))
for r in out:
    print(fmt % tuple("-" if r[c] is None or r[c] == "" else r[c] for c in cols))
EOF
}

case ",$targets," in *,gh,*) prepare_gh "$mod" ;; esac
mkdir -p "$mod"
[ -f "$mod/go.mod" ] || (cd "$mod" && go mod init cairn.bench/gh >/dev/null 2>&1)
start_servers
echo "go_builds: $(go version); cairn :$cairn_port, bazel-remote :$peer_port, go-tool-cache: $have_gtc; profiles $profiles" >&2
for t in ${targets//,/ }; do
  scenarios "$t"
done
summarize
echo "go_builds: wrote $csv and $raw" >&2
