#include "bench/proc_stats.h"

#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace cairn::bench {

double ProcCpuSeconds(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string all((std::istreambuf_iterator<char>(in)),
                  std::istreambuf_iterator<char>());
  size_t paren = all.rfind(')');
  if (paren == std::string::npos || paren + 2 > all.size()) {
    return 0;
  }
  // Fields after the command name start at field 3 (state); utime is 14.
  std::vector<std::string> f =
      absl::StrSplit(all.substr(paren + 2), ' ', absl::SkipEmpty());
  double utime = 0, stime = 0;
  if (f.size() < 13 || !absl::SimpleAtod(f[11], &utime) ||
      !absl::SimpleAtod(f[12], &stime)) {
    return 0;
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double ProcStatusMib(int pid, absl::string_view key) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, key)) {
      std::vector<std::string> f =
          absl::StrSplit(line, ' ', absl::SkipWhitespace());
      double kib = 0;
      if (f.size() >= 2 && absl::SimpleAtod(f[1], &kib)) {
        return kib / 1024;
      }
    }
  }
  return 0;
}

void ResetPeakRss(int pid) {
  std::ofstream out(absl::StrCat("/proc/", pid, "/clear_refs"));
  out << "5";
}

}  // namespace cairn::bench
