#!/usr/bin/env bash
# Builds Cairn and starts cairn-server on the embedded default:
# gRPC on 127.0.0.1:9092, store under ~/.cache/cairn. Extra flags pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/build.sh >&2
exec build/bin/cairn-server "$@"
