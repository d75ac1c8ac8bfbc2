#!/usr/bin/env bash
# The quiet-window run (one locked run, under 7 min): fanout same_blob,
# unpinned, main's server (a) and this branch's (b) alternated 3 times,
# then compare.py bs_read_16m, this branch's server against main's as the
# baseline, 5 repetitions. Run from the worktree under
#   flock -o /work/team/bench.lock timeout 420 final.sh OUT
set -u
out=$1; mkdir -p $out
echo "start $(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)"
OUT=$out/fanout bench/results/2026-12-03-fanout-h17/ab.sh a b a b a b
echo "compare $(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/compare.py --servers cairn --baseline "$SERVER_A" --mix '' \
  --large_mix bs_read_16m --huge_mix '' --reps 5 --large_requests 32 \
  --build build --out $out/compare 2>&1 | grep -A6 "^A = cairn"
echo "end $(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)"
