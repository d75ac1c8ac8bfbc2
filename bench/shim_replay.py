#!/usr/bin/env python3
"""Per-request latency of cairn-gocacheprog, replaying a GOCACHEPROG stream.

The stream is one recorded with bench/shim_tee.sh during a go build
(go_builds.sh --record FILE), or, without --record, a synthesized one (sizes
64 B - 1 MiB, two thirds under 1 KiB). Requests are sent one at a time (closed
loop, one in flight) and timed from the write of the request to the read of
its response, in these phases:

  put        shim A (empty --dir, remote R): every put of the stream
  local_hit  shim A: a get for every put ActionID (answered from --dir)
  remote_hit shim B (empty --dir, same remote, after A's close flushed):
             the same gets, answered by the remote
  miss       shim B: gets for ActionIDs nobody stored (one remote lookup)
  pipe_floor the same get lines through `cat` (pipes + this script's own
             JSON handling): the harness's floor, not part of the shim

Starts its own cairn-server (and bazel-remote with --peer). Prints a table
(p50/p90/p99/mean in microseconds) and writes shim_replay.csv into --out.
Python 3 standard library only; every loop is bounded.
"""

import argparse
import base64
import csv
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import ROOT, Server, find_binary  # noqa: E402


def load_record(path, limit):
    """Returns [(action_id, output_id, body_line_or_None, size)] of puts."""
    puts = []
    with open(path, "rb") as f:
        pending = None
        for line in f:
            line = line.strip()
            if not line:
                continue
            if pending is not None:
                puts.append(pending[:2] + (line, pending[2]))
                pending = None
            else:
                req = json.loads(line)
                if req.get("Command") != "put":
                    continue
                out = req.get("OutputID") or req.get("ObjectID")
                size = int(req.get("BodySize", 0))
                if size > 0:
                    pending = (req["ActionID"], out, size)
                else:
                    puts.append((req["ActionID"], out, None, 0))
            if len(puts) >= limit:
                break
    return puts


def synth_size(rng):
    lo, hi = (6, 10) if rng.random() < 2 / 3 else (10, 20)
    return int(2 ** (lo + (hi - lo) * rng.random()))


def synthesize(n, seed):
    rng = random.Random(seed)
    puts = []
    for _ in range(n):
        body = rng.randbytes(synth_size(rng))
        aid = base64.b64encode(rng.randbytes(32)).decode()
        oid = base64.b64encode(hashlib.sha256(body).digest()).decode()
        line = json.dumps(base64.b64encode(body).decode()).encode()
        puts.append((aid, oid, line, len(body)))
    return puts


class Prog:
    """A GOCACHEPROG child driven one request at a time."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.next_id = 1
        if argv[0] == "cat":
            return
        hello = self.proc.stdout.readline()
        if b"KnownCommands" not in hello:
            raise RuntimeError("no KnownCommands from %s: %r" % (argv, hello))

    def call(self, req, body=None):
        """Sends one request; returns (response dict, latency ns)."""
        req["ID"] = self.next_id
        self.next_id += 1
        data = json.dumps(req).encode() + b"\n"
        if body is not None:
            data += body + b"\n"
        t0 = time.perf_counter_ns()
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        t1 = time.perf_counter_ns()
        resp = json.loads(line)
        if resp.get("ID") != req["ID"]:
            raise RuntimeError("response ID %r for request %d" %
                               (resp.get("ID"), req["ID"]))
        return resp, t1 - t0

    def close(self, timeout=120):
        t0 = time.perf_counter_ns()
        try:
            self.call({"Command": "close"})
        except (RuntimeError, ValueError, BrokenPipeError):
            pass
        self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        return time.perf_counter_ns() - t0


def phase(name, prog, requests, check, deadline):
    lat, bad = [], 0
    for req, body in requests:
        if time.monotonic() > deadline:
            break
        resp, ns = prog.call(dict(req), body)
        lat.append(ns / 1000)
        if not check(resp):
            bad += 1
    return name, lat, bad


def summarize(label, name, lat, bad):
    lat = sorted(lat)
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0
    return dict(server=label, phase=name, n=len(lat), unexpected=bad,
                p50_us="%.0f" % q(0.5), p90_us="%.0f" % q(0.9),
                p99_us="%.0f" % q(0.99),
                mean_us="%.0f" % (statistics.mean(lat) if lat else 0))


def run_against(label, server, shim, puts, work, seconds):
    remote = "--remote=grpc://127.0.0.1:%d" % server.port
    deadline = time.monotonic() + seconds
    rows = []
    gets = [({"Command": "get", "ActionID": a}, None) for a, _, _, _ in puts]
    put_reqs = [({"Command": "put", "ActionID": a, "OutputID": o,
                  "BodySize": n}, b) for a, o, b, n in puts]
    dir_a = tempfile.mkdtemp(prefix="shim-a.", dir=work)
    a = Prog([shim, remote, "--dir=" + dir_a])
    rows.append(phase("put", a, put_reqs, lambda r: "Err" not in r, deadline))
    rows.append(phase("local_hit", a, gets, lambda r: "DiskPath" in r,
                      deadline))
    flush_ms = a.close() / 1e6
    dir_b = tempfile.mkdtemp(prefix="shim-b.", dir=work)
    b = Prog([shim, remote, "--dir=" + dir_b])
    rows.append(phase("remote_hit", b, gets, lambda r: "DiskPath" in r,
                      deadline))
    rng = random.Random(7)
    misses = [({"Command": "get", "ActionID": base64.b64encode(
        rng.randbytes(32)).decode()}, None) for _ in range(len(gets))]
    rows.append(phase("miss", b, misses, lambda r: r.get("Miss") is True,
                      deadline))
    b.close()
    print("shim_replay: %s: close of shim A (flush) took %.1f ms" %
          (label, flush_ms), file=sys.stderr)
    return [summarize(label, *r) for r in rows]


def pipe_floor(puts, seconds):
    cat = Prog(["cat"])
    gets = [({"Command": "get", "ActionID": a}, None) for a, _, _, _ in puts]
    row = phase("pipe_floor", cat, gets, lambda r: True,
                time.monotonic() + seconds)
    cat.proc.stdin.close()
    cat.proc.wait(timeout=10)
    return summarize("-", *row)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", help="stream recorded by shim_tee.sh")
    p.add_argument("--requests", type=int, default=1000,
                   help="puts replayed (and gets per get phase)")
    p.add_argument("--seconds", type=float, default=120,
                   help="time bound per server")
    p.add_argument("--peer", action="store_true", help="also bazel-remote")
    p.add_argument("--build", default=os.environ.get("CAIRN_BUILD", "build-bench"))
    p.add_argument("--out", default=os.path.join(ROOT, "build-bench", "bench-out"))
    a = p.parse_args()
    shim = find_binary([a.build + "/bin/cairn-gocacheprog",
                        "build/bin/cairn-gocacheprog"])
    cairn = find_binary([a.build + "/bin/cairn-server", "build/bin/cairn-server"])
    peer = find_binary(["build/peers/bin/bazel-remote"])
    if not shim or not cairn or (a.peer and not peer):
        sys.exit("shim_replay: missing cairn-gocacheprog, cairn-server or "
                 "bazel-remote")
    puts = (load_record(a.record, a.requests) if a.record
            else synthesize(a.requests, 1))
    print("shim_replay: %d puts, %d body bytes, from %s" %
          (len(puts), sum(n for *_, n in puts), a.record or "synthesis"),
          file=sys.stderr)
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="cairn-shim-replay.")
    servers = [Server("cairn", cairn, 20, work, a.out)]
    if a.peer:
        servers.append(Server("bazel-remote", peer, 20, work, a.out))
    rows = [pipe_floor(puts, a.seconds)]
    try:
        for s in servers:
            s.start()
            try:
                rows += run_against(s.label, s, shim, puts, work, a.seconds)
            finally:
                s.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cols = list(rows[0].keys())
    fmt = "%-12s %-11s %6s %5s %8s %8s %8s %8s"
    print(fmt % ("server", "phase", "n", "unexp", "p50 us", "p90 us", "p99 us",
                 "mean us"))
    for r in rows:
        print(fmt % tuple(r[c] for c in cols))
    with open(os.path.join(a.out, "shim_replay.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
