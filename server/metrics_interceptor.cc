#include "server/metrics_interceptor.h"

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "google/protobuf/message_lite.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "server/log.h"

namespace cairn::server {
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

struct Families {
  Family<Counter>* requests;
  Family<Histogram>* latency;
  Family<Counter>* bytes_in;
  Family<Counter>* bytes_out;
  Family<Gauge>* in_flight;
  Counter* ac_hit;
  Counter* ac_miss;
  Counter* cas_hit;
  Counter* cas_miss;
};

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(const Families* f, grpc::experimental::ServerRpcInfo* info)
      : f_(f), start_(absl::Now()), access_(AccessLog()) {
    if (access_ != nullptr && info->server_context() != nullptr) {
      peer_ = info->server_context()->peer();
    }
    const char* full_method = info->method();
    absl::string_view m(full_method == nullptr ? "" : full_method);
    size_t slash = m.rfind('/');
    absl::string_view service = m.substr(0, slash == m.npos ? 0 : slash);
    size_t dot = service.rfind('.');
    service_ =
        std::string(dot == service.npos ? service : service.substr(dot + 1));
    method_ = std::string(slash == m.npos ? m : m.substr(slash + 1));
    if (method_ == "GetActionResult") kind_ = Kind::kGetActionResult;
    if (method_ == "FindMissingBlobs") kind_ = Kind::kFindMissing;
    if (method_ == "BatchReadBlobs") kind_ = Kind::kBatchRead;
    if (service_ == "ByteStream" && method_ == "Read") kind_ = Kind::kRead;
    // Only Cairn's own services are known to carry protobuf messages; others
    // (the health check service) use raw byte buffers.
    protobuf_ = service_ == "ContentAddressableStorage" ||
                service_ == "ActionCache" || service_ == "Capabilities" ||
                service_ == "ByteStream";
    labels_ = {service_, method_};
    in_flight_ = f_->in_flight->WithLabels(labels_);
    in_flight_->Add(1);
  }

  ~MetricsInterceptor() override {
    in_flight_->Add(-1);
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
    if (msg == nullptr || !protobuf_) {
      return;
    }
    const auto* m = static_cast<const google::protobuf::MessageLite*>(msg);
    auto n = static_cast<int64_t>(m->ByteSizeLong());
    bytes_in_ += n;
    f_->bytes_in->WithLabels(labels_)->Increment(n);
    if (kind_ == Kind::kFindMissing) {
      requested_ += static_cast<const reapi::FindMissingBlobsRequest*>(msg)
                        ->blob_digests_size();
    }
  }

  void OnSend(InterceptorBatchMethods* methods) {
    const void* msg = protobuf_ ? methods->GetSendMessage() : nullptr;
    if (msg == nullptr) {
      grpc::ByteBuffer* buf = methods->GetSerializedSendMessage();
      if (buf != nullptr) {
        bytes_out_ += static_cast<int64_t>(buf->Length());
        f_->bytes_out->WithLabels(labels_)->Increment(
            static_cast<int64_t>(buf->Length()));
      }
      return;
    }
    const auto* m = static_cast<const google::protobuf::MessageLite*>(msg);
    auto n = static_cast<int64_t>(m->ByteSizeLong());
    bytes_out_ += n;
    f_->bytes_out->WithLabels(labels_)->Increment(n);
    if (kind_ == Kind::kFindMissing) {
      int missing = static_cast<const reapi::FindMissingBlobsResponse*>(msg)
                        ->missing_blob_digests_size();
      f_->cas_miss->Increment(missing);
      f_->cas_hit->Increment(requested_ > missing ? requested_ - missing : 0);
    } else if (kind_ == Kind::kBatchRead) {
      for (const auto& r :
           static_cast<const reapi::BatchReadBlobsResponse*>(msg)
               ->responses()) {
        (r.status().code() == 0 ? f_->cas_hit : f_->cas_miss)->Increment();
      }
    }
  }

  void Finish(grpc::StatusCode code) {
    finished_ = true;
    f_->requests->WithLabels({service_, method_, CodeName(code)})->Increment();
    double seconds = absl::ToDoubleSeconds(absl::Now() - start_);
    f_->latency->WithLabels(labels_)->Observe(seconds);
    if (access_ != nullptr) {
      access_->info("method={}/{} code={} ms={:.3f} in={} out={} peer={}",
                    service_, method_, CodeName(code), seconds * 1e3, bytes_in_,
                    bytes_out_, peer_);
    }
    bool hit = code == grpc::StatusCode::OK;
    bool miss = code == grpc::StatusCode::NOT_FOUND;
    if (kind_ == Kind::kGetActionResult && (hit || miss)) {
      (hit ? f_->ac_hit : f_->ac_miss)->Increment();
    } else if (kind_ == Kind::kRead && (hit || miss)) {
      (hit ? f_->cas_hit : f_->cas_miss)->Increment();
    }
  }

  const Families* const f_;
  const absl::Time start_;
  const std::shared_ptr<spdlog::logger> access_;  // Null when off.
  std::string peer_;
  int64_t bytes_in_ = 0;
  int64_t bytes_out_ = 0;
  std::string service_;
  std::string method_;
  std::vector<std::string> labels_;
  Kind kind_ = Kind::kOther;
  bool protobuf_ = false;
  Gauge* in_flight_;
  int requested_ = 0;
  bool finished_ = false;
};

class Factory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(Registry* r) {
    f_.requests =
        r->NewCounter("cairn_grpc_requests_total",
                      "gRPC calls finished, by method and status code.",
                      {"service", "method", "code"});
    f_.latency = r->NewHistogram("cairn_grpc_request_duration_seconds",
                                 "gRPC call latency in seconds.",
                                 {"service", "method"}, LatencyBuckets());
    f_.bytes_in = r->NewCounter("cairn_grpc_received_bytes_total",
                                "Bytes of request messages received.",
                                {"service", "method"});
    f_.bytes_out = r->NewCounter("cairn_grpc_sent_bytes_total",
                                 "Bytes of response messages sent.",
                                 {"service", "method"});
    f_.in_flight = r->NewGauge("cairn_grpc_in_flight",
                               "gRPC calls (and streams) in progress.",
                               {"service", "method"});
    Family<Counter>* cache = r->NewCounter(
        "cairn_cache_requests_total",
        "Cache lookups by cache (ac, cas) and result (hit, miss).",
        {"cache", "result"});
    f_.ac_hit = cache->WithLabels({"ac", "hit"});
    f_.ac_miss = cache->WithLabels({"ac", "miss"});
    f_.cas_hit = cache->WithLabels({"cas", "hit"});
    f_.cas_miss = cache->WithLabels({"cas", "miss"});
  }

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(&f_, info);
  }

 private:
  Families f_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewMetricsInterceptorFactory(Registry* registry) {
  return std::make_unique<Factory>(registry);
}

}  // namespace cairn::server
