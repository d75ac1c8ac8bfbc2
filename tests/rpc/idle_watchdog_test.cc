// Tests for rpc/idle_watchdog.h over a real loopback server with a
// ByteStream Write reactor that uses it: a stalled client is cancelled, a
// slow server is not, a chatty client is not, and finished calls are
// forgotten.
#include "rpc/idle_watchdog.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "gtest/gtest.h"

namespace cairn::rpc {
namespace {

namespace bs = ::google::bytestream;

// Counts the bytes of each Write; sleeps `server_delay` per message (work on
// the server's side, which must not count as idle).
class Service final : public bs::ByteStream::CallbackService {
 public:
  Service(IdleWatchdog* watchdog, absl::Duration server_delay)
      : watchdog_(watchdog), server_delay_(server_delay) {}

  grpc::ServerReadReactor<bs::WriteRequest>* Write(
      grpc::CallbackServerContext* context,
      bs::WriteResponse* response) override {
    return new Reactor(this, context, response);
  }

  std::atomic<int> done{0};

 private:
  class Reactor final : public grpc::ServerReadReactor<bs::WriteRequest> {
   public:
    Reactor(Service* service, grpc::CallbackServerContext* context,
            bs::WriteResponse* response)
        : service_(service),
          response_(response),
          watch_(service->watchdog_->Add(context)) {
      // Publishes the fields above to the thread OnReadDone starts: gRPC
      // orders this constructor before OnReadDone with code TSan cannot see.
      { absl::MutexLock lock(&mu_); }
      Read();
    }
    void OnReadDone(bool ok) override {
      watch_->Received();
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
        return;
      }
      committed_ += static_cast<int64_t>(request_.data().size());
      if (request_.finish_write()) {
        response_->set_committed_size(committed_);
        Finish(grpc::Status::OK);
        return;
      }
      // Server-side work off the reactor thread, then read on.
      std::thread([this] {
        { absl::MutexLock lock(&mu_); }  // See the constructor.
        std::this_thread::sleep_for(
            absl::ToChronoNanoseconds(service_->server_delay_));
        Read();
      }).detach();
    }
    void OnDone() override {
      watch_->Done();
      service_->done.fetch_add(1);
      delete this;
    }

   private:
    void Read() {
      watch_->Waiting();
      StartRead(&request_);
    }
    absl::Mutex mu_;
    Service* service_;
    bs::WriteResponse* response_;
    std::shared_ptr<IdleWatchdog::Watch> watch_;
    bs::WriteRequest request_;
    int64_t committed_ = 0;
  };

  IdleWatchdog* watchdog_;
  absl::Duration server_delay_;
};

class IdleWatchdogTest : public ::testing::Test {
 protected:
  void Start(absl::Duration timeout, absl::Duration server_delay) {
    watchdog_ = std::make_unique<IdleWatchdog>(timeout);
    service_ = std::make_unique<Service>(watchdog_.get(), server_delay);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = bs::ByteStream::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now());
    }
  }

  // Sends `messages` messages, sleeping `gap` before each, then finishes.
  grpc::Status Upload(int messages, std::chrono::milliseconds gap) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(60));
    bs::WriteResponse response;
    auto writer = stub_->Write(&context, &response);
    for (int i = 0; i < messages; ++i) {
      std::this_thread::sleep_for(gap);
      bs::WriteRequest request;
      request.set_data("0123456789");
      request.set_finish_write(i + 1 == messages);
      if (!writer->Write(request)) {
        break;
      }
    }
    writer->WritesDone();
    return writer->Finish();
  }

  std::unique_ptr<IdleWatchdog> watchdog_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<bs::ByteStream::Stub> stub_;
};

TEST_F(IdleWatchdogTest, StalledClientIsCancelled) {
  Start(absl::Milliseconds(400), absl::ZeroDuration());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(60));
  bs::WriteResponse response;
  auto writer = stub_->Write(&context, &response);
  bs::WriteRequest request;
  request.set_data("first and only message");
  ASSERT_TRUE(writer->Write(request));
  // The client now stalls: Finish returns once the server cancels.
  auto start = std::chrono::steady_clock::now();
  grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  EXPECT_EQ(watchdog_->cancelled(), 1);
}

TEST_F(IdleWatchdogTest, SlowServerAndSteadyClientAreNotCancelled) {
  Start(absl::Milliseconds(400), absl::Milliseconds(600));
  EXPECT_TRUE(Upload(3, std::chrono::milliseconds(100)).ok());
  EXPECT_EQ(watchdog_->cancelled(), 0);
}

TEST_F(IdleWatchdogTest, ZeroTimeoutDisables) {
  Start(absl::ZeroDuration(), absl::ZeroDuration());
  EXPECT_TRUE(Upload(2, std::chrono::milliseconds(300)).ok());
  EXPECT_EQ(watchdog_->cancelled(), 0);
}

TEST_F(IdleWatchdogTest, ManyConcurrentStallsAndFinishes) {
  // Wide margins (1 s idle limit, 4 s stalls, no gaps for the others) so
  // that 32 streams on a loaded machine or under TSan stay on their side.
  Start(absl::Seconds(1), absl::ZeroDuration());
  std::vector<std::thread> threads;
  std::atomic<int> cancelled{0};
  std::atomic<int> ok{0};
  for (int i = 0; i < 32; ++i) {
    threads.emplace_back([&, i] {
      grpc::Status status = i % 2 == 0
                                ? Upload(2, std::chrono::milliseconds(0))
                                : Upload(2, std::chrono::milliseconds(4000));
      (status.ok() ? ok : cancelled).fetch_add(1);
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_EQ(ok.load(), 16);
  EXPECT_EQ(cancelled.load(), 16);
  EXPECT_EQ(watchdog_->cancelled(), 16);
}

}  // namespace
}  // namespace cairn::rpc
