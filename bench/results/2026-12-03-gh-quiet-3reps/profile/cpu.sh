#!/usr/bin/env bash
# cpu.sh MODE args: runs p.sh MODE and prints wall, shim cpu, server cpu
sp=$(cat /tmp/l16/server.pid)
s0=$(awk '{print $14+$15}' /proc/$sp/stat)
rm -f /tmp/l16/shimcpu.txt
/usr/bin/time -f "wall=%e user=%U sys=%S" /tmp/l16/p.sh "$@" 2>&1 | grep -E "wall=|stats:"
cat /tmp/l16/shimcpu.txt 2>/dev/null
s1=$(awk '{print $14+$15}' /proc/$sp/stat)
echo "server_cpu=$(echo "($s1-$s0)/100" | bc -l | cut -c1-5) load=$(cut -d' ' -f1 /proc/loadavg)"
