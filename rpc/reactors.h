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
#include "rpc/metrics_interceptor.h"

namespace cairn::rpc {

// Finishes `reactor` with `status`, recorded in `record` first.
inline void FinishUnary(grpc::ServerUnaryReactor* reactor,
                        const absl::Status& status, const CallRecord& record) {
  grpc::Status s = ToGrpcStatus(status);
  record.Finish(s);
  reactor->Finish(s);
}

// Returns the default unary reactor of `context`, finished with `status`
// (and recorded in `record`). For calls answered on the reactor thread from
// memory, without any I/O.
inline grpc::ServerUnaryReactor* FinishUnaryNow(
    grpc::CallbackServerContext* context, const absl::Status& status,
    const CallRecord& record = CallRecord()) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  FinishUnary(reactor, status, record);
  return reactor;
}

// FinishUnaryOnPool (below) for work that finishes later: `work`
// (void(UnaryDone)) runs at most once on a pool thread and must call the
// UnaryDone it is given exactly once, on any thread, then or later; that
// status finishes the call. Until then the request and response stay valid.
// Validation, a refused schedule and cancellation as FinishUnaryOnPool.
// Every way the call finishes is recorded in `record`.
using UnaryDone = absl::AnyInvocable<void(const absl::Status&) &&>;
template <typename Work>
grpc::ServerUnaryReactor* FinishUnaryOnPoolThen(
    grpc::CallbackServerContext* context, IoPool* pool, const char* what,
    const absl::Status& validation, Work work,
    const CallRecord& record = CallRecord()) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!validation.ok()) {
    FinishUnary(reactor, validation, record);
    return reactor;
  }
  absl::Status scheduled = pool->Schedule(
      what, [context, reactor, what, record, work = std::move(work)]() mutable {
        if (context->IsCancelled()) {  // The client gave up while queued.
          FinishUnary(reactor, absl::CancelledError(what), record);
          return;
        }
        work(UnaryDone([reactor, record](const absl::Status& s) {
          FinishUnary(reactor, s, record);
        }));
      });
  if (!scheduled.ok()) {
    FinishUnary(reactor, scheduled, record);
  }
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
    const absl::Status& validation, Work work,
    const CallRecord& record = CallRecord()) {
  return FinishUnaryOnPoolThen(
      context, pool, what, validation,
      [work = std::move(work)](UnaryDone done) mutable {
        std::move(done)(work());
      },
      record);
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
// gRPC once, by ToGrpcStatus. A self-recorded method (RpcMetrics::
// SelfRecorded) passes its CallRecord, which every way of finishing
// records. A UnaryCall lives on the reactor thread's stack for the duration
// of the handler.
class UnaryCall {
 public:
  // Authorises the caller behind `context` for `access` (`authorizer` may be
  // null: access control off). `pool` (not owned) runs RunOnPool's work
  // (null for a handler that only uses AnswerNow or FinishNow); `what` names
  // the method in errors; `record` records the call's metrics (a default one
  // records nothing: the interceptor does).
  UnaryCall(grpc::CallbackServerContext* context, const Authorizer* authorizer,
            Access access, IoPool* pool, const char* what,
            const CallRecord& record = CallRecord())
      : context_(context),
        pool_(pool),
        what_(what),
        record_(record),
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
    return FinishUnaryNow(context_, status, record_);
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
    return FinishUnaryOnPool(context_, pool_, what_, status_, std::move(work),
                             record_);
  }

  // RunOnPool() for work that finishes later (FinishUnaryOnPoolThen).
  template <typename Work>
  grpc::ServerUnaryReactor* RunOnPoolThen(Work work) {
    return FinishUnaryOnPoolThen(context_, pool_, what_, status_,
                                 std::move(work), record_);
  }

 private:
  grpc::CallbackServerContext* const context_;
  IoPool* const pool_;
  const char* const what_;
  const CallRecord record_;
  absl::Status status_;
};

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_REACTORS_H_
