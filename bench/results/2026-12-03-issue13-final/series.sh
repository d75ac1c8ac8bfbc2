#!/bin/bash
# series.sh BIN MIX CONC : prints every 0.2 s heap rss, anon, file
BIN=$1; MIX=$2; CONC=$3; shift 3
LOAD=/work/main/build/bin/reapi_load
D=$(mktemp -d /tmp/h13t/st.XXXX)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
$PRE $BIN --listen 127.0.0.1:$PORT --dir $D/s --max_size 20GiB "$@" > $D.log 2>&1 &
SP=$!
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
( while kill -0 $SP 2>/dev/null && [ ! -e $D.stop ]; do
   awk '/^[0-9a-f]+-/{n=$6} /^Rss:/{if(n=="[heap]")h+=$2; else if(n=="")a+=$2} END{printf "heap=%d anon=%d ", h/1024, a/1024}' /proc/$SP/smaps; grep -E 'VmRSS' /proc/$SP/status | tr -s ' \t' ' '
   sleep 0.2; done ) &
SAMP=$!
$LOAD --target grpc://127.0.0.1:$PORT --mix $MIX --concurrency $CONC --requests 20000 --large_requests 16 --huge_requests ${HREQ:-2} --duration 5 --server_pid $SP --label x 2>&1 | grep -v "^+" | tail -1
touch $D.stop; wait $SAMP
kill $SP; wait $SP 2>/dev/null; rm -rf $D $D.*
