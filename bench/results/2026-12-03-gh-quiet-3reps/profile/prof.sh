#!/usr/bin/env bash
# Quiet perf of warm loopback gh builds: one filled server (/tmp/l16/store), then
# warm local x2, warm remote x3 (fresh GOCACHE and shim dir), the third under
# perf record -a; CPU time of shim (via time), server (/proc) per run.
set -u
cd /tmp/l16
O=/tmp/l16/prof
for i in 1 2; do ./cpu.sh warmlocal; done > $O/runs.txt 2>&1
export KEEP_OLD=1
for i in 1 2; do SHIM=/tmp/l16/timeshim.sh ./cpu.sh warm | sed 's/cairn-gocacheprog: stats: .*remote_wait=\([^ ]*\).*bundle_claims=\([0-9]*\).*/remote_wait=\1 claims=\2/'; done >> $O/runs.txt 2>&1
KEEP_OLD=1 perf record -a -F 999 -g -o $O/warm.perf -- ./p.sh warm > $O/perf-run.txt 2>&1
perf report -i $O/warm.perf --no-children --sort comm --stdio 2>/dev/null | grep -E "^ +[0-9]" > $O/by-comm.txt
perf report -i $O/warm.perf --no-children --sort comm,dso --stdio 2>/dev/null | grep -E "^ +[0-9]" | head -40 > $O/by-dso.txt
perf report -i $O/warm.perf --no-children --comm cairn-gocachep --sort sym --stdio -g none 2>/dev/null | grep -E "^ +[0-9]" | head -40 > $O/shim-syms.txt
