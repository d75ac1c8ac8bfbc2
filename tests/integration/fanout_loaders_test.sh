#!/usr/bin/env bash
# bench/fanout's two loaders against the real cairn-server, small: 100
# readers of a 2 MiB blob for 3 s, 90 of them slow at 1 MiB/s (one 1 MiB
# message a second), with --loader threads and --loader callback. Both must
# finish with 0 errors and pace the slow readers: they complete reads (the
# pacer starts their next message), yet read no more than the pacing allows
# (the first message of a read at once, then 1 MiB/s: at most 1 MiB + 2 MiB
# per reader per second). The callback loader must run far fewer threads than
# readers; the thread loader one per reader. Both loaders run as this shell
# does (SCHED_OTHER at its nice value) and the probe at nice 0 as root; then, as root (lowering and raising a
# process back needs it), a short callback run with --loader_idle and
# --client_nice 5 must have every loader thread at SCHED_IDLE, nice 5, and the
# probe's process still at SCHED_OTHER, nice 0.
# Usage: fanout_loaders_test.sh CAIRN_SERVER FANOUT
set -euo pipefail
server_bin=$1
fanout=$2
. "$(dirname "$0")/lib.sh"
new_work fanout-loaders
start_cairn "$server_bin" "$work/store" "$work/server.log" --max_size 1GiB

readers=100 slow=90 dur=3
# What the loader inherits from this shell (ctest may run niced), and the
# probe's process: back at nice 0 as root, else as inherited.
own_nice=$(nice)
want_loader=other; [ "$own_nice" = 0 ] || want_loader="other nice $own_nice"
want_probe=$want_loader; [ "$(id -u)" != 0 ] || want_probe=other
for loader in threads callback; do
  csv="$work/$loader.csv"
  "$fanout" --target "grpc://$addr" --server_pid "$server_pid" \
    --scenario same_blob --readers $readers --duration $dur --idle_seconds 0.5 \
    --blob_mib 2 --slow_kib_per_s 1024 --slow_delay_ms 20 --channels 4 \
    --loader $loader --csv "$csv" >"$work/$loader.out" 2>&1 ||
    fail "fanout --loader $loader: $(cat "$work/$loader.out")"
  python3 - "$csv" "$loader" $readers $slow $dur "$want_loader" "$want_probe" <<'PY' || fail "--loader $loader: $(cat "$work/$loader.out")"
import csv, sys
path, loader = sys.argv[1], sys.argv[2]
readers, slow, dur = map(int, sys.argv[3:6])
want = {"loader": sys.argv[6], "probe": sys.argv[7]}
r = next(csv.DictReader(open(path)))
print(loader, {k: r[k] for k in ("slow_mib_s", "slow_done", "fast_done",
      "errors", "loader", "loader_threads", "loader_cpus", "loader_sched",
      "probe_sched")})
def need(ok, what):
    if not ok:
        sys.exit("FAIL: %s" % what)
need(r["loader"] == loader, "row says loader %s" % r["loader"])
for who in ("loader", "probe"):
    need(r[who + "_sched"] == want[who],
         "%s threads %s, want %s" % (who, r[who + "_sched"], want[who]))
need(int(r["errors"]) == 0, "%s errors" % r["errors"])
need(int(r["fast_done"]) > 0, "fast readers finished no read")
need(int(r["slow_done"]) >= slow // 2,
     "slow readers finished %s reads (pacer stuck?)" % r["slow_done"])
# Paced: per slow reader at most 1 MiB at once plus 2 MiB/s (a finished
# read's successor takes its first message at once).
bound = slow * (1 + 2 * dur) / dur
need(float(r["slow_mib_s"]) <= bound,
     "slow readers read %s MiB/s, pacing allows %.1f" % (r["slow_mib_s"], bound))
threads = int(r["loader_threads"])
if loader == "callback":
    need(threads < readers // 4, "%d threads for %d readers" % (threads, readers))
else:
    need(threads > readers, "%d threads for %d readers" % (threads, readers))
PY
done

if [ "$(id -u)" = 0 ]; then
  csv="$work/idle.csv"
  "$fanout" --target "grpc://$addr" --server_pid "$server_pid" \
    --scenario same_blob --readers 20 --duration 1 --idle_seconds 0.3 \
    --blob_mib 2 --channels 2 --loader callback --loader_idle --client_nice 5 \
    --csv "$csv" >"$work/idle.out" 2>&1 ||
    fail "fanout --loader_idle: $(cat "$work/idle.out")"
  python3 - "$csv" <<'PY' || fail "--loader_idle: $(cat "$work/idle.out")"
import csv, sys
r = next(csv.DictReader(open(sys.argv[1])))
print("idle", {k: r[k] for k in ("errors", "loader_sched", "probe_sched")})
if int(r["errors"]) != 0:
    sys.exit("FAIL: %s errors" % r["errors"])
if r["loader_sched"] != "idle nice 5":
    sys.exit("FAIL: loader threads %s, want idle nice 5" % r["loader_sched"])
if r["probe_sched"] != "other":
    sys.exit("FAIL: probe threads %s, want other" % r["probe_sched"])
PY
else
  echo "not root: --loader_idle not checked"
fi
echo PASS
