// Wiring only: owns the I/O pool, the ActionCache and the services, and
// shuts them down in order (gRPC server, then pool; services outlive both).
#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "actioncache/action_cache.h"
#include "actioncache/service/action_cache_service.h"
#include "asset/asset_store.h"
#include "asset/service/asset_service.h"
#include "capabilities/capabilities.h"
#include "cas/service/bytestream_service.h"
#include "cas/service/cas_service.h"
#include "rpc/idle_watchdog.h"
#include "rpc/io_pool.h"
#include "rpc/metrics_interceptor.h"
#include "rpc/write_quota.h"
#include "server/log.h"

namespace cairn::server {

struct CairnServer::Impl {
  explicit Impl(const ServerOptions& options)
      : pool(rpc::IoPoolOptions{options.io_threads, options.io_queue,
                              options.io_stream_nice}),
        watchdog(options.stream_idle_timeout),
        read_buffers(options.read_buffer_bytes, kMinReadChunk, kReadChunk),
        write_quota(rpc::WriteQuotaOptions{options.write_quota_per_hour},
                    options.metrics),
        action_cache(options.store,
                     actioncache::ValidationOptions{
                         .allow_escaping_symlink_targets =
                             !options.strict_symlink_targets}),
        assets(options.store),
        rpc_metrics(options.metrics == nullptr
                        ? nullptr
                        : std::make_unique<rpc::RpcMetrics>(options.metrics,
                                                            AccessLog())) {}

  // Creates the services over `options.store`, this pool and cache.
  void MakeServices(const ServerOptions& options);

  // ByteStream Read chunks: 1 MiB, or less when many Reads share the budget.
  static constexpr size_t kReadChunk = size_t{1} << 20;
  static constexpr size_t kMinReadChunk = size_t{16} << 10;

  rpc::IoPool pool;
  rpc::IdleWatchdog watchdog;  // Cancels stalled ByteStream uploads.
  cas::ReadBufferBudget read_buffers;
  cas::UploadLimitStats upload_stats;
  rpc::WriteQuota write_quota;
  actioncache::ActionCache action_cache;
  asset::AssetStore assets;
  // Per-RPC metrics (null without options.metrics): the interceptor's, and
  // the ActionCache methods' own.
  std::unique_ptr<rpc::RpcMetrics> rpc_metrics;
  std::unique_ptr<grpc::Service> capabilities;
  std::unique_ptr<grpc::Service> cas;
  std::unique_ptr<grpc::Service> bytestream;
  std::unique_ptr<grpc::Service> ac;
  std::unique_ptr<grpc::Service> fetch;  // Remote Asset API.
  std::unique_ptr<grpc::Service> push;
  std::unique_ptr<grpc::Server> server;  // Declared last: destroyed first.
  absl::Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
};

namespace {

absl::Status CheckOptions(const ServerOptions& options) {
  if (options.store == nullptr) {
    return absl::InvalidArgumentError("server: no store");
  }
  if (options.max_batch_total_size_bytes <= 0 ||
      options.max_batch_total_size_bytes + (int64_t{1} << 20) >
          options.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server: max batch size ", options.max_batch_total_size_bytes,
        " must be positive and at least 1 MiB below the max message size ",
        options.max_message_bytes));
  }
  return absl::OkStatus();
}

// Returns the upload caps `options` ask for (see ServerOptions).
cas::UploadLimits UploadLimitsFor(const ServerOptions& options) {
  const int64_t store = options.store->Stats().max_bytes;
  auto bytes = [store](int64_t flag, int64_t share) -> int64_t {
    if (flag < 0) {
      return 0;  // No cap.
    }
    return flag > 0 ? flag : std::max<int64_t>(1, store / share);
  };
  cas::UploadLimits limits;
  limits.max_uploads_per_client =
      std::max<int64_t>(0, options.max_uploads_per_client);
  limits.max_bytes_per_client = bytes(options.max_upload_bytes_per_client, 4);
  limits.max_bytes = bytes(options.max_upload_bytes, 2);
  return limits;
}

// Registers the store's evictions by who wrote the evicted items.
void RegisterEvictionsByWriter(rpc::Registry* r, cas::BlobStore* store,
                               rpc::WriteQuota* writers) {
  auto read = [store, writers](bool bytes) {
    return [store, writers, bytes] {
      absl::flat_hash_map<std::string, double> by_label;
      for (const cas::OwnerEvictions& e : store->EvictionsByOwner()) {
        by_label[writers->LabelOfOwner(e.owner)] +=
            static_cast<double>(bytes ? e.bytes : e.items);
      }
      rpc::Registry::LabelledValues out;
      for (auto& [label, value] : by_label) {
        out.push_back({{label}, value});
      }
      return out;
    };
  };
  r->NewCallbackCounterFamily(
      "cairn_principal_evicted_items_total",
      "Items evicted, by who wrote them (token, certificate identity, "
      "\"peer\", or \"unknown\": stored before the last start).",
      {"principal"}, read(false));
  r->NewCallbackCounterFamily("cairn_principal_evicted_bytes_total",
                              "Bytes evicted, by who wrote them.",
                              {"principal"}, read(true));
}

// Registers gauges read from the store's counters, the pool's queue, the
// read buffers and the upload caps.
void RegisterGauges(rpc::Registry* r, cas::BlobStore* store, rpc::IoPool* pool,
                    cas::ReadBufferBudget* reads,
                    cas::UploadLimitStats* uploads) {
  auto stat = [store](int64_t cas::StoreStats::*field) {
    return
        [store, field] { return static_cast<double>(store->Stats().*field); };
  };
  r->NewCallbackGauge("cairn_store_bytes", "Bytes held by stored items.",
                      stat(&cas::StoreStats::used_bytes));
  r->NewCallbackGauge("cairn_store_max_bytes", "The store's size budget.",
                      stat(&cas::StoreStats::max_bytes));
  r->NewCallbackGauge("cairn_store_reserved_bytes",
                      "Bytes reserved by uploads in progress.",
                      stat(&cas::StoreStats::reserved_bytes));
  r->NewCallbackGauge("cairn_store_cas_entries", "CAS blobs stored.",
                      stat(&cas::StoreStats::cas_entries));
  r->NewCallbackGauge("cairn_store_ac_entries", "Action results stored.",
                      stat(&cas::StoreStats::ac_entries));
  r->NewCallbackGauge(
      "cairn_store_index_loading",
      "1 while the store's index loads after start-up.",
      [store] { return store->Stats().index_loading ? 1.0 : 0.0; });
  r->NewCallbackCounter("cairn_store_evictions_total",
                        "Items evicted to stay within the budget.",
                        stat(&cas::StoreStats::evictions));
  r->NewCallbackCounter("cairn_store_evicted_bytes_total", "Bytes evicted.",
                        stat(&cas::StoreStats::evicted_bytes));
  r->NewCallbackCounter("cairn_store_corruptions_total",
                        "Stored items found corrupt, removed, never served.",
                        stat(&cas::StoreStats::corruptions));
  r->NewCallbackCounter("cairn_store_read_hashes_total",
                        "Reads that hashed a whole stored item to verify it.",
                        stat(&cas::StoreStats::read_hashes));
  r->NewCallbackCounter("cairn_store_recompressed_blobs_total",
                        "Blobs re-encoded at --zstd_rest_level.",
                        stat(&cas::StoreStats::recompressed_blobs));
  r->NewCallbackCounter("cairn_store_recompressed_saved_bytes_total",
                        "Bytes of disk recompression at rest saved.",
                        stat(&cas::StoreStats::recompressed_saved_bytes));
  r->NewCallbackCounter("cairn_store_recompress_skipped_total",
                        "Blobs recompression at rest left as they were "
                        "(gone, not smaller, unreadable, queue full).",
                        stat(&cas::StoreStats::recompress_skipped));
  r->NewCallbackGauge("cairn_store_recompress_pending",
                      "Blobs waiting for recompression at rest.",
                      stat(&cas::StoreStats::recompress_pending));
  const double threads = pool->threads();
  r->NewCallbackGauge("cairn_io_threads", "I/O pool threads.",
                      [threads] { return threads; });
  r->NewCallbackGauge("cairn_io_queue_depth",
                      "Tasks waiting for an I/O thread.",
                      [pool] { return static_cast<double>(pool->Queued()); });
  r->NewCallbackGauge(
      "cairn_bytestream_read_buffer_bytes",
      "Bytes ByteStream Reads hold in response buffers (see --read_buffers).",
      [reads] { return static_cast<double>(reads->held_bytes()); });
  r->NewCallbackGauge(
      "cairn_bytestream_reads", "ByteStream Reads open.",
      [reads] { return static_cast<double>(reads->streams()); });
  auto count = [](const std::atomic<int64_t>* c) {
    return [c] { return static_cast<double>(c->load()); };
  };
  r->NewCallbackCounter("cairn_upload_refused_client_uploads_total",
                        "Uploads refused: the client had too many open.",
                        count(&uploads->refused_client_uploads));
  r->NewCallbackCounter("cairn_upload_refused_client_bytes_total",
                        "Uploads refused: the client's uploads reserve too "
                        "much.",
                        count(&uploads->refused_client_bytes));
  r->NewCallbackCounter("cairn_upload_refused_total_bytes_total",
                        "Uploads refused: all uploads reserve too much.",
                        count(&uploads->refused_total_bytes));
  r->NewCallbackCounter("cairn_bytestream_refused_client_streams_total",
                        "ByteStream calls refused: the client had "
                        "--max_streams_per_client open.",
                        count(&uploads->refused_client_streams));
  r->NewCallbackCounter("cairn_upload_parked_dropped_total",
                        "Interrupted uploads dropped to make room.",
                        count(&uploads->dropped_parked));
}

}  // namespace

int IoThreadsFor(int io_threads, int bucket_concurrency, unsigned cores) {
  if (io_threads > 0) {
    return io_threads;
  }
  return std::max(2 * static_cast<int>(std::max(1u, cores)),
                  bucket_concurrency);
}

absl::StatusOr<std::unique_ptr<CairnServer>> CairnServer::Start(
    const ServerOptions& options) {
  absl::Status status = CheckOptions(options);
  if (!status.ok()) {
    return status;
  }
  auto impl = std::make_unique<Impl>(options);
  impl->MakeServices(options);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  if (!options.listen_address.empty()) {
    builder.AddListeningPort(options.listen_address,
                             options.credentials != nullptr
                                 ? options.credentials
                                 : grpc::InsecureServerCredentials(),
                             &port);
  }
  if (options.metrics != nullptr) {
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(
        rpc::NewMetricsInterceptorFactory(impl->rpc_metrics.get()));
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
    RegisterGauges(options.metrics, options.store, &impl->pool,
                   &impl->read_buffers, &impl->upload_stats);
    RegisterEvictionsByWriter(options.metrics, options.store,
                              &impl->write_quota);
  }
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(impl->capabilities.get());
  builder.RegisterService(impl->cas.get());
  builder.RegisterService(impl->bytestream.get());
  builder.RegisterService(impl->ac.get());
  builder.RegisterService(impl->fetch.get());
  builder.RegisterService(impl->push.get());
  impl->server = builder.BuildAndStart();
  const bool tcp = !options.listen_address.empty() &&
                   !absl::StartsWith(options.listen_address, "unix:");
  if (impl->server == nullptr || (tcp && port == 0)) {
    return absl::UnavailableError(
        absl::StrCat("server: cannot listen on ", options.listen_address));
  }
  auto server = std::unique_ptr<CairnServer>(new CairnServer(std::move(impl)));
  server->port_ = tcp ? port : 0;
  return server;
}

CairnServer::CairnServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CairnServer::~CairnServer() { Shutdown(absl::Seconds(5)); }

std::shared_ptr<grpc::Channel> CairnServer::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  return impl_->server->InProcessChannel(args);
}

void CairnServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->shut_down) {
      return;
    }
    impl_->shut_down = true;
  }
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  impl_->pool.Shutdown();
}

void CairnServer::Wait() { impl_->server->Wait(); }

size_t CairnServer::QueuedIoTasksForTest() {
  return impl_->pool.QueuedForTest();
}

int64_t CairnServer::PeakReadBufferBytesForTest() {
  return impl_->read_buffers.peak_bytes();
}

rpc::WriteQuota* CairnServer::write_quota() { return &impl_->write_quota; }

int64_t CairnServer::UploadRefusalsForTest() {
  const cas::UploadLimitStats& s = impl_->upload_stats;
  return s.refused_client_uploads + s.refused_client_bytes +
         s.refused_total_bytes + s.refused_client_streams;
}

void CairnServer::Impl::MakeServices(const ServerOptions& options) {
  ::cairn::capabilities::CapabilitiesOptions caps_options{
      options.read_only, options.max_batch_total_size_bytes,
      options.max_cas_blob_size_bytes,
      /*zstd=*/true};
  caps_options.authorizer = options.authorizer;
  caps_options.strict_symlink_targets = options.strict_symlink_targets;
  capabilities = ::cairn::capabilities::NewCapabilitiesService(caps_options);
  cas::CasServiceOptions cas_options;
  cas_options.store = options.store;
  cas_options.pool = &pool;
  cas_options.read_only = options.read_only;
  cas_options.max_batch_total_size_bytes = options.max_batch_total_size_bytes;
  cas_options.max_cas_blob_size_bytes = options.max_cas_blob_size_bytes;
  cas_options.max_message_bytes = options.max_message_bytes;
  cas_options.authorizer = options.authorizer;
  cas_options.write_quota = &write_quota;
  cas = cas::NewCasService(cas_options);
  cas::ByteStreamServiceOptions bs_options;
  bs_options.store = options.store;
  bs_options.pool = &pool;
  bs_options.read_only = options.read_only;
  bs_options.max_cas_blob_size_bytes = options.max_cas_blob_size_bytes;
  bs_options.partial_upload_idle_timeout = options.partial_upload_idle_timeout;
  bs_options.authorizer = options.authorizer;
  bs_options.watchdog = &watchdog;
  bs_options.read_chunk_bytes = kReadChunk;
  bs_options.upload_limits = UploadLimitsFor(options);
  bs_options.upload_stats = &upload_stats;
  bs_options.max_streams_per_client = options.max_streams_per_client;
  bs_options.write_quota = &write_quota;
  if (options.read_buffer_bytes > 0) {
    bs_options.read_buffers = &read_buffers;
  }
  bytestream = cas::NewByteStreamService(bs_options);
  actioncache::ActionCacheServiceOptions ac_options;
  ac_options.cache = &action_cache;
  ac_options.store = options.store;
  ac_options.pool = &pool;
  ac_options.read_only = options.read_only;
  ac_options.authorizer = options.authorizer;
  ac_options.write_quota = &write_quota;
  ac_options.metrics = rpc_metrics.get();
  ac = actioncache::NewActionCacheService(ac_options);
  asset::AssetServiceOptions asset_options;
  asset_options.assets = &assets;
  asset_options.pool = &pool;
  asset_options.read_only = options.read_only;
  asset_options.authorizer = options.authorizer;
  asset_options.origin = options.asset_origin;
  asset_options.write_quota = &write_quota;
  fetch = asset::NewFetchService(asset_options);
  push = asset::NewPushService(asset_options);
}

}  // namespace cairn::server
