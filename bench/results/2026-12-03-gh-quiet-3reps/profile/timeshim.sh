#!/bin/bash
exec /usr/bin/time -f "shimcpu wall=%e user=%U sys=%S" -o /tmp/l16/shimcpu.txt ${REAL_SHIM:-/work/main/build/bin/cairn-gocacheprog} "$@"
