#!/usr/bin/env bash
# The quiet-window run (one locked run, under 7 min): fanout same_blob,
# 1,000 readers, --loader callback, against main's cairn-server, three
# set-ups alternated (ab.sh): i = unpinned with the loader under SCHED_IDLE,
# q = pinned (readers CPU 0, server and probe CPU 1), k = unpinned, all at
# the same priority; then bazel-remote under i for the side-by-side RSS.
# Run from anywhere under
#   SERVER_A=... flock -o /work/team/bench.lock timeout 420 final.sh OUT
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=$1
mkdir -p "$out"
echo "start $(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)"
OUT=$out/fanout "$here/ab.sh" ai aq ak ai aq ak ai aq ak ri
echo "end $(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)"
