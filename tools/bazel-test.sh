#!/usr/bin/env bash
# Builds and tests Cairn with Bazel (Debian's bazel-bootstrap 4.2.3) offline,
# against the system libraries: installs the packages (tools/install-deps.sh
# --bazel), checks the local stand-ins WORKSPACE points at, builds every
# target (integration tests tagged "manual" included), runs every non-manual
# test, then checks that every tracked C++ source is in some Bazel target
# (tools/bazel/check-sources.sh).
# Nothing is downloaded: downloads are disabled and the repository cache is
# off, so the build can only use the local repositories in WORKSPACE, exactly
# as on a fresh machine. (`--nofetch` cannot be used: a fresh output base must
# still set up @bazel_tools and the local toolchain repositories, which
# `bazel fetch` does not cover.)
# Usage: tools/bazel-test.sh [bazel test options] [target patterns]
#   CAIRN_BAZEL_JOBS  parallel jobs and CPUs for Bazel (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/.."

step() {  # step NAME COMMAND...: runs a command and reports its duration.
  local name=$1 start=$SECONDS
  shift
  echo "bazel-test: $name" >&2
  local rc=0
  "$@" || rc=$?
  echo "bazel-test: $name done in $((SECONDS - start)) s (exit $rc)" >&2
  return "$rc"
}

check_offline_inputs() {
  local missing=0 f
  for f in /usr/share/bazel/rules/java/WORKSPACE /usr/share/bazel/platforms/WORKSPACE \
      /usr/bin/protoc /usr/bin/grpc_cpp_plugin; do
    if [ ! -e "$f" ]; then
      echo "bazel-test: missing $f (see tools/install-deps.sh --bazel)" >&2
      missing=1
    fi
  done
  return "$missing"
}

step "installing dependencies" tools/install-deps.sh --bazel
check_offline_inputs

jobs="${CAIRN_BAZEL_JOBS:-$(nproc)}"
targets=()
options=()
for arg in "$@"; do
  case "$arg" in
    -*) options+=("$arg") ;;
    *) targets+=("$arg") ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  targets=(//...)
fi

status=0
step "bazel test ${targets[*]}" bazel test \
  --experimental_repository_disable_download --repository_cache= \
  --jobs="$jobs" --local_cpu_resources="$jobs" \
  --build_manual_tests \
  "${options[@]}" -- "${targets[@]}" || status=$?
# Every C++ source CMake builds must be in a Bazel target too.
step "checking that Bazel builds every tracked source" \
  tools/bazel/check-sources.sh || status=1
exit "$status"
