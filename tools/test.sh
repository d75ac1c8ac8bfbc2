#!/usr/bin/env bash
# Checks that #includes run downward (tools/check-layout.sh), builds Cairn and
# runs every test (ctest: unit, service, integration with the real binaries,
# the real go command and bazel-remote, real build tools: label "clients",
# a throwaway Ceph RGW: label "engine").
set -euo pipefail
cd "$(dirname "$0")/.."
tools/check-layout.sh
tools/install-deps.sh --s3  # Ceph RGW for the shared-tier tests (label engine)
tools/build.sh
tools/install-peers.sh
tools/install-clients.sh  # ccache, Bazel, BuildStream, bgd, Gradle, Pants, sccache (label "clients")
cd "${CAIRN_BUILD_DIR:-build}"
ctest --output-on-failure -j "$(nproc)"
