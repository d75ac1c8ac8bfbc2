#!/usr/bin/env bash
# ab.sh CONFIG... : for each CONFIG (shared|sessions|...), one cairn same_blob run; row + server schedstat.
set -u
cd /work/wt-17
for cfg in "$@"; do
  label=$cfg-$(date +%H%M%S)
  out=/tmp/h17/ab/$label; mkdir -p $out; rm -rf /tmp/h17/store-ab
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  ss=; ff=
  sf=
  case $cfg in sessions*) ss=setsid; ff=--probe_session ;; io2*) sf="--io_threads 2" ;; io8*) sf="--io_threads 8" ;; esac
  $ss ${SERVER:-build/bin/cairn-server} --listen 127.0.0.1:$port --dir /tmp/h17/store-ab --max_size 16GiB $sf ${SFLAGS:-} >$out/server.log 2>&1 &
  spid=$!
  sleep 1
  l0=$(cut -d' ' -f1 /proc/loadavg)
  snap() { for t in /proc/$spid/task/*; do echo "$(cat $t/comm | tr ' ' _) $(cat $t/schedstat)"; done; }
  ( sleep 14; snap > $out/s1; sleep 8; snap > $out/s2 ) &
  snapper=$!
  build/bin/fanout --target grpc://127.0.0.1:$port --server_pid $spid --label $cfg --scenario same_blob --duration ${DUR:-20} --csv /tmp/h17/ab/all.csv --probe_log $out/probe.log $ff > $out/fanout.out 2>&1
  wait $snapper
  l1=$(cut -d' ' -f1 /proc/loadavg)
  kill $spid; wait $spid 2>/dev/null
  rm -rf /tmp/h17/store-ab
  row=$(tail -1 $out/fanout.out | cut -d"|" -f1,6,7,8,14-16,18,20)
  sw=$(awk 'FNR==1{f++} {if(f==1){c[$1]-=$2;w[$1]-=$3}else{c[$1]+=$2;w[$1]+=$3}} END{tc=0;tw=0; for(k in c){tc+=c[k];tw+=w[k]}; printf "srv cpu %.2fs wait %.2fs", tc/1e9, tw/1e9}' $out/s1 $out/s2)
  pct=$(awk '$2=="load"{print $4/1000}' $out/probe.log | sort -n | awk '{a[NR]=$1} END{printf "p50 %.1f p90 %.1f", a[int(NR*.5)], a[int(NR*.9)]}')
  echo "$row | $pct | $sw | load $l0->$l1"
done
