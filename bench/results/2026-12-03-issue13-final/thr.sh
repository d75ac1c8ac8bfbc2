#!/bin/bash
# thr.sh BIN MIX CONC: per-thread-name CPU (utime+stime ticks) after the load
BIN=$1; MIX=$2; CONC=$3; shift 3
D=$(mktemp -d /tmp/h13t/st.XXXX)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
$BIN --listen 127.0.0.1:$PORT --dir $D/s --max_size 20GiB "$@" > $D.log 2>&1 &
SP=$!
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
/work/main/build/bin/reapi_load --target grpc://127.0.0.1:$PORT --mix $MIX --concurrency $CONC --requests ${REQ:-3000} --duration 100 --server_pid $SP --label x 2>&1 | grep -v "^+" | tail -1
sleep 1
for t in /proc/$SP/task/*; do echo "$(cat $t/comm) $(awk '{print $14+$15}' $t/stat)"; done | awk '{c[$1]+=$2} END{for(n in c) if(c[n]>0) print n, c[n]}' | sort -k2 -rn | tr '\n' ';'; echo
kill $SP; wait $SP 2>/dev/null; rm -rf $D $D.log
