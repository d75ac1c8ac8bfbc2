#!/usr/bin/env bash
# Installs pinned third-party REAPI peers used by tests and benchmarks from the
# Go module proxy into build/peers/bin (never vendored, never committed).
# `go install mod@version` needs the proxy's version list, which is not always
# reachable here, so each peer is built inside a scratch module pinned with
# `go get`. Skips what is already there. Peers are optional: tests that need
# one skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
peers="$(pwd)/build/peers"
mkdir -p "$peers/bin"
if ! command -v go >/dev/null 2>&1; then
  echo "install-peers: no go command; peer tests will be skipped" >&2
  exit 0
fi
build_peer() {  # build_peer NAME MODULE VERSION PACKAGE
  local name=$1 module=$2 version=$3 package=$4
  [ -x "$peers/bin/$name" ] && return 0
  echo "install-peers: building $name from $module@$version" >&2
  local src="$peers/src/$name"
  rm -rf "$src" && mkdir -p "$src"
  (
    cd "$src"
    go mod init "cairn.peers/$name" >/dev/null 2>&1
    GOFLAGS=-mod=mod go get "$package@$version" >/dev/null 2>&1
    go build -o "$peers/bin/$name" "$package"
  ) || echo "install-peers: could not build $name; its tests will be skipped" >&2
}
build_peer bazel-remote github.com/buchgr/bazel-remote/v2 v2.6.2 \
  github.com/buchgr/bazel-remote/v2
# Network emulation for bench/go_builds.sh --profile and the misbehaving-remote
# test: latency, bandwidth, timeout, slow_close and reset_peer toxics, driven
# through its HTTP API.
build_peer toxiproxy-server github.com/Shopify/toxiproxy/v2 v2.12.0 \
  github.com/Shopify/toxiproxy/v2/cmd/server
# The GOCACHEPROG peer in bench/go_builds.sh: go-cacher (the GOCACHEPROG) and
# go-cacher-server (its HTTP server).
build_peer go-cacher github.com/bradfitz/go-tool-cache \
  v0.0.0-20260722201841-0bb331e19f64 github.com/bradfitz/go-tool-cache/cmd/go-cacher
build_peer go-cacher-server github.com/bradfitz/go-tool-cache \
  v0.0.0-20260722201841-0bb331e19f64 \
  github.com/bradfitz/go-tool-cache/cmd/go-cacher-server
