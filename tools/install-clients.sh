#!/usr/bin/env bash
# Installs the real build-tool clients that the `clients` ctest label drives
# against cairn-server (tests/integration/clients/): Debian packages
# (ccache; gradle; Bazel through tools/install-deps.sh --bazel, which
# tools/bazel-test.sh needs anyway; bubblewrap and busybox-static for
# BuildStream's sandbox) and PyPI packages in virtual environments under
# build/clients (never committed; $CAIRN_CLIENTS_DIR overrides the place):
# BuildStream, BuildGrid's bgd (Python 3.13), Pants 2.17.1 with a local pex
# (Python 3.9); sccache 0.19.0 with WebDAV from crates.io (cargo install).
# Skips whatever is already there; a step that cannot install writes why to
# CLIENTS_DIR/NAME.skip-reason, and the tests needing it skip with that reason.
# Usage: tools/install-clients.sh [--no-gradle] [--no-pants] [--no-sccache]
#                                 [--only NAME]
#   --no-gradle  leave out Debian's gradle (68 packages, 61 MiB)
#   --no-pants   leave out Pants (its test takes ~5-7 minutes here)
#   --no-sccache leave out sccache (cargo install at nice 19: 10.6 CPU
#                minutes, so at most ~11 min on an idle 2-core machine plus
#                the crate downloads; 51 min wall at load 10-40)
# Pants 2.x wheels on PyPI are CPython 3.9 only (2.17.1 .. 2.18.0a0; later
# releases are not on PyPI) and Debian bookworm has no python3.9: the
# interpreter comes from pyenv's versions directory when the machine has one
# (this machine kind does), else Pants is skipped with that reason.
# Prints "install-clients: NAME ... N s" per step, so the cost is visible in CI.
set -uo pipefail
cd "$(dirname "$0")/.."
root="${CAIRN_CLIENTS_DIR:-$(pwd)/build/clients}"
mkdir -p "$root"

want_gradle=1
want_pants=1
want_sccache=1
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --gradle) want_gradle=1 ;;  # The default; kept for older callers.
    --pants) want_pants=1 ;;
    --no-gradle) want_gradle=0 ;;
    --no-pants) want_pants=0 ;;
    --sccache) want_sccache=1 ;;  # The default; kept for older callers.
    --no-sccache) want_sccache=0 ;;
    --only) only=$2; shift ;;
    *) echo "install-clients: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

step() {  # step NAME COMMAND...: runs one install step and reports its time.
  local name=$1 start=$SECONDS rc=0
  shift
  if [ -n "$only" ] && [ "$only" != "$name" ]; then
    return 0
  fi
  local log="$root/$name.install.log"
  "$@" 2>"$log" || rc=$?
  cat "$log" >&2
  if [ "$rc" -eq 0 ]; then
    rm -f "$root/$name.skip-reason"
    echo "install-clients: $name ok in $((SECONDS - start)) s" >&2
  else
    {
      echo "tools/install-clients.sh could not install $name (exit $rc):"
      tail -3 "$log"
    } >"$root/$name.skip-reason"
    echo "install-clients: $name FAILED (exit $rc) after $((SECONDS - start)) s;" \
      "its tests will skip" >&2
  fi
}

apt_install() {  # apt_install PACKAGE...: installs the missing ones.
  local missing=() p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${missing[@]}" >&2
}

# Returns the interpreter for Python MAJOR.MINOR (pyenv's versions directory
# first: its shims refuse versions that are not selected), or fails.
python_for() {
  local v=$1 p
  if command -v pyenv >/dev/null 2>&1; then
    for p in "$(pyenv root)"/versions/"$v".*/bin/python"$v"; do
      [ -x "$p" ] && { echo "$p"; return 0; }
    done
  fi
  p="$(command -v "python$v" 2>/dev/null)" || return 1
  "$p" -c 'import sys' >/dev/null 2>&1 && echo "$p"
}

venv_install() {  # venv_install DIR PYTHON_VERSION PACKAGE...
  local dir=$1 v=$2 py
  shift 2
  [ -x "$dir/.done" ] && return 0
  py="$(python_for "$v")" || {
    echo "install-clients: no Python $v (not in pyenv's versions directory" \
      "nor on PATH; Debian bookworm packages only 3.11)" >&2
    return 1
  }
  rm -rf "$dir"
  "$py" -m venv "$dir" &&
    "$dir/bin/pip" install -q --disable-pip-version-check "$@" >&2 &&
    printf '#!/bin/sh\n' >"$dir/.done" && chmod +x "$dir/.done"
}

buildstream() {
  apt_install bubblewrap busybox-static &&
    venv_install "$root/buildstream" 3.11 buildstream==2.8.1
}

pants() {
  venv_install "$root/pants" 3.9 pantsbuild.pants==2.17.1 || return 1
  [ -f "$root/pex/pex" ] && return 0
  venv_install "$root/pex-venv" 3.9 pex==2.1.137 &&
    mkdir -p "$root/pex" &&
    "$root/pex-venv/bin/pex" pex==2.1.137 -c pex -o "$root/pex/pex" >&2
}

sccache() {
  [ -x "$root/sccache/bin/sccache" ] && return 0
  command -v cargo >/dev/null 2>&1 || { echo "install-clients: no cargo" >&2; return 1; }
  # sccache's release profile asks for fat LTO and one codegen unit (a long
  # single-threaded link); a test client needs neither. The target directory
  # is kept, so an interrupted build resumes where it stopped.
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_TARGET_DIR="$root/sccache-target" \
    nice -n 19 cargo install --locked --root "$root/sccache" --no-default-features \
    --features webdav --version 0.19.0 sccache >&2 &&
    rm -rf "$root/sccache-target"
}

step ccache apt_install ccache
step bazel tools/install-deps.sh --bazel
step buildstream buildstream
step bgd venv_install "$root/buildgrid" 3.13 buildgrid
if [ "$want_gradle" -eq 1 ] || [ "$only" = gradle ]; then
  step gradle apt_install gradle
fi
if [ "$want_pants" -eq 1 ] || [ "$only" = pants ]; then
  step pants pants
fi
if [ "$want_sccache" -eq 1 ] || [ "$only" = sccache ]; then
  step sccache sccache
fi
exit 0
