#!/usr/bin/env bash
# p.sh MODE [extra shim args]: MODE = server | cold | warm | warmlocal | shimdir
set -euo pipefail
B=${B:-/work/main/build}
W=/tmp/l16
mode=$1; shift
export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local GOPROXY=${GOPROXY:-off}
cd $W/gh-module; rm -rf $W/out; mkdir -p $W/out
port=$(cat $W/port 2>/dev/null || echo 0)
TR=${TRACE:+-debug-trace=$TRACE}
case $mode in
  server)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    echo $port > $W/port
    mkdir -p $W/store
    ${SERVER:-$B/bin/cairn-server} --listen 127.0.0.1:$port --dir $W/store --max_size 20GiB "$@" > $W/server.log 2>&1 &
    echo $! > $W/server.pid; sleep 1; echo port $port pid $(cat $W/server.pid) ;;
  cold)
    rm -rf $W/gc-cold $W/sd-cold
    GOCACHE=$W/gc-cold GOCACHEPROG="$B/bin/cairn-gocacheprog --remote=grpc://127.0.0.1:$port --dir=$W/sd-cold --stats $*" \
      bash -c "time go build -trimpath -o $W/out/gh github.com/cli/cli/v2/cmd/gh" 2>&1 | tail -5 ;;
  warm)
    n=$(date +%s%N); if [ -n "${KEEP_OLD:-}" ]; then mkdir -p $W/old; [ -d $W/runs ] && mv $W/runs $W/old/$n; else rm -rf $W/runs; fi; [ -n "${SETTLE:-}" ] && sleep $SETTLE; mkdir -p $W/runs
    GOCACHE=$W/runs/gc-$n GOCACHEPROG="${SHIM:-$B/bin/cairn-gocacheprog} --remote=grpc://127.0.0.1:${PORT:-$port} --dir=$W/runs/sd-$n --stats $*" \
      bash -c "time go build $TR -trimpath -o $W/out/gh github.com/cli/cli/v2/cmd/gh" 2>&1 | tail -6
    echo $W/runs/sd-$n > $W/last-sd ;;
  shimdir)
    n=$(date +%s%N)
    GOCACHE=$W/gc2-$n GOCACHEPROG="${SHIM:-$B/bin/cairn-gocacheprog} --remote=grpc://127.0.0.1:$port --dir=$(cat $W/last-sd) --stats $*" \
      bash -c "time go build $TR -trimpath -o $W/out/gh github.com/cli/cli/v2/cmd/gh" 2>&1 | tail -6; rm -rf $W/gc2-$n ;;
  warmlocal)
    GOCACHE=$W/gc-local bash -c "time go build $TR -trimpath -o $W/out/gh github.com/cli/cli/v2/cmd/gh" 2>&1 | tail -4 ;;
esac
