#!/usr/bin/env bash
# ab.sh CFG... : one same_blob fan-out run per CFG (1,000 readers, 20 s,
# fanout --loader callback), CFG = SERVER MODE:
#   SERVER a = cairn-server $SERVER_A, r = bazel-remote ($BAZEL_REMOTE,
#   default /work/main/build/peers/bin/bazel-remote, flags as bench/fanout.sh);
#   MODE k = unpinned: readers, probe and server share both cores at the
#        same priority (the shared-CPU figure of earlier tables);
#   q = pinned: readers on CPU 0, server and probe on CPU 1 (as
#        bench/fanout.sh FANOUT_PIN=1);
#   i = unpinned, the loader under SCHED_IDLE (fanout --loader_idle, as
#        FANOUT_LOADER_IDLE=1): the server has both cores and the readers
#        only the CPU it leaves; the probe's process at SCHED_OTHER, nice 0.
# Starts the server, waits until it listens (bench/lib.sh wait_port), runs
# fanout, and prints: the fanout row (its last two cells say how the
# loader's and the probe's threads were scheduled mid-run), the probe's load
# p50/p90, the server's CPU and run-queue wait over 8 s of load
# (/proc/PID/task/*/schedstat), the loader's user and sys CPU seconds over
# the whole run with its probe child (/usr/bin/time; set-up included), and
# the load average at start and end; ps.txt: `ps -L` of the loader and the
# probe about 10 s into the load.
# LOADER_ENV: NAME=VALUE words for fanout's environment only (not the
# server's). Run from the worktree, under the bench lock.
set -u
cd "$(dirname "$0")/../../.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
out_root=${OUT:-/tmp/h17/ab}
peer=${BAZEL_REMOTE:-/work/main/build/peers/bin/bazel-remote}
for cfg in "$@"; do
  mode=${cfg:1:1}
  label=$cfg-$(date +%H%M%S)
  out=$out_root/$label
  store=$out_root/store
  mkdir -p "$out"
  rm -rf "$store"
  l0=$(cut -d' ' -f1 /proc/loadavg)
  port=$(free_port)
  ps=()
  pc=()
  pf=(--loader callback)
  case $mode in
    k) ;;
    q) ps=(taskset -c 1); pc=(taskset -c 0); pf+=(--probe_cpus 1) ;;
    i) pf+=(--loader_idle) ;;
    *) echo "ab.sh: unknown mode $mode" >&2; exit 2 ;;
  esac
  case ${cfg:0:1} in
    a) "${ps[@]}" "$SERVER_A" --listen "127.0.0.1:$port" --dir "$store" \
         --max_size 16GiB >"$out/server.log" 2>&1 & ;;
    r) "${ps[@]}" "$peer" --dir "$store" --max_size 16 \
         --storage_mode uncompressed --grpc_address "127.0.0.1:$port" \
         --http_address "127.0.0.1:$(free_port)" --access_log_level none \
         >"$out/server.log" 2>&1 & ;;
    *) echo "ab.sh: unknown server in $cfg" >&2; exit 2 ;;
  esac
  spid=$!
  if ! wait_port "$port" "$out/server.log"; then
    kill $spid
    echo "$cfg $(date -u +%H:%M:%S) | server did not listen | load $l0"
    continue
  fi
  # Bash builtins only: forking cat and tr for every thread every second
  # (as session 15's ab.sh did) took 4-6% of the two cores at normal priority.
  snap() {
    local t c st
    for t in /proc/$spid/task/*; do
      read -r c <"$t/comm" && read -r st <"$t/schedstat" && echo "${c// /_} $st"
    done
  }
  ( i=0; while kill -0 $spid 2>/dev/null && [ ! -e "$out/done" ]; do
      snap >"$out/snap.$i" 2>/dev/null; i=$((i + 1)); sleep 1; done ) &
  snapper=$!
  "${pc[@]}" /usr/bin/time -f 'loader user %U sys %S' -o "$out/time.txt" \
    env ${LOADER_ENV:-} build/bin/fanout --target "grpc://127.0.0.1:$port" \
    --server_pid $spid --label "$cfg" --scenario same_blob \
    --duration "${DUR:-20}" --csv "$out_root/all.csv" \
    --probe_log "$out/probe.log" "${pf[@]}" >"$out/fanout.out" 2>&1 &
  fpid=$!
  # About 10 s into the load: after set-up (uploads, 1-2 s) and the 4 s idle
  # probe.
  ( sleep "${PS_AT:-15}"; f=$(pgrep -P $fpid)
    ps -L -o pid,tid,cls,ni,comm -p "$f" --ppid "$f" >"$out/ps.txt" 2>&1 ) &
  psjob=$!
  wait $fpid
  touch "$out/done"
  wait $snapper
  kill $psjob 2>/dev/null
  last=$(ls "$out" | grep -c '^snap\.')
  cp "$out/snap.$((last - 12))" "$out/s1"
  cp "$out/snap.$((last - 4))" "$out/s2"
  l1=$(cut -d' ' -f1 /proc/loadavg)
  kill $spid
  wait $spid 2>/dev/null
  rm -rf "$store"
  row=$(tail -1 "$out/fanout.out")
  sw=$(awk 'FNR==1{f++} {if(f==1){c-=$2;w-=$3}else{c+=$2;w+=$3}} END{printf "srv cpu %.2fs wait %.2fs", c/1e9, w/1e9}' "$out/s1" "$out/s2")
  pct=$(awk '$2=="load"{print $4/1000}' "$out/probe.log" | sort -n | awk '{a[NR]=$1} END{printf "p50 %.2f p90 %.2f", a[int(NR*.5)], a[int(NR*.9)]}')
  echo "$cfg $(date -u +%H:%M:%S) | $row | $pct | $sw | $(cat "$out/time.txt") | load $l0->$l1"
done
