#!/usr/bin/env python3
"""table.py FINAL_OUT OUT_DIR: the Markdown rows of ab.sh's lines in
FINAL_OUT (final.sh's output), with the loaded probe calls over 100 ms from
each run's OUT_DIR/fanout/CFG-*/probe.log."""
import glob, os, sys

COLS = ('label scenario clients slow rss_before_mib peak_rss_mib fast_mib_s '
        'slow_mib_s fast_done slow_done calls_s calls_ac_p99_ms '
        'calls_batch_p99_ms idle_ac_p99_ms load_ac_p99_ms ac_p99_ratio '
        'idle_batch_p99_ms load_batch_p99_ms cut errors loader loader_threads '
        'loader_cpus loader_sched probe_sched').split()
SETUP = {'i': 'unpinned, loader SCHED_IDLE', 'q': 'pinned',
         'k': 'unpinned, same priority'}
SERVER = {'a': 'cairn', 'r': 'bazel-remote'}
dirs = sorted((d for d in glob.glob(os.path.join(sys.argv[2], 'fanout', '??-*'))
               if os.path.exists(os.path.join(d, 'time.txt'))),  # this ab.sh's
              key=lambda p: p.rsplit('-', 1)[1])
n = 0
for line in open(sys.argv[1]):
    parts = [p.strip() for p in line.split('|')]
    if len(parts[0]) < 2 or parts[0][:2] not in (
            a + m for a in SERVER for m in SETUP):
        continue
    cfg, t = parts[0].split()[:2]
    d = dirs[n] if n < len(dirs) else ''
    n += 1
    if len(parts) < len(COLS) + 4:
        print('| %s | %s | %s | failed: %s |' % (
            t[:5], SERVER[cfg[0]], SETUP[cfg[1]], ' '.join(parts[1:])[:80]))
        continue
    r = dict(zip(COLS, parts[1:1 + len(COLS)]))
    pct = parts[1 + len(COLS)].split()
    over = '-'
    if os.path.basename(d).startswith(cfg):
        us = [int(l.split()[3]) for l in open(os.path.join(d, 'probe.log'))
              if l.split()[1] == 'load']
        over = '%d (%.0f)' % (sum(u > 100000 for u in us), max(us) / 1000)
    srv = parts[-3].split()  # srv cpu Xs wait Ys
    usr = parts[-2].split()  # loader user U sys S
    print('| %s | %s | %s | %s / %s | %s -> %s | %sx | %s / %s | %s | %s | '
          '%s / %s | %s / %s | %s | %s | %s | %s | %s |' % (
              t[:5], SERVER[cfg[0]], SETUP[cfg[1]], r['loader_sched'],
              r['probe_sched'], r['idle_ac_p99_ms'], r['load_ac_p99_ms'],
              r['ac_p99_ratio'], pct[1], pct[3], over, r['loader_cpus'],
              usr[2], usr[4], srv[2].rstrip('s'), srv[4].rstrip('s'),
              r['fast_mib_s'], r['slow_mib_s'], r['peak_rss_mib'],
              r['errors'], parts[-1].replace('load ', '')))
