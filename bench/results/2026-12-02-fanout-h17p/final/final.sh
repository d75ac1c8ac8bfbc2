#!/usr/bin/env bash
# Quiet-window final: same_blob side by side (cairn + bazel-remote), unpinned then pinned; then a cairn-only nice A/B if time allows.
set -u
cd /work/wt-17p
R=/tmp/h17p/final; mkdir -p $R
t0=$(date +%s)
if [ "$(date +%H%M)" -gt 1757 ]; then echo "too late to start: $(date +%T)"; exit 1; fi
echo "unpinned start $(date +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
FANOUT_SCENARIOS=same_blob bench/fanout.sh $R/final_unpinned.csv -- --duration 20 --probe_log $R/final_unpinned_probe.log 2>&1 | tail -3
echo "pinned start $(date +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
FANOUT_PIN=1 FANOUT_SCENARIOS=same_blob bench/fanout.sh $R/final_pinned.csv -- --duration 20 --probe_log $R/final_pinned_probe.log 2>&1 | tail -3
echo "pinned end $(date +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
if [ $(( $(date +%s) - t0 )) -lt 420 ]; then /tmp/h17p/ab.sh u0 u10 p0 p10; fi
echo "end $(date +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
