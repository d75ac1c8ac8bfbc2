#!/usr/bin/env bash
# runq.sh SECONDS: every 0.2 s, the threads in state R on the machine, counted by process comm / thread comm and nice (mean count per sample).
end=$(( $(date +%s) + $1 ))
while [ $(date +%s) -lt $end ]; do
  echo "@sample"
  for s in /proc/[0-9]*/task/[0-9]*/stat; do
    read -r line < $s 2>/dev/null || continue
    rest=${line#*) }
    set -- $rest
    [ "$1" = R ] || continue
    p=${s#/proc/}; p=${p%%/*}
    pc=$(cat /proc/$p/comm 2>/dev/null)
    tc=${line#*(}; tc=${tc%%)*}
    echo "$pc/$tc nice=${17}" | tr ' ' '_' | sed 's/_nice=/ nice=/'
  done
  sleep 0.2
done 2>/dev/null | sort | uniq -c | sort -rn | awk '$2=="@sample"{n=$1; next} {c[NR]=$1; l[NR]=$2" "$3} END{for(i=1;i<=NR;i++) if(i in c) printf "%6.2f %s\n", c[i]/n, l[i]; print "samples", n}' | head -30
