#!/usr/bin/env bash
# diag.sh OUTDIR [server flags...]: one cairn same_blob fan-out (unpinned),
# with `perf record -a -k CLOCK_MONOTONIC` of scheduler events and the
# sendmsg/recvmsg syscalls for 3 s in the middle of the load; the probe log
# carries each call's CLOCK_MONOTONIC start. Run from the worktree.
# Session 15: extra fanout flags in FANOUT_FLAGS (e.g. --loader callback);
# the trace starts SETTLE s after the probe process appears plus the set-up
# and idle phase (IDLE_WAIT, default 6 s), as the callback loader has no
# 1,000 threads to wait for.
set -u
out=$1; shift
mkdir -p $out; rm -rf /tmp/h17/store-diag
server=${SERVER:-build/bin/cairn-server}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$server --listen 127.0.0.1:$port --dir /tmp/h17/store-diag --max_size 16GiB "$@" >$out/server.log 2>&1 &
spid=$!
sleep 1
echo "load0 $(cat /proc/loadavg)" > $out/meta
build/bin/fanout --target grpc://127.0.0.1:$port --server_pid $spid --label diag --scenario same_blob --duration ${DUR:-20} --csv $out/rows.csv --probe_log $out/probe.log ${FANOUT_FLAGS:-} > $out/fanout.out 2>&1 &
fpid=$!
# Wait for the probe process, then the set-up and the idle phase.
while kill -0 $fpid 2>/dev/null && [ -z "$(pgrep -P $fpid)" ]; do sleep 0.1; done
sleep $(( ${IDLE_WAIT:-6} + ${SETTLE:-6} ))
ppid=$(pgrep -P $fpid | head -1)
echo "server $spid fanout $fpid probe $ppid" >> $out/meta
ss -tnpi > $out/ss.txt 2>&1
for t in /proc/$spid/task/*; do echo "$(basename $t) $(cat $t/comm)"; done > $out/server-threads
for t in /proc/$ppid/task/*; do echo "$(basename $t) $(cat $t/comm)"; done > $out/probe-threads
perf record -a -k CLOCK_MONOTONIC -o $out/perf.data \
  -e sched:sched_switch -e sched:sched_wakeup -e sched:sched_wakeup_new \
  -e syscalls:sys_enter_sendmsg -e syscalls:sys_exit_sendmsg \
  -e syscalls:sys_enter_recvmsg -e syscalls:sys_exit_recvmsg \
  -e syscalls:sys_enter_epoll_wait -e syscalls:sys_exit_epoll_wait \
  -- sleep ${REC:-3} > $out/perf-record.out 2>&1
echo "load1 $(cat /proc/loadavg)" >> $out/meta
wait $fpid
kill $spid; wait $spid 2>/dev/null
rm -rf /tmp/h17/store-diag
tail -1 $out/fanout.out
