#!/usr/bin/env bash
# Gradle (Debian's gradle 4.4.1; tools/install-clients.sh installs it)
# with its HttpBuildCache pointed at the server: /kv/gradle/ on
# cairn-server, the root on bazel-remote (which answers 400 to Gradle's
# 32-hex keys).
# Usage: gradle_test.sh SERVER_KIND SERVER_BINARY [CLIENTS_DIR]
# A two-class Java project: compileJava in one checkout (stored), then in a
# fresh checkout with its own Gradle home: compileJava must be FROM-CACHE
# and the classes identical. Prints "RESULT gradle ...".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

command -v gradle >/dev/null 2>&1 ||
  not_installed gradle "$clients" "no gradle (Debian package, ~60 MiB)"
[ -x "$server_bin" ] || skip "$kind not built/installed at $server_bin"
start_server "$kind" "$server_bin" "$work/server"
case $kind in
  cairn-server) url="http://$http_addr/kv/gradle/" ;;
  bazel-remote) url="http://$http_addr/" ;;
esac

# checkout NAME: a fresh copy of the project.
checkout() {
  local d="$work/$1"
  mkdir -p "$d/src/main/java/cairn"
  echo "apply plugin: 'java'" >"$d/build.gradle"
  cat >"$d/settings.gradle" <<G
rootProject.name = 'cairn-it'
buildCache {
  local { enabled = false }
  remote(HttpBuildCache) {
    url = '$url'
    push = true
  }
}
G
  for c in Hello World; do
    cat >"$d/src/main/java/cairn/$c.java" <<J
package cairn;
public class $c { public static String name() { return "$c"; } }
J
  done
}
run() {  # run NAME: compileJava with the build cache, own Gradle home (not
  # --offline: that turns the remote cache off; the project has no deps).
  (cd "$work/$1" && gradle --no-daemon --build-cache --console=plain \
    -g "$work/gradle-home-$1" compileJava >"$work/$1.log" 2>&1) ||
    fail "gradle ($1) failed: $(tail -30 "$work/$1.log")"
}
checkout one
checkout two
measure "gradle build 1 (cold)" run one
measure "gradle build 2 (fresh checkout and Gradle home)" run two
line=$(grep -E '^(> Task )?:compileJava' "$work/two.log" || true)
echo "RESULT gradle $kind: build 2: ${line:-no compileJava line}"
case $line in
  *FROM-CACHE*) ;;
  *)
    if [ "$kind" = bazel-remote ]; then  # Known: it refuses Gradle's keys.
      echo "PASS (peer comparison only: $(grep -i -m1 'cache' "$work/one.log"))"
      exit 0
    fi
    fail "compileJava was not FROM-CACHE: $(grep -i cache "$work/two.log" | head -5)" ;;
esac
cmp "$work/one/build/classes/java/main/cairn/Hello.class" \
  "$work/two/build/classes/java/main/cairn/Hello.class" || fail "classes differ"
echo "PASS"
