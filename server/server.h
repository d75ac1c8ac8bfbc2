// CairnServer: builds, starts and stops the gRPC server with every Cairn
// service (Capabilities, ContentAddressableStorage, ByteStream, ActionCache,
// Remote Asset Fetch and Push, gRPC health checking and server reflection) over
// one BlobStore. main.cc and the service tests share this wiring.
//
// Thread safety: Shutdown()/Wait() may be called from any thread; the other
// methods are const after Start().
#ifndef CAIRN_SERVER_SERVER_H_
#define CAIRN_SERVER_SERVER_H_

#include <grpcpp/channel.h>
#include <grpcpp/server.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "asset/origin_fetcher.h"
#include "cas/blob_store.h"
#include "rpc/auth.h"
#include "rpc/metrics.h"
#include "rpc/write_quota.h"

namespace cairn::server {

struct ServerOptions {
  // HOST:PORT to listen on; port 0 picks a free port (see port()).
  // "unix:///path" listens on a Unix domain socket. Empty means no listener
  // (in-process channels only).
  std::string listen_address = "127.0.0.1:9092";
  cas::BlobStore* store = nullptr;  // Not owned; must outlive the server.
  // When set, every call is recorded (rpc/metrics_interceptor.h) and
  // store and I/O-queue gauges are registered. Not owned; must outlive the
  // server, and must not be scraped after the server is destroyed.
  rpc::Registry* metrics = nullptr;
  bool read_only = false;
  // I/O pool threads (0 = 2 x cores; see IoThreadsFor()) and queued tasks
  // (0 = IoPool::kDefaultQueuePerThread per thread).
  int io_threads = 0;
  size_t io_queue = 0;
  // Nice value added to the I/O threads that run streams (rpc/io_pool.h):
  // bulk reads yield the CPU to small calls. 0: all at the process's.
  int io_stream_nice = 0;
  int64_t max_batch_total_size_bytes = int64_t{4} << 20;
  // Largest blob accepted for upload; 0 means no limit.
  int64_t max_cas_blob_size_bytes = 0;
  // An interrupted ByteStream upload is kept this long for resuming.
  absl::Duration partial_upload_idle_timeout = absl::Minutes(10);
  // Largest gRPC message received or sent; must exceed the batch limit.
  int max_message_bytes = 64 << 20;
  // Transport credentials for listen_address (server/tls.h); null means
  // plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Decides every call (rpc/auth.h); null lets every caller read and
  // write. Not owned; must outlive the server.
  const rpc::Authorizer* authorizer = nullptr;
  // A ByteStream upload whose client sends nothing for this long is
  // cancelled, releasing its reserved space (rpc/idle_watchdog.h); zero
  // disables.
  absl::Duration stream_idle_timeout = absl::Seconds(60);
  // Memory all ByteStream Reads together hold in response buffers; each
  // Read's chunk shrinks to its fair share of it, down to 16 KiB
  // (cas::ReadBufferBudget). 0 means fixed 1 MiB chunks.
  int64_t read_buffer_bytes = int64_t{128} << 20;
  // Caps on ByteStream uploads in progress (cas::UploadLimits): open uploads
  // per client, and bytes they reserve per client and in total. For the
  // byte caps 0 means a quarter (per client) or half (total) of the store's
  // size; -1 (or 0 for the count) means no cap.
  int64_t max_uploads_per_client = 256;
  int64_t max_upload_bytes_per_client = 0;
  int64_t max_upload_bytes = 0;
  // Most ByteStream calls one client may have open at once; 0: no cap.
  int64_t max_streams_per_client = 0;
  // Bytes each principal (rpc::PrincipalOf) may write per hour through
  // ByteStream Write, BatchUpdateBlobs and UpdateActionResult
  // (rpc::WriteQuota); 0: no quota. Bytes written are counted per principal
  // either way (metrics).
  int64_t write_quota_per_hour = 0;
  // UpdateActionResult refuses symlink targets that are absolute or leave
  // the output root (INVALID_ARGUMENT) and Capabilities advertises
  // DISALLOWED; false stores them as sent (actioncache::ValidationOptions).
  bool strict_symlink_targets = false;
  // Downloads Remote Asset FetchBlob misses from allowed origins; null:
  // never. Not owned; must outlive the server.
  asset::OriginFetcher* asset_origin = nullptr;
};

// Returns the I/O pool size for --io_threads = `io_threads`: itself when
// > 0; otherwise twice `cores`, raised to `bucket_concurrency` (the shared
// tier's --s3_max_concurrency; 0 without a bucket). A pool thread serving a
// local miss waits for bucket round trips (tens of milliseconds each), using
// no core and no disk meanwhile; with 2 x cores threads a node in front of a
// bucket ran that few requests at once and a cold node's Go build took 4x as
// long as a warm one's (docs/s3.md, "Threads").
int IoThreadsFor(int io_threads, int bucket_concurrency, unsigned cores);

class CairnServer {
 public:
  // Starts serving. INVALID_ARGUMENT for inconsistent options, UNAVAILABLE
  // when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<CairnServer>> Start(
      const ServerOptions& options);

  // Shuts down (with a 5 s grace period) if still running.
  ~CairnServer();

  CairnServer(const CairnServer&) = delete;
  CairnServer& operator=(const CairnServer&) = delete;

  // Returns the bound TCP port (0 without a TCP listener).
  int port() const { return port_; }

  // Returns a channel to this server that bypasses the network.
  std::shared_ptr<grpc::Channel> InProcessChannel();

  // Stops accepting calls, lets calls in flight finish until `deadline`
  // passes (then cancels them), and stops the I/O pool. Idempotent.
  void Shutdown(absl::Duration grace);

  // Blocks until the server has shut down.
  void Wait();

  // Returns the per-principal write accounting and quota the gRPC write
  // paths share (--write_quota_per_hour), for the HTTP cache to charge too.
  // Valid while this server lives.
  rpc::WriteQuota* write_quota();

  // Returns the number of tasks waiting in the I/O pool's queue.
  size_t QueuedIoTasksForTest();

  // Returns the most bytes ByteStream Reads held in response buffers at once
  // (0 when read_buffer_bytes is 0).
  int64_t PeakReadBufferBytesForTest();

  // Returns how often the upload caps refused an upload (any cap).
  int64_t UploadRefusalsForTest();

 private:
  struct Impl;
  explicit CairnServer(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace cairn::server

#endif  // CAIRN_SERVER_SERVER_H_
