#!/usr/bin/env bash
# Fails, listing them, when a lower floor #includes a higher one. The floors,
# from the bottom (see the README's layout):
#   storage   cas/, actioncache/, asset/ (not their service/ folders): no
#             gRPC at all, no RPC plumbing, no service, no wiring; cas/
#             includes neither actioncache/ nor asset/
#   rpc/      plumbing every service uses: no service, no wiring
#   services  cas/service/, actioncache/service/, asset/service/,
#             capabilities/, http/: never the wiring (server/)
#   server/   wiring: may include everything but client code
#   client/   never server or service code, nor the store internals (only the
#             value types cas/digest.h, cas/resource_name.h, cas/zstd_codec.h)
# tests/ and bench/ may include anything. It also fails when a header of
# those folders does not state its thread safety ("Thread safety") in its
# top comment, next to its contract. Runs in a second; tools/test.sh runs it
# first. Usage: tools/check-layout.sh
set -euo pipefail
cd "$(dirname "$0")/.."

services='cas/service/|actioncache/service/|asset/service/|capabilities/|http/'
grpc='grpcpp/|grpc/|grpc\+\+/|[^">]*\.grpc\.pb\.h'
failed=0

# rule NAME FILES_RE SKIP_RE FORBIDDEN_RE [ALLOWED_RE]: every #include in the
# tracked or new C++ files matching FILES_RE (minus SKIP_RE) whose path starts
# with FORBIDDEN_RE (and does not match ALLOWED_RE) is a violation.
rule() {
  local name=$1 files_re=$2 skip_re=$3 bad_re=$4 allow_re=${5:-}
  local files hits
  files=$(git ls-files --cached --others --exclude-standard -- '*.h' '*.cc' |
    grep -E "$files_re" | grep -vE "${skip_re:-^$}" |
    while read -r f; do if [ -f "$f" ]; then echo "$f"; fi; done || true)
  [ -n "$files" ] || return 0
  # shellcheck disable=SC2086  # paths have no spaces
  hits=$(grep -nHE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]' $files |
    grep -E "#[[:space:]]*include[[:space:]]*[<\"]($bad_re)" |
    grep -vE "${allow_re:-^$}" || true)
  if [ -n "$hits" ]; then
    echo "check-layout: $name:" >&2
    echo "$hits" | sed 's/^/  /' >&2
    failed=1
  fi
}

rule "storage (cas/, actioncache/, asset/) includes gRPC, rpc/, a service or server/" \
  '^(cas|actioncache|asset)/' '^(cas|actioncache|asset)/service/' \
  "$grpc|rpc/|$services|server/|client/"
rule "the CAS store (cas/) includes actioncache/ or asset/, which sit above it" \
  '^cas/' '^cas/service/' 'actioncache/|asset/'
rule "rpc/ includes a service or server/" \
  '^rpc/' '' "$services|server/|client/"
rule "a service includes server/ or client/" \
  "^($services)" '' 'server/|client/'
rule "client/ includes server, service or store code" \
  '^client/' '' "server/|rpc/|$services|actioncache/|asset/|cas/" \
  '[<"]cas/(digest|resource_name|zstd_codec)\.h[">]'

# Headers whose first comment block does not say "Thread safety".
for h in $(git ls-files --cached --others --exclude-standard -- '*.h' |
  grep -E '^(cas|actioncache|asset|rpc|capabilities|http|server|client)/'); do
  if [ -f "$h" ] && ! awk '/^\/\//{c=1; print; next} {if (c) exit}' "$h" |
    grep -q 'Thread safety'; then
    echo "check-layout: $h: the top comment does not state its thread safety" >&2
    failed=1
  fi
done

if [ "$failed" -ne 0 ]; then
  echo "check-layout: includes must only run downward (storage < rpc <" \
    "services < server; client apart): move the code or the include; every" \
    "header states its thread safety in its top comment." >&2
  exit 1
fi
echo "check-layout: every #include runs downward; every header states its" \
  "thread safety" >&2
