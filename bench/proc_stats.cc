#include "bench/proc_stats.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace cairn::bench {
namespace {

// The fields of a /proc stat file after the command name, the first being
// field 3 (state); empty when unreadable.
std::vector<std::string> StatFields(const std::string& path) {
  std::ifstream in(path);
  std::string all((std::istreambuf_iterator<char>(in)),
                  std::istreambuf_iterator<char>());
  size_t paren = all.rfind(')');
  if (paren == std::string::npos || paren + 2 > all.size()) {
    return {};
  }
  return absl::StrSplit(all.substr(paren + 2), ' ', absl::SkipEmpty());
}

}  // namespace

double ProcCpuSeconds(int pid) {
  // utime is field 14, stime 15.
  std::vector<std::string> f = StatFields(absl::StrCat("/proc/", pid, "/stat"));
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

std::string ProcSchedClasses(int pid) {
  static const char* const kPolicies[] = {"other", "fifo", "rr",      "batch",
                                          "iso",   "idle", "deadline"};
  std::set<std::string> classes;
  std::error_code ec;
  for (std::filesystem::directory_iterator
           it(absl::StrCat("/proc/", pid, "/task"), ec),
       end;
       !ec && it != end; it.increment(ec)) {
    // nice is field 19, policy field 41.
    std::vector<std::string> f = StatFields(it->path().string() + "/stat");
    int nice = 0, policy = -1;
    if (f.size() < 39 || !absl::SimpleAtoi(f[16], &nice) ||
        !absl::SimpleAtoi(f[38], &policy) || policy < 0 || policy > 6) {
      continue;
    }
    classes.insert(nice == 0 ? kPolicies[policy]
                             : absl::StrCat(kPolicies[policy], " nice ", nice));
  }
  return absl::StrJoin(classes, "+");
}

void ResetPeakRss(int pid) {
  std::ofstream out(absl::StrCat("/proc/", pid, "/clear_refs"));
  out << "5";
}

}  // namespace cairn::bench
