#include "rpc/async_unary.h"

namespace cairn::rpc {

AsyncUnaryLane::AsyncUnaryLane(std::unique_ptr<grpc::ServerCompletionQueue> cq,
                               int threads)
    : cq_(std::move(cq)) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    threads_.emplace_back([this] { Loop(); });
  }
}

AsyncUnaryLane::~AsyncUnaryLane() { Shutdown(); }

void AsyncUnaryLane::Loop() {
  void* tag = nullptr;
  bool ok = false;
  while (cq_->Next(&tag, &ok)) {
    static_cast<Tag*>(tag)->Proceed(ok);
  }
}

void AsyncUnaryLane::Shutdown() {
  {
    absl::WriterMutexLock lock(&mu_);
    if (stopping_) {
      return;
    }
    stopping_ = true;
    cq_->Shutdown();
  }
  for (std::thread& t : threads_) {
    t.join();
  }
}

}  // namespace cairn::rpc
