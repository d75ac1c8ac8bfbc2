#!/usr/bin/env bash
# ab.sh CFG... : CFG = a (main's server, $SERVER_A) or b (this branch's,
# $SERVER_B); one cairn same_blob run per CFG, unpinned (readers, probe and
# server on both cores), --io_stream_nice at its default. Prints the fanout
# row, the probe's load p50/p90, server CPU and run-queue wait over 8 s of
# load (/proc/PID/task/*/schedstat), ms of server CPU per MiB served in
# those 8 s, and the load average. Run from the worktree, under the bench lock.
set -u
out_root=${OUT:-/tmp/h17/ab}
for cfg in "$@"; do
  case $cfg in a) server=$SERVER_A ;; b) server=$SERVER_B ;; esac
  label=$cfg-$(date +%H%M%S)
  out=$out_root/$label; mkdir -p $out; rm -rf /tmp/h17/store-ab
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  $server --listen 127.0.0.1:$port --dir /tmp/h17/store-ab --max_size 16GiB >$out/server.log 2>&1 &
  spid=$!
  sleep 1
  l0=$(cut -d' ' -f1 /proc/loadavg)
  snap() { for t in /proc/$spid/task/*; do echo "$(cat $t/comm | tr ' ' _) $(cat $t/schedstat)"; done; }
  ( i=0; while kill -0 $spid 2>/dev/null && [ ! -e $out/done ]; do snap > $out/snap.$i 2>/dev/null; i=$((i+1)); sleep 1; done ) &
  snapper=$!
  build/bin/fanout --target grpc://127.0.0.1:$port --server_pid $spid --label $cfg --scenario same_blob --duration ${DUR:-20} --csv $out_root/all.csv --probe_log $out/probe.log > $out/fanout.out 2>&1
  touch $out/done; wait $snapper
  last=$(ls $out | grep -c '^snap\.'); cp $out/snap.$((last-12)) $out/s1; cp $out/snap.$((last-4)) $out/s2
  l1=$(cut -d' ' -f1 /proc/loadavg)
  kill $spid; wait $spid 2>/dev/null
  rm -rf /tmp/h17/store-ab
  row=$(tail -1 $out/fanout.out)
  mibs=$(echo "$row" | awk -F' [|] ' '{print $7 + $8}')
  sw=$(awk -v mibs=$mibs 'FNR==1{f++} {k=$1; if(f==1){c[k]-=$2;w[k]-=$3}else{c[k]+=$2;w[k]+=$3}} END{tc=0;tw=0; for(k in c){tc+=c[k];tw+=w[k]}; printf "srv cpu %.2fs wait %.2fs | nexting cpu %.2f wait %.2f | io cpu %.2f wait %.2f | cpu ms/MiB %.2f", tc/1e9, tw/1e9, c["nexting_thread"]/1e9, w["nexting_thread"]/1e9, (c["cairn-io"]+c["cairn-io-call"]+c["cairn-server"])/1e9, (w["cairn-io"]+w["cairn-io-call"]+w["cairn-server"])/1e9, tc/1e6/(mibs*8)}' $out/s1 $out/s2)
  pct=$(awk '$2=="load"{print $4/1000}' $out/probe.log | sort -n | awk '{a[NR]=$1} END{printf "p50 %.2f p90 %.2f", a[int(NR*.5)], a[int(NR*.9)]}')
  echo "$cfg $(date -u +%H:%M:%S) | $row | $pct | $sw | load $l0->$l1"
done
