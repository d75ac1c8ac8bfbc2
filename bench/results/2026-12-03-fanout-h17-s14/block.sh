#!/usr/bin/env bash
# block.sh OUT: where gRPC's nexting threads block (sched_switch stacks)
set -u
out=$1; mkdir -p $out; rm -rf /tmp/h17/store-bl
server=${SERVER:-build/bin/cairn-server}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$server --listen 127.0.0.1:$port --dir /tmp/h17/store-bl --max_size 16GiB "${@:2}" >$out/server.log 2>&1 &
spid=$!; sleep 1
build/bin/fanout --target grpc://127.0.0.1:$port --server_pid $spid --label bl --scenario same_blob --duration 12 --probe_log $out/probe.log > $out/fanout.out 2>&1 &
fpid=$!
while kill -0 $fpid 2>/dev/null && [ $(ls /proc/$fpid/task 2>/dev/null | wc -l) -lt 1000 ]; do sleep 0.2; done
sleep 4
tids=$(for t in /proc/$spid/task/*; do [ "$(cat $t/comm)" = nexting_thread ] && basename $t; done | paste -sd,)
echo "$tids" > $out/tids
perf record -e sched:sched_switch --call-graph dwarf,32768 -t $tids -o $out/perf.data -- sleep 3 > $out/rec.out 2>&1
wait $fpid; kill $spid; wait $spid 2>/dev/null; rm -rf /tmp/h17/store-bl
tail -1 $out/fanout.out
