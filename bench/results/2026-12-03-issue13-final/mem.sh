#!/bin/bash
# usage: mem.sh BIN MIX CONC  -> samples RssAnon/RssFile/VmRSS max during load; smaps top at peak
BIN=$1; MIX=$2; CONC=$3; shift 3
LOAD=${LOAD:-/work/main/build/bin/reapi_load}
D=$(mktemp -d /tmp/h13t/st.XXXX)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
MP=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
if [[ $BIN == *bazel-remote* ]]; then
 $PRE $BIN --dir $D/s --max_size 20 --storage_mode uncompressed --grpc_address 127.0.0.1:$PORT --http_address 127.0.0.1:$MP --access_log_level none > $D.log 2>&1 &
else
 $PRE $BIN --listen 127.0.0.1:$PORT --dir $D/s --max_size 20GiB --metrics_listen 127.0.0.1:$MP "$@" > $D.log 2>&1 &
fi
SP=$!
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
grep -E "VmRSS|RssAnon|RssFile" /proc/$SP/status | tr -s ' \n' ' ' | sed 's/^/idle /'; echo
( ma=0; mf=0; mr=0; while kill -0 $SP 2>/dev/null && [ ! -e $D.stop ]; do
   read a f r < <(awk '/RssAnon/{a=$2}/RssFile/{f=$2}/VmRSS/{r=$2}END{print a,f,r}' /proc/$SP/status 2>/dev/null)
   [ -n "$a" ] || break
   if [ "$r" -gt "$mr" ]; then mr=$r; cp /proc/$SP/smaps $D.smaps 2>/dev/null; fi
   [ "$a" -gt "$ma" ] && ma=$a; [ "$f" -gt "$mf" ] && mf=$f
   sleep 0.02; done; echo "max anon=$((ma/1024))MiB file=$((mf/1024))MiB rss=$((mr/1024))MiB" > $D.max ) &
SAMP=$!
$LOAD --target grpc://127.0.0.1:$PORT --mix $MIX --concurrency $CONC --requests ${REQ:-20000} --large_requests ${LREQ:-16} --huge_requests ${HREQ:-2} --duration 5 --server_pid $SP --label x --csv $D.csv 2>&1 | grep -v "^+" | tail -2
touch $D.stop; wait $SAMP; cat $D.max
python3 -c "import csv;r=list(csv.DictReader(open('$D.csv')))[-1];print('peak_rss',r['server_peak_rss_mib'],'cpu',r['server_cpu_us_per_op'],'ops',r['ops_per_s'],'p99',r['p99_us'])"
grep -E "Threads" /proc/$SP/status
if [ -n "$SMAPS" ]; then awk '/^[0-9a-f]+-[0-9a-f]+ /{name=$6; if(name=="")name="[anon]"} /^Rss:/{rss[name]+=$2} END{for(n in rss) if(rss[n]>300) print rss[n], n}' $D.smaps | sort -rn | head -${SMAPS}; fi
kill $SP; wait $SP 2>/dev/null; rm -rf $D $D.*
