// Helpers shared by the callback services: UnaryCall, the one shape of a
// unary handler (authorise, validate, answer from memory or run the storage
// call on the IoPool, map the status once), and the two ways it finishes: at
// once (answered from memory), or from the pool thread after the work.
//
// Thread safety: the helpers are called from gRPC reactor threads; the work
// runs later on one pool thread.
#ifndef CAIRN_RPC_REACTORS_H_
#define CAIRN_RPC_REACTORS_H_

#include <grpcpp/support/server_callback.h>

#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "rpc/auth.h"
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

// Like FinishUnaryOnPool, for work that finishes later: `work`
// (void(UnaryDone)) runs at most once on a pool thread and must call the
// UnaryDone it is given exactly once, on any thread, then or later; that
// status finishes the call. Until then the request and response stay valid.
using UnaryDone = absl::AnyInvocable<void(const absl::Status&) &&>;
template <typename Work>
grpc::ServerUnaryReactor* FinishUnaryOnPoolThen(
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
        work(UnaryDone([reactor](const absl::Status& s) {
          reactor->Finish(ToGrpcStatus(s));
        }));
      });
  if (!scheduled.ok()) {
    reactor->Finish(ToGrpcStatus(scheduled));
  }
  return reactor;
}

// One unary call, handled the way every service handles them:
//
//   return UnaryCall(context, authorizer, Access::kRead, pool, "Method")
//       .Validate([&] { return CheckRequest(*request); })  // No I/O here.
//       .RunOnPool([=] { return DoTheStorageCall(request, response); });
//
// The caller is authorised first (Authorize above); each Validate step runs
// on the reactor thread only while every earlier step passed; RunOnPool
// hands the work to the pool (FinishUnaryOnPool) or, when a step failed,
// finishes the call with that step's status. A handler that can answer from
// memory checks ok() and calls FinishNow instead; one that never touches
// storage (Capabilities) ends with AnswerNow. Every status is mapped to
// gRPC once, by ToGrpcStatus. A UnaryCall lives on the reactor thread's
// stack for the duration of the handler.
class UnaryCall {
 public:
  // Authorises the caller behind `context` for `access` (`authorizer` may be
  // null: access control off). `pool` (not owned) runs RunOnPool's work
  // (null for a handler that only uses AnswerNow or FinishNow); `what` names
  // the method in errors.
  UnaryCall(grpc::CallbackServerContext* context, const Authorizer* authorizer,
            Access access, IoPool* pool, const char* what)
      : context_(context),
        pool_(pool),
        what_(what),
        status_(Authorize(authorizer, *context, access)) {}

  // Runs `check` (absl::Status()) when every earlier step passed.
  template <typename Check>
  UnaryCall& Validate(Check check) {
    if (status_.ok()) {
      status_ = check();
    }
    return *this;
  }

  // Returns true while authorisation and every Validate step passed.
  bool ok() const { return status_.ok(); }

  // Finishes the call at once with `status` (answered from memory).
  grpc::ServerUnaryReactor* FinishNow(const absl::Status& status) {
    return FinishUnaryNow(context_, status);
  }

  // Finishes the call at once, for a method that never needs the pool: with
  // the status of `answer` (absl::Status(), run here on the reactor thread,
  // no I/O) when every earlier step passed, else with the failed step's.
  template <typename Answer>
  grpc::ServerUnaryReactor* AnswerNow(Answer answer) {
    return FinishNow(status_.ok() ? answer() : status_);
  }

  // Runs `work` (absl::Status(), at most once, on a pool thread) and finishes
  // the call with its status; or finishes at once with the failed step's
  // status. See FinishUnaryOnPool for a refused schedule or a cancelled call.
  template <typename Work>
  grpc::ServerUnaryReactor* RunOnPool(Work work) {
    return FinishUnaryOnPool(context_, pool_, what_, status_, std::move(work));
  }

  // RunOnPool() for work that finishes later (FinishUnaryOnPoolThen).
  template <typename Work>
  grpc::ServerUnaryReactor* RunOnPoolThen(Work work) {
    return FinishUnaryOnPoolThen(context_, pool_, what_, status_,
                                 std::move(work));
  }

 private:
  grpc::CallbackServerContext* const context_;
  IoPool* const pool_;
  const char* const what_;
  absl::Status status_;
};

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_REACTORS_H_
