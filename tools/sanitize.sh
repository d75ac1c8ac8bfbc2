#!/usr/bin/env bash
# Builds the whole tree with sanitizers and runs its tests (CI runs both kinds,
# address then thread, after tools/test.sh and tools/bazel-test.sh):
#   address -> build-asan: clang, ASan + UBSan (-DCAIRN_SANITIZE=address) and
#              the libFuzzer targets (-DCAIRN_FUZZ=ON) in the same build; runs
#              every ctest test, fuzz targets included (CAIRN_FUZZ_SECONDS,
#              default 20, scaled per target in tests/fuzz/CMakeLists.txt),
#              the soak for CAIRN_SOAK_SECONDS (default 20 here, 60 in
#              tools/test.sh); the fuzz seed is CAIRN_FUZZ_SEED (default 1,
#              fixed, so CI answers the same for the same commit).
#   thread  -> build-tsan: gcc, TSan (-DCAIRN_SANITIZE=thread).
#   fuzz    -> build-asan, but builds and runs only the fuzz targets
#              (what tools/fuzz.sh does).
#
# Excluded tests (ctest -E regex, override with CAIRN_SANITIZE_EXCLUDE_<KIND>):
#   both:    go_cacheprog_* - they drive the real go command against
#            bazel-remote/cairn-server and need tools/install-peers.sh (network
#            and time); tools/test.sh runs them on the Release build.
#            go_keys - the real go command against cairn-server for ~85 s,
#            mostly compiling the standard library; its code (parser, diff,
#            records) runs under ASan in gocacheprog_keys_test and
#            gocachehash_fuzz; tools/test.sh runs it on the Release build.
#            go_traps - the real go command against cairn-server (2-4 min,
#            mostly compiling); remote_faults - toxiproxy between the shim and
#            cairn-server, with answer-time bounds a sanitizer build may miss
#            on a loaded machine. Both run on the Release build in
#            tools/test.sh; the shim code they drive runs under the
#            sanitizers in gocacheprog_shim_test and reapi_client_test.
#   thread:  fuzz targets are not built (libFuzzer needs clang + ASan).
# A test excluded by a label is listed in CAIRN_SANITIZE_EXCLUDE_LABELS_<KIND>.
#
# Usage: tools/sanitize.sh [address] [thread] [fuzz]   (default: address thread)
# Env:   CAIRN_JOBS (default 2) build and test parallelism.
#        CAIRN_SANITIZE_OPT (default "-O1 -g1": -O1 as the sanitizers' docs
#        advise, line tables for the reports' stack traces) optimisation and
#        debug info of both builds. It compiles in ~40% less CPU than
#        RelWithDebInfo's "-O2 -g": cas/service/bytestream_service.cc took
#        5.9-6.1 s user vs 10.0-10.9 s (g++, on a loaded machine).
#
# TSan note: Debian's gRPC, protobuf and Abseil libraries are not built with
# TSan, so synchronisation inside them is invisible to it. Two measures keep
# the reports real: tools/tsan_absl_shim.cc (linked into every TSan binary)
# tells TSan about absl::Mutex/CondVar/Notification ordering, and
# tools/tsan.supp ignores orderings made inside gRPC, Abseil and OpenSSL (each
# entry says why). Races between accesses in Cairn code are still reported.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${CAIRN_JOBS:-2}"
kinds=("$@")
if [ ${#kinds[@]} -eq 0 ]; then
  kinds=(address thread)
fi
tools/install-deps.sh --fuzz
# ccache keys on paths relative to the checkout (as in tools/build.sh).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# libcares (gRPC's DNS resolver, uninstrumented) leaks a few bytes per channel.
export LSAN_OPTIONS="suppressions=$PWD/tools/lsan.supp:print_suppressions=0"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tools/tsan.supp"
export CAIRN_SOAK_SECONDS="${CAIRN_SOAK_SECONDS:-20}"

# wipe_if_other_compiler <dir> <cxx>: removes <dir> when it was configured
# with another compiler (CMake cannot switch compilers in place).
wipe_if_other_compiler() {
  local dir=$1 cxx=$2
  if [ -f "$dir/CMakeCache.txt" ] &&
     ! grep -q "^CMAKE_CXX_COMPILER:[A-Z]*=.*/$cxx\$" "$dir/CMakeCache.txt"; then
    rm -rf "$dir"
  fi
}

# configure <dir> <cc> <cxx> <cmake args...>: (re)configures <dir>, starting
# afresh when it was configured with another compiler.
configure() {
  local dir=$1 cc=$2 cxx=$3
  shift 3
  wipe_if_other_compiler "$dir" "$cxx"
  CC=$cc CXX=$cxx cmake -S . -B "$dir" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="${CAIRN_SANITIZE_OPT:--O1 -g1} -DNDEBUG" \
    -DCAIRN_BENCH=OFF "$@" >/dev/null
}

status=0
for kind in "${kinds[@]}"; do
  start=$(date +%s)
  case "$kind" in
    address|fuzz)
      dir=build-asan
      configure "$dir" clang clang++ -DCAIRN_SANITIZE=address -DCAIRN_FUZZ=ON \
        -DCAIRN_FUZZ_SECONDS="${CAIRN_FUZZ_SECONDS:-20}" \
        -DCAIRN_FUZZ_SEED="${CAIRN_FUZZ_SEED:-1}"
      ;;
    thread)
      dir=build-tsan
      # Makes absl::Mutex ordering visible to TSan (see the file's comment).
      # Wiped first: configure would otherwise remove the object built here.
      wipe_if_other_compiler "$dir" g++
      mkdir -p "$dir"
      g++ -std=c++20 -fsanitize=thread -fPIC -O1 -g -I. \
        -c tools/tsan_absl_shim.cc -o "$dir/tsan_absl_shim.o"
      # The shim must hide no real race and report no false one; checked
      # on a small program before the suite relies on it.
      g++ -std=c++20 -fsanitize=thread -O1 -g tools/tsan_shim_check.cc \
        "$dir/tsan_absl_shim.o" -o "$dir/tsan_shim_check" \
        $(pkg-config --libs absl_synchronization)
      if ! "$dir/tsan_shim_check" 2>"$dir/tsan_shim_check.log"; then
        echo "sanitize.sh: TSan reports a race on mutex-guarded data; the absl" \
          "shim is not effective (see $dir/tsan_shim_check.log)" >&2
        exit 1
      fi
      if TSAN_OPTIONS="${TSAN_OPTIONS/halt_on_error=1/halt_on_error=0}" \
         "$dir/tsan_shim_check" racy 2>"$dir/tsan_shim_check.log" ||
         ! grep -q "WARNING: ThreadSanitizer: data race" "$dir/tsan_shim_check.log"; then
        echo "sanitize.sh: TSan missed a deliberate race; the absl shim hides" \
          "real races (see $dir/tsan_shim_check.log)" >&2
        exit 1
      fi
      echo "== thread: absl shim checked (no report on guarded data, a report on a race)" >&2
      # The shim goes to the project's executables only (CAIRN_TSAN_SHIM),
      # not to CMake's compiler check, which links without Abseil.
      configure "$dir" gcc g++ -DCAIRN_SANITIZE=thread \
        -DCAIRN_TSAN_SHIM="$PWD/$dir/tsan_absl_shim.o"
      ;;
    *) echo "sanitize.sh: unknown kind '$kind' (address|thread|fuzz)" >&2; exit 2 ;;
  esac
  select=()
  if [ "$kind" = fuzz ]; then
    targets=$(sed -n 's/^cairn_fuzz(\([a-z_]*\).*/\1/p' tests/fuzz/CMakeLists.txt)
    # shellcheck disable=SC2086
    cmake --build "$dir" -j "$jobs" --target $targets
    select=(-L fuzz)
  else
    cmake --build "$dir" -j "$jobs"
    upper=$(echo "$kind" | tr a-z A-Z)
    exclude_var="CAIRN_SANITIZE_EXCLUDE_$upper"
    labels_var="CAIRN_SANITIZE_EXCLUDE_LABELS_$upper"
    select=(-E "${!exclude_var:-^go_cacheprog_|^go_keys\$|^go_traps\$|^remote_faults\$}")
    if [ -n "${!labels_var:-}" ]; then
      select+=(-LE "${!labels_var}")
    fi
  fi
  echo "== $kind: ctest ${select[*]} in $dir (build: $(( $(date +%s) - start )) s)" >&2
  if ! (cd "$dir" && ctest "${select[@]}" -j "$jobs" --output-on-failure --timeout 900); then
    status=1
  fi
  echo "== $kind: $(( $(date +%s) - start )) s" >&2
done
exit "$status"
