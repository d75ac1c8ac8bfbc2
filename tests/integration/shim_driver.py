#!/usr/bin/env python3
"""Drives cairn-gocacheprog over its GOCACHEPROG protocol, as the go command
does, and checks how long answers take (remote_faults_test.sh).

  shim_driver.py fill N -- SHIM FLAGS...   puts N bodies (100 KiB steps)
  shim_driver.py get N BOUND MIN_HITS -- SHIM FLAGS...
      asks for the N entries at once; fails unless every answer (and close)
      comes within BOUND seconds of its request, the shim exits 0, and at
      least MIN_HITS answers are hits with the right bytes.
Prints one line: hits, misses, slowest answer, close time.
"""
import base64
import hashlib
import json
import subprocess
import sys
import time


def body(i):
    out, block = [], hashlib.sha256(b"body %d" % i).digest()
    for _ in range((i + 1) * 100 * 1024 // 32):
        block = hashlib.sha256(block).digest()
        out.append(block)
    return b"".join(out)


def action(i):
    return hashlib.sha256(b"action %d" % i).digest()


def b64(data):
    return base64.b64encode(data).decode()


def main():
    mode, n = sys.argv[1], int(sys.argv[2])
    cut = sys.argv.index("--")
    args, cmd = sys.argv[3:cut], sys.argv[cut + 1:]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    hello = json.loads(proc.stdout.readline())
    assert hello.get("KnownCommands"), hello

    def send(obj, extra=b""):
        proc.stdin.write(json.dumps(obj).encode() + b"\n\n" + extra)
        proc.stdin.flush()

    sent, answers = {}, {}
    if mode == "fill":
        for i in range(n):
            data = body(i)
            send({"ID": i + 1, "Command": "put", "ActionID": b64(action(i)),
                  "OutputID": b64(hashlib.sha256(data).digest()),
                  "BodySize": len(data)}, b'"' + b64(data).encode() + b'"\n')
            answers[i + 1] = json.loads(proc.stdout.readline())
    else:
        for i in range(n):
            sent[i + 1] = time.monotonic()
            send({"ID": i + 1, "Command": "get", "ActionID": b64(action(i))})
        slowest = 0.0
        while len(answers) < n:
            r = json.loads(proc.stdout.readline())
            answers[r["ID"]] = r
            slowest = max(slowest, time.monotonic() - sent[r["ID"]])
    t = time.monotonic()
    send({"ID": n + 1, "Command": "close"})
    closed = json.loads(proc.stdout.readline())
    close_time = time.monotonic() - t
    code = proc.wait(timeout=60)
    errors = [a for a in answers.values() if a.get("Err")]
    hits = 0
    for i, a in answers.items():
        if mode == "get" and "DiskPath" in a:
            with open(a["DiskPath"], "rb") as f:
                if f.read() != body(i - 1):
                    sys.exit("FAIL: wrong bytes for entry %d" % (i - 1))
            hits += 1
    if mode == "fill":
        print("filled %d entries, close %.2fs" % (n, close_time))
        ok = code == 0 and not errors and closed == {"ID": n + 1}
        sys.exit(0 if ok else "FAIL: fill: exit %d errors %s" % (code, errors))
    bound, min_hits = float(args[0]), int(args[1])
    print("hits=%d misses=%d slowest=%.2fs close=%.2fs exit=%d" %
          (hits, n - hits, slowest, close_time, code))
    problems = []
    if code != 0 or errors or closed != {"ID": n + 1}:
        problems.append("exit %d, errors %s, close %s" % (code, errors, closed))
    if slowest > bound or close_time > bound:
        problems.append("an answer took longer than %.1fs" % bound)
    if hits < min_hits:
        problems.append("%d hits, want at least %d" % (hits, min_hits))
    if problems:
        sys.exit("FAIL: " + "; ".join(problems))


if __name__ == "__main__":
    main()
