// Reads a server process's CPU time and memory from /proc, for the load
// generators (bench/reapi_load.cc, bench/fanout.cc) to print beside their rows.
//
// Plain functions over Linux's /proc files: each call opens and reads the
// file afresh, so they are safe to call from any thread. A process that is
// gone or a file that cannot be read gives 0 (the figures are then left out of
// the row), never an error.
#ifndef CAIRN_BENCH_PROC_STATS_H_
#define CAIRN_BENCH_PROC_STATS_H_

#include <string>

#include "absl/strings/string_view.h"

namespace cairn::bench {

// Returns utime+stime of `pid` in seconds (from /proc/PID/stat); 0 when
// unreadable.
double ProcCpuSeconds(int pid);

// Returns the "`key`" line of /proc/PID/status (e.g. "VmHWM:" for the peak
// RSS, "VmRSS:" for the current one) in MiB; 0 when unreadable.
double ProcStatusMib(int pid, absl::string_view key);

// Returns how `pid`'s threads are scheduled now (/proc/PID/task/*/stat):
// the distinct policies ("other", "batch", "idle", "fifo", "rr",
// "deadline"), each followed by " nice N" when N is not 0, sorted and joined
// by "+": e.g. "idle", or "other+other nice 19"; "" when unreadable.
std::string ProcSchedClasses(int pid);

// Resets the peak RSS of `pid` (writes 5 to /proc/PID/clear_refs), so that
// VmHWM covers only what follows.
void ResetPeakRss(int pid);

}  // namespace cairn::bench

#endif  // CAIRN_BENCH_PROC_STATS_H_
