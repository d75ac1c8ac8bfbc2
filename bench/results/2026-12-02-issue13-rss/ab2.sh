#!/bin/bash
# ab2.sh MIXES ROUNDS name:BIN ...
MIXES=$1; ROUNDS=$2; shift 2
for r in $(seq $ROUNDS); do for mix in ${MIXES//,/ }; do for cfg in "$@"; do
  name=${cfg%%:*}; bin=${cfg#*:}
  out=$(REQ=${REQ:-20000} /tmp/h13/memprobe.sh $bin ${mix%@*} ${mix#*@} 2>&1)
  line=$(echo "$out" | grep -E "^x " ); st=$(echo "$out" | grep VmHWM)
  echo "$r $mix $name | $(echo $line | awk '{print "ops",$4,"ops/s",$7,"p99",$10,"cpu",$12,"rssMiB",$13, "us/op", $12/$4*1e6}') | $(echo $st | awk '{print "anon",$8,"file",$11}')"
done; done; done
