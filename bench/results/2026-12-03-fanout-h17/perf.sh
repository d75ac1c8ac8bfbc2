#!/usr/bin/env bash
# perf.sh SERVER OUT: one unpinned same_blob run (25 s) with
# perf record -F 999 -g on the server for 8 s in the middle of the load.
set -u
server=$1; out=$2; mkdir -p $out; rm -rf /tmp/h17/store-perf
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$server --listen 127.0.0.1:$port --dir /tmp/h17/store-perf --max_size 16GiB >$out/server.log 2>&1 &
spid=$!
sleep 1; uptime > $out/load
( sleep 20; perf record -F 999 -g -p $spid -o $out/perf.data -- sleep 8 >/dev/null 2>&1 ) &
pp=$!
build/bin/fanout --target grpc://127.0.0.1:$port --server_pid $spid --label perf --scenario same_blob --duration 25 --probe_log $out/probe.log > $out/fanout.out 2>&1
wait $pp
kill $spid; wait $spid 2>/dev/null
rm -rf /tmp/h17/store-perf
uptime >> $out/load; tail -1 $out/fanout.out
