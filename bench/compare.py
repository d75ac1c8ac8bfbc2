#!/usr/bin/env python3
"""Runs the same REAPI loads against cairn-server and bazel-remote.

Each repetition runs every mix once against a fresh server of each kind
(temp dir, same size limit, gRPC and HTTP on loopback; a new process and
store per mix), alternating which kind goes first, runs reapi_load against it
and stops it. Prints one table of medians with the
Cairn/bazel-remote ratio per row, and writes compare.csv, compare.png (gnuplot)
and the raw rows (raw.csv) into --out.

Usage: bench/compare.py [--reps 3] [--concurrency 1,32] [--requests 20000]
                        [--lock FILE]
With --lock, it holds an exclusive flock on FILE while it measures and
releases it before removing its temp dirs (gigabytes of files; `flock FILE
bench/compare.py` would keep others waiting through that too).
Everything is bounded: request counts, per-row durations, process timeouts.
Python 3 standard library only.
"""

import argparse
import csv
import fcntl
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_MIXES = "find_missing,batch_update,batch_read,ac_get_hit,ac_get_miss,ac_update"
LARGE_MIXES = "bs_write_16m,bs_read_16m"
HUGE_MIXES = "bs_write_1g,bs_read_1g"
METRICS = ["ops_per_s", "mb_per_s", "p50_us", "p99_us", "p999_us",
           "server_cpu_us_per_op", "server_peak_rss_mib"]


def find_binary(candidates):
    for c in candidates:
        p = os.path.join(ROOT, c)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


class Server:
    """A server process in its own temp dir; start() / stop()."""

    def __init__(self, label, binary, max_size_gib, workdir, log_dir):
        self.label, self.binary = label, binary
        self.max_size_gib, self.workdir = max_size_gib, workdir
        self.log_dir = log_dir
        self.proc = self.dir = self.port = self.log = None

    def args(self):
        grpc = "127.0.0.1:%d" % self.port
        if self.label == "bazel-remote":
            return [self.binary, "--dir", self.dir,
                    "--max_size", str(self.max_size_gib),
                    "--storage_mode", "uncompressed",
                    "--grpc_address", grpc,
                    "--http_address", "127.0.0.1:%d" % free_port(),
                    "--access_log_level", "none"]
        args = [self.binary, "--listen", grpc, "--dir", self.dir]
        if cairn_supports(self.binary, "max_size"):
            args += ["--max_size", "%dGiB" % self.max_size_gib]
        if cairn_supports(self.binary, "metrics_listen"):
            args += ["--metrics_listen", "127.0.0.1:%d" % free_port()]
        return args

    def start(self):
        self.dir = tempfile.mkdtemp(prefix=self.label + ".", dir=self.workdir)
        self.port = free_port()
        self.log = open(os.path.join(self.log_dir, self.label + ".log"), "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self.log,
                                     stderr=subprocess.STDOUT)
        if not wait_port(self.port, self.proc):
            self.stop()
            raise RuntimeError("%s did not start; see %s" %
                               (self.label, self.log.name))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self.log:
            self.log.close()
            self.log = None
        # The store dir stays until the whole run ends (main removes the work
        # dir): on ext4 without a journal, files created right after
        # thousands were deleted are slow to create (the inode allocator
        # scans past recently deleted inodes), which would slow the next mix.
        self.proc = self.dir = None


_HELP = {}


def cairn_supports(binary, flag):
    if binary not in _HELP:
        try:
            out = subprocess.run([binary, "--helpfull"], capture_output=True,
                                 timeout=10, text=True)
            _HELP[binary] = out.stdout + out.stderr
        except (OSError, subprocess.TimeoutExpired):
            _HELP[binary] = ""
    return re.search(r"--%s\b" % re.escape(flag), _HELP[binary]) is not None


def remove_tree(path):
    """Removes `path` at the lowest best-effort I/O and CPU priority (the
    next benchmark may be running; the idle class could starve on a busy
    disk), falling back to shutil."""
    try:
        subprocess.run(["ionice", "-c", "2", "-n", "7", "nice", "-n", "19",
                        "rm", "-rf", "--", path], timeout=3600, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass
    shutil.rmtree(path, ignore_errors=True)


def run_load(load, server, mixes, conc, args, requests_flags, csv_path):
    cmd = [load, "--target", "grpc://127.0.0.1:%d" % server.port,
           "--mix", mixes, "--concurrency", conc,
           "--duration", str(args.duration),
           "--server_pid", str(server.proc.pid), "--label", server.label,
           "--csv", csv_path] + requests_flags
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, timeout=args.run_timeout, check=False)


def one_rep(rep, servers, load, args, raw_csv):
    """Runs every mix once against each server, alternating which goes first.

    Each mix gets a fresh server process and store, so a row's CPU and peak
    RSS belong to that load alone (memory a server keeps from an earlier,
    heavier mix does not count against a later one) and no mix runs against
    another's leftovers.
    """
    order = servers if rep % 2 == 0 else list(reversed(servers))
    req = ["--requests", str(args.requests),
           "--large_requests", str(args.large_requests),
           "--huge_requests", str(args.huge_requests)]
    loads = [(m, args.concurrency) for m in split(args.mix)]
    loads += [(m, args.large_concurrency) for m in split(args.large_mix)]
    if rep < args.huge_reps:
        loads += [(m, "1") for m in split(args.huge_mix)]
    for server in order:
        for mix, conc in loads:
            server.start()
            try:
                run_load(load, server, mix, conc, args, req, raw_csv)
            finally:
                server.stop()


def split(mixes):
    return [m for m in (mixes or "").split(",") if m]


def median_rows(raw_csv):
    groups = {}
    with open(raw_csv) as f:
        for r in csv.DictReader(f):
            key = (r["mix"], int(r["concurrency"]))
            groups.setdefault(key, {}).setdefault(r["label"], []).append(r)
    out = []
    for (mix, conc), by_label in groups.items():
        row = {"mix": mix, "concurrency": conc}
        for label, rows in by_label.items():
            row[label + ":n"] = len(rows)
            row[label + ":errors"] = sum(int(r["errors"]) for r in rows)
            for m in METRICS:
                row[label + ":" + m] = statistics.median(float(r[m]) for r in rows)
        out.append(row)
    order = {m: i for i, m in enumerate((SMALL_MIXES + "," + LARGE_MIXES + ","
                                         + HUGE_MIXES).split(","))}
    out.sort(key=lambda r: (order.get(r["mix"], 99), r["concurrency"]))
    return out


def ratio(row, metric):
    c, b = row.get("cairn:" + metric), row.get("bazel-remote:" + metric)
    if c is None or b is None or b == 0:
        return None
    return c / b


def fmt(v, digits=1):
    return "-" if v is None else ("%.*f" % (digits, v))


def print_table(rows):
    head = ("%-13s %4s %3s | %10s %10s %6s | %8s %8s %6s | %9s %9s %6s | "
            "%8s %8s %6s | %7s %7s %6s | %8s %8s | %5s")
    print("C = cairn, B = bazel-remote; medians over n runs; p50/p99 in ms;"
          " peak RSS in MiB; server CPU in microseconds per operation")
    print(head % ("mix", "conc", "n", "C ops/s", "B ops/s", "ratio",
                  "C MB/s", "B MB/s", "ratio", "C p99 ms", "B p99 ms", "ratio",
                  "C p50 ms", "B p50 ms", "ratio", "C RSS", "B RSS", "ratio",
                  "C cpu/op", "B cpu/op", "err"))
    for r in rows:
        g = lambda l, m: r.get(l + ":" + m)
        ms = lambda v: None if v is None else v / 1000
        print(head % (
            r["mix"], r["concurrency"], r.get("cairn:n", 0),
            fmt(g("cairn", "ops_per_s")), fmt(g("bazel-remote", "ops_per_s")),
            fmt(ratio(r, "ops_per_s"), 2),
            fmt(g("cairn", "mb_per_s")), fmt(g("bazel-remote", "mb_per_s")),
            fmt(ratio(r, "mb_per_s"), 2),
            fmt(ms(g("cairn", "p99_us")), 2),
            fmt(ms(g("bazel-remote", "p99_us")), 2),
            fmt(ratio(r, "p99_us"), 2),
            fmt(ms(g("cairn", "p50_us")), 2),
            fmt(ms(g("bazel-remote", "p50_us")), 2),
            fmt(ratio(r, "p50_us"), 2),
            fmt(g("cairn", "server_peak_rss_mib")),
            fmt(g("bazel-remote", "server_peak_rss_mib")),
            fmt(ratio(r, "server_peak_rss_mib"), 2),
            fmt(g("cairn", "server_cpu_us_per_op")),
            fmt(g("bazel-remote", "server_cpu_us_per_op")),
            "%d/%d" % (r.get("cairn:errors", 0), r.get("bazel-remote:errors", 0))))


def print_baseline_table(rows):
    """Before (cairn-base) and after (cairn), each against bazel-remote."""
    head = "%-13s %4s | %9s %9s %9s | %7s %7s | %9s %9s %9s | %7s %7s"
    print()
    print("A = cairn (after), P = cairn-base (before), B = bazel-remote; "
          "cpu/op in microseconds, ratios against B")
    print(head % ("mix", "conc", "P cpu/op", "A cpu/op", "B cpu/op",
                  "P/B", "A/B", "P ops/s", "A ops/s", "B ops/s", "P/B", "A/B"))
    for r in rows:
        g = lambda l, m: r.get(l + ":" + m)
        rb = lambda l, m: (None if g(l, m) is None or not g("bazel-remote", m)
                           else g(l, m) / g("bazel-remote", m))
        print(head % (
            r["mix"], r["concurrency"],
            fmt(g("cairn-base", "server_cpu_us_per_op")),
            fmt(g("cairn", "server_cpu_us_per_op")),
            fmt(g("bazel-remote", "server_cpu_us_per_op")),
            fmt(rb("cairn-base", "server_cpu_us_per_op"), 2),
            fmt(rb("cairn", "server_cpu_us_per_op"), 2),
            fmt(g("cairn-base", "ops_per_s")), fmt(g("cairn", "ops_per_s")),
            fmt(g("bazel-remote", "ops_per_s")),
            fmt(rb("cairn-base", "ops_per_s"), 2),
            fmt(rb("cairn", "ops_per_s"), 2)))


def write_summary(rows, path):
    cols = ["mix", "concurrency"]
    for label in ("cairn", "bazel-remote"):
        cols += [label + ":n", label + ":errors"] + [label + ":" + m for m in METRICS]
    cols += ["ratio:" + m for m in METRICS]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            for m in METRICS:
                r["ratio:" + m] = ratio(r, m)
            w.writerow(["" if r.get(c) is None else
                        (("%.4g" % r[c]) if isinstance(r[c], float) else r[c])
                        for c in cols])


def write_chart(rows, out_dir):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("compare: no gnuplot (tools/install-deps.sh --bench); no PNG",
              file=sys.stderr)
        return
    data = os.path.join(out_dir, "compare.dat")
    with open(data, "w") as f:
        f.write("row ops_ratio mbps_ratio p99_ratio rss_ratio\n")
        for r in rows:
            vals = [ratio(r, m) for m in ("ops_per_s", "mb_per_s", "p99_us",
                                          "server_peak_rss_mib")]
            f.write('"%s@%d" %s\n' % (r["mix"], r["concurrency"], " ".join(
                "NaN" if v is None else "%.4f" % v for v in vals)))
    script = """
set terminal pngcairo size 1400,650 noenhanced
set output '%s'
set title 'Cairn / bazel-remote (medians; >1 better for ops/s and MB/s, <1 better for p99 and RSS)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y 2
set yrange [0.0625:32]
set grid ytics
set xtics rotate by -35
set key outside top right
plot '%s' using 2:xtic(1) title 'ops/s ratio', '' using 4 title 'p99 ratio', \
     '' using 5 title 'peak RSS ratio', 1 with lines lc rgb 'black' notitle
""" % (os.path.join(out_dir, "compare.png"), data)
    try:
        subprocess.run([gnuplot], input=script.replace("pngcairo", "png")
                       if not _has_cairo(gnuplot) else script,
                       text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        print("compare: gnuplot failed: %s" % e, file=sys.stderr)


def _has_cairo(gnuplot):
    out = subprocess.run([gnuplot, "-e", "set terminal"], capture_output=True,
                         text=True, timeout=10)
    return "pngcairo" in (out.stdout + out.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--mix", default=SMALL_MIXES)
    p.add_argument("--concurrency", default="1,32")
    p.add_argument("--large_mix", default=LARGE_MIXES)
    p.add_argument("--large_concurrency", default="1,4")
    p.add_argument("--huge_mix", default=HUGE_MIXES)
    p.add_argument("--huge_reps", type=int, default=1)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--large_requests", type=int, default=16)
    p.add_argument("--huge_requests", type=int, default=2)
    p.add_argument("--duration", type=float, default=5)
    p.add_argument("--run_timeout", type=float, default=600)
    p.add_argument("--max_size_gib", type=int, default=20)
    p.add_argument("--build", default=os.environ.get("CAIRN_BUILD", "build-bench"))
    p.add_argument("--servers", default="cairn,bazel-remote",
                   help="subset for smoke runs")
    p.add_argument("--baseline", default="",
                   help="another cairn-server binary (e.g. the previous "
                        "commit's) run as a third server, 'cairn-base', in "
                        "the same alternation; adds a before/after table")
    p.add_argument("--out", default=os.path.join(ROOT, "build-bench", "bench-out"))
    p.add_argument("--lock", default="",
                   help="hold an exclusive flock on this file while measuring "
                        "(released before the temp dirs are removed)")
    a = p.parse_args()

    load = find_binary([a.build + "/bin/reapi_load", "build/bin/reapi_load"])
    cairn = find_binary([a.build + "/bin/cairn-server", "build/bin/cairn-server"])
    peer = find_binary(["build/peers/bin/bazel-remote"])
    wanted = a.servers.split(",")
    for name, b in (("reapi_load", load), ("cairn-server", cairn),
                    ("bazel-remote (tools/install-peers.sh)", peer)):
        if not b and name.split(" ")[0] in ["reapi_load"] + wanted:
            sys.exit("compare: %s not found" % name)
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="cairn-compare.")
    raw = os.path.join(a.out, "raw.csv")
    if os.path.exists(raw):
        os.remove(raw)
    kinds = [("cairn", cairn), ("bazel-remote", peer)]
    if a.baseline:
        kinds.insert(1, ("cairn-base", a.baseline))
        wanted.append("cairn-base")
    servers = [Server(l, b, a.max_size_gib, work, a.out)
               for l, b in kinds if l in wanted]
    lock = open(a.lock, "a") if a.lock else None
    try:
        try:
            if lock:
                print("compare: waiting for %s" % a.lock, file=sys.stderr,
                      flush=True)
                fcntl.flock(lock, fcntl.LOCK_EX)
            for rep in range(a.reps):
                print("compare: repetition %d of %d" % (rep + 1, a.reps),
                      file=sys.stderr, flush=True)
                one_rep(rep, servers, load, a, raw)
        finally:
            for s in servers:
                s.stop()
            if lock:
                lock.close()  # Releases the flock: what follows measures nothing.
        rows = median_rows(raw)
        print_table(rows)
        if a.baseline:
            print_baseline_table(rows)
        write_summary(rows, os.path.join(a.out, "compare.csv"))
        write_chart(rows, a.out)
        print("compare: wrote %s/{raw.csv,compare.csv,compare.png}" % a.out,
              file=sys.stderr, flush=True)
    finally:
        print("compare: removing %s" % work, file=sys.stderr, flush=True)
        remove_tree(work)


if __name__ == "__main__":
    main()
