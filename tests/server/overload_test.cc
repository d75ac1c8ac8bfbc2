// Overload and the I/O pool: a full queue answers RESOURCE_EXHAUSTED and the
// server keeps serving; IoPool unit behaviour; byte-size flag parsing.
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "rpc/io_pool.h"
#include "server/byte_size.h"
#include "server/server.h"
#include "tests/testutil/service_fixture.h"

namespace cairn::servertest {
namespace {

using ::grpc::ClientContext;
using ::grpc::StatusCode;

// Forwards to a memory store; FindMissing blocks until released.
class BlockingStore final : public cas::BlobStore {
 public:
  explicit BlockingStore(cas::BlobStore* inner) : inner_(inner) {}
  std::vector<cas::Digest> FindMissing(
      absl::Span<const cas::Digest> digests) override {
    entered_.fetch_add(1);
    release_.WaitForNotification();
    return inner_->FindMissing(digests);
  }
  bool Contains(const cas::Digest& d) override { return inner_->Contains(d); }
  absl::StatusOr<std::string> Read(const cas::Digest& d) override {
    return inner_->Read(d);
  }
  absl::StatusOr<std::unique_ptr<cas::BlobReader>> OpenRead(
      const cas::Digest& d, int64_t offset) override {
    return inner_->OpenRead(d, offset);
  }
  absl::Status Write(const cas::Digest& d, absl::string_view data) override {
    return inner_->Write(d, data);
  }
  absl::StatusOr<std::unique_ptr<cas::BlobWriter>> OpenWrite(
      const cas::Digest& d) override {
    return inner_->OpenWrite(d);
  }
  absl::StatusOr<std::string> GetEntry(absl::string_view key) override {
    return inner_->GetEntry(key);
  }
  absl::Status PutEntryImpl(absl::string_view key, absl::string_view value,
                            absl::Span<const cas::Digest> blobs,
                            PutCallback* then) override {
    return Reply(inner_->PutEntry(key, value, blobs), then);
  }
  cas::StoreStats Stats() override { return inner_->Stats(); }

  std::atomic<int> entered_{0};
  absl::Notification release_;

 private:
  cas::BlobStore* const inner_;
};

TEST(OverloadTest, FullQueueAnswersResourceExhausted) {
  auto memory = cas::NewMemoryBlobStore({1 << 20});
  BlockingStore store(memory.get());
  server::ServerOptions options;
  options.listen_address = "";
  options.store = &store;
  options.io_threads = 1;
  options.io_queue = 1;
  auto server = server::CairnServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub =
      v2::ContentAddressableStorage::NewStub((*server)->InProcessChannel());
  auto find = [&] {
    ClientContext context;
    v2::FindMissingBlobsRequest request;
    v2::FindMissingBlobsResponse response;
    return stub->FindMissingBlobs(&context, request, &response).error_code();
  };
  StatusCode first = StatusCode::UNKNOWN, second = StatusCode::UNKNOWN;
  std::thread t1([&] { first = find(); });
  while (store.entered_.load() == 0) {
    std::this_thread::yield();  // The only worker is now busy.
  }
  std::thread t2([&] { second = find(); });
  while ((*server)->QueuedIoTasksForTest() == 0) {
    std::this_thread::yield();  // The queue is now full.
  }
  EXPECT_EQ(find(), StatusCode::RESOURCE_EXHAUSTED);
  // Capabilities never touch the pool and keep answering.
  auto caps = v2::Capabilities::NewStub((*server)->InProcessChannel());
  ClientContext context;
  v2::ServerCapabilities answer;
  EXPECT_TRUE(
      caps->GetCapabilities(&context, v2::GetCapabilitiesRequest(), &answer)
          .ok());
  store.release_.Notify();
  t1.join();
  t2.join();
  EXPECT_EQ(first, StatusCode::OK);
  EXPECT_EQ(second, StatusCode::OK);
  EXPECT_EQ(find(), StatusCode::OK);
}

// Returns a one-worker pool (queue bound `max_queue` per lane) whose worker
// runs a task that blocks until `release` is notified.
std::unique_ptr<rpc::IoPool> HeldPool(size_t max_queue,
                                      absl::Notification& release) {
  auto pool = std::make_unique<rpc::IoPool>(
      rpc::IoPoolOptions{/*threads=*/1, /*max_queue=*/max_queue});
  auto started = std::make_shared<absl::Notification>();
  bool scheduled = pool->TrySchedule([started, &release] {
    started->Notify();
    release.WaitForNotification();
  });
  EXPECT_TRUE(scheduled);
  if (scheduled) {
    started->WaitForNotification();
  }
  return pool;
}

TEST(IoPoolTest, RunsEveryTaskAndDrainsOnShutdown) {
  std::atomic<int> ran{0};
  {
    rpc::IoPool pool({/*threads=*/3, /*max_queue=*/1000});
    EXPECT_EQ(pool.threads(), 3);
    for (int i = 0; i < 500; ++i) {
      ASSERT_TRUE(pool.TrySchedule([&ran] { ran.fetch_add(1); }));
    }
  }
  EXPECT_EQ(ran.load(), 500);
}

TEST(IoPoolTest, RefusesWhenFullOrStopped) {
  absl::Notification release;
  std::unique_ptr<rpc::IoPool> pool = HeldPool(2, release);
  EXPECT_TRUE(pool->TrySchedule([] {}));
  EXPECT_TRUE(pool->TrySchedule([] {}));
  absl::Status full = pool->Schedule("test", [] {});
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  release.Notify();
  pool->Shutdown();
  EXPECT_EQ(pool->Schedule("test", [] {}).code(),
            absl::StatusCode::kUnavailable);
}

TEST(IoPoolTest, StreamTasksLeaveAWorkerForCalls) {
  rpc::IoPool pool({/*threads=*/2, /*max_queue=*/100});
  absl::Notification release, first_started;
  std::atomic<int> streams_running{0};
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(pool.TrySchedule(
        [&] {
          if (streams_running.fetch_add(1) == 0) {
            first_started.Notify();
          }
          release.WaitForNotification();
        },
        rpc::Lane::kStream));
  }
  first_started.WaitForNotification();
  // Stream tasks whose I/O never ends hold one worker of two, not both.
  absl::Notification call_ran;
  ASSERT_TRUE(pool.TrySchedule([&] { call_ran.Notify(); }));
  EXPECT_TRUE(call_ran.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(streams_running.load(), 1);
  release.Notify();
  pool.Shutdown();
  EXPECT_EQ(streams_running.load(), 5);
}

TEST(IoPoolTest, LanesHaveTheirOwnQueueBound) {
  absl::Notification release;
  std::unique_ptr<rpc::IoPool> pool = HeldPool(2, release);
  EXPECT_TRUE(pool->TrySchedule([] {}, rpc::Lane::kStream));
  EXPECT_TRUE(pool->TrySchedule([] {}, rpc::Lane::kStream));
  EXPECT_EQ(pool->Schedule(
                    "read", [] {}, rpc::Lane::kStream)
                .code(),
            absl::StatusCode::kResourceExhausted);
  // Streams filling their queue leave room for calls.
  EXPECT_TRUE(pool->TrySchedule([] {}));
  EXPECT_TRUE(pool->TrySchedule([] {}));
  EXPECT_FALSE(pool->TrySchedule([] {}));
  EXPECT_EQ(pool->Queued(), 4u);
  release.Notify();
}

TEST(IoPoolTest, CallsDoNotStarveStreams) {
  absl::Notification release;
  std::unique_ptr<rpc::IoPool> pool = HeldPool(100, release);
  std::vector<char> order;  // Only the one worker appends.
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(pool->TrySchedule([&order] { order.push_back('c'); }));
  }
  ASSERT_TRUE(pool->TrySchedule([&order] { order.push_back('s'); },
                                rpc::Lane::kStream));
  release.Notify();
  pool->Shutdown();
  ASSERT_EQ(order.size(), 21u);
  const auto stream_at = std::find(order.begin(), order.end(), 's');
  EXPECT_EQ(stream_at - order.begin(), rpc::IoPool::kCallBurst);
}

// Returns the calling thread's nice value.
int ThreadNice() {
  return getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
}

// Returns the nice value of the worker that runs a task of `lane` scheduled
// on an otherwise idle `pool`. The previous task's worker may still be
// marking itself free after the task ended (a call meanwhile goes to a
// lowered worker, by design), so a call waits for the call worker first.
int NiceOfTask(rpc::IoPool& pool, rpc::Lane lane) {
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (lane == rpc::Lane::kCall && pool.CallWorkerBusyForTest() &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  std::atomic<int> nice{-100};
  absl::Notification ran;
  EXPECT_TRUE(pool.TrySchedule(
      [&] {
        nice = ThreadNice();
        ran.Notify();
      },
      lane));
  ran.WaitForNotification();
  return nice.load();
}

TEST(IoPoolTest, StreamWorkersRunAtLowerPriorityCallsDoNot) {
  const int base = ThreadNice();
  if (base > 19 - 5) {
    GTEST_SKIP() << "this process already runs at nice " << base;
  }
  rpc::IoPool pool({/*threads=*/3, /*max_queue=*/100, /*stream_nice=*/5});
  EXPECT_EQ(pool.stream_nice(), 5);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(NiceOfTask(pool, rpc::Lane::kStream), base + 5);
    // An idle call worker takes every call, at the process's priority.
    EXPECT_EQ(NiceOfTask(pool, rpc::Lane::kCall), base);
  }
}

TEST(IoPoolTest, WithoutStreamNiceEveryWorkerKeepsItsPriority) {
  const int base = ThreadNice();
  rpc::IoPool pool({/*threads=*/3, /*max_queue=*/100});
  EXPECT_EQ(pool.stream_nice(), 0);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(NiceOfTask(pool, rpc::Lane::kStream), base);
    EXPECT_EQ(NiceOfTask(pool, rpc::Lane::kCall), base);
  }
  // One thread runs both lanes, so it is not lowered.
  rpc::IoPool one({/*threads=*/1, /*max_queue=*/100, /*stream_nice=*/5});
  EXPECT_EQ(one.stream_nice(), 0);
  EXPECT_EQ(NiceOfTask(one, rpc::Lane::kStream), base);
}

TEST(IoPoolTest, CallsOverflowToStreamWorkersWhileTheCallWorkerIsBusy) {
  rpc::IoPool pool({/*threads=*/2, /*max_queue=*/100, /*stream_nice=*/1});
  absl::Notification release, held;
  ASSERT_TRUE(pool.TrySchedule([&] {
    held.Notify();
    release.WaitForNotification();
  }));
  held.WaitForNotification();
  // The call worker is held: the next call runs on the stream worker.
  absl::Notification call_ran;
  ASSERT_TRUE(pool.TrySchedule([&] { call_ran.Notify(); }));
  EXPECT_TRUE(call_ran.WaitForNotificationWithTimeout(absl::Seconds(30)));
  // And streams still run, on the stream worker, while calls hold the other.
  absl::Notification stream_ran;
  ASSERT_TRUE(pool.TrySchedule([&] { stream_ran.Notify(); },
                               rpc::Lane::kStream));
  EXPECT_TRUE(stream_ran.WaitForNotificationWithTimeout(absl::Seconds(30)));
  release.Notify();
  pool.Shutdown();
}

TEST(IoPoolTest, StreamWorkersDrainCallsOnShutdown) {
  std::atomic<int> ran{0};
  {
    rpc::IoPool pool({/*threads=*/3, /*max_queue=*/1000, /*stream_nice=*/1});
    for (int i = 0; i < 300; ++i) {
      ASSERT_TRUE(pool.TrySchedule([&ran] { ran.fetch_add(1); }));
      ASSERT_TRUE(
          pool.TrySchedule([&ran] { ran.fetch_add(1); }, rpc::Lane::kStream));
    }
  }
  EXPECT_EQ(ran.load(), 600);
}

TEST(IoPoolTest, DefaultsToTwiceTheCores) {
  rpc::IoPool pool({});
  EXPECT_EQ(pool.threads(), 2 * static_cast<int>(std::max(
                                    1u, std::thread::hardware_concurrency())));
  // A thousand readers (issue 17) fit with room to spare on one core.
  EXPECT_EQ(pool.max_queue(), 1024u * pool.threads());
}

// Regression (issue 14): a node in front of a bucket had 2 x cores threads,
// each held by bucket round trips, and a cold node's Go build ran 4x slower.
TEST(IoPoolTest, ThreadsForABucketNodeCoverItsBucketConcurrency) {
  struct Case {
    int flag, bucket_concurrency;
    unsigned cores;
    int want;
  } cases[] = {
      {0, 0, 2, 4},     // No bucket: twice the cores.
      {0, 0, 0, 2},     // Unknown core count: as one core.
      {0, 32, 2, 32},   // A bucket: as many as its requests in flight.
      {0, 32, 24, 48},  // Many cores: still twice them.
      {6, 32, 2, 6},    // An explicit --io_threads wins.
  };
  for (const Case& c : cases) {
    EXPECT_EQ(server::IoThreadsFor(c.flag, c.bucket_concurrency, c.cores),
              c.want)
        << c.flag << " " << c.bucket_concurrency << " " << c.cores;
  }
}

TEST(ByteSizeTest, ParsesHumanSizes) {
  // A table of cases, the shape of the parser's own table of units.
  struct Case {
    const char* text;
    int64_t want;
  };
  const Case good[] = {
      {"0", 0},
      {"123", 123},
      {"1k", 1024},
      {"4KiB", 4096},
      {"4KB", 4000},
      {"10 MiB", 10 << 20},
      {"50GiB", int64_t{50} << 30},
      {"2gb", 2000000000},
      {"1T", int64_t{1} << 40},
      {"3TB", int64_t{3000000000000}},
      {" 7B ", 7},
  };
  for (const Case& c : good) {
    auto got = server::ParseByteSize(c.text);
    ASSERT_TRUE(got.ok()) << c.text << ": " << got.status();
    EXPECT_EQ(*got, c.want) << c.text;
  }
  for (const char* bad :
       {"", "GiB", "-1", "1.5GiB", "10 XB", "99999999999TiB"}) {
    EXPECT_FALSE(server::ParseByteSize(bad).ok()) << bad;
  }
  EXPECT_EQ(server::FormatByteSize(int64_t{10} << 30), "10GiB");
  EXPECT_EQ(server::FormatByteSize(1536), "1536");
}

}  // namespace
}  // namespace cairn::servertest
