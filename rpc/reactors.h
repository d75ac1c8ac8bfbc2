// Helpers shared by the callback services: finish a unary RPC at once (when
// it was answered from memory), or run its work on the IoPool and finish the
// reactor from the pool thread.
//
// Thread safety: the helpers are called from gRPC reactor threads; the work
// runs later on one pool thread.
#ifndef CAIRN_RPC_REACTORS_H_
#define CAIRN_RPC_REACTORS_H_

#include <grpcpp/support/server_callback.h>

#include <utility>

#include "absl/status/status.h"
#include "rpc/grpc_status.h"
#include "rpc/io_pool.h"

namespace cairn::rpc {

// Returns the default unary reactor of `context`, finished with `status`.
// For calls answered on the reactor thread from memory, without any I/O.
inline grpc::ServerUnaryReactor* FinishUnaryNow(
    grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Returns the default unary reactor of `context` after arranging for `work`
// (absl::Status(), called at most once on a pool thread) to run and its
// status to finish the call. When `validation` is not OK the call finishes at
// once with it and `work` never runs. A refused schedule finishes the call
// with RESOURCE_EXHAUSTED (or UNAVAILABLE while shutting down); a call the
// client cancelled while it waited in the queue is finished without running
// `work`. `work` must not touch the request or response after returning.
template <typename Work>
grpc::ServerUnaryReactor* FinishUnaryOnPool(
    grpc::CallbackServerContext* context, IoPool* pool, const char* what,
    const absl::Status& validation, Work work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!validation.ok()) {
    reactor->Finish(ToGrpcStatus(validation));
    return reactor;
  }
  absl::Status scheduled = pool->Schedule(
      what, [context, reactor, what, work = std::move(work)]() mutable {
        if (context->IsCancelled()) {  // The client gave up while queued.
          reactor->Finish(ToGrpcStatus(absl::CancelledError(what)));
          return;
        }
        reactor->Finish(ToGrpcStatus(work()));
      });
  if (!scheduled.ok()) {
    reactor->Finish(ToGrpcStatus(scheduled));
  }
  return reactor;
}

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_REACTORS_H_
