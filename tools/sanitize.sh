#!/usr/bin/env bash
# Builds the whole tree with sanitizers and runs its tests:
#   address -> build-asan (ASan + UBSan, -DCAIRN_SANITIZE=address)
#   thread  -> build-tsan (TSan, -DCAIRN_SANITIZE=thread)
# Labels too slow under sanitizers are excluded (override with
# CAIRN_SANITIZE_EXCLUDE, a ctest -LE regex; default below). Each run is meant
# to stay well under 15 minutes on 2 cores.
#
# Usage: tools/sanitize.sh [address] [thread]    (default: both)
# Env:   CAIRN_JOBS (default 2) build and test parallelism;
#        CAIRN_SANITIZE_EXCLUDE (default "large|integration|fault|soak|fuzz").
#
# TSan note: Debian's gRPC, protobuf and Abseil libraries are not built with
# TSan, so synchronisation inside them is invisible to it. Two measures keep
# the reports real: tools/tsan_absl_shim.cc (linked into every TSan binary)
# tells TSan about absl::Mutex/CondVar/Notification ordering, and
# tools/tsan.supp ignores accesses made inside gRPC core and Abseil's deadlock
# detector. Races between accesses in Cairn code are still reported.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="${CAIRN_SANITIZE_EXCLUDE:-large|integration|fault|soak|fuzz}"
jobs="${CAIRN_JOBS:-2}"
kinds=("$@")
if [ ${#kinds[@]} -eq 0 ]; then
  kinds=(address thread)
fi
tools/install-deps.sh

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tools/tsan.supp"

status=0
for kind in "${kinds[@]}"; do
  case "$kind" in
    address) dir=build-asan ;;
    thread) dir=build-tsan ;;
    *) echo "sanitize.sh: unknown sanitizer '$kind' (address|thread)" >&2; exit 2 ;;
  esac
  start=$(date +%s)
  extra=()
  if [ "$kind" = thread ]; then
    # Makes absl::Mutex ordering visible to TSan (see the file's comment).
    mkdir -p "$dir"
    "${CXX:-c++}" -std=c++20 -fsanitize=thread -fPIC -O1 -g -I. \
      -c tools/tsan_absl_shim.cc -o "$dir/tsan_absl_shim.o"
    extra=(-DCMAKE_EXE_LINKER_FLAGS="$PWD/$dir/tsan_absl_shim.o")
  fi
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCAIRN_SANITIZE="$kind" -DCAIRN_BENCH=OFF "${extra[@]}" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "== $kind: ctest -LE '$exclude' in $dir" >&2
  if ! (cd "$dir" && ctest -LE "$exclude" -j "$jobs" --output-on-failure --timeout 600); then
    status=1
  fi
  echo "== $kind: $(( $(date +%s) - start )) s" >&2
done
exit "$status"
