#define _GNU_SOURCE
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/resource.h>
struct sched_attr { uint32_t size, sched_policy; uint64_t sched_flags; int32_t sched_nice; uint32_t sched_priority; uint64_t sched_runtime, sched_deadline, sched_period; uint32_t util_min, util_max; };
int main(int argc, char** argv) {
  // slice TID NS
  int tid = atoi(argv[1]); uint64_t ns = strtoull(argv[2], 0, 10);
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, tid);
  struct sched_attr a; memset(&a, 0, sizeof a); a.size = sizeof a; a.sched_policy = 0; a.sched_nice = nice; a.sched_runtime = ns;
  a.sched_flags = 0;
  if (syscall(SYS_sched_setattr, tid, &a, 0) != 0) { perror("sched_setattr"); return 1; }
  return 0;
}
