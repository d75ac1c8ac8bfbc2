#!/usr/bin/env bash
# ab.sh CFG... : CFG = {u|p}{nice}, e.g. u0 p10: u = unpinned, p = FANOUT_PIN-like
# (fanout on CPU 0, server + probe on CPU 1); nice = --io_stream_nice.
# One cairn same_blob run per CFG; prints the row, probe percentiles, server schedstat and load.
set -u
cd /work/wt-17p
for cfg in "$@"; do
  mode=${cfg:0:1}; nice=${cfg:1}
  label=$cfg-$(date +%H%M%S)
  out=/tmp/h17p/ab/$label; mkdir -p $out; rm -rf /tmp/h17p/store-ab
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  ps=(); pc=(); pf=()
  if [ $mode = p ]; then ps=(taskset -c 1); pc=(taskset -c 0); pf=(--probe_cpus 1); fi
  "${ps[@]}" ${SERVER:-build/bin/cairn-server} --listen 127.0.0.1:$port --dir /tmp/h17p/store-ab --max_size 16GiB --io_stream_nice $nice ${SFLAGS:-} >$out/server.log 2>&1 &
  spid=$!
  sleep 1
  l0=$(cut -d' ' -f1 /proc/loadavg)
  snap() { for t in /proc/$spid/task/*; do echo "$(cat $t/comm | tr ' ' _) $(cat $t/schedstat)"; done; }
  ( i=0; while kill -0 $spid 2>/dev/null && [ ! -e $out/done ]; do snap > $out/snap.$i 2>/dev/null; i=$((i+1)); sleep 1; done ) &
  snapper=$!
  "${pc[@]}" build/bin/fanout --target grpc://127.0.0.1:$port --server_pid $spid --label $cfg --scenario same_blob --duration ${DUR:-20} --csv /tmp/h17p/ab/all.csv --probe_log $out/probe.log "${pf[@]}" > $out/fanout.out 2>&1
  touch $out/done; wait $snapper
  last=$(ls $out | grep -c '^snap\.'); cp $out/snap.$((last-12)) $out/s1; cp $out/snap.$((last-4)) $out/s2
  l1=$(cut -d' ' -f1 /proc/loadavg)
  kill $spid; wait $spid 2>/dev/null
  rm -rf /tmp/h17p/store-ab
  row=$(tail -1 $out/fanout.out)
  sw=$(awk 'FNR==1{f++} {k=$1; if(f==1){c[k]-=$2;w[k]-=$3}else{c[k]+=$2;w[k]+=$3}} END{tc=0;tw=0; for(k in c){tc+=c[k];tw+=w[k]}; printf "srv cpu %.2fs wait %.2fs | nexting cpu %.2f wait %.2f | io cpu %.2f wait %.2f", tc/1e9, tw/1e9, c["nexting_thread"]/1e9, w["nexting_thread"]/1e9, (c["cairn-io"]+c["cairn-io-call"]+c["cairn-server"])/1e9, (w["cairn-io"]+w["cairn-io-call"]+w["cairn-server"])/1e9}' $out/s1 $out/s2)
  pct=$(awk '$2=="load"{print $4/1000}' $out/probe.log | sort -n | awk '{a[NR]=$1} END{printf "p50 %.1f p90 %.1f", a[int(NR*.5)], a[int(NR*.9)]}')
  echo "$cfg | $row | $pct | $sw | load $l0->$l1"
done
