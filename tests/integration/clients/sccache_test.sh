#!/usr/bin/env bash
# sccache 0.19.0 (crates.io, --features webdav; tools/install-clients.sh
# builds it, ~10 CPU minutes) with its WebDAV storage pointed at the server:
# /kv/sccache on cairn-server, the root on bazel-remote.
# Usage: sccache_test.sh SERVER_KIND SERVER_BINARY CLIENTS_DIR
# Four C files compiled through `sccache cc` (build 1: four misses, four
# cache writes); the objects are removed and the sccache server restarted
# (it keeps no local cache when WebDAV is set), then compiled again (build
# 2): `sccache --show-stats` must count four cache hits, the objects must be
# identical. On cairn-server also without SCCACHE_WEBDAV_DISABLE_CREATE_DIR:
# sccache then finds the storage not writable (its PROPFIND is answered 405)
# and the reason it logs must name that variable.
# Prints "RESULT sccache ...".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

sccache="$clients/sccache/bin/sccache"
[ -x "$sccache" ] || not_installed sccache "$clients" \
  "sccache not installed at $sccache (tools/install-clients.sh builds it)"
command -v cc >/dev/null 2>&1 || skip "no C compiler"
[ -x "$server_bin" ] || skip "$kind not built/installed at $server_bin"
start_server "$kind" "$server_bin" "$work/server"
case $kind in
  cairn-server) export SCCACHE_WEBDAV_ENDPOINT="http://$http_addr/kv/sccache" ;;
  bazel-remote) export SCCACHE_WEBDAV_ENDPOINT="http://$http_addr" ;;
esac
# No PROPFIND/MKCOL before each PUT (sccache 0.19+): /kv/ has no
# directories, and cpp-httplib cannot parse WebDAV methods.
export SCCACHE_WEBDAV_DISABLE_CREATE_DIR=true
SCCACHE_SERVER_PORT=$(free_port)
export SCCACHE_SERVER_PORT
export SCCACHE_DIR="$work/sccache-dir" SCCACHE_ERROR_LOG="$work/sccache.err"
export SCCACHE_LOG=info SCCACHE_IDLE_TIMEOUT=0
stop_sccache() { "$sccache" --stop-server >/dev/null 2>&1 || true; }
cleanup_hook=stop_sccache

src="$work/src"
mkdir -p "$src"
for i in 1 2 3 4; do
  printf 'int f%d(int x) { return x * %d + 1; }\n' "$i" "$i" >"$src/f$i.c"
done
stat_of() {  # stat_of STATS_JSON FIELD: a count (per-language ones summed).
  python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))["stats"][sys.argv[2]]
print(sum(v.get("counts",{}).values()) if isinstance(v,dict) else v)' "$1" "$2"
}
build() {  # build NAME: start sccache, compile every file, save stats.
  if ! "$sccache" --start-server >"$work/$1.start" 2>&1; then
    why=$(grep -h -m1 "error" "$work/$1.start" "$SCCACHE_ERROR_LOG" 2>/dev/null |
      head -1 | cut -c1-300)
    if [ "$kind" = bazel-remote ]; then  # Known: its storage check fails.
      echo "RESULT sccache $kind: sccache does not start: $why"
      echo "PASS (peer comparison only)"
      exit 0
    fi
    fail "sccache did not start ($1): $why"
  fi
  for i in 1 2 3 4; do
    (cd "$src" && "$sccache" cc -O2 -c "f$i.c" -o "f$i.o") ||
      fail "sccache cc f$i.c failed ($1)"
  done
  "$sccache" --show-stats --stats-format=json >"$work/$1.json"
  mkdir -p "$work/out-$1"
  mv "$src"/*.o "$work/out-$1/"
  "$sccache" --stop-server >/dev/null 2>&1 || true
}
measure "sccache build 1 (cold)" build one
measure "sccache build 2 (restarted, objects removed)" build two
writes=$(stat_of "$work/one.json" cache_writes)
hits=$(stat_of "$work/two.json" cache_hits)
misses=$(stat_of "$work/two.json" cache_misses)
for i in 1 2 3 4; do
  cmp -s "$work/out-one/f$i.o" "$work/out-two/f$i.o" || fail "f$i.o differs"
done
echo "RESULT sccache $kind: build 1: $writes cache writes; build 2: $hits/4" \
  "compiles cache hits, $misses misses; objects identical"
if [ "$hits" != 4 ] || [ "$writes" != 4 ]; then
  if [ "$kind" = bazel-remote ]; then  # Known: it refuses sccache's paths.
    echo "PASS (peer comparison only: $(tail -3 "$SCCACHE_ERROR_LOG" 2>/dev/null | tr '\n' ' '))"
    exit 0
  fi
  fail "expected 4 writes, then 4 hits: $(cat "$work/one.json" "$work/two.json"; tail -20 "$SCCACHE_ERROR_LOG" 2>/dev/null)"
fi

if [ "$kind" = cairn-server ]; then
  # Without the variable: nothing is written, and the reason says why.
  unset SCCACHE_WEBDAV_DISABLE_CREATE_DIR
  export SCCACHE_WEBDAV_ENDPOINT="http://$http_addr/kv/sccache-default"
  : >"$SCCACHE_ERROR_LOG"
  for i in 1 2 3 4; do  # New sources: build 2's results would be hits.
    printf 'int g%d(int x) { return x - %d; }\n' "$i" "$i" >"$src/f$i.c"
  done
  measure "sccache without SCCACHE_WEBDAV_DISABLE_CREATE_DIR" build three
  writes=$(stat_of "$work/three.json" cache_writes)
  [ "$writes" = 0 ] || fail "sccache wrote $writes entries despite PROPFIND 405"
  grep -q SCCACHE_WEBDAV_DISABLE_CREATE_DIR "$SCCACHE_ERROR_LOG" ||
    fail "sccache's log does not name SCCACHE_WEBDAV_DISABLE_CREATE_DIR:" \
      "$(tail -5 "$SCCACHE_ERROR_LOG")"
  echo "RESULT sccache $kind: without SCCACHE_WEBDAV_DISABLE_CREATE_DIR: 0" \
    "writes (read-only), its log names the variable"
fi
echo "PASS"
