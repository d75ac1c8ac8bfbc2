#!/usr/bin/env bash
# Pants 2.17.1 (tools/install-clients.sh; CPython 3.9 wheels,
# and a local pex so that Pants downloads nothing but PyPI packages) with its
# remote cache on the server's gRPC port.
# Usage: pants_test.sh SERVER_KIND SERVER_BINARY CLIENTS_DIR
# A two-module Python project with a test and a pex_binary: `pants test ::
# package ::` twice, each with a fresh local store and work dir: the second
# run must take every cacheable process from the remote cache and build an
# identical .pex. Prints "RESULT pants ...".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

pants="$clients/pants/bin/pants"
pex="$clients/pex/pex"
[ -x "$pants" ] || not_installed pants "$clients" "Pants not installed at $pants"
[ -f "$pex" ] || not_installed pants "$clients" "no local pex at $pex"
py39="$(dirname "$(readlink -f "$clients/pants/bin/python")")"
[ -x "$server_bin" ] || skip "$kind not built/installed at $server_bin"
start_server "$kind" "$server_bin" "$work/server"

pex_sha=$(sha256sum "$pex" | awk '{print $1}')
pex_size=$(stat -c %s "$pex")
# checkout NAME: a fresh copy of the project.
checkout() {
  local d="$work/$1"
  mkdir -p "$d/src/hello"
  cat >"$d/pants.toml" <<T
[GLOBAL]
pants_version = "2.17.1"
backend_packages = ["pants.backend.python"]
pantsd = false
remote_cache_read = true
remote_cache_write = true
remote_store_address = "grpc://$grpc_addr"
local_store_dir = "$work/store-$1"
named_caches_dir = "$work/named-caches"

[source]
root_patterns = ["/src"]

[python]
interpreter_constraints = ["==3.9.*"]

[python-bootstrap]
search_path = ["$py39"]

[python-infer]
use_rust_parser = false

[pex-cli]
version = "v2.1.137"
known_versions = ["v2.1.137|linux_x86_64|$pex_sha|$pex_size"]
url_template = "file://$pex"
T
  cat >"$d/src/hello/BUILD" <<'B'
python_sources()
python_tests(name="tests")
pex_binary(name="app", entry_point="main.py")
B
  echo 'def greet(name): return "hello " + name' >"$d/src/hello/greet.py"
  printf 'from hello.greet import greet\nprint(greet("cairn"))\n' >"$d/src/hello/main.py"
  printf 'from hello.greet import greet\ndef test_greet():\n    assert greet("x") == "hello x"\n' \
    >"$d/src/hello/greet_test.py"
}
run() {  # run NAME: test and package, with a stats log.
  (cd "$work/$1" && "$pants" --stats-log test :: package :: >"$work/$1.log" 2>&1) ||
    fail "pants ($1) failed: $(tail -40 "$work/$1.log")"
}
stat_of() { grep -o "$2: [0-9]*" "$work/$1.log" | tail -1 | awk '{print $2}'; }
checkout one
checkout two
measure "pants run 1 (cold)" run one
measure "pants run 2 (fresh local store and checkout)" run two
hits=$(stat_of two remote_cache_requests_cached)
misses=$(stat_of two remote_cache_requests_uncached)
cmp "$work/one/dist/src.hello/app.pex" "$work/two/dist/src.hello/app.pex" ||
  fail "app.pex differs"
echo "RESULT pants $kind: run 2 remote cache hits ${hits:-0}, misses ${misses:-0}; app.pex identical"
[ "${hits:-0}" -gt 0 ] && [ "${misses:-0}" = 0 ] ||
  fail "expected only remote hits in run 2: $(grep -i remote_cache "$work/two.log")"
echo "PASS"
