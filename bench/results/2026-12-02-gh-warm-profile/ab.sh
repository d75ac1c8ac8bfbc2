#!/usr/bin/env bash
for rep in 1 2; do
  for v in main new new-never main-never; do
    case $v in
      main) S=/tmp/wt16/shim-main; A="";;
      main-never) S=/tmp/wt16/shim-main; A="--zstd=never";;
      new) S=/work/wt-16/build/bin/cairn-gocacheprog; A="";;
      new-never) S=/work/wt-16/build/bin/cairn-gocacheprog; A="--zstd=never";;
    esac
    out=$(SHIM=$S ./prof.sh warm $A 2>&1)
    real=$(echo "$out" | awk '/^real/{print $2}')
    st=$(echo "$out" | grep -o 'prefetched=[0-9]*\|fetched_zstd=[0-9]*\|probe=[0-9.]*MB/s\|rpcs=[0-9]*' | tr '\n' ' ')
    echo "$rep $v $real load=$(cut -d' ' -f1 /proc/loadavg) $st"
  done
done
