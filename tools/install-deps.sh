#!/usr/bin/env bash
# Installs every Debian package Cairn's build, tests and benchmarks need.
# Idempotent: installs only what is missing, and runs `apt-get update` only
# when something is. Usage: tools/install-deps.sh [--bazel] [--fuzz] [--bench] [--s3]
# --s3 adds Ceph (monitor, OSD, radosgw) for the tests and benchmarks of the
# shared S3 tier (tools/rgw.sh): ~270 MB, ~1 min from a warm apt cache.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libabsl-dev libssl-dev libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcpp-httplib-dev libyaml-cpp-dev libzstd-dev libspdlog-dev
  librocksdb-dev
  openssl curl procps libcurl4-openssl-dev libexpat1-dev python3
)
for arg in "$@"; do
  case "$arg" in
    --bazel) packages+=(bazel-bootstrap bazel-platforms bazel-rules-java) ;;
    --fuzz) packages+=(clang libclang-rt-14-dev) ;;
    --bench) packages+=(gnuplot-nox valgrind) ;;
    --s3) packages+=(ceph-mon ceph-osd radosgw ceph-common) ;;
    *) echo "install-deps: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
