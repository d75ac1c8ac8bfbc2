#include "tests/testutil/rgw_cluster.h"

#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace cairn::testutil {
namespace {

#ifdef CAIRN_RGW_SCRIPT
constexpr const char* kScript = CAIRN_RGW_SCRIPT;
#else
constexpr const char* kScript = "";
#endif

// Runs `command`, returning its stdout and exit code.
std::pair<std::string, int> Run(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) {
    return {"", -1};
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) {
    out.append(buf, n);
  }
  int status = pclose(p);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

RgwCluster* g_cluster = nullptr;

}  // namespace

RgwCluster& RgwCluster::Get() {
  static RgwCluster* cluster = [] {
    g_cluster = new RgwCluster();
    std::atexit([] { delete g_cluster; });
    return g_cluster;
  }();
  return *cluster;
}

RgwCluster::RgwCluster() {
  if (std::string(kScript).empty()) {
    skip_reason_ = "built without tools/rgw.sh (CAIRN_RGW_SCRIPT)";
    return;
  }
  auto [out, code] = Run(absl::StrCat(kScript, " start 2>&1"));
  if (code == 77) {
    skip_reason_ = "Ceph RGW not installed (tools/install-deps.sh --s3)";
    return;
  }
  installed_ = true;
  std::string line;
  for (absl::string_view l : absl::StrSplit(out, '\n')) {
    std::string value;
    auto take = [&](absl::string_view key, std::string* field) {
      if (absl::ConsumePrefix(&l, key)) {
        *field = std::string(l);
      }
    };
    take("dir=", &dir_);
    take("endpoint=", &endpoint_);
    take("bucket=", &bucket_);
    take("access_key=", &access_key_);
    take("secret_key=", &secret_key_);
    take("region=", &region_);
  }
  if (code != 0 || endpoint_.empty() || dir_.empty()) {
    skip_reason_ =
        absl::StrCat("tools/rgw.sh start failed (exit ", code, "): ", out);
  }
}

RgwCluster::~RgwCluster() {
  if (!dir_.empty()) {
    Run(absl::StrCat(kScript, " stop ", dir_, " 2>&1"));
  }
}

cas::S3ClientOptions RgwCluster::ClientOptions() const {
  cas::S3ClientOptions o;
  o.endpoint = endpoint_;
  o.bucket = bucket_;
  o.region = region_;
  o.path_style = true;
  o.credentials = {access_key_, secret_key_, ""};
  o.request_timeout = absl::Seconds(2);
  o.stall_timeout = absl::Seconds(2);
  return o;
}

int RgwCluster::gateway_pid() const {
  std::ifstream in(absl::StrCat(dir_, "/run/client.rgw.a.pid"));
  int pid = -1;
  in >> pid;
  return pid;
}

bool RgwCluster::SignalGateway(int signal) const {
  int pid = gateway_pid();
  return pid > 0 && kill(pid, signal) == 0;
}

bool RgwCluster::RestartGateway() {
  return Run(absl::StrCat(kScript, " gw ", dir_, " 2>&1")).second == 0;
}

}  // namespace cairn::testutil
