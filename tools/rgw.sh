#!/usr/bin/env bash
# Starts and stops a throwaway single-node Ceph cluster (one monitor, one
# memstore OSD, radosgw) on loopback: a real S3 engine that checks SigV4
# signatures, for tests and benchmarks. Nothing is written outside DIR; the
# data lives in memory and is gone when the cluster stops.
#
#   tools/rgw.sh start [DIR]   starts it (DIR: a new short dir under /tmp when
#                              omitted; admin-socket paths must stay < 108 bytes)
#                              and prints, one per line:
#                                dir=DIR
#                                endpoint=http://127.0.0.1:PORT
#                                access_key=... secret_key=... region=...
#                                bucket=cairn (created, empty)
#                              (the same lines are in DIR/env, sourceable)
#   tools/rgw.sh stop DIR      kills the cluster's processes and removes DIR
#   tools/rgw.sh pids DIR      prints "name pid" per daemon (radosgw first)
#   tools/rgw.sh gw DIR        starts radosgw again (after it was killed)
#
# Exit code 77 when the Ceph packages are absent (tools/install-deps.sh --s3).
# Environment: RGW_ACCESS_KEY / RGW_SECRET_KEY override the user's keys,
# RGW_BUCKET the bucket's name; RGW_TCP_NODELAY=0 leaves Nagle on (below).
set -euo pipefail

access_key=${RGW_ACCESS_KEY:-cairntestaccess}
secret_key=${RGW_SECRET_KEY:-cairntestsecretkey0123456789}
bucket=${RGW_BUCKET:-cairn}
# Beast's tcp_nodelay: without it a GET's answer (headers, then body) waits
# on Nagle for the client's delayed ACK, about 40 ms on a reused connection
# (HEADs are not delayed). RGW_TCP_NODELAY=0 keeps Ceph's default (off).
nodelay=""
[ "${RGW_TCP_NODELAY:-1}" = 0 ] || nodelay=" tcp_nodelay=1"

die() { echo "rgw.sh: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

stop_cluster() {  # Radosgw and the OSD before the monitor (else the OSD lingers).
  local dir=$1 name pid n
  [ -d "$dir" ] || return 0
  for name in client.rgw osd mon; do
    for f in "$dir"/run/"$name".*.pid; do
      [ -f "$f" ] || continue
      pid=$(cat "$f" 2>/dev/null || true)
      [ -n "$pid" ] || continue
      kill -CONT "$pid" 2>/dev/null || true
      kill "$pid" 2>/dev/null || true
      for n in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -9 "$pid" 2>/dev/null || true
    done
  done
  rm -rf "$dir"
}

write_conf() {  # write_conf DIR MONPORT RGWPORT FSID
  local d=$1
  cat >"$d/ceph.conf" <<EOF
[global]
fsid = $4
mon host = v2:127.0.0.1:$2
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms client mode = crc
ms cluster mode = crc
ms service mode = crc
osd objectstore = memstore
memstore device bytes = 1073741824
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon data avail warn = 1
mon warn on pool no redundancy = false
run dir = $d/run
log file = $d/log/\$name.log
admin socket = $d/run/\$name.asok
pid file = $d/run/\$name.pid
keyring = /dev/null
[mon.a]
mon data = $d/mon
[osd.0]
osd data = $d/osd
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$3$nodelay
rgw data = $d/rgw
EOF
}

wait_for() {  # wait_for SECONDS CMD...: retries CMD every 0.2 s.
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

start_cluster() {
  local d=$1 mon_port rgw_port fsid
  mkdir -p "$d"/{run,log,mon,osd,rgw}
  mon_port=$(free_port)
  rgw_port=$(free_port)
  fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  write_conf "$d" "$mon_port" "$rgw_port" "$fsid"
  local c=(-c "$d/ceph.conf")
  monmaptool --create --add a "v2:127.0.0.1:$mon_port" --fsid "$fsid" "$d/monmap" >/dev/null
  ceph-mon "${c[@]}" --mkfs -i a --monmap "$d/monmap" >/dev/null
  ceph-mon "${c[@]}" -i a
  wait_for 20 ceph "${c[@]}" --connect-timeout 2 mon stat || die "monitor did not start (see $d/log)"
  ceph "${c[@]}" osd create >/dev/null
  ceph-osd "${c[@]}" -i 0 --mkfs >/dev/null 2>&1
  ceph "${c[@]}" osd crush add osd.0 1.0 host=localhost root=default >/dev/null 2>&1
  ceph-osd "${c[@]}" -i 0 2>>"$d/log/osd.stderr"
  radosgw "${c[@]}" -n client.rgw.a --no-mon-config
  wait_for 40 curl -sf "http://127.0.0.1:$rgw_port/" || die "radosgw did not answer (see $d/log)"
  radosgw-admin "${c[@]}" user create --uid=cairn --display-name=cairn \
    --access-key="$access_key" --secret="$secret_key" >/dev/null 2>&1 ||
    die "radosgw-admin user create failed"
  curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$access_key:$secret_key" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X PUT \
    "http://127.0.0.1:$rgw_port/$bucket" >/dev/null || die "bucket $bucket not created"
  # The first object write creates the data pool (seconds): do it here, so
  # that a client's first request sees the steady state.
  local s3=(curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$access_key:$secret_key"
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')
  echo warm >"$d/warmup"
  "${s3[@]}" -T "$d/warmup" "http://127.0.0.1:$rgw_port/$bucket/warmup" >/dev/null &&
    "${s3[@]}" -X DELETE "http://127.0.0.1:$rgw_port/$bucket/warmup" >/dev/null ||
    die "first object write failed"
  cat >"$d/env" <<EOF
dir=$d
endpoint=http://127.0.0.1:$rgw_port
access_key=$access_key
secret_key=$secret_key
region=us-east-1
bucket=$bucket
EOF
  cat "$d/env"
}

cmd=${1:-}
case "$cmd" in
  start)
    for tool in monmaptool ceph-mon ceph-osd radosgw radosgw-admin ceph python3 curl; do
      if ! command -v "$tool" >/dev/null 2>&1; then
        echo "rgw.sh: $tool not installed (tools/install-deps.sh --s3)" >&2
        exit 77
      fi
    done
    dir=${2:-$(mktemp -d /tmp/rgw.XXXXXX)}
    if ! (start_cluster "$dir") >"$dir.out" 2>&1 </dev/null; then
      cat "$dir.out" >&2
      rm -f "$dir.out"
      stop_cluster "$dir"
      exit 1
    fi
    cat "$dir.out"
    rm -f "$dir.out"
    ;;
  stop)
    [ -n "${2:-}" ] || die "usage: rgw.sh stop DIR"
    stop_cluster "$2"
    ;;
  gw)
    [ -f "${2:-}/env" ] || die "usage: rgw.sh gw DIR"
    endpoint=$(sed -n 's/^endpoint=//p' "$2/env")
    rm -f "$2/run/client.rgw.a.pid"
    radosgw -c "$2/ceph.conf" -n client.rgw.a --no-mon-config
    wait_for 30 curl -sf "$endpoint/" || die "radosgw did not answer"
    ;;
  pids)
    [ -n "${2:-}" ] || die "usage: rgw.sh pids DIR"
    for name in client.rgw osd mon; do
      for f in "$2"/run/"$name".*.pid; do
        [ -f "$f" ] && echo "${name#client.} $(cat "$f")"
      done
    done
    ;;
  *)
    die "usage: rgw.sh start [DIR] | stop DIR | pids DIR | gw DIR"
    ;;
esac
