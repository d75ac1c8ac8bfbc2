#!/usr/bin/env python3
# loadsplit.py BINARY MIX: fresh server, reapi_load MIX at 32 streams 5 s, then VmHWM/RssFile/RssAnon and top mappings
import os, socket, subprocess, sys, tempfile, time, collections, shutil
binary, mix = sys.argv[1], sys.argv[2]
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
d = tempfile.mkdtemp(prefix="h13split")
p = subprocess.Popen([binary, f"--listen=127.0.0.1:{port}", f"--dir={d}", "--max_size=20GiB"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(0.5)
out = subprocess.run(["/work/wt-h13/build/bin/reapi_load", f"--target=grpc://127.0.0.1:{port}", f"--mix={mix}", "--concurrency=32", "--duration=5", "--requests=20000", f"--server_pid={p.pid}"], capture_output=True, text=True).stdout
print(out.strip().splitlines()[-1])
st = {}
for line in open(f"/proc/{p.pid}/status"):
    k, _, v = line.partition(":")
    if k in ("VmHWM", "VmRSS", "RssFile", "RssAnon", "Threads"): st[k] = v.strip()
print(st)
libs = collections.Counter(); cur = None
for line in open(f"/proc/{p.pid}/smaps"):
    parts = line.split()
    if "-" in parts[0] and not parts[0].endswith(":"):
        cur = os.path.basename(parts[5]) if len(parts) > 5 else "[anon]"
    elif parts[0] == "Rss:":
        libs[cur] += int(parts[1])
for k, v in libs.most_common(12): print(f"  {k:36s} {v/1024:6.2f}")
p.terminate(); p.wait(); shutil.rmtree(d, ignore_errors=True)
