#!/usr/bin/env python3
"""block_stacks.py ST.TXT: why gRPC's nexting_threads stopped running, from
`perf script -F tid,time,trace,ip,sym,dso` of block.sh's sched_switch
stacks: preempted (still runnable) or asleep, and where (the first user
frames below libc/absl's wait, with the lock's caller for mutex waits)."""
import collections, re, sys
c = collections.Counter()
for b in open(sys.argv[1]).read().split('\n\n'):
    lines = b.strip().split('\n')
    if not lines or 'prev_state=' not in lines[0]:
        continue
    if re.search(r'prev_state=(\S+)', lines[0]).group(1).startswith('R'):
        c[('preempted (runnable)',)] += 1
        continue
    frames = []
    for l in lines[1:]:
        p = l.split(None, 1)
        if len(p) == 2 and '[kernel' not in p[1]:
            frames.append(re.sub(r'\+0x[0-9a-f]+', '', p[1])[:100])
    mutex = any('LockSlow' in f for f in frames)
    keep = [f for f in frames if not re.search(r'absl::|Absl|^syscall|futex_wait|lll_lock', f)]
    c[(('mutex wait: ' if mutex else 'sleep: ') + ' < '.join(keep[:4]),)] += 1
total = sum(c.values())
for k, v in c.most_common(12):
    print(f'{v:6d} {100*v/total:5.1f}%  {k[0]}')
