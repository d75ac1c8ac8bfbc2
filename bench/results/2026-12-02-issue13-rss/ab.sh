#!/bin/bash
# ab.sh MIXES ROUNDS CONFIGS... where config is "name:ENV" e.g. "def:" "a1:MALLOC_ARENA_MAX=1"
MIXES=$1; ROUNDS=$2; shift 2
BIN=${BIN:-/work/wt-13/build/bin/cairn-server}
for r in $(seq $ROUNDS); do for mix in ${MIXES//,/ }; do for cfg in "$@"; do
  name=${cfg%%:*}; env=${cfg#*:}
  out=$(PRE="env $env" REQ=${REQ:-20000} /tmp/h13/memprobe.sh $BIN ${mix%@*} ${mix#*@} $EXTRA 2>&1)
  line=$(echo "$out" | grep -E "^x " ); st=$(echo "$out" | grep VmHWM)
  echo "$r $mix $name | $(echo $line | awk '{print "ops/s",$7,"p99",$10,"cpu",$12,"rssMiB",$13, "us/op", $12/$4*1e6}') | $(echo $st | awk '{print "anon",$8,"file",$11}')"
done; done; done
