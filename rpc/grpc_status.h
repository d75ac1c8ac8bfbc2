// The one mapping from absl::Status (used everywhere inside Cairn) to the
// statuses gRPC clients see: grpc::Status for a whole call, google.rpc.Status
// for one item of a batch answer. Codes map one to one (absl and gRPC share
// the canonical code space); the message is passed through unchanged.
//
// Details: an absl::Status payload whose type URL names a protobuf message
// ("type.googleapis.com/google.rpc.RetryInfo", as WithRetryDelay sets) is
// passed on as a google.protobuf.Any in the google.rpc.Status details; for a
// whole call that google.rpc.Status travels serialized in the
// grpc-status-details-bin trailer (gRPC's "rich status", what
// grpc::Status::error_details() returns to a C++ client).
//
// Thread safety: pure functions; safe from any thread.
#ifndef CAIRN_RPC_GRPC_STATUS_H_
#define CAIRN_RPC_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "google/rpc/status.pb.h"

namespace cairn::rpc {

// The type URL of google.rpc.RetryInfo, as an Any and a payload name it.
inline constexpr char kRetryInfoTypeUrl[] =
    "type.googleapis.com/google.rpc.RetryInfo";

// Returns the grpc::Status for `status`. This is the only place in Cairn that
// constructs a grpc::Status.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Returns the google.rpc.Status for `status` (per-item status in batch RPCs).
google::rpc::Status ToRpcStatus(const absl::Status& status);

// Returns `status` carrying a google.rpc.RetryInfo that asks the client to
// wait `delay` before retrying (for RESOURCE_EXHAUSTED answers: quotas and
// caps). An OK status is returned unchanged.
absl::Status WithRetryDelay(absl::Status status, absl::Duration delay);

// Returns the delay of the google.rpc.RetryInfo in `details` (a serialized
// google.rpc.Status, as grpc::Status::error_details() holds), if any.
std::optional<absl::Duration> RetryDelayOf(const std::string& details);

// Returns the delay WithRetryDelay attached to `status`, if any.
std::optional<absl::Duration> RetryDelayOf(const absl::Status& status);

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_GRPC_STATUS_H_
