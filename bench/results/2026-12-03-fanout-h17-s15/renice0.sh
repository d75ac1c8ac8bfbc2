#!/bin/sh
# renice0.sh TID IGNORED: a server's gRPC executor thread back to nice 0 (root only; experiment).
c=$(cat /proc/self/task/../../$1/comm 2>/dev/null || cat /proc/*/task/$1/comm 2>/dev/null | head -1)
case "$c" in default-executo*|resolver-execut*) renice -n 0 -p $1 >/dev/null 2>&1 ;; esac
