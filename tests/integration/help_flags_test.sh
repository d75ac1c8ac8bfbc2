#!/usr/bin/env bash
# Checks that `BINARY --help` lists every flag the binary defines itself: the
# flags --helpfull lists from files outside Abseil must all appear in --help,
# and there must be at least MIN_FLAGS of them (so an empty --helpfull, or a
# parser that finds nothing, fails instead of passing).
# Usage: help_flags_test.sh BINARY MIN_FLAGS [BINARY MIN_FLAGS]...
set -uo pipefail

# own_flags TEXT: the flag names listed under "Flags from FILE:" headings whose
# FILE is not in Abseil, one a line.
own_flags() {
  awk '
    /^  Flags from / { own = ($0 !~ /absl\//); next }
    own && match($0, /^    --[A-Za-z0-9_]+/) {
      print substr($0, RSTART + 6, RLENGTH - 6)
    }'
}

failed=0
while [ $# -ge 2 ]; do
  binary=$1 min=$2
  shift 2
  name=$(basename "$binary")
  # Abseil exits non-zero after printing usage; only the text matters here.
  full=$("$binary" --helpfull 2>&1)
  help=$("$binary" --help 2>&1)
  expected=$(printf '%s\n' "$full" | own_flags | sort -u)
  listed=$(printf '%s\n' "$help" | own_flags | sort -u)
  count=$(printf '%s' "$expected" | grep -c . || true)
  if [ "$count" -lt "$min" ]; then
    echo "FAIL $name: --helpfull lists $count flags of its own, want >= $min" >&2
    failed=1
    continue
  fi
  missing=$(comm -23 <(printf '%s\n' "$expected") <(printf '%s\n' "$listed"))
  if [ -n "$missing" ]; then
    echo "FAIL $name: --help does not list:" $missing >&2
    failed=1
    continue
  fi
  echo "ok $name: --help lists all $count flags" >&2
done
if [ $# -ne 0 ]; then
  echo "usage: $0 BINARY MIN_FLAGS [BINARY MIN_FLAGS]..." >&2
  exit 2
fi
exit "$failed"
