#!/usr/bin/env bash
set -u
cd /work/wt-17p
out=/tmp/h17p/perf; mkdir -p $out; rm -rf /tmp/h17p/store-perf
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
build/bin/cairn-server --listen 127.0.0.1:$port --dir /tmp/h17p/store-perf --max_size 16GiB >$out/server.log 2>&1 &
spid=$!
sleep 1; uptime
( sleep 22; perf record -F 199 -g -p $spid -o $out/perf.data -- sleep 8 >/dev/null 2>&1 ) &
pp=$!
build/bin/fanout --target grpc://127.0.0.1:$port --server_pid $spid --label u10 --scenario same_blob --duration 25 --probe_log $out/probe.log > $out/fanout.out 2>&1
wait $pp
kill $spid; wait $spid 2>/dev/null
rm -rf /tmp/h17p/store-perf
uptime; tail -1 $out/fanout.out
