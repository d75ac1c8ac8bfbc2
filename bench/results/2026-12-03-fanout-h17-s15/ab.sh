#!/usr/bin/env bash
# ab.sh CFG... : CFG = SERVER MODE, e.g. au bp an:
#   SERVER a = main's server ($SERVER_A), b = this branch's ($SERVER_B);
#   MODE u = unpinned (readers, probe and server share both cores: the
#   target's figure), k = unpinned with fanout --loader callback (the
#   1,000 readers as gRPC callback reactors on a few threads, same calls
#   and pacing), q = pinned with --loader callback, p = pinned (readers on CPU 0, server and probe on
#   CPU 1, as FANOUT_PIN=1), n = unpinned with the readers at nice 19
#   (--client_nice 19: their CPU yields to the server's and the probe's,
#   as clients on other hosts would not compete at all), s = unpinned with
#   the server and the probe each in a session of its own (setsid, fanout
#   --probe_session: with the kernel's autogroup scheduling, on here, each
#   session shares the CPU as one group, as a service in its own cgroup
#   would against a host's other work; as FANOUT_SESSIONS=1), c = the
#   small_calls scenario instead (300 callers, 10 s, unpinned: unary calls
#   alone, to see what the pool's roles do to them).
# One cairn same_blob run per CFG (1,000 readers, --io_stream_nice at its
# default). Prints the fanout row, the probe's load p50/p90, server CPU and
# run-queue wait over 8 s of load (/proc/PID/task/*/schedstat; "io" = every
# cairn-io* thread), ms of server CPU per MiB served in those 8 s, the
# server's threads not at its nice value at the end, and the load average. Run from the worktree, under the bench lock.
set -u
out_root=${OUT:-/tmp/h17/ab}
for cfg in "$@"; do
  case ${cfg:0:1} in a) server=$SERVER_A ;; b) server=$SERVER_B ;; esac
  mode=${cfg:1:1}
  label=$cfg-$(date +%H%M%S)
  out=$out_root/$label; mkdir -p $out; rm -rf /tmp/h17/store-ab
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  ps=(); pc=(); pf=(); scen=(--scenario same_blob --duration ${DUR:-20})
  case $mode in
    p) ps=(taskset -c 1); pc=(taskset -c 0); pf=(--probe_cpus 1) ;;
    n) pf=(--client_nice 19) ;;
    k) pf=(--loader callback) ;;
    q) ps=(taskset -c 1); pc=(taskset -c 0); pf=(--probe_cpus 1 --loader callback) ;;
    s) ps=(setsid); pf=(--probe_session) ;;
    c) scen=(--scenario small_calls --duration 10 --readers 300) ;;
  esac
  "${ps[@]}" $server --listen 127.0.0.1:$port --dir /tmp/h17/store-ab --max_size 16GiB >$out/server.log 2>&1 &
  spid=$!
  sleep 1
  l0=$(cut -d' ' -f1 /proc/loadavg)
  snap() { for t in /proc/$spid/task/*; do echo "$(cat $t/comm | tr ' ' _) $(cat $t/schedstat)"; done; }
  ( i=0; while kill -0 $spid 2>/dev/null && [ ! -e $out/done ]; do snap > $out/snap.$i 2>/dev/null; i=$((i+1)); sleep 1; done ) &
  snapper=$!
  slicer=
  if [ -n "${SLICE_NS:-}" ]; then
    # Experiment: a short EEVDF slice (sched_attr.sched_runtime) on every
    # server thread but the lowered cairn-io workers, re-applied as gRPC
    # starts threads.
    ( while kill -0 $spid 2>/dev/null && [ ! -e $out/done ]; do
        for t in /proc/$spid/task/*; do
          case $(cat $t/comm 2>/dev/null) in cairn-io*) continue ;; esac
          $SLICE_TOOL ${t##*/} $SLICE_NS 2>/dev/null
        done; sleep 0.5; done ) &
    slicer=$!
  fi
  "${pc[@]}" build/bin/fanout --target grpc://127.0.0.1:$port --server_pid $spid --label $cfg "${scen[@]}" --csv $out_root/all.csv --probe_log $out/probe.log "${pf[@]}" > $out/fanout.out 2>&1
  touch $out/done; wait $snapper $slicer
  last=$(ls $out | grep -c '^snap\.'); cp $out/snap.$((last-12)) $out/s1; cp $out/snap.$((last-4)) $out/s2
  l1=$(cut -d' ' -f1 /proc/loadavg)
  # Threads not at the server's nice (name=nice x count): gRPC's must not be.
  niced=$(for t in /proc/$spid/task/*; do echo "$(cat $t/comm | tr ' ' _)=$(awk '{print $19}' $t/stat)"; done | grep -v '=0$' | sort | uniq -c | awk '{printf "%s x%d ", $2, $1}')
  kill $spid; wait $spid 2>/dev/null
  rm -rf /tmp/h17/store-ab
  row=$(tail -1 $out/fanout.out)
  mibs=$(echo "$row" | awk -F' [|] ' '{print $7 + $8}')
  sw=$(awk -v mibs=$mibs 'FNR==1{f++} {k=$1; if(k ~ /^cairn-io/) k="io"; if(f==1){c[k]-=$2;w[k]-=$3}else{c[k]+=$2;w[k]+=$3}} END{tc=0;tw=0; for(k in c){tc+=c[k];tw+=w[k]}; printf "srv cpu %.2fs wait %.2fs | nexting cpu %.2f wait %.2f | io cpu %.2f wait %.2f | cpu ms/MiB %.2f", tc/1e9, tw/1e9, c["nexting_thread"]/1e9, w["nexting_thread"]/1e9, c["io"]/1e9, w["io"]/1e9, (mibs > 0 ? tc/1e6/(mibs*8) : 0)}' $out/s1 $out/s2)
  pct=$(awk '$2=="load"{print $4/1000}' $out/probe.log | sort -n | awk '{a[NR]=$1} END{printf "p50 %.2f p90 %.2f", a[int(NR*.5)], a[int(NR*.9)]}')
  echo "$cfg $(date -u +%H:%M:%S) | $row | $pct | $sw | niced: $niced| load $l0->$l1"
done
