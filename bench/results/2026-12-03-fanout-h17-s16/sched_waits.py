#!/usr/bin/env python3
"""sched_waits.py DATA SERVER_PID LOADER_PID PROBE_PID: from `perf sched
record -a` data, per process the CPU time and scheduling delay, the delay
quantiles of the server's nexting_threads and of the probe's threads, and,
for their waits over 3 ms, which tasks held that CPU meanwhile."""
import collections, re, subprocess, sys

data, srv, ldr, prb = sys.argv[1:5]
out = subprocess.run(['perf', 'sched', 'timehist', '-i', data],
                     capture_output=True, text=True).stdout.splitlines()[3:]
rows = []
for line in out:
    f = line.split()
    if len(f) < 6:
        continue
    try:
        rows.append((float(f[0]) * 1000, f[1], f[2], float(f[-2]), float(f[-1])))
    except ValueError:
        pass


def who(task):
    m = re.match(r'(.*)\[(\d+)(?:/(\d+))?\]', task)
    return (m.group(1), m.group(3) or m.group(2)) if m else (task, '')


run, delay = collections.Counter(), collections.Counter()
for t, cpu, task, d, r in rows:
    name, pid = who(task)
    run[pid] += r
    delay[pid] += d
span = (rows[-1][0] - rows[0][0]) / 1000
print('%.2f s traced on 2 CPUs' % span)
for pid, label in ((srv, 'server'), (ldr, 'loader'), (prb, 'probe')):
    print('%-7s ran %7.1f ms, waited runnable %7.1f ms' % (label, run[pid], delay[pid]))


def waits(sel):
    return sorted(d for t, c, task, d, r in rows if sel(*who(task)))


for label, sel in (('server nexting_thread', lambda n, p: p == srv and n == 'nexting_thread'),
                   ('probe threads', lambda n, p: p == prb)):
    v = waits(sel)
    q = lambda x: v[min(len(v) - 1, int(len(v) * x))]
    print('%s: %d wake-ups, delay p50 %.3f p90 %.3f p99 %.3f max %.3f ms' % (
        label, len(v), q(.5), q(.9), q(.99), v[-1]))
bycpu = collections.defaultdict(list)
for x in rows:
    bycpu[x[1]].append(x)
held, n, total = collections.Counter(), 0, 0
for t, cpu, task, d, r in rows:
    name, pid = who(task)
    if d < 3 or not ((pid == srv and name == 'nexting_thread') or pid == prb):
        continue
    n += 1
    total += d
    start, end = t - r - d, t - r
    for t2, c2, task2, d2, r2 in bycpu[cpu]:
        ov = min(t2, end) - max(t2 - r2, start)
        if ov > 0:
            n2, p2 = who(task2)
            tag = {srv: 'server', ldr: 'loader', prb: 'probe'}.get(p2, 'other')
            held['%s %s' % (tag, n2)] += ov
print('%d waits over 3 ms (%.1f ms in all); on their CPU meanwhile, ms:' % (n, total))
for k, v in held.most_common(10):
    print('  %8.1f %s' % (v, k))
lr = sorted(r for t, c, task, d, r in rows if who(task)[1] == ldr)
print('loader stretches on a CPU: %d, p50 %.3f p99 %.3f max %.3f ms; %d over 3 ms, %.0f ms of %.0f' % (
    len(lr), lr[len(lr) // 2], lr[int(len(lr) * .99)], lr[-1],
    sum(x > 3 for x in lr), sum(x for x in lr if x > 3), sum(lr)))
