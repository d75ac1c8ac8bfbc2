// Per-RPC metrics, recorded into a Registry:
//   cairn_grpc_requests_total{service,method,code}
//   cairn_grpc_request_duration_seconds{service,method} (histogram)
//   cairn_grpc_received_bytes_total /
//   cairn_grpc_sent_bytes_total{service,method}
//   cairn_grpc_in_flight{service,method}
//   cairn_cache_requests_total{cache="ac"|"cas",result="hit"|"miss"}
// Cache hits and misses are read from the REAPI messages themselves
// (GetActionResult status, FindMissingBlobs and BatchReadBlobs answers,
// ByteStream Read status), so the services stay free of metrics code.
//
// Two recorders write the same series with the same values: a gRPC server
// interceptor for every call, and CallRecord for the hot unary methods whose
// handlers record their own calls (RpcMetrics::SelfRecorded). gRPC skips its
// interception hooks for a call no interceptor wants; those hooks cost about
// 8% of the instructions of a GetActionResult miss, more than the counting.
// A self-recorded call leaves the in-flight gauge when its status is handed
// to gRPC (an intercepted one when gRPC reports it done, just after).
//
// When an access logger is given (server/log.h makes it), each finished call
// also writes one line: method, status code, latency, bytes in and out, peer;
// then the interceptor records every call (SelfRecorded returns null).
//
// Thread safety: RpcMetrics and the factory are shared by all RPCs; each
// interceptor and CallRecord belongs to one RPC. All counters are atomics.
#ifndef CAIRN_RPC_METRICS_INTERCEPTOR_H_
#define CAIRN_RPC_METRICS_INTERCEPTOR_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "google/protobuf/message_lite.h"
#include "grpcpp/support/server_interceptor.h"
#include "grpcpp/support/status.h"
#include "rpc/metrics.h"
#include "spdlog/spdlog.h"

namespace cairn::rpc {

// One method's metric children (defined in metrics_interceptor.cc).
struct MethodMetrics;

// The per-RPC metric families of one server and their per-method children.
class RpcMetrics {
 public:
  // Registers the families in `registry` (not owned; must outlive this).
  // `access_log` may be null (no access log).
  RpcMetrics(Registry* registry, std::shared_ptr<spdlog::logger> access_log);
  ~RpcMetrics();

  RpcMetrics(const RpcMetrics&) = delete;
  RpcMetrics& operator=(const RpcMetrics&) = delete;

  // Returns the metrics of `full_method` ("/package.Service/Method") for
  // its handler to record every call with CallRecord, and from then on the
  // interceptor leaves that method's calls alone. Returns null when the
  // access log is on: the interceptor then records and logs every call. The
  // result lives as long as this RpcMetrics.
  MethodMetrics* SelfRecorded(absl::string_view full_method);

  // Returns the metrics of `full_method`, creating them on first use.
  MethodMetrics* ForMethod(absl::string_view full_method);

  struct Families;  // Defined in metrics_interceptor.cc.
  const Families& families() const { return *families_; }

 private:
  std::unique_ptr<Families> families_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<MethodMetrics>> methods_
      ABSL_GUARDED_BY(mu_);
};

// The metrics of one call recorded by its handler (see the file comment).
// Copyable, so that it can travel with the call's work to the thread that
// finishes it; a default-constructed CallRecord records nothing.
class CallRecord {
 public:
  CallRecord() = default;

  // Starts recording a call of `method` (null: record nothing) at its
  // arrival: in flight, bytes received. `request` and `response` are the
  // call's messages; they must stay valid until Finish().
  CallRecord(MethodMetrics* method,
             const google::protobuf::MessageLite* request,
             const google::protobuf::MessageLite* response);

  // Records the end of the call with `status`, just before the handler
  // finishes the call with it: code, latency, bytes sent (the response,
  // sent only with OK), cache hit or miss, out of flight. Call at most once
  // per call, from any thread.
  void Finish(const grpc::Status& status) const;

 private:
  MethodMetrics* method_ = nullptr;
  const google::protobuf::MessageLite* response_ = nullptr;
  absl::Time start_;
  int requested_ = 0;  // FindMissingBlobs: digests asked about.
};

// Returns a factory for metrics interceptors over `metrics` (not owned; must
// outlive the server using the factory).
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewMetricsInterceptorFactory(RpcMetrics* metrics);

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_METRICS_INTERCEPTOR_H_
