#!/usr/bin/env bash
set -u
cd /work/wt-17p
for n in "$@"; do
  uptime
  CAIRN_SERVER_FLAGS="--io_stream_nice $n" FANOUT_SERVERS=cairn FANOUT_SCENARIOS=small_calls bench/fanout.sh /tmp/h17p/small.csv -- --duration 10 --readers 300 --label nice$n 2>&1 | tail -1
done
uptime
