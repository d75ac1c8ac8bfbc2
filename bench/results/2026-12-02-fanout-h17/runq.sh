#!/usr/bin/env bash
# runq.sh LABEL: same_blob run; counts runnable threads by command every 0.5 s during 8 s of load.
set -u
label=$1; shift
cd /work/wt-17
out=/tmp/h17/$label; mkdir -p $out; rm -rf /tmp/h17/store-$label
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
build/bin/cairn-server --listen 127.0.0.1:$port --dir /tmp/h17/store-$label --max_size 16GiB "$@" >$out/server.log 2>&1 &
spid=$!
sleep 1
( sleep 14; for i in $(seq 16); do ps -eLo comm=,stat= | awk '$2 ~ /^R/ {print $1}'; echo ---; sleep 0.5; done > $out/runq ) &
snapper=$!
build/bin/fanout --target grpc://127.0.0.1:$port --server_pid $spid --label $label --scenario same_blob --duration 20 --csv $out/out.csv --probe_log $out/probe.log > $out/fanout.out 2>&1
wait $snapper
kill $spid; wait $spid 2>/dev/null
rm -rf /tmp/h17/store-$label
tail -1 $out/fanout.out | cut -d"|" -f1,6,7,8,14-19
grep -v -- --- $out/runq | sort | uniq -c | sort -rn | awk '{printf "%s %.1f\n", $2, $1/16}' | head -15
