#!/usr/bin/env bash
# Fails, listing them, when C++ sources tracked by git are used by no Bazel
# target: the sign that CMake gained a file the BUILD files do not mirror yet.
# Deliberate exceptions live in tools/bazel/cmake_only.txt.
# Usage: tools/bazel/check-sources.sh (after a build, so the query is fast)
set -euo pipefail
cd "$(dirname "$0")/../.."

exclusions=$(grep -v -e '^#' -e '^$' tools/bazel/cmake_only.txt | paste -sd'|' -)
tracked=$(git ls-files -- '*.cc' '*.h' '*.hpp' '*.proto' | grep -v -E "${exclusions:-^$}" | sort)
used=$(bazel query --noshow_progress 'kind("source file", deps(//...))' 2>/dev/null |
  sed -n -e 's|^//:\(.*\)$|\1|p' -e 's|^//\([^:]*\):\(.*\)$|\1/\2|p' | sort)
missing=$(comm -23 <(echo "$tracked") <(echo "$used"))
if [ -n "$missing" ]; then
  echo "check-sources: tracked by git but in no Bazel target (add them to a" >&2
  echo "BUILD file next to the CMakeLists.txt that builds them, or list them" >&2
  echo "in tools/bazel/cmake_only.txt with the reason):" >&2
  echo "$missing" | sed 's/^/  /' >&2
  exit 1
fi
echo "check-sources: every tracked C++ source is in a Bazel target" >&2
