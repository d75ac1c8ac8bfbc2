#!/usr/bin/env bash
# sccache (crates.io, --features webdav; opt-in: tools/install-clients.sh
# --sccache, a cargo build of over 30 minutes on 2 cores, so CI skips it)
# with its WebDAV storage pointed at the server: /kv/sccache/ on
# cairn-server, the root on bazel-remote.
# Usage: sccache_test.sh SERVER_KIND SERVER_BINARY CLIENTS_DIR
# Four C files compiled through `sccache cc`; the objects are removed and the
# sccache server restarted (it keeps no local cache when WebDAV is set), then
# compiled again: every compile must be a cache hit with identical objects.
# Prints "RESULT sccache ...".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

sccache="$clients/sccache/bin/sccache"
[ -x "$sccache" ] || not_installed sccache "$clients" \
  "sccache not installed at $sccache (opt-in: tools/install-clients.sh --sccache)"
command -v cc >/dev/null 2>&1 || skip "no C compiler"
[ -x "$server_bin" ] || skip "$kind not built/installed at $server_bin"
start_server "$kind" "$server_bin" "$work/server"
case $kind in
  cairn-server) export SCCACHE_WEBDAV_ENDPOINT="http://$http_addr/kv/sccache/" ;;
  bazel-remote) export SCCACHE_WEBDAV_ENDPOINT="http://$http_addr/" ;;
esac
# No MKCOL/PROPFIND before each PUT (sccache 0.19+; the HTTP library answers
# WebDAV-only methods with 400, and /kv/ needs no directories).
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
hits_of() {  # hits_of STATS_JSON: C/C++ cache hits.
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["stats"]
print(sum(s.get("cache_hits",{}).get("counts",{}).values()))' "$1"
}
build() {  # build NAME: start sccache, compile every file, save stats.
  if ! "$sccache" --start-server >"$work/$1.start" 2>&1; then
    why=$(cat "$work/$1.start" "$SCCACHE_ERROR_LOG" 2>/dev/null | tail -5 | tr '\n' ' ')
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
hits=$(hits_of "$work/two.json")
for i in 1 2 3 4; do
  cmp -s "$work/out-one/f$i.o" "$work/out-two/f$i.o" || fail "f$i.o differs"
done
echo "RESULT sccache $kind: build 2: $hits/4 compiles cache hits; objects identical"
if [ "$hits" != 4 ]; then
  if [ "$kind" = bazel-remote ]; then  # Known: it refuses sccache's paths.
    echo "PASS (peer comparison only: $(tail -3 "$SCCACHE_ERROR_LOG" 2>/dev/null | tr '\n' ' '))"
    exit 0
  fi
  fail "expected 4 cache hits: $(cat "$work/two.json"; tail -20 "$SCCACHE_ERROR_LOG" 2>/dev/null)"
fi
echo "PASS"
