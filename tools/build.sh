#!/usr/bin/env bash
# Installs dependencies, then builds Cairn (Release) into build/.
# Binaries: build/bin/cairn-server, build/bin/cairn-gocacheprog.
# Usage: tools/build.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
build_dir="${CAIRN_BUILD_DIR:-build}"
# ccache (when present) keys on paths relative to the checkout, so a fresh
# clone elsewhere on the same machine reuses earlier compilations.
export CCACHE_BASEDIR="$(pwd)" CCACHE_NOHASHDIR=1
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${CAIRN_BUILD_TYPE:-Release}" "$@" >/dev/null
cmake --build "$build_dir"
