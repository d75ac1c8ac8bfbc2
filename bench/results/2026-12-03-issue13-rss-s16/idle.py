#!/usr/bin/env python3
"""idle.py BINARY [N]: starts BINARY --listen=127.0.0.1:PORT --dir=TMP N times; per run prints
time to listen (ms), VmHWM, RssFile, RssAnon (MiB) 1 s after listening; the last run's top libraries."""
import os, socket, subprocess, sys, tempfile, time, collections, shutil
binary = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 3
extra = sys.argv[3:]
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
for i in range(n):
    d = tempfile.mkdtemp(prefix="h13idle")
    port = free_port()
    t0 = time.monotonic()
    p = subprocess.Popen([binary, f"--listen=127.0.0.1:{port}", f"--dir={d}"] + extra,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.05).close(); break
        except OSError:
            if p.poll() is not None: sys.exit("server exited")
            time.sleep(0.002)
    t_listen = (time.monotonic() - t0) * 1000
    time.sleep(1)
    st = {}
    for line in open(f"/proc/{p.pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmHWM", "VmRSS", "RssFile", "RssAnon"): st[k] = int(v.split()[0]) / 1024
    libs = collections.Counter(); cur = None
    for line in open(f"/proc/{p.pid}/smaps"):
        parts = line.split()
        if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
            cur = parts[5] if len(parts) > 5 else "[anon]"
        elif parts[0] == "Rss:":
            libs[os.path.basename(cur)] += int(parts[1])
    nlibs = sum(1 for k in libs if ".so" in k)
    p.terminate(); p.wait(); shutil.rmtree(d, ignore_errors=True)
    print(f"run {i}: listen {t_listen:.0f} ms  VmHWM {st['VmHWM']:.1f}  VmRSS {st['VmRSS']:.1f}  RssFile {st['RssFile']:.1f}  RssAnon {st['RssAnon']:.1f}  mapped .so {nlibs}")
for k, v in libs.most_common(14):
    print(f"  {k:40s} {v/1024:6.2f}")
