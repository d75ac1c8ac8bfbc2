#include "rpc/grpc_status.h"

#include <string>

namespace cairn::rpc {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) {
    return grpc::Status::OK;
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

google::rpc::Status ToRpcStatus(const absl::Status& status) {
  google::rpc::Status out;
  out.set_code(static_cast<int>(status.code()));
  if (!status.ok()) {
    out.set_message(std::string(status.message()));
  }
  return out;
}

}  // namespace cairn::rpc
