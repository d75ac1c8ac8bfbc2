#!/bin/bash
# heap.sh MIX: cairn-after under heaptrack, reapi_load MIX 32 streams 5 s, then peak consumers
set -u
mix=$1; d=$(mktemp -d /tmp/h13heap.XXXX); port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
heaptrack -o /tmp/h13x/heap-$mix /tmp/h13x/cairn-after --listen=127.0.0.1:$port --dir=$d/s --max_size=20GiB > /tmp/h13x/heap-$mix.out 2>&1 &
sleep 3
pid=$(pgrep -f -n "cairn-after --listen=127.0.0.1:$port")
/work/wt-h13/build/bin/reapi_load --target=grpc://127.0.0.1:$port --mix=$mix --concurrency=32 --duration=5 --requests=20000 --server_pid=$pid | tail -1
kill $pid; sleep 3; wait
rm -rf $d
