#!/usr/bin/env python3
"""table.py FINAL_OUT [OUT_DIR]: the Markdown rows of ab.sh's lines in
FINAL_OUT (final.sh's output); with OUT_DIR (final.sh's OUT/fanout) also
the loaded calls over 100 ms from each run's probe.log."""
import glob, os, sys
dirs = sorted(glob.glob(os.path.join(sys.argv[2], 'a?-*')),
              key=lambda p: p.rsplit('-', 1)[1]) if len(sys.argv) > 2 else []
n = 0
MODES = {'u': ('unpinned', 'threads'), 'k': ('unpinned', 'callback'),
         'p': ('pinned', 'threads'), 'q': ('pinned', 'callback')}
for line in open(sys.argv[1]):
    parts = [p.strip() for p in line.split('|')]
    if not parts[0][:2] in ('au', 'ak', 'ap', 'aq'):
        continue
    if len(parts) < 20:  # A run that failed (its directory still counts).
        print('| %s | %s: %s |' % (parts[0].split()[1][:5], parts[0][:2],
                                   parts[1][:60]))
        n += 1
        continue
    cfg, t = parts[0].split()[:2]
    row = parts[1:24]
    (label, scen, clients, slow, rss0, peak, fast, slowm, fd, sd, cs, cac,
     cb, idle, load, ratio, ib, lb, cut, err, loader, lthreads, lcpu) = row
    pct = parts[24].split()
    over = '-'
    if n < len(dirs) and os.path.basename(dirs[n]).startswith(cfg):
        us = [int(l.split()[3]) for l in open(os.path.join(dirs[n], 'probe.log'))
              if l.split()[1] == 'load']
        over = '%d (%.0f)' % (sum(u > 100000 for u in us), max(us) / 1000)
    n += 1
    mode, ld = MODES[cfg[1]]
    ldavg = parts[-1].replace('load ', '')
    print('| %s | %s | %s | %s -> %s | %sx | %s / %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
        t[:5], mode, ld, idle, load, ratio, pct[1], pct[3], over, lthreads, lcpu,
        fast, slowm, peak, err, ldavg))
