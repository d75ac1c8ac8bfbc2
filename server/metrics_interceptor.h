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
// When the access log is on (server/log.h), each finished call also writes one
// line: method, status code, latency, bytes in and out, peer.
//
// Thread safety: the factory is shared by all RPCs; each interceptor belongs to
// one RPC. All counters are atomics.
#ifndef CAIRN_SERVER_METRICS_INTERCEPTOR_H_
#define CAIRN_SERVER_METRICS_INTERCEPTOR_H_

#include <memory>

#include "grpcpp/support/server_interceptor.h"
#include "server/metrics.h"

namespace cairn::server {

// Returns a factory for metrics interceptors. `registry` is not owned and must
// outlive the server using the factory.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewMetricsInterceptorFactory(Registry* registry);

}  // namespace cairn::server

#endif  // CAIRN_SERVER_METRICS_INTERCEPTOR_H_
