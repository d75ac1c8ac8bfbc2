// RgwCluster: one throwaway Ceph RGW (tools/rgw.sh) per test binary, started
// on first use and stopped at exit, for tests of the shared S3 tier against a
// real engine that checks signatures. Tests call RgwCluster::Get() and skip
// (GTEST_SKIP with skip_reason()) when Ceph is not installed, or fail when it
// is but the cluster did not start.
//
// Thread safety: Get() is safe from any thread; the cluster is read-only
// afterwards except Signal(), which a test uses from its own thread.
#ifndef CAIRN_TESTS_TESTUTIL_RGW_CLUSTER_H_
#define CAIRN_TESTS_TESTUTIL_RGW_CLUSTER_H_

#include <string>

#include "cas/s3_client.h"

// In a test's SetUp(): skips when Ceph is not installed, fails when it is but
// the cluster did not start.
#define CAIRN_REQUIRE_RGW()                   \
  do {                                        \
    ::cairn::testutil::RgwCluster& rgw_ =     \
        ::cairn::testutil::RgwCluster::Get(); \
    if (!rgw_.ok()) {                         \
      if (rgw_.installed()) {                 \
        FAIL() << rgw_.skip_reason();         \
      }                                       \
      GTEST_SKIP() << rgw_.skip_reason();     \
    }                                         \
  } while (0)

namespace cairn::testutil {

class RgwCluster {
 public:
  // Returns the binary's cluster, starting it the first time (about 15-20 s).
  static RgwCluster& Get();

  bool ok() const { return skip_reason_.empty(); }
  // False when Ceph is not installed or the build has no tools/rgw.sh: a test
  // skips then; when installed but not ok(), a test fails.
  bool installed() const { return installed_; }
  // Why the cluster is unavailable (Ceph not installed, start failed).
  const std::string& skip_reason() const { return skip_reason_; }

  const std::string& endpoint() const { return endpoint_; }
  const std::string& bucket() const { return bucket_; }
  const std::string& access_key() const { return access_key_; }
  const std::string& secret_key() const { return secret_key_; }
  const std::string& region() const { return region_; }

  // Returns client options for the cluster's bucket (path style, the
  // user's keys, 2 s deadlines).
  cas::S3ClientOptions ClientOptions() const;

  // Returns radosgw's pid (changes after RestartGateway()).
  int gateway_pid() const;
  // Sends `signal` to radosgw (SIGSTOP/SIGCONT/SIGKILL). Returns false when
  // it has no pid.
  bool SignalGateway(int signal) const;
  // Starts radosgw again after it was killed, on the same port. Returns
  // false when it does not answer within 30 s.
  bool RestartGateway();

 private:
  RgwCluster();
  ~RgwCluster();

  std::string dir_;
  std::string skip_reason_;
  bool installed_ = false;
  std::string endpoint_, bucket_, access_key_, secret_key_, region_;
};

}  // namespace cairn::testutil

#endif  // CAIRN_TESTS_TESTUTIL_RGW_CLUSTER_H_
