#!/usr/bin/env bash
# exp.sh OUT CFG...: CFG = n10 (default), n0 (--io_stream_nice 0), fix
# (nice 10 but gRPC's threads reniced to 0 every 50 ms by root: a stand-in
# for executor threads that never inherit the pool's nice).
set -u
out=$1; shift
for cfg in "$@"; do
  rm -rf /tmp/h17/store-x
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  flags=""; [ $cfg = n0 ] && flags="--io_stream_nice 0"
  ${SERVER:-build/bin/cairn-server} --listen 127.0.0.1:$port --dir /tmp/h17/store-x --max_size 16GiB $flags >/dev/null 2>&1 &
  spid=$!; sleep 1
  keeper=
  if [ $cfg = fix ]; then
    ( while kill -0 $spid 2>/dev/null; do for t in /proc/$spid/task/*; do c=$(cat $t/comm 2>/dev/null); case $c in cairn-io) ;; *) n=$(awk '{print $19}' $t/stat 2>/dev/null); [ "$n" != 0 ] && [ -n "$n" ] && renice -n 0 -p $(basename $t) >/dev/null 2>&1 ;; esac; done; sleep 0.05; done ) &
    keeper=$!
  fi
  l0=$(cut -d' ' -f1 /proc/loadavg)
  build/bin/fanout --target grpc://127.0.0.1:$port --server_pid $spid --label $cfg --scenario same_blob --duration ${DUR:-20} --csv $out.csv --probe_log $out.$cfg.log > /tmp/h17/exp.out 2>&1
  l1=$(cut -d' ' -f1 /proc/loadavg)
  nices=$(for t in /proc/$spid/task/*; do echo "$(cat $t/comm)=$(awk '{print $19}' $t/stat)"; done | grep -v '=0$' | sort | uniq -c | tr -s ' \n' ' ')
  kill $spid; [ -n "$keeper" ] && kill $keeper; wait 2>/dev/null
  echo "$cfg $(date -u +%H:%M:%S) | $(tail -1 /tmp/h17/exp.out | cut -d'|' -f6-7,14-16,19-20) | niced: $nices | load $l0->$l1"
done
rm -rf /tmp/h17/store-x
