#!/bin/bash
# wan.sh LAT_MS MIX CONC cfg... : server via toxiproxy with LAT each way
LAT=$1; MIX=$2; CONC=$3; shift 3
B=/work/wt-h13/build/bin/cairn-server; TOXI=/work/main/build/peers/bin/toxiproxy-server
fp() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
TP=$(fp); $TOXI -host 127.0.0.1 -port $TP > /tmp/h13t/toxi.log 2>&1 & TPID=$!
sleep 0.5
for cfg in "$@"; do
 D=$(mktemp -d /tmp/h13t/st.XXXX); PORT=$(fp); PP=$(fp)
 env $cfg $B --listen 127.0.0.1:$PORT --dir $D/s --max_size 20GiB > $D.log 2>&1 & SP=$!
 for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
 curl -sf -X POST "http://127.0.0.1:$TP/proxies" -d "{\"name\":\"p$PP\",\"listen\":\"127.0.0.1:$PP\",\"upstream\":\"127.0.0.1:$PORT\"}" >/dev/null
 for dir in upstream downstream; do curl -sf -X POST "http://127.0.0.1:$TP/proxies/p$PP/toxics" -d "{\"name\":\"l$dir\",\"type\":\"latency\",\"stream\":\"$dir\",\"attributes\":{\"latency\":$LAT}}" >/dev/null; done
 echo "== $cfg"; /work/main/build/bin/reapi_load --target grpc://127.0.0.1:$PP --mix $MIX --concurrency $CONC --large_requests ${LREQ:-8} --huge_requests 1 --server_pid $SP --label x 2>&1 | grep -v '^+' | tail -1
 kill $SP; wait $SP 2>/dev/null; rm -rf $D $D.log
done
kill $TPID; wait $TPID 2>/dev/null
