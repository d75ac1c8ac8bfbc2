// gRPC server interceptor that records per-RPC metrics into a Registry:
//   cairn_grpc_requests_total{service,method,code}
//   cairn_grpc_request_duration_seconds{service,method} (histogram)
//   cairn_grpc_received_bytes_total /
//   cairn_grpc_sent_bytes_total{service,method}
//   cairn_grpc_in_flight{service,method}
//   cairn_cache_requests_total{cache="ac"|"cas",result="hit"|"miss"}
// Cache hits and misses are read from the REAPI messages themselves
// (GetActionResult status, FindMissingBlobs and BatchReadBlobs answers,
// ByteStream Read status), so the services stay free of metrics code.
// When an access logger is given (server/log.h makes it), each finished call
// also writes one line: method, status code, latency, bytes in and out, peer.
//
// Thread safety: the factory is shared by all RPCs; each interceptor belongs to
// one RPC. All counters are atomics.
#ifndef CAIRN_RPC_METRICS_INTERCEPTOR_H_
#define CAIRN_RPC_METRICS_INTERCEPTOR_H_

#include <memory>

#include "grpcpp/support/server_interceptor.h"
#include "rpc/metrics.h"
#include "spdlog/spdlog.h"

namespace cairn::rpc {

// Returns a factory for metrics interceptors. `registry` is not owned and must
// outlive the server using the factory. `access_log` may be null (no access
// log).
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewMetricsInterceptorFactory(Registry* registry,
                             std::shared_ptr<spdlog::logger> access_log);

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_METRICS_INTERCEPTOR_H_
