#!/usr/bin/env bash
# The quiet-window run (one locked run, under 7 min): fanout same_blob,
# main's server (a) and this branch's (b) alternated: unpinned 3 pairs,
# pinned 1 pair, readers at nice 19 1 pair, then small_calls 1 pair (see
# ab.sh). Run from the worktree under
#   flock -o /work/team/bench.lock timeout 420 final.sh OUT
set -u
here=$(dirname "$0")
out=$1; mkdir -p $out
echo "start $(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)"
OUT=$out/fanout $here/ab.sh au bu au bu au bu ap bp an bn ac bc
echo "end $(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)"
