// AsyncUnaryLane: serves chosen unary methods through gRPC's async API, on a
// completion queue and threads of the lane's own, instead of the callback
// API. Why: gRPC 1.51 runs every callback-API reactor on two process-wide
// threads ("nexting_thread", cores / 2, at least 2, not configurable); with a
// thousand ByteStream Reads their write completions and socket writes keep
// those threads busy, and a small call queued behind them waited 60-90 ms
// (bench/README.md, fanout). A method served here is matched to a request
// the lane keeps posted on its own queue, and its handler runs on a lane
// thread that streams never use.
//
//   lane.Serve<Req, Resp>(
//       [service](grpc::ServerContext* c, Req* q,
//                 grpc::ServerAsyncResponseWriter<Resp>* w,
//                 grpc::ServerCompletionQueue* cq, void* tag) {
//         service->RequestMethod(c, q, w, cq, cq, tag);
//       },
//       [](grpc::ServerContext* c, const Req& q, Resp* r,
//          AsyncUnaryLane::Done done) { done(absl::OkStatus()); });
//
// A handler runs on a lane thread and must not block there (no disk, no lock
// held across I/O): it answers from memory or hands the work to the IoPool.
// It calls `done` exactly once, from any thread, after which it must not
// touch the request, response or context.
//
// Life cycle: construct with a queue from ServerBuilder::AddCompletionQueue()
// before BuildAndStart(); Serve() each method after it; Shutdown() after
// grpc::Server::Shutdown() and once no `done` is outstanding (the IoPool is
// shut down).
//
// Thread safety: Serve() and Shutdown() are called from one thread; `done`
// may be called from any thread.
#ifndef CAIRN_RPC_ASYNC_UNARY_H_
#define CAIRN_RPC_ASYNC_UNARY_H_

#include <grpcpp/completion_queue.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/async_unary_call.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "rpc/grpc_status.h"

namespace cairn::rpc {

class AsyncUnaryLane {
 public:
  // One call on the lane: the lane calls Proceed() with each event's
  // outcome on a lane thread; the call deletes itself when it is over.
  class Tag {
   public:
    virtual ~Tag() = default;
    virtual void Proceed(bool ok) = 0;
    // Finishes the call with `status` (its response when OK).
    virtual void Finish(const absl::Status& status) = 0;
  };

  // Ends one call with a status; see the file comment. Copyable, not owning.
  class Done {
   public:
    explicit Done(Tag* call) : call_(call) {}
    // Finishes the call with `status` (its response when OK). Exactly once.
    void operator()(const absl::Status& status) const { call_->Finish(status); }

   private:
    Tag* call_;  // Not owned; deletes itself after the finish.
  };

  template <typename Request, typename Response>
  using RequestFn = std::function<void(
      grpc::ServerContext*, Request*,
      grpc::ServerAsyncResponseWriter<Response>*, grpc::ServerCompletionQueue*,
      void*)>;
  template <typename Request, typename Response>
  using HandlerFn = std::function<void(grpc::ServerContext*, const Request&,
                                       Response*, Done)>;

  // Takes the queue; `threads` lane threads (at least 1) start at once.
  AsyncUnaryLane(std::unique_ptr<grpc::ServerCompletionQueue> cq, int threads);
  // Shutdown().
  ~AsyncUnaryLane();

  AsyncUnaryLane(const AsyncUnaryLane&) = delete;
  AsyncUnaryLane& operator=(const AsyncUnaryLane&) = delete;

  // Answers the method `request` posts (see the file comment) with
  // `handler`, keeping `pending` requests posted so a burst of calls is
  // matched without waiting for a lane thread. After BuildAndStart().
  template <typename Request, typename Response>
  void Serve(RequestFn<Request, Response> request,
             HandlerFn<Request, Response> handler, int pending = 4);

  // Shuts the queue down, drains it and joins the threads. Idempotent.
  void Shutdown();

 private:
  template <typename Request, typename Response>
  class Call;

  void Loop();

  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::vector<std::thread> threads_;
  std::vector<std::shared_ptr<const void>> methods_;  // Outlive every call.
  // Held (shared) while a call starts an operation on cq_, exclusively to
  // shut cq_ down: nothing may start on it after that.
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

// One call of a method served on the lane: posted as a request, then
// handled, then finished; deletes itself after the finish completes (or
// when the request fails: the server is shutting down).
template <typename Request, typename Response>
class AsyncUnaryLane::Call final : public AsyncUnaryLane::Tag {
 public:
  struct Method {
    RequestFn<Request, Response> request;
    HandlerFn<Request, Response> handler;
    AsyncUnaryLane* lane;
  };

  // Posts a new request for `method` (not owned; outlives every call).
  // Requires a shared hold of the lane's mu_ and !stopping_.
  static void Post(const Method* method) {
    auto* call = new Call(method);
    method->request(&call->context_, &call->request_, &call->writer_,
                    method->lane->cq_.get(), call);
  }

  void Proceed(bool ok) override {
    if (finishing_ || !ok) {
      delete this;  // Finished, or the server is shutting down.
      return;
    }
    finishing_ = true;
    {
      absl::ReaderMutexLock lock(&method_->lane->mu_);
      if (method_->lane->stopping_) {
        delete this;  // The server was shut down: the call is cancelled.
        return;
      }
      Post(method_);  // Keeps as many requests posted as before.
    }
    method_->handler(&context_, request_, &response_, Done(this));
  }

  void Finish(const absl::Status& status) override {
    absl::ReaderMutexLock lock(&method_->lane->mu_);
    if (method_->lane->stopping_) {
      delete this;  // As above; unreachable while the pool shuts down first.
      return;
    }
    if (status.ok()) {
      writer_.Finish(response_, grpc::Status::OK, this);
    } else {
      writer_.FinishWithError(ToGrpcStatus(status), this);
    }
  }

 private:
  explicit Call(const Method* method) : method_(method), writer_(&context_) {}

  const Method* const method_;
  grpc::ServerContext context_;
  Request request_;
  Response response_;
  grpc::ServerAsyncResponseWriter<Response> writer_;
  bool finishing_ = false;  // The request was matched; Finish comes next.
};

template <typename Request, typename Response>
void AsyncUnaryLane::Serve(RequestFn<Request, Response> request,
                           HandlerFn<Request, Response> handler, int pending) {
  using C = Call<Request, Response>;
  auto method = std::make_shared<const typename C::Method>(
      typename C::Method{std::move(request), std::move(handler), this});
  methods_.push_back(method);
  absl::ReaderMutexLock lock(&mu_);
  for (int i = 0; i < std::max(1, pending) && !stopping_; ++i) {
    C::Post(method.get());
  }
}

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_ASYNC_UNARY_H_
