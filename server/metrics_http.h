// A tiny HTTP endpoint (cpp-httplib) serving GET /metrics in the Prometheus
// text format from a Registry, and GET /healthz. Runs on its own thread.
//
// Thread safety: Start and Stop are called from one thread; the handler runs
// on httplib's threads and only reads the registry.
#ifndef CAIRN_SERVER_METRICS_HTTP_H_
#define CAIRN_SERVER_METRICS_HTTP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "rpc/metrics.h"

namespace cairn::server {

class MetricsHttpServer {
 public:
  virtual ~MetricsHttpServer() = default;
  // Returns the bound port.
  virtual int port() const = 0;
  // Stops serving and joins the thread. Idempotent; also run by the destructor.
  virtual void Stop() = 0;
};

// Starts serving `registry` on `listen` ("HOST:PORT"; port 0 picks one).
// INVALID_ARGUMENT for a malformed address, UNAVAILABLE when it cannot bind.
// `registry` is not owned and must outlive the returned server.
absl::StatusOr<std::unique_ptr<MetricsHttpServer>> StartMetricsHttpServer(
    absl::string_view listen, const rpc::Registry* registry);

}  // namespace cairn::server

#endif  // CAIRN_SERVER_METRICS_HTTP_H_
