#include "rpc/grpc_status.h"

#include <string>

#include "google/rpc/error_details.pb.h"

namespace cairn::rpc {
namespace {

// Fills `out` from `status`: code, message and one Any per payload.
void Fill(const absl::Status& status, google::rpc::Status* out) {
  out->set_code(static_cast<int>(status.code()));
  if (status.ok()) {
    return;
  }
  out->set_message(std::string(status.message()));
  status.ForEachPayload(
      [out](absl::string_view type_url, const absl::Cord& value) {
        google::protobuf::Any* any = out->add_details();
        any->set_type_url(std::string(type_url));
        any->set_value(std::string(value));
      });
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) {
    return grpc::Status::OK;
  }
  const auto code = static_cast<grpc::StatusCode>(status.code());
  bool has_details = false;
  status.ForEachPayload([&has_details](absl::string_view, const absl::Cord&) {
    has_details = true;
  });
  if (!has_details) {
    return grpc::Status(code, std::string(status.message()));
  }
  google::rpc::Status rich;
  Fill(status, &rich);
  return grpc::Status(code, std::string(status.message()),
                      rich.SerializeAsString());
}

google::rpc::Status ToRpcStatus(const absl::Status& status) {
  google::rpc::Status out;
  Fill(status, &out);
  return out;
}

absl::Status WithRetryDelay(absl::Status status, absl::Duration delay) {
  if (status.ok()) {
    return status;
  }
  google::rpc::RetryInfo info;
  const int64_t nanos = absl::ToInt64Nanoseconds(delay);
  info.mutable_retry_delay()->set_seconds(nanos / 1000000000);
  info.mutable_retry_delay()->set_nanos(
      static_cast<int32_t>(nanos % 1000000000));
  status.SetPayload(kRetryInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

std::optional<absl::Duration> RetryDelayOf(const std::string& details) {
  google::rpc::Status rich;
  if (!rich.ParseFromString(details)) {
    return std::nullopt;
  }
  for (const google::protobuf::Any& any : rich.details()) {
    google::rpc::RetryInfo info;
    if (any.type_url() == kRetryInfoTypeUrl &&
        info.ParseFromString(any.value())) {
      return absl::Seconds(info.retry_delay().seconds()) +
             absl::Nanoseconds(info.retry_delay().nanos());
    }
  }
  return std::nullopt;
}

std::optional<absl::Duration> RetryDelayOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kRetryInfoTypeUrl);
  google::rpc::RetryInfo info;
  if (!payload.has_value() || !info.ParseFromString(std::string(*payload))) {
    return std::nullopt;
  }
  return absl::Seconds(info.retry_delay().seconds()) +
         absl::Nanoseconds(info.retry_delay().nanos());
}

}  // namespace cairn::rpc
