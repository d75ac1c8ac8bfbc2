#!/usr/bin/env bash
# BuildGrid's `bgd` CLI (PyPI buildgrid, Python 3.13), an independent REAPI
# client: upload a directory tree (small files batched, a 5 MB file through
# ByteStream) with --verify, download it by its root digest with --verify,
# and compare the trees.
# Usage: bgd_test.sh SERVER_KIND SERVER_BINARY CLIENTS_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

bgd="$clients/buildgrid/bin/bgd"
[ -x "$bgd" ] || not_installed bgd "$clients" "bgd not installed at $bgd"
[ -x "$server_bin" ] || skip "$kind not built/installed at $server_bin"
start_server "$kind" "$server_bin" "$work/server"

tree="$work/tree"
mkdir -p "$tree/a/b" "$tree/empty"
echo one >"$tree/one.txt"
echo two >"$tree/a/two.txt"
: >"$tree/a/zero.txt"
head -c 5000000 /dev/urandom >"$tree/a/b/big.bin"
up="$work/upload.log"
measure "bgd upload-dir" "$bgd" cas --remote "http://$grpc_addr" upload-dir \
  --verify "$tree" >"$up" 2>&1 || fail "upload-dir failed: $(tail -20 "$up")"
root=$(grep -o "path=\[$tree\] with digest=\[[0-9a-f]*/[0-9]*\]" "$up" |
  grep -o '[0-9a-f]\{64\}/[0-9]*' || true)
[ -n "$root" ] || fail "no root digest in: $(tail -20 "$up")"
measure "bgd download-dir" "$bgd" cas --remote "http://$grpc_addr" download-dir \
  --verify "$root" "$work/out" >"$work/download.log" 2>&1 ||
  fail "download-dir failed: $(tail -20 "$work/download.log")"
diff -r "$tree" "$work/out" || fail "downloaded tree differs"
echo "RESULT bgd $kind: uploaded and downloaded a 6-entry tree (root $root), verified, identical"
echo "PASS"
