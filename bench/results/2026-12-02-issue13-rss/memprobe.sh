#!/bin/bash
# usage: memprobe.sh BIN MIX CONC [extra server args...]  (env: LOAD, PRE)
BIN=$1; MIX=$2; CONC=$3; shift 3
LOAD=${LOAD:-/work/main/build/bin/reapi_load}
D=$(mktemp -d /tmp/h13/st.XXXX)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
MP=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
if [[ $BIN == *bazel-remote* ]]; then
 $PRE $BIN --dir $D --max_size 20 --storage_mode uncompressed --grpc_address 127.0.0.1:$PORT --http_address 127.0.0.1:$MP --access_log_level none > $D.log 2>&1 &
else
 $PRE $BIN --listen 127.0.0.1:$PORT --dir $D --max_size 20GiB --metrics_listen 127.0.0.1:$MP "$@" > $D.log 2>&1 &
fi
SP=$!
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
grep -E "VmRSS" /proc/$SP/status | sed 's/^/idle /'
[ -n "$PERFSTAT" ] && { perf stat -e syscalls:sys_enter_futex,context-switches -p $SP -o $D.perf & PERFP=$!; sleep 0.3; }
$LOAD --target grpc://127.0.0.1:$PORT --mix $MIX --concurrency $CONC --requests ${REQ:-20000} --duration 5 --server_pid $SP --label x 2>&1 | grep -v "^+" | tail -3
[ -n "$PERFSTAT" ] && { kill -INT $PERFP; wait $PERFP; grep -E "futex|context" $D.perf; }
grep -E "VmHWM|VmRSS|RssAnon|RssFile|Threads" /proc/$SP/status | tr '\n' ' '; echo
if [ -n "$SMAPS" ]; then awk '/^[0-9a-f]+-[0-9a-f]+ /{name=$6; if(name=="")name="[anon]"} /^Rss:/{rss[name]+=$2} END{for(n in rss) if(rss[n]>300) print rss[n], n}' /proc/$SP/smaps | sort -rn | head -${SMAPS}; fi
kill $SP; wait $SP 2>/dev/null; rm -rf $D $D.log
