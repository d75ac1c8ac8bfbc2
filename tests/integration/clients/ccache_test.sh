#!/usr/bin/env bash
# ccache (Debian 4.7) with HTTP remote storage against the server's /kv space
# (cairn-server, layout=flat) or its /ac/ space (bazel-remote, layout=bazel,
# which needs --disable_http_ac_validation for ccache's entries).
# Usage: ccache_test.sh SERVER_KIND SERVER_BINARY
# Build 1: 8 C files, empty local cache, empty remote (misses, uploads).
# Build 2: a fresh CCACHE_DIR: every compile must be a remote hit and every
# object identical to build 1's. Prints "RESULT ccache ..." and timings.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

command -v ccache >/dev/null 2>&1 || skip "no ccache (tools/install-clients.sh installs it)"
command -v cc >/dev/null 2>&1 || skip "no C compiler"
[ -x "$server_bin" ] || skip "$kind not built/installed at $server_bin"

[ "$kind" = bazel-remote ] && export BAZEL_REMOTE_NO_AC_CHECK=1
start_server "$kind" "$server_bin" "$work/server"
case $kind in
  cairn-server) storage="http://$http_addr/kv/ccache|layout=flat" ;;
  # bazel-remote takes only /ac/ and /cas/: ccache's bazel layout, which
  # puts keys under /ac/, with the ActionResult check turned off.
  bazel-remote) storage="http://$http_addr|layout=bazel" ;;
esac

src="$work/src"
mkdir -p "$src"
n=8
for i in $(seq $n); do
  cat >"$src/f$i.c" <<C
#include <stdio.h>
int f$i(int x) { int s = 0; for (int k = 0; k < x; ++k) s += k * $i; return s; }
void p$i(void) { printf("f$i %d\\n", f$i($i * 10)); }
C
done

unset CCACHE_DISABLE CCACHE_REMOTE_ONLY CCACHE_READONLY CCACHE_RECACHE \
  CCACHE_NOHASHDIR CCACHE_CONFIGPATH
export CCACHE_REMOTE_STORAGE="$storage" CCACHE_STATS=true \
  CCACHE_BASEDIR="$src" CCACHE_COMPILERCHECK=content
build() {  # build NAME: compiles every file with a fresh CCACHE_DIR.
  export CCACHE_DIR="$work/ccache-$1"
  mkdir -p "$work/out-$1"
  for i in $(seq $n); do
    (cd "$src" && ccache cc -O2 -c "f$i.c" -o "$work/out-$1/f$i.o") || return 1
  done
}
stat_of() { ccache --print-stats | awk -v k="$1" '$1 == k {print $2}'; }

measure "ccache build 1 (cold)" build one
misses1=$(stat_of remote_storage_miss)
measure "ccache build 2 (fresh CCACHE_DIR)" build two
hits=$(stat_of remote_storage_hit)
errors=$(stat_of remote_storage_error)
for i in $(seq $n); do
  cmp -s "$work/out-one/f$i.o" "$work/out-two/f$i.o" || fail "f$i.o differs"
done
echo "RESULT ccache $kind: build 2 remote hits $hits of $n (build 1 remote misses $misses1, errors ${errors:-0}), objects identical"
[ "$hits" = "$n" ] || fail "expected $n remote hits in build 2, got $hits"
echo "PASS"
