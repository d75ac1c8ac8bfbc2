#!/usr/bin/env bash
# Debian's Bazel (bazel-bootstrap 4.2.3) with --remote_cache=http:// against
# the server's bazel-remote compatible /cas/ and /ac/ routes.
# Usage: bazel_http_test.sh SERVER_KIND SERVER_BINARY
# A workspace of 6 chained genrules (no external repositories, so it builds
# offline) is built twice with fresh output bases: the second build must
# take every action from the remote cache and produce identical outputs.
# Prints "RESULT bazel-http ..." and timings.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
. "$here/../genrule_workspace.sh"

command -v bazel >/dev/null 2>&1 || skip "no bazel (tools/install-deps.sh --bazel)"
[ -x "$server_bin" ] || skip "$kind not built/installed at $server_bin"

start_server "$kind" "$server_bin" "$work/server"
ws="$work/ws"
genrule_workspace "$ws" cairn_http_it

root="$work/bazel-root"
cleanup_hook=shutdown_bazel
shutdown_bazel() {
  for b in one two; do
    [ -d "$root/$b" ] && (cd "$ws" && bazel --output_user_root="$root" \
      --output_base="$root/$b" shutdown >/dev/null 2>&1) || true
  done
}
build() {  # build NAME: a clean build with its own output base.
  (cd "$ws" && bazel --output_user_root="$root" --output_base="$root/$1" \
    build --experimental_repository_disable_download --nosandbox_debug \
    --remote_cache="http://$http_addr" //:all >"$work/$1.log" 2>&1) ||
    fail "bazel build $1 failed: $(tail -30 "$work/$1.log")"
  cp -r "$ws/bazel-bin" "$work/out-$1" 2>/dev/null || cp -rL "$root/$1/execroot/cairn_http_it/bazel-out/k8-fastbuild/bin" "$work/out-$1"
}
measure "bazel http build 1 (cold)" build one
measure "bazel http build 2 (fresh output base)" build two
summary=$(grep -o '[0-9]* processes*: .*' "$work/two.log" | tail -1 || true)
hits=$(echo "$summary" | grep -o '[0-9]* remote cache hit' | awk '{print $1}' || true)
[ -n "$summary" ] || fail "no process summary in build 2: $(tail -20 "$work/two.log")"
for i in 1 2 3 4 5 6; do
  cmp -s "$work/out-one/g$i.txt" "$work/out-two/g$i.txt" || fail "g$i.txt differs"
done
echo "RESULT bazel-http $kind: build 2: $summary (${hits:-0} of 6 actions remote hits), outputs identical"
[ "${hits:-0}" = 6 ] || fail "expected 6 remote cache hits, got ${hits:-0}: $(tail -20 "$work/two.log")"
echo "PASS"
