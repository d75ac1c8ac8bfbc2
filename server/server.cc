// Wiring only: owns the I/O pool, the ActionCache and the services, and
// shuts them down in order (gRPC server, then pool; services outlive both).
#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "actioncache/action_cache.h"
#include "actioncache/action_cache_service.h"
#include "asset/asset_service.h"
#include "asset/asset_store.h"
#include "cas/bytestream_service.h"
#include "cas/cas_service.h"
#include "server/capabilities.h"
#include "server/idle_watchdog.h"
#include "server/io_pool.h"
#include "server/metrics_interceptor.h"

namespace cairn::server {

struct CairnServer::Impl {
  explicit Impl(const ServerOptions& options)
      : pool(IoPoolOptions{options.io_threads, options.io_queue}),
        watchdog(options.stream_idle_timeout),
        action_cache(options.store),
        assets(options.store) {}

  // Creates the services over `options.store`, this pool and cache.
  void MakeServices(const ServerOptions& options);

  IoPool pool;
  IdleWatchdog watchdog;  // Cancels stalled ByteStream uploads.
  actioncache::ActionCache action_cache;
  asset::AssetStore assets;
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

// Registers gauges read from the store's counters and the pool's queue.
void RegisterGauges(Registry* r, cas::BlobStore* store, IoPool* pool) {
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
  r->NewCallbackGauge("cairn_io_queue_depth",
                      "Tasks waiting for an I/O thread.",
                      [pool] { return static_cast<double>(pool->Queued()); });
}

}  // namespace

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
    interceptors.push_back(NewMetricsInterceptorFactory(options.metrics));
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
    RegisterGauges(options.metrics, options.store, &impl->pool);
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

void CairnServer::Impl::MakeServices(const ServerOptions& options) {
  CapabilitiesOptions caps_options{options.read_only,
                                   options.max_batch_total_size_bytes,
                                   options.max_cas_blob_size_bytes,
                                   /*zstd=*/true};
  caps_options.authorizer = options.authorizer;
  capabilities = NewCapabilitiesService(caps_options);
  cas::CasServiceOptions cas_options;
  cas_options.store = options.store;
  cas_options.pool = &pool;
  cas_options.read_only = options.read_only;
  cas_options.max_batch_total_size_bytes = options.max_batch_total_size_bytes;
  cas_options.max_cas_blob_size_bytes = options.max_cas_blob_size_bytes;
  cas_options.max_message_bytes = options.max_message_bytes;
  cas_options.authorizer = options.authorizer;
  cas = cas::NewCasService(cas_options);
  cas::ByteStreamServiceOptions bs_options;
  bs_options.store = options.store;
  bs_options.pool = &pool;
  bs_options.read_only = options.read_only;
  bs_options.max_cas_blob_size_bytes = options.max_cas_blob_size_bytes;
  bs_options.partial_upload_idle_timeout = options.partial_upload_idle_timeout;
  bs_options.authorizer = options.authorizer;
  bs_options.watchdog = &watchdog;
  bytestream = cas::NewByteStreamService(bs_options);
  actioncache::ActionCacheServiceOptions ac_options;
  ac_options.cache = &action_cache;
  ac_options.store = options.store;
  ac_options.pool = &pool;
  ac_options.read_only = options.read_only;
  ac_options.authorizer = options.authorizer;
  ac = actioncache::NewActionCacheService(ac_options);
  asset::AssetServiceOptions asset_options;
  asset_options.assets = &assets;
  asset_options.pool = &pool;
  asset_options.read_only = options.read_only;
  asset_options.authorizer = options.authorizer;
  fetch = asset::NewFetchService(asset_options);
  push = asset::NewPushService(asset_options);
}

}  // namespace cairn::server
