#include "rpc/metrics_interceptor.h"

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "google/protobuf/message_lite.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "spdlog/spdlog.h"

namespace cairn::rpc {
namespace {

namespace reapi = ::build::bazel::remote::execution::v2;
using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::InterceptorBatchMethods;

const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  int i = static_cast<int>(code);
  return i >= 0 && i <= 16 ? kNames[i] : "UNKNOWN";
}

enum class Kind { kOther, kGetActionResult, kFindMissing, kBatchRead, kRead };

constexpr int kCodes = 17;  // grpc::StatusCode OK .. UNAUTHENTICATED.

}  // namespace

struct RpcMetrics::Families {
  Family<Counter>* requests;
  Family<Histogram>* latency;
  Family<Counter>* bytes_in;
  Family<Counter>* bytes_out;
  Family<Gauge>* in_flight;
  Counter* ac_hit;
  Counter* ac_miss;
  Counter* cas_hit;
  Counter* cas_miss;
  std::shared_ptr<spdlog::logger> access;  // Null when the access log is off.
};

// One method's metric children, resolved once per method (the label lookups
// lock and compare strings) and shared by all of its calls; and the one
// account of what a call adds to them, used by both recorders.
struct MethodMetrics {
  MethodMetrics(const RpcMetrics::Families& families,
                absl::string_view full_method)
      : f(families) {
    absl::string_view m = full_method;
    size_t slash = m.rfind('/');
    absl::string_view svc = m.substr(0, slash == m.npos ? 0 : slash);
    size_t dot = svc.rfind('.');
    service = std::string(dot == svc.npos ? svc : svc.substr(dot + 1));
    method = std::string(slash == m.npos ? m : m.substr(slash + 1));
    if (method == "GetActionResult") kind = Kind::kGetActionResult;
    if (method == "FindMissingBlobs") kind = Kind::kFindMissing;
    if (method == "BatchReadBlobs") kind = Kind::kBatchRead;
    if (service == "ByteStream" && method == "Read") kind = Kind::kRead;
    // Only Cairn's own services are known to carry protobuf messages; others
    // (the health check service) and ByteStream Read (a raw method, so its
    // responses share the read buffers) use raw byte buffers.
    protobuf = service == "ContentAddressableStorage" ||
               service == "ActionCache" || service == "Capabilities" ||
               (service == "ByteStream" && kind != Kind::kRead);
    const std::vector<std::string> labels = {service, method};
    in_flight = f.in_flight->WithLabels(labels);
    bytes_in = f.bytes_in->WithLabels(labels);
    bytes_out = f.bytes_out->WithLabels(labels);
    latency = f.latency->WithLabels(labels);
  }

  // Returns the request counter for `code`, creating it on first use (so
  // that /metrics lists only codes that occurred).
  Counter* Requests(grpc::StatusCode code) {
    int i = static_cast<int>(code);
    if (i < 0 || i >= kCodes) {
      i = static_cast<int>(grpc::StatusCode::UNKNOWN);
    }
    Counter* c = by_code[i].load(std::memory_order_acquire);
    if (c == nullptr) {
      c = f.requests->WithLabels({service, method, CodeName(code)});
      by_code[i].store(c, std::memory_order_release);
    }
    return c;
  }

  // Counts request message `m`; returns its size and adds the digests a
  // FindMissingBlobs asks about to `*requested`.
  int64_t Received(const google::protobuf::MessageLite& m, int* requested) {
    auto n = static_cast<int64_t>(m.ByteSizeLong());
    bytes_in->Increment(n);
    if (kind == Kind::kFindMissing) {
      *requested += static_cast<const reapi::FindMissingBlobsRequest&>(m)
                        .blob_digests_size();
    }
    return n;
  }

  // Counts response message `m` (of a call that asked about `requested`
  // digests) and the CAS hits and misses it reports; returns its size.
  int64_t Sent(const google::protobuf::MessageLite& m, int requested) {
    auto n = static_cast<int64_t>(m.ByteSizeLong());
    bytes_out->Increment(n);
    if (kind == Kind::kFindMissing) {
      int missing = static_cast<const reapi::FindMissingBlobsResponse&>(m)
                        .missing_blob_digests_size();
      f.cas_miss->Increment(missing);
      f.cas_hit->Increment(requested > missing ? requested - missing : 0);
    } else if (kind == Kind::kBatchRead) {
      for (const auto& r :
           static_cast<const reapi::BatchReadBlobsResponse&>(m).responses()) {
        (r.status().code() == 0 ? f.cas_hit : f.cas_miss)->Increment();
      }
    }
    return n;
  }

  // Counts the end of a call with `code` after `seconds`.
  void Finished(grpc::StatusCode code, double seconds) {
    Requests(code)->Increment();
    latency->Observe(seconds);
    bool hit = code == grpc::StatusCode::OK;
    bool miss = code == grpc::StatusCode::NOT_FOUND;
    if (kind == Kind::kGetActionResult && (hit || miss)) {
      (hit ? f.ac_hit : f.ac_miss)->Increment();
    } else if (kind == Kind::kRead && (hit || miss)) {
      (hit ? f.cas_hit : f.cas_miss)->Increment();
    }
  }

  const RpcMetrics::Families& f;
  std::string service;
  std::string method;
  Kind kind = Kind::kOther;
  bool protobuf = false;
  // Recorded by the handler (CallRecord); the interceptor skips it.
  std::atomic<bool> self_recorded{false};
  Gauge* in_flight;
  Counter* bytes_in;
  Counter* bytes_out;
  Histogram* latency;
  std::atomic<Counter*> by_code[kCodes] = {};
};

namespace {

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(MethodMetrics* m, grpc::experimental::ServerRpcInfo* info)
      : m_(m), start_(absl::Now()), access_(m->f.access) {
    if (access_ != nullptr && info->server_context() != nullptr) {
      peer_ = info->server_context()->peer();
    }
    m_->in_flight->Add(1);
  }

  ~MetricsInterceptor() override {
    m_->in_flight->Add(-1);
    if (!finished_) {
      Finish(grpc::StatusCode::CANCELLED);
    }
  }

  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE)) {
      OnReceive(methods->GetRecvMessage());
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      OnSend(methods);
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      Finish(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void OnReceive(void* msg) {
    if (msg == nullptr || (!m_->protobuf && m_->kind != Kind::kRead)) {
      return;
    }
    if (!m_->protobuf) {  // ByteStream Read, a raw method: a ByteBuffer.
      auto n = static_cast<int64_t>(
          static_cast<const grpc::ByteBuffer*>(msg)->Length());
      bytes_in_ += n;
      m_->bytes_in->Increment(n);
      return;
    }
    bytes_in_ += m_->Received(
        *static_cast<const google::protobuf::MessageLite*>(msg), &requested_);
  }

  void OnSend(InterceptorBatchMethods* methods) {
    const void* msg = m_->protobuf ? methods->GetSendMessage() : nullptr;
    if (msg == nullptr) {
      grpc::ByteBuffer* buf = methods->GetSerializedSendMessage();
      if (buf != nullptr) {
        bytes_out_ += static_cast<int64_t>(buf->Length());
        m_->bytes_out->Increment(static_cast<int64_t>(buf->Length()));
      }
      return;
    }
    bytes_out_ += m_->Sent(
        *static_cast<const google::protobuf::MessageLite*>(msg), requested_);
  }

  void Finish(grpc::StatusCode code) {
    finished_ = true;
    double seconds = absl::ToDoubleSeconds(absl::Now() - start_);
    m_->Finished(code, seconds);
    if (access_ != nullptr) {
      access_->info("method={}/{} code={} ms={:.3f} in={} out={} peer={}",
                    m_->service, m_->method, CodeName(code), seconds * 1e3,
                    bytes_in_, bytes_out_, peer_);
    }
  }

  MethodMetrics* const m_;  // Owned by the RpcMetrics.
  const absl::Time start_;
  const std::shared_ptr<spdlog::logger> access_;  // Null when off.
  std::string peer_;
  int64_t bytes_in_ = 0;
  int64_t bytes_out_ = 0;
  int requested_ = 0;
  bool finished_ = false;
};

class Factory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(RpcMetrics* metrics) : metrics_(metrics) {}

  // Returns null for a self-recorded method: gRPC then runs no
  // interception hooks for the call.
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const char* full_method = info->method();
    MethodMetrics* m =
        metrics_->ForMethod(full_method == nullptr ? "" : full_method);
    if (m->self_recorded.load(std::memory_order_relaxed)) {
      return nullptr;
    }
    return new MetricsInterceptor(m, info);
  }

 private:
  RpcMetrics* const metrics_;
};

}  // namespace

RpcMetrics::RpcMetrics(Registry* r, std::shared_ptr<spdlog::logger> access_log)
    : families_(std::make_unique<Families>()) {
  Families& f = *families_;
  f.access = std::move(access_log);
  f.requests = r->NewCounter("cairn_grpc_requests_total",
                             "gRPC calls finished, by method and status code.",
                             {"service", "method", "code"});
  f.latency = r->NewHistogram("cairn_grpc_request_duration_seconds",
                              "gRPC call latency in seconds.",
                              {"service", "method"}, LatencyBuckets());
  f.bytes_in = r->NewCounter("cairn_grpc_received_bytes_total",
                             "Bytes of request messages received.",
                             {"service", "method"});
  f.bytes_out = r->NewCounter("cairn_grpc_sent_bytes_total",
                              "Bytes of response messages sent.",
                              {"service", "method"});
  f.in_flight = r->NewGauge("cairn_grpc_in_flight",
                            "gRPC calls (and streams) in progress.",
                            {"service", "method"});
  Family<Counter>* cache = r->NewCounter(
      "cairn_cache_requests_total",
      "Cache lookups by cache (ac, cas) and result (hit, miss).",
      {"cache", "result"});
  f.ac_hit = cache->WithLabels({"ac", "hit"});
  f.ac_miss = cache->WithLabels({"ac", "miss"});
  f.cas_hit = cache->WithLabels({"cas", "hit"});
  f.cas_miss = cache->WithLabels({"cas", "miss"});
}

RpcMetrics::~RpcMetrics() = default;

MethodMetrics* RpcMetrics::ForMethod(absl::string_view full_method) {
  absl::MutexLock lock(&mu_);
  auto it = methods_.find(full_method);
  if (it == methods_.end()) {
    it = methods_
             .emplace(std::string(full_method),
                      std::make_unique<MethodMetrics>(*families_, full_method))
             .first;
  }
  return it->second.get();
}

MethodMetrics* RpcMetrics::SelfRecorded(absl::string_view full_method) {
  if (families_->access != nullptr) {
    return nullptr;
  }
  MethodMetrics* m = ForMethod(full_method);
  m->self_recorded.store(true, std::memory_order_relaxed);
  return m;
}

CallRecord::CallRecord(MethodMetrics* method,
                       const google::protobuf::MessageLite* request,
                       const google::protobuf::MessageLite* response)
    : method_(method), response_(response) {
  if (method_ == nullptr) {
    return;
  }
  start_ = absl::Now();
  method_->in_flight->Add(1);
  if (request != nullptr) {
    method_->Received(*request, &requested_);
  }
}

void CallRecord::Finish(const grpc::Status& status) const {
  if (method_ == nullptr) {
    return;
  }
  if (status.ok() && response_ != nullptr) {
    method_->Sent(*response_, requested_);
  }
  method_->Finished(status.error_code(),
                    absl::ToDoubleSeconds(absl::Now() - start_));
  method_->in_flight->Add(-1);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewMetricsInterceptorFactory(RpcMetrics* metrics) {
  return std::make_unique<Factory>(metrics);
}

}  // namespace cairn::rpc
