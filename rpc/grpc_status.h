// The one mapping from absl::Status (used everywhere inside Cairn) to the
// statuses gRPC clients see: grpc::Status for a whole call, google.rpc.Status
// for one item of a batch answer. Codes map one to one (absl and gRPC share
// the canonical code space); the message is passed through unchanged.
//
// Thread safety: pure functions; safe from any thread.
#ifndef CAIRN_RPC_GRPC_STATUS_H_
#define CAIRN_RPC_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "google/rpc/status.pb.h"

namespace cairn::rpc {

// Returns the grpc::Status for `status`. This is the only place in Cairn that
// constructs a grpc::Status.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Returns the google.rpc.Status for `status` (per-item status in batch RPCs).
google::rpc::Status ToRpcStatus(const absl::Status& status);

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_GRPC_STATUS_H_
