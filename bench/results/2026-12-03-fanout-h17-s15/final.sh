#!/usr/bin/env bash
# The quiet-window run (one locked run, under 7 min): fanout same_blob
# against main's server, the two loaders alternated (ab.sh): unpinned
# threads (u) and callback (k) 4 pairs, then pinned threads (p) and pinned
# callback (q). Run from the worktree under
#   SERVER_A=... flock -o /work/team/bench.lock timeout 420 final.sh OUT
set -u
here=$(dirname "$0")
out=$1; mkdir -p $out
echo "start $(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)"
OUT=$out/fanout $here/ab.sh au ak au ak au ak au ak ap aq
echo "end $(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)"
