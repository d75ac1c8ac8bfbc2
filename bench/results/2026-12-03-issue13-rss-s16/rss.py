#!/usr/bin/env python3
# rss.py RAW.CSV: median peak RSS and CPU/op per (mix, conc) for cairn, cairn-base, bazel-remote
import csv, sys, statistics, collections
d = collections.defaultdict(list)
for r in csv.DictReader(open(sys.argv[1])):
    d[(r['mix'], r['concurrency'], r['label'])].append((float(r['server_peak_rss_mib']), float(r['server_cpu_us_per_op'])))
keys = sorted({(m, c) for m, c, _ in d}, key=lambda k: (k[0], int(k[1])))
print(f"{'mix':14s} {'conc':>4s} | {'RSS base':>8s} {'RSS new':>8s} {'RSS b-r':>8s} | new-base  new/b-r | runs")
for m, c in keys:
    def med(l, i): return statistics.median(x[i] for x in d[(m, c, l)]) if d[(m, c, l)] else float('nan')
    b, n, p = med('cairn-base', 0), med('cairn', 0), med('bazel-remote', 0)
    print(f"{m:14s} {c:>4s} | {b:8.1f} {n:8.1f} {p:8.1f} | {n-b:+7.1f}  {n/p:6.2f} | {len(d[(m,c,'cairn')])} raw new: {[x[0] for x in d[(m,c,'cairn')]]} base: {[x[0] for x in d[(m,c,'cairn-base')]]} b-r: {[x[0] for x in d[(m,c,'bazel-remote')]]}")
