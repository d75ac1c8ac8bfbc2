#!/bin/bash
# usage: prof.sh SERVER MIX CONC REQS OUTPREFIX [perf]
set -u
SERVER=$1; MIX=$2; CONC=$3; REQS=$4; OUT=$5; PERF=${6:-}
D=$(mktemp -d /tmp/h13s/d.XXXX)
PORT=$((20000 + RANDOM % 10000))
$SERVER --listen 127.0.0.1:$PORT --dir $D/store --max_size 20GiB > $OUT.server.log 2>&1 &
SP=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
ARGS=(--target grpc://127.0.0.1:$PORT --mix $MIX --concurrency $CONC --large_requests $REQS --huge_requests $REQS --warmup 1 --server_pid $SP --label x --csv $OUT.csv)
[ -n "$PERF" ] && ARGS+=(--perf_record $OUT)
/work/wt-h13/build/bin/reapi_load "${ARGS[@]}" 2>&1 | tail -3
kill $SP; wait $SP
rm -rf $D
