#!/usr/bin/env bash
# Debian's Bazel (4.2.3) with --experimental_remote_downloader: repository
# downloads go through the server's Remote Asset Fetch service, which
# downloads from the origin once and serves later fetches from its store.
# Usage: bazel_downloader_test.sh SERVER_KIND SERVER_BINARY
# The origin is a local HTTP server holding one tarball, used by an
# http_archive (with sha256). Fetch 1 (fresh output base and repository
# cache) goes through the server; then the origin is stopped; fetch 2, again
# with a fresh output base and repository cache, must still build, with the
# same output: the server served it. Fetch 3, the same without the remote
# downloader, must fail (nothing else holds the tarball).
# cairn-server runs with --asset_origins=http://127.0.0.1:ORIGIN_PORT/;
# bazel-remote with --experimental_remote_asset_api. Prints "RESULT ...".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

command -v bazel >/dev/null 2>&1 || skip "no bazel (tools/install-deps.sh --bazel)"
[ -x "$server_bin" ] || skip "$kind not built/installed at $server_bin"

origin="$work/origin"
mkdir -p "$origin/src/ext"
echo 'exports_files(["data.txt"])' >"$origin/src/ext/BUILD"
echo "external data served by the origin" >"$origin/src/ext/data.txt"
tar -C "$origin/src" -czf "$origin/ext.tar.gz" ext
sha=$(sha256sum "$origin/ext.tar.gz" | awk '{print $1}')
oport=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$origin" "$oport" \
  >"$work/origin.log" 2>&1 &
origin_pid=$!
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$oport/" && break
  sleep 0.1
done
stop_origin() {
  if [ -n "$origin_pid" ]; then
    kill "$origin_pid" 2>/dev/null || true
    wait "$origin_pid" 2>/dev/null || true
    origin_pid=""
  fi
}

case $kind in
  cairn-server) export CAIRN_SERVER_FLAGS="--asset_origins=http://127.0.0.1:$oport/" ;;
  bazel-remote) export BAZEL_REMOTE_FLAGS="--experimental_remote_asset_api" ;;
esac
start_server "$kind" "$server_bin" "$work/server"

ws="$work/ws"
mkdir -p "$ws"
cat >"$ws/WORKSPACE" <<W
workspace(name = "cairn_downloader_it")
load("@bazel_tools//tools/build_defs/repo:http.bzl", "http_archive")
http_archive(
    name = "ext",
    urls = ["http://127.0.0.1:$oport/ext.tar.gz"],
    sha256 = "$sha",
    strip_prefix = "ext",
)
W
cat >"$ws/BUILD" <<'B'
genrule(name = "g", srcs = ["@ext//:data.txt"], outs = ["out.txt"],
        cmd = "cat $< > $@")
B

root="$work/bazel-root"
cleanup_hook=cleanup_all
cleanup_all() {
  stop_origin
  for b in one two three; do
    [ -d "$root/$b" ] && (cd "$ws" && bazel --output_user_root="$root" \
      --output_base="$root/$b" shutdown >/dev/null 2>&1) || true
  done
}
fetch() {  # fetch NAME [BAZEL FLAGS...]: a build with its own output base
  # and repository cache (nothing local to reuse).
  local name=$1
  shift
  (cd "$ws" && bazel --output_user_root="$root" --output_base="$root/$name" \
    build --repository_cache="$work/repo-cache-$name" --nosandbox_debug \
    "$@" //:g >"$work/$name.log" 2>&1)
}
downloader=(--experimental_remote_downloader="grpc://$grpc_addr"
  --remote_cache="grpc://$grpc_addr")
measure "bazel fetch 1 (through $kind, origin up)" fetch one "${downloader[@]}" ||
  fail "fetch 1 failed: $(tail -30 "$work/one.log")"
origin_gets=$(grep -c 'GET /ext.tar.gz' "$work/origin.log" || true)
cp "$ws/bazel-bin/out.txt" "$work/out-one.txt"
stop_origin
measure "bazel fetch 2 (origin stopped, fresh output base and repository cache)" \
  fetch two "${downloader[@]}" ||
  fail "fetch 2 (origin stopped) failed: $(tail -30 "$work/two.log")"
cmp "$work/out-one.txt" "$ws/bazel-bin/out.txt" || fail "out.txt differs"
if fetch three; then
  fail "fetch 3 without the remote downloader succeeded with the origin stopped"
fi
echo "RESULT bazel-downloader $kind: fetch 1 went to the origin ${origin_gets} time(s); fetch 2 with the origin stopped built the same output (served by $kind); fetch 3 without the downloader failed as it must"
[ "$origin_gets" -ge 1 ] || fail "the origin never saw a GET: $(cat "$work/origin.log")"
echo "PASS"
