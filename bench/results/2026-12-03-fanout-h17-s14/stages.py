#!/usr/bin/env python3
"""stages.py DIR SERVER_FD PROBE_FD: splits each probe GetActionResult recorded in DIR/perf.txt
(perf script of diag.sh's trace) into stages, with what the thread that did
the next step was doing meanwhile (running / runnable-waiting / sleeping).

  A  call start -> probe's request sendmsg
  B  request sent -> server thread's recvmsg that read it
  C  server read -> server's sendmsg of the answer
  D  answer sent -> probe's recvmsg that read it
  E  probe read -> call end (the probe thread sees the answer)
"""
import re, sys, bisect, collections
d = sys.argv[1]
meta = open(f'{d}/meta').read()
spid = int(re.search(r'server (\d+)', meta).group(1))
ppid = int(re.search(r'probe (\d+)', meta).group(1))
sfd, pfd = int(sys.argv[2]), int(sys.argv[3])
line_re = re.compile(r'^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$')
events = []
for ln in open(f'{d}/perf.txt'):
    m = line_re.match(ln)
    if m:
        comm, pid, tid, cpu, t, ev, tr = m.groups()
        events.append((float(t), int(pid), int(tid), ev, tr, comm.strip()))
events.sort(key=lambda e: e[0])
t_first, t_last = events[0][0], events[-1][0]
# Thread state timelines.
state = {}          # tid -> (state, since)
spans = collections.defaultdict(list)  # tid -> [(t0, t1, state)]
comm_of = {}
pid_of = {}
def setst(tid, st, t):
    old = state.get(tid)
    if old is not None and old[1] < t:
        spans[tid].append((old[1], t, old[0]))
    state[tid] = (st, t)
pending_recv = {}   # tid -> fd
pending_send = {}
sends = collections.defaultdict(list)  # (pid, fd) -> [(t, tid)]
recvs = collections.defaultdict(list)  # (pid, fd) -> [(t_exit, tid, ret)]
polls = []  # server epoll_wait exits with events: (t, tid)
prio_of = {}
for t, pid, tid, ev, tr, comm in events:
    pid_of[tid] = pid; comm_of.setdefault(tid, comm)
    if ev == 'sched:sched_switch':
        m = re.search(r'prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)', tr)
        prev, pst, nxt = int(m.group(2)), m.group(3), int(m.group(5))
        comm_of.setdefault(prev, m.group(1)); comm_of.setdefault(nxt, m.group(4))
        mp = re.search(r'prev_prio=(\d+)', tr)
        prio_of[prev] = int(mp.group(1))
        setst(prev, 'wait' if pst.startswith('R') else 'sleep', t)
        setst(nxt, 'run', t)
    elif ev in ('sched:sched_wakeup', 'sched:sched_wakeup_new'):
        m = re.search(r'comm=(.*?) pid=(\d+)', tr)
        w = int(m.group(2)); comm_of.setdefault(w, m.group(1))
        if state.get(w, ('sleep',))[0] != 'run':
            setst(w, 'wait', t)
    elif ev in ('syscalls:sys_enter_recvmsg', 'syscalls:sys_enter_sendmsg'):
        fd = int(re.search(r'fd: (0x[0-9a-f]+)', tr).group(1), 16)
        if ev.endswith('recvmsg'):
            pending_recv[tid] = fd
        else:
            sends[(pid, fd)].append((t, tid))
    elif ev == 'syscalls:sys_exit_epoll_wait':
        if pid == spid and int(tr.split()[0], 16) not in (0,) and int(tr.split()[0], 16) < 2**63:
            polls.append((t, tid))
    elif ev == 'syscalls:sys_exit_recvmsg':
        fd = pending_recv.pop(tid, None)
        ret = int(tr.split()[0], 16)
        if ret >= 2**63: ret -= 2**64
        if fd is not None:
            recvs[(pid, fd)].append((t, tid, ret))
for tid, (st, since) in state.items():
    spans[tid].append((since, t_last, st))
def states(tid, a, b):
    out = collections.Counter()
    for s0, s1, st in spans.get(tid, []):
        lo, hi = max(a, s0), min(b, s1)
        if hi > lo:
            out[st] += hi - lo
    return out
def first_after(lst, t, pred=lambda e: True):
    for e in lst:
        if e[0] >= t and pred(e):
            return e
    return None
calls = []
for ln in open(f'{d}/probe.log'):
    f = ln.split()
    if f[1] != 'load' or len(f) < 5:
        continue
    us, start = int(f[3]), int(f[4])
    t0 = start / 1e6; t1 = t0 + us / 1e6
    if t0 < t_first + 0.01 or t1 > t_last - 0.01:
        continue
    calls.append((t0, t1, us))
rows = []
ps = sends[(ppid, pfd)]; sr = recvs[(spid, sfd)]; ss_ = sends[(spid, sfd)]; pr = recvs[(ppid, pfd)]
for t0, t1, us in calls:
    a = first_after(ps, t0)
    if not a or a[0] > t1: continue
    b = first_after(sr, a[0], lambda e: e[2] > 0)
    if not b or b[0] > t1: continue
    c = first_after(ss_, b[0])
    if not c or c[0] > t1: continue
    dd = first_after(pr, c[0], lambda e: e[2] > 0)
    if not dd or dd[0] > t1: continue
    pe = first_after(polls, a[0])
    poll_t = (pe[0] - a[0]) if pe and pe[0] <= b[0] else None
    poll_tid = pe[1] if pe and pe[0] <= b[0] else None
    rows.append(dict(poll=poll_t, poll_tid=poll_tid, pollst=states(poll_tid, a[0], pe[0]) if poll_tid else {},
        us=us, t0=t0, A=a[0]-t0, B=b[0]-a[0], C=c[0]-b[0], D=dd[0]-c[0], E=t1-dd[0],
        srv_tid=b[1], srv_send_tid=c[1], probe_tid=dd[1],
        srvB=states(b[1], a[0], b[0]), srvC=states(b[1], b[0], c[0]),
        prD=states(dd[1], c[0], dd[0])))
print(f'{len(calls)} load calls in the trace window, {len(rows)} matched')
rows.sort(key=lambda r: -r['us'])
def ms(x): return f'{x*1e3:6.2f}'
print('   us      A      B      C      D      E | B: srv thread run/wait/sleep | C: run/wait/sleep | D: probe rd thread run/wait/sleep | first server epoll return after send: ms, thread(prio) run/wait/sleep before it')
for r in rows[:max(5, len(rows)//20)]:
    sb, sc, pd = r['srvB'], r['srvC'], r['prD']
    print(f"{r['us']:6d} {ms(r['A'])} {ms(r['B'])} {ms(r['C'])} {ms(r['D'])} {ms(r['E'])} | {comm_of.get(r['srv_tid'],'?')[:14]:14s} {ms(sb['run'])}/{ms(sb['wait'])}/{ms(sb['sleep'])} | {ms(sc['run'])}/{ms(sc['wait'])}/{ms(sc['sleep'])} {comm_of.get(r['srv_send_tid'],'?')[:10]} | {comm_of.get(r['probe_tid'],'?')[:12]} {ms(pd['run'])}/{ms(pd['wait'])}/{ms(pd['sleep'])} | " + (f"{ms(r['poll'])} {comm_of.get(r['poll_tid'],'?')[:10]}({prio_of.get(r['poll_tid'],'?')}) " + '/'.join(ms(r['pollst'].get(k,0)) for k in ('run','wait','sleep')) if r['poll'] is not None else '-'))
n = len(rows)
if n:
    for key in 'ABCDE':
        v = sorted(r[key] for r in rows)
        print(f'{key}: p50 {ms(v[n//2])} p90 {ms(v[int(n*.9)])} p99 {ms(v[min(n-1,int(n*.99))])} mean {ms(sum(v)/n)}')
    top = rows[:max(1, n//20)]
    print(f'slowest 5% ({len(top)} calls, mean {sum(r["us"] for r in top)/len(top)/1e3:.2f} ms): mean stage ms ' +
          ' '.join(f'{k} {sum(r[k] for r in top)/len(top)*1e3:.2f}' for k in 'ABCDE'))
    agg = collections.Counter()
    for r in top:
        agg.update({f'B_{k}': v for k, v in r['srvB'].items()}); agg.update({f'C_{k}': v for k, v in r['srvC'].items()}); agg.update({f'D_{k}': v for k, v in r['prD'].items()})
    print('  slowest 5%: mean ms ' + ' '.join(f'{k} {v/len(top)*1e3:.2f}' for k, v in sorted(agg.items())))
# CPU time in the window by process, from each CPU's switch sequence.
cur = {}  # cpu -> (pid, since)
cpu_time = collections.Counter()
fanout_pid = int(re.search(r'fanout (\d+)', meta).group(1))
def owner(pid):
    return {spid: 'server', ppid: 'probe', fanout_pid: 'fanout (readers)',
            0: 'idle'}.get(pid, 'other')
tgid = {}
for t, pid, tid, ev, tr, comm in events:
    tgid[tid] = pid
for ln in open(f'{d}/perf.txt'):
    m = line_re.match(ln)
    if not m or m.group(6) != 'sched:sched_switch':
        continue
    cpu, t = int(m.group(4)), float(m.group(5))
    nxt = int(re.search(r'next_pid=(\d+)', m.group(7)).group(1))
    if cpu in cur:
        cpu_time[owner(tgid.get(cur[cpu][0], -1) if cur[cpu][0] else 0)] += t - cur[cpu][1]
    cur[cpu] = (nxt, t)
win = t_last - t_first
total = sum(cpu_time.values())
print(f'CPU time in the {win:.2f} s window ({total:.2f} CPU-s over both cores): ' +
      ', '.join(f'{k} {v:.2f} s ({100*v/total:.0f}%)' for k, v in cpu_time.most_common()))
