#!/usr/bin/env bash
# shim_tee.sh FILE SHIM [ARGS...]: runs the GOCACHEPROG shim with its request
# stream (stdin from the go command) also appended to FILE, for
# bench/shim_replay.py. Responses pass through untouched.
set -uo pipefail
record=$1
shift
tee -a "$record" | "$@"
