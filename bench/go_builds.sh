#!/usr/bin/env bash
# Go build scenarios: `gh` (github.com/cli/cli/v2 v2.63.0, fetched through the
# module proxy into a scratch module) and `go build std`, each built:
#   nocache        empty GOCACHE, no GOCACHEPROG
#   warm_local     Go's own GOCACHE, already filled by a previous build
#   cold_cairn     empty GOCACHE, GOCACHEPROG shim with an empty --dir, to an
#                  empty cairn-server (fills the remote; reported, not a target)
#   warm_cairn     empty GOCACHE, shim with an empty --dir, remote filled
#   cold_bazel-remote / warm_bazel-remote   the same against bazel-remote
#   warm_shim_dir  the shim's --dir kept from the previous warm_cairn run
# Prints wall-time medians, shim hit counts (--stats) and ratios to
# warm_local and nocache; writes go_builds.csv into --out.
#
# Usage: bench/go_builds.sh [--reps N] [--nocache_reps N] [--targets gh,std]
#                           [--out DIR] [--record FILE]
# --record FILE tees the request stream of the cold_cairn std build into FILE
# (input for bench/shim_replay.py). Needs: go >= 1.24, build-bench/bin/
# {cairn-server,cairn-gocacheprog}, build/peers/bin/bazel-remote.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${CAIRN_BUILD:-build-bench}
reps=3
nocache_reps=2
targets=gh,std
out=$root/$build/bench-out
record=""
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps=$2; shift 2 ;;
    --nocache_reps) nocache_reps=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --record) record=$2; shift 2 ;;
    *) echo "go_builds: unknown option $1" >&2; exit 2 ;;
  esac
done
server=$root/$build/bin/cairn-server
shim=$root/$build/bin/cairn-gocacheprog
peer=$root/build/peers/bin/bazel-remote
for b in "$server" "$shim" "$peer"; do
  [ -x "$b" ] || { echo "go_builds: missing $b" >&2; exit 1; }
done
mkdir -p "$out"
if [ -n "$record" ]; then
  case "$record" in /*) ;; *) record=$root/$record ;; esac  # builds run in $mod
  rm -f "$record"
fi
work=$(mktemp -d /tmp/cairn-go-builds.XXXXXX)
mod=${CAIRN_GH_MODULE_DIR:-/tmp/cairn-bench/gh}
csv=$out/go_builds.csv
raw=$out/go_builds_raw.csv
echo "target,scenario,rep,seconds,gets,local_hits,remote_hits,misses,puts,errors" >"$raw"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export GOFLAGS="-mod=mod -buildvcs=false"
export GOTOOLCHAIN=local

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {  # wait_port PORT: up to 15 s
  for _ in $(seq 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "go_builds: nothing listening on $1" >&2
  return 1
}

# Scratch module pinned to gh v2.63.0; downloads are untimed.
prepare_gh() {
  mkdir -p "$mod"
  (
    cd "$mod"
    [ -f go.mod ] || go mod init cairn.bench/gh >/dev/null 2>&1
    go get github.com/cli/cli/v2@v2.63.0 >/dev/null 2>&1
    go list -deps github.com/cli/cli/v2/cmd/gh >/dev/null
  )
}

start_servers() {
  cairn_port=$(free_port)
  mkdir -p "$work/cairn-store"
  "$server" --listen "127.0.0.1:$cairn_port" --dir "$work/cairn-store" \
    --max_size 20GiB >"$out/go_builds_cairn.log" 2>&1 &
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
}

build_cmd() {  # build_cmd TARGET OUTDIR (in $mod, bounded to 30 min)
  cd "$mod"
  case "$1" in
    gh) timeout 1800 go build -trimpath -o "$2/gh" github.com/cli/cli/v2/cmd/gh ;;
    std) timeout 1800 go build -trimpath std ;;
    fmt) timeout 1800 go build -trimpath fmt ;;  # smoke runs only
  esac
}

# run TARGET SCENARIO REP GOCACHE [SHIM ARGS...]: one timed build.
run() {
  local target=$1 scenario=$2 rep=$3 gocache=$4
  shift 4
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
  local secs
  secs=$(python3 -c "print('%.2f' % ($t1 - $t0))")
  echo "$target,$scenario,$rep,$secs,$(field gets),$(field local_hits),$(field remote_hits),$(field misses),$(field puts),$(field errors)" >>"$raw"
  printf 'go_builds: %-4s %-18s rep %d %8ss %s\n' "$target" "$scenario" "$rep" "$secs" "${stats#cairn-gocacheprog: stats: }" >&2
}

shim_cmd() {  # shim_cmd PORT DIR [RECORD]
  if [ -n "${3:-}" ]; then
    echo "$root/bench/shim_tee.sh $3 $shim --remote=grpc://127.0.0.1:$1 --dir=$2 --stats"
  else
    echo "$shim --remote=grpc://127.0.0.1:$1 --dir=$2 --stats"
  fi
}

scenarios() {  # scenarios TARGET
  local t=$1 r
  for r in $(seq "$nocache_reps"); do
    run "$t" nocache "$r" "$work/gc-$t-nocache-$r"
  done
  local warm=$work/gc-$t-nocache-$nocache_reps
  for r in $(seq "$reps"); do
    run "$t" warm_local "$r" "$warm"
  done
  local rec=""
  if [ "$t" != gh ] && [ -n "$record" ]; then rec=$record; fi
  run "$t" cold_cairn 1 "$work/gc-$t-cc" "$(shim_cmd "$cairn_port" "$work/sd-$t-cc" "$rec")"
  run "$t" cold_bazel-remote 1 "$work/gc-$t-cb" "$(shim_cmd "$peer_port" "$work/sd-$t-cb")"
  # Each warm rep gets its own empty shim dir; none is deleted until exit.
  # (On ext4 without a journal, as on the benchmark VM, creating files right
  # after thousands were deleted makes the inode allocator scan past every
  # recently deleted inode: deleting the previous rep's dir just before a rep
  # measured 2.7-4.4 s against 1.4-1.8 s for a fresh dir, same binary. A CI
  # machine starting with an empty --dir has no such deletes.)
  for r in $(seq "$reps"); do
    run "$t" warm_cairn "$r" "$work/gc-$t-wc-$r" "$(shim_cmd "$cairn_port" "$work/sd-$t-wc-$r")"
    run "$t" warm_bazel-remote "$r" "$work/gc-$t-wb-$r" "$(shim_cmd "$peer_port" "$work/sd-$t-wb-$r")"
  done
  for r in $(seq "$reps"); do
    run "$t" warm_shim_dir "$r" "$work/gc-$t-ws-$r" "$(shim_cmd "$cairn_port" "$work/sd-$t-wc-$reps")"
  done
}

summarize() {
  python3 - "$raw" "$csv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
order = ["nocache", "warm_local", "cold_cairn", "cold_bazel-remote",
         "warm_cairn", "warm_bazel-remote", "warm_shim_dir"]
out = []
for t in dict.fromkeys(r["target"] for r in rows):
    med = {}
    for s in order:
        rs = [r for r in rows if r["target"] == t and r["scenario"] == s]
        if not rs:
            continue
        m = lambda k: statistics.median(int(r[k]) for r in rs) if rs[0][k] else None
        med[s] = dict(n=len(rs), secs=statistics.median(float(r["seconds"]) for r in rs),
                      lo=min(float(r["seconds"]) for r in rs),
                      hi=max(float(r["seconds"]) for r in rs),
                      gets=m("gets"), lh=m("local_hits"), rh=m("remote_hits"),
                      miss=m("misses"), puts=m("puts"))
    wl, nc = med.get("warm_local", {}).get("secs"), med.get("nocache", {}).get("secs")
    for s, v in med.items():
        out.append(dict(target=t, scenario=s, runs=v["n"], median_s="%.2f" % v["secs"],
                        min_s="%.2f" % v["lo"], max_s="%.2f" % v["hi"],
                        vs_warm_local="%.2f" % (v["secs"] / wl) if wl else "",
                        speedup_vs_nocache="%.2f" % (nc / v["secs"]) if nc else "",
                        gets=v["gets"], local_hits=v["lh"], remote_hits=v["rh"],
                        misses=v["miss"], puts=v["puts"]))
cols = list(out[0].keys())
with open(sys.argv[2], "w", newline="") as f:
    w = csv.DictWriter(f, cols); w.writeheader(); w.writerows(out)
fmt = "%-4s %-18s %4s %9s %7s %7s %8s %8s %6s %6s %6s %6s %6s"
print(fmt % ("tgt", "scenario", "runs", "median s", "min", "max", "/warm", "nocache/",
             "gets", "l.hit", "r.hit", "miss", "puts"))
for r in out:
    print(fmt % tuple("-" if r[c] is None or r[c] == "" else r[c] for c in cols))
EOF
}

case ",$targets," in *,gh,*) prepare_gh ;; esac
mkdir -p "$mod"
[ -f "$mod/go.mod" ] || (cd "$mod" && go mod init cairn.bench/gh >/dev/null 2>&1)
start_servers
echo "go_builds: $(go version); cairn :$cairn_port, bazel-remote :$peer_port" >&2
for t in ${targets//,/ }; do
  scenarios "$t"
done
summarize
echo "go_builds: wrote $csv and $raw" >&2
