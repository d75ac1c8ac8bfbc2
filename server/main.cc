// cairn-server: a Remote Execution API v2 cache server.
//
// Parses flags, opens the store, starts the gRPC server (server/server.h),
// prints one start-up line on stderr and serves until SIGINT or SIGTERM, then
// shuts down gracefully (calls in flight get a grace period).
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "asset/origin_fetcher.h"
#include "cas/blob_store.h"
#include "cas/disk_blob_store.h"
#include "cas/memory_blob_store.h"
#include "http/http_cache.h"
#include "rpc/auth.h"
#include "rpc/metrics.h"
#include "server/byte_size.h"
#include "server/config.h"
#include "server/log.h"
#include "server/metrics_http.h"
#include "server/server.h"
#include "server/shared_tier.h"
#include "server/tls.h"

using cairn::server::ByteSize;

// The flag table: one ABSL_FLAG per setting, the same shape on purpose
// (docs/flags.md is generated from it by tools/flags_doc.py).
ABSL_FLAG(std::string, listen, "127.0.0.1:9092",
          "Address to serve gRPC on, HOST:PORT or unix:///PATH. Port 0 picks "
          "a free port; the start-up line on stderr shows the port chosen.");
ABSL_FLAG(std::string, dir, "~/.cache/cairn",
          "Directory holding the store (created if absent; ~ expands to "
          "$HOME).");
ABSL_FLAG(ByteSize, max_size, ByteSize{int64_t{10} << 30},
          "Size budget of the store (CAS blobs plus action results), e.g. "
          "50GiB or 500MB. Least recently used items are evicted beyond it.");
ABSL_FLAG(ByteSize, max_blob_size, ByteSize{0},
          "Largest blob accepted for upload (advertised as "
          "max_cas_blob_size_bytes); 0 means limited by --max_size only.");
ABSL_FLAG(ByteSize, ac_cache_size, ByteSize{int64_t{4} << 20},
          "Memory for copies of recently written or read action results, so "
          "that GetActionResult hits are answered without disk I/O; 0 turns "
          "it off.");
ABSL_FLAG(ByteSize, small_item_max, ByteSize{4096},
          "Blobs and action results up to this size are kept in one "
          "embedded database (RocksDB, in --dir/small; group commit) instead "
          "of a file each; 0 stores every new item as a file.");
ABSL_FLAG(std::string, store_compressed, "auto",
          "auto: blobs uploaded zstd-compressed (compressed-blobs) that go to "
          "a file are kept compressed on disk when that saves at least an "
          "eighth, so compressed reads cost no recompression (plain reads "
          "decompress); the store's layout becomes version 3. never: store "
          "every new blob uncompressed (the layout stays 2).");
ABSL_FLAG(int, zstd_rest_level, 18,
          "Recompression at rest (with --store_compressed=auto): a "
          "background thread, at nice 19, re-encodes blobs written to files "
          "(beyond --small_item_max and at least --zstd_rest_min_size) as "
          "zstd at this level (1-19), most recently written first, and keeps "
          "the new file when it is smaller; the new frames are verified "
          "before they replace the old file; plain blobs whose samples do "
          "not compress are skipped. Compressed reads then move fewer bytes "
          "(a warm Go build over a slow link: 16% fewer). 0 turns it off. "
          "Metrics: cairn_store_recompress_pending and friends.");
ABSL_FLAG(ByteSize, zstd_rest_min_size, ByteSize{0},
          "Smallest blob --zstd_rest_level recompresses.");
ABSL_FLAG(int, io_threads, 0,
          "Threads doing storage I/O; 0 means twice the number of cores, or "
          "with --s3_bucket at least --s3_max_concurrency (they wait on "
          "bucket round trips).");
ABSL_FLAG(int64_t, io_queue, 0,
          "Tasks that may wait for an I/O thread, per kind (calls, streams); "
          "each open ByteStream stream waits as one task between messages, "
          "so this bounds the streams waiting on I/O at once. Beyond it new "
          "work answers RESOURCE_EXHAUSTED. 0 means 1024 per I/O thread.");
ABSL_FLAG(int, io_stream_nice, 10,
          "Nice value (0-19) added to the I/O threads that run streams "
          "(ByteStream, GetTree): on a busy CPU, bulk reads then yield to "
          "small calls such as GetActionResult; one I/O thread stays at the "
          "server's priority for calls. Needs no privilege. 0 keeps all I/O "
          "threads at the server's priority.");
ABSL_FLAG(bool, read_only, false,
          "Serve reads only: uploads and UpdateActionResult answer "
          "PERMISSION_DENIED and Capabilities reports update_enabled=false.");
ABSL_FLAG(ByteSize, max_batch_size, ByteSize{int64_t{4} << 20},
          "max_batch_total_size_bytes: the most data one BatchUpdateBlobs or "
          "BatchReadBlobs call may carry.");
ABSL_FLAG(bool, fsync, true,
          "fsync every stored item before it becomes visible (turn off only "
          "for throwaway caches).");
ABSL_FLAG(bool, memory, false,
          "Keep the store in memory instead of --dir (lost at exit).");
ABSL_FLAG(std::string, metrics_listen, "",
          "Serve Prometheus metrics at http://HOST:PORT/metrics (and "
          "/healthz); empty turns the endpoint off. Port 0 picks a free port.");
ABSL_FLAG(std::string, http_listen, "",
          "Also serve the HTTP/1.1 cache (bazel-remote's /cas/ and /ac/, and "
          "/kv/NAMESPACE/KEY for ccache, Gradle, sccache) on HOST:PORT; empty "
          "turns it off. Same store, tokens, TLS files and --read_only.");
ABSL_FLAG(int, http_threads, 0,
          "Connections the HTTP cache serves at once (each keeps a thread "
          "while open); 0 means 4 x cores, at least 8.");
ABSL_FLAG(std::string, http_spool_dir, "",
          "Directory for HTTP request bodies whose digest is not known up "
          "front (over 1 MiB or chunked) and for --asset_origins downloads "
          "while they are hashed; empty means the system's temporary "
          "directory.");
ABSL_FLAG(std::string, asset_origins, "",
          "Comma-separated URI prefixes (http:// or https://, each with a "
          "path, e.g. https://github.com/) that a Remote Asset FetchBlob miss "
          "may download from; the content is stored and served to later "
          "fetches (Bazel's --experimental_remote_downloader). Empty: never "
          "download; only pushed assets are served.");
ABSL_FLAG(std::string, log_level, "info",
          "Least severe log level written to stderr: debug, info, warning, "
          "error or off.");
ABSL_FLAG(std::string, access_log, "",
          "Write one line per finished call (method, status, latency, bytes, "
          "peer) to this file; '-' means stderr; empty turns it off.");
ABSL_FLAG(std::string, config, "",
          "YAML file of settings named like these flags (e.g. 'max_size: "
          "50GiB'); flags given on the command line win over it.");

ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain: serve TLS (with --tls_key) instead of "
          "plaintext.");
ABSL_FLAG(std::string, tls_key, "",
          "PEM private key (unencrypted) for --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: mutual TLS; clients must present a certificate "
          "signed by it.");
ABSL_FLAG(std::string, tls_client_access, "write",
          "Access of a verified client certificate the tokens file does not "
          "list: none, read or write.");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "File of bearer tokens and certificate identities, one per line "
          "('rw TOKEN', 'ro TOKEN', 'rw-cert NAME', 'ro-cert NAME', "
          "'none-cert NAME'; '#' comments); reloaded on SIGHUP.");
ABSL_FLAG(std::string, anonymous_access, "",
          "Access of callers without credentials: none, read or write. "
          "Default: write when neither --auth_tokens_file nor "
          "--tls_client_ca is given, else none.");
ABSL_FLAG(absl::Duration, partial_upload_timeout, absl::Minutes(10),
          "Keep an interrupted ByteStream upload (and the space it reserved) "
          "this long for the client to resume it.");
ABSL_FLAG(absl::Duration, stream_idle_timeout, absl::Seconds(60),
          "Cancel a ByteStream upload whose client sends nothing for this "
          "long, releasing its reserved space; 0 disables.");
ABSL_FLAG(int64_t, max_uploads_per_client, 256,
          "Most ByteStream uploads one client (token, certificate or address) "
          "may have in progress, parked ones included; a new one drops its "
          "oldest parked upload, else is refused (RESOURCE_EXHAUSTED); 0 "
          "means no cap.");
ABSL_FLAG(int64_t, max_streams_per_client, 0,
          "Most ByteStream calls (reads and uploads) one client may have "
          "open at once; past it a call is refused with RESOURCE_EXHAUSTED "
          "(the client retries with backoff); 0 means no cap.");
ABSL_FLAG(bool, strict_symlink_targets, false,
          "Refuse (INVALID_ARGUMENT) action results whose symlink targets are "
          "absolute or climb out of the output root, and advertise "
          "DISALLOWED; by default targets are stored as sent (the cache never "
          "follows a link; the client materialising it decides).");
ABSL_FLAG(ByteSize, write_quota_per_hour, ByteSize{0},
          "Most bytes one principal (token, certificate identity or client "
          "address) may write per hour (ByteStream Write, BatchUpdateBlobs, "
          "UpdateActionResult, Remote Asset Push, HTTP PUT; a burst of up to "
          "an hour's worth, then at that rate); past it a write is refused "
          "with RESOURCE_EXHAUSTED and a google.rpc.RetryInfo delay (HTTP: "
          "429 with Retry-After). 0 means no quota.");
ABSL_FLAG(std::string, max_upload_reserve_per_client, "auto",
          "Most bytes one client's uploads in progress may reserve: a size, "
          "'auto' (a quarter of --max_size) or 'off'.");
ABSL_FLAG(std::string, max_upload_reserve, "auto",
          "Most bytes all uploads in progress may reserve: a size, 'auto' "
          "(half of --max_size) or 'off'.");
ABSL_FLAG(ByteSize, read_buffers, ByteSize{int64_t{128} << 20},
          "Memory all ByteStream Reads together hold for responses: each "
          "Read's chunk shrinks from 1 MiB to its share of this (at least "
          "16 KiB), so memory does not grow with slow readers; 0 means "
          "fixed 1 MiB chunks.");

namespace {

// Set when the store's background index load failed (the exit status is 1).
std::atomic<bool> index_load_failed{false};

std::string ExpandHome(const std::string& path) {
  const char* home = std::getenv("HOME");
  if (home != nullptr && (path == "~" || absl::StartsWith(path, "~/"))) {
    return absl::StrCat(home, path.substr(1));
  }
  return path;
}

// Returns `listen` with its port replaced by `port` (Unix sockets as given).
std::string BoundAddress(const std::string& listen, int port) {
  if (absl::StartsWith(listen, "unix:")) {
    return listen;
  }
  const size_t colon = listen.rfind(':');
  const std::string host =
      colon == std::string::npos ? listen : listen.substr(0, colon);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<std::unique_ptr<cairn::cas::BlobStore>> OpenStore(
    std::string* description) {
  const int64_t max_size = absl::GetFlag(FLAGS_max_size).bytes;
  const std::string max = cairn::server::FormatByteSize(max_size);
  if (absl::GetFlag(FLAGS_memory)) {
    *description = absl::StrCat("in memory (max ", max, ")");
    return cairn::cas::NewMemoryBlobStore({max_size});
  }
  cairn::cas::DiskBlobStoreOptions options;
  options.root = ExpandHome(absl::GetFlag(FLAGS_dir));
  options.max_size_bytes = max_size;
  options.fsync = absl::GetFlag(FLAGS_fsync);
  options.entry_cache_bytes = absl::GetFlag(FLAGS_ac_cache_size).bytes;
  options.small_item_max_bytes = absl::GetFlag(FLAGS_small_item_max).bytes;
  // Serve at once; lookups the partial index cannot answer go to the disk.
  options.load_index_in_background = true;
  options.on_index_loaded = [](const absl::Status& s,
                               const cairn::cas::StoreStats& stats) {
    if (s.ok()) {
      spdlog::info(
          "cairn-server: index loaded in {:.2f}s: {} blobs, {} action "
          "results, {} bytes",
          stats.index_load_seconds, stats.cas_entries, stats.ac_entries,
          stats.used_bytes);
      return;
    }
    // The store still answers exactly but would never evict: stop, as a
    // failed start-up would have.
    spdlog::error("cairn-server: loading the index failed: {}; shutting down",
                  s.ToString());
    index_load_failed.store(true);
    kill(getpid(), SIGTERM);
  };
  const std::string compressed = absl::GetFlag(FLAGS_store_compressed);
  if (compressed != "auto" && compressed != "never") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--store_compressed takes auto or never, not '", compressed, "'"));
  }
  options.keep_zstd = compressed == "auto";
  options.rest_zstd_level = absl::GetFlag(FLAGS_zstd_rest_level);
  options.rest_min_bytes = absl::GetFlag(FLAGS_zstd_rest_min_size).bytes;
  *description = absl::StrCat(options.root, " (max ", max, ")");
  return cairn::cas::NewDiskBlobStore(options);
}

// Returns the Authorizer the flags ask for, or null when access control is
// off (no tokens file, no client CA, anonymous write). `*note` describes it.
absl::StatusOr<std::unique_ptr<cairn::rpc::Authorizer>> MakeAuthorizer(
    std::string* note) {
  using cairn::rpc::Access;
  cairn::rpc::AuthOptions auth;
  auth.tokens_file = ExpandHome(absl::GetFlag(FLAGS_auth_tokens_file));
  const bool mtls = !absl::GetFlag(FLAGS_tls_client_ca).empty();
  std::string anonymous = absl::GetFlag(FLAGS_anonymous_access);
  if (anonymous.empty()) {
    anonymous = auth.tokens_file.empty() && !mtls ? "write" : "none";
  }
  absl::StatusOr<Access> access = cairn::rpc::ParseAccess(anonymous);
  absl::StatusOr<Access> tls =
      cairn::rpc::ParseAccess(absl::GetFlag(FLAGS_tls_client_access));
  if (!access.ok() || !tls.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--anonymous_access and --tls_client_access take none, read or "
        "write, not '",
        anonymous, "' and '", absl::GetFlag(FLAGS_tls_client_access), "'"));
  }
  auth.anonymous = *access;
  auth.tls_client_access = *tls;
  *note = absl::StrCat(", anonymous access ", anonymous);
  if (auth.tokens_file.empty() && !mtls && *access == Access::kWrite) {
    *note = "";
    return std::unique_ptr<cairn::rpc::Authorizer>();
  }
  if (!auth.tokens_file.empty()) {
    absl::StrAppend(note, ", tokens from ", auth.tokens_file);
  }
  return cairn::rpc::NewAuthorizer(auth);
}

// Returns the ServerOptions value of an upload reserve cap flag: 0 for
// "auto", -1 for "off", else the size.
absl::StatusOr<int64_t> ParseUploadCap(const std::string& text) {
  if (text == "auto") {
    return 0;
  }
  if (text == "off") {
    return -1;
  }
  absl::StatusOr<int64_t> bytes = cairn::server::ParseByteSize(text);
  if (!bytes.ok() || *bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a positive size, 'auto' or 'off'"));
  }
  return bytes;
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "cairn-server: %s\n", status.ToString().c_str());
  return 1;
}

// Applies --config (found before flag parsing so the command line wins) and
// parses the command line.
absl::Status LoadSettings(int argc, char** argv) {
  if (std::optional<std::string> path =
          cairn::server::FindConfigArg(argc, argv)) {
    if (absl::Status s = cairn::server::ApplyConfigFile(*path); !s.ok()) {
      return s;
    }
  }
  absl::ParseCommandLine(argc, argv);
  return cairn::server::InitLogging(absl::GetFlag(FLAGS_log_level),
                                    absl::GetFlag(FLAGS_access_log));
}

}  // namespace

namespace {

// --help lists the flags defined in server/ (this file and what it wires).
// --help lists every flag the binary defines itself: all but Abseil's own
// (--flagfile, --fromenv, ...), which --helpfull adds.
bool IsServerFlagFile(absl::string_view file) {
  return !absl::StrContains(file, "absl/");
}

}  // namespace

int main(int argc, char** argv) {
  // Debian builds Abseil with the mutex deadlock detector on; it costs about
  // 2% of the server's CPU (GraphCycles bookkeeping on every lock).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // One malloc arena per two cores (glibc's default is eight per core; set
  // MALLOC_ARENA_MAX to choose). Each arena keeps the memory its threads
  // freed, so gRPC and pool threads each held their own few MiB: peak RSS
  // under BatchReadBlobs at 32 streams 63-64 MiB with the default, 46-47
  // with one arena, CPU per call unchanged (tcache serves small blocks
  // without the arena lock).
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) {
    mallopt(M_ARENA_MAX, static_cast<int>(std::max(
                             1u, std::thread::hardware_concurrency() / 2)));
  }
  // glibc's malloc keeps its default, adaptive mmap and trim thresholds:
  // fixing them (8 MiB / 64 MiB, tried for the 1 MiB chunk buffers) kept up
  // to 176 MiB resident after 1 GiB transfers and halved 16 MiB writes at 4
  // streams (280-320 vs 544-554 MB/s), now that each call reuses its buffers.
  // Mirrors client/gocacheprog/main.cc: the two binaries share no library
  // that could hold it (client/ never includes server/).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = &IsServerFlagFile;
  usage_config.contains_helpshort_flags = &IsServerFlagFile;
  usage_config.version_string = [] {
    return std::string("cairn-server " CAIRN_VERSION "\n");
  };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "A Remote Execution API v2 cache server (CAS, ActionCache, ByteStream, "
      "Capabilities).\nUsage: cairn-server [--listen=HOST:PORT] [--dir=PATH] "
      "[--max_size=50GiB] ...\nPoint Bazel at it with "
      "--remote_cache=grpc://127.0.0.1:9092.");
  if (absl::Status s = LoadSettings(argc, argv); !s.ok()) {
    return Fail(s);
  }

  // Block the shutdown signals before any thread starts so that every thread
  // inherits the mask and only sigwait() below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);  // Reloads --auth_tokens_file.
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  cairn::server::TlsOptions tls;
  tls.cert_file = ExpandHome(absl::GetFlag(FLAGS_tls_cert));
  tls.key_file = ExpandHome(absl::GetFlag(FLAGS_tls_key));
  tls.client_ca_file = ExpandHome(absl::GetFlag(FLAGS_tls_client_ca));
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      cairn::server::MakeServerCredentials(tls);
  if (!credentials.ok()) {
    return Fail(credentials.status());
  }
  std::string auth_note;
  absl::StatusOr<std::unique_ptr<cairn::rpc::Authorizer>> authorizer =
      MakeAuthorizer(&auth_note);
  if (!authorizer.ok()) {
    return Fail(authorizer.status());
  }
  if (tls.enabled()) {
    auth_note = absl::StrCat(
        tls.client_ca_file.empty() ? ", TLS" : ", mutual TLS", auth_note);
  }

  // Declared before the store: the shared tier's metrics live in it.
  cairn::rpc::Registry registry;
  const absl::Time start = absl::Now();
  std::string store_description;
  absl::StatusOr<std::unique_ptr<cairn::cas::BlobStore>> store =
      OpenStore(&store_description);
  if (!store.ok()) {
    return Fail(store.status());
  }
  const double load_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const bool index_loading = (*store)->Stats().index_loading;
  store = cairn::server::MaybeAddSharedTier(
      *std::move(store),
      absl::GetFlag(FLAGS_memory) ? "" : ExpandHome(absl::GetFlag(FLAGS_dir)),
      &registry, &store_description);
  if (!store.ok()) {
    return Fail(store.status());
  }

  cairn::server::ServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.store = store->get();
  options.metrics = &registry;
  options.read_only = absl::GetFlag(FLAGS_read_only);
  options.io_threads = cairn::server::IoThreadsFor(
      absl::GetFlag(FLAGS_io_threads), cairn::server::SharedTierConcurrency(),
      std::thread::hardware_concurrency());
  if (absl::GetFlag(FLAGS_io_queue) < 0) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--io_queue must be 0 or more, got ", absl::GetFlag(FLAGS_io_queue))));
  }
  options.io_queue = static_cast<size_t>(absl::GetFlag(FLAGS_io_queue));
  if (absl::GetFlag(FLAGS_io_stream_nice) < 0 ||
      absl::GetFlag(FLAGS_io_stream_nice) > 19) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--io_stream_nice must be 0 to 19, got ",
                     absl::GetFlag(FLAGS_io_stream_nice))));
  }
  options.io_stream_nice = absl::GetFlag(FLAGS_io_stream_nice);
  options.max_batch_total_size_bytes =
      absl::GetFlag(FLAGS_max_batch_size).bytes;
  options.max_cas_blob_size_bytes = absl::GetFlag(FLAGS_max_blob_size).bytes;
  options.credentials = *credentials;
  options.authorizer = authorizer->get();
  options.stream_idle_timeout = absl::GetFlag(FLAGS_stream_idle_timeout);
  options.read_buffer_bytes = absl::GetFlag(FLAGS_read_buffers).bytes;
  options.max_uploads_per_client = absl::GetFlag(FLAGS_max_uploads_per_client);
  options.max_streams_per_client = absl::GetFlag(FLAGS_max_streams_per_client);
  options.strict_symlink_targets = absl::GetFlag(FLAGS_strict_symlink_targets);
  options.write_quota_per_hour =
      absl::GetFlag(FLAGS_write_quota_per_hour).bytes;
  for (auto [flag, name, out] :
       {std::tuple(&FLAGS_max_upload_reserve_per_client,
                   "--max_upload_reserve_per_client",
                   &options.max_upload_bytes_per_client),
        std::tuple(&FLAGS_max_upload_reserve, "--max_upload_reserve",
                   &options.max_upload_bytes)}) {
    absl::StatusOr<int64_t> cap = ParseUploadCap(absl::GetFlag(*flag));
    if (!cap.ok()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat(name, ": ", cap.status().message())));
    }
    *out = *cap;
  }
  options.partial_upload_idle_timeout =
      absl::GetFlag(FLAGS_partial_upload_timeout);
  // Accept messages comfortably larger than the advertised batch limit.
  options.max_message_bytes = static_cast<int>(std::min<int64_t>(
      std::max<int64_t>(options.max_message_bytes,
                        options.max_batch_total_size_bytes + (16 << 20)),
      std::numeric_limits<int>::max()));
  std::unique_ptr<cairn::asset::OriginFetcher> origin;
  if (const std::string origins = absl::GetFlag(FLAGS_asset_origins);
      !origins.empty()) {
    if (options.read_only) {
      return Fail(absl::InvalidArgumentError(
          "--asset_origins stores downloads: it needs a writable cache, "
          "not --read_only"));
    }
    cairn::asset::OriginFetcherOptions origin_options;
    origin_options.store = store->get();
    origin_options.allowed_prefixes =
        absl::StrSplit(origins, ',', absl::SkipWhitespace());
    origin_options.spool_dir = ExpandHome(absl::GetFlag(FLAGS_http_spool_dir));
    origin_options.max_bytes = options.max_cas_blob_size_bytes;
    // Downloads hold an I/O pool worker each: a quarter of the pool at most,
    // so a slow origin never starves the cache.
    origin_options.max_concurrent = std::max(1, options.io_threads / 4);
    auto made = cairn::asset::NewHttpOriginFetcher(std::move(origin_options));
    if (!made.ok()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--asset_origins: ", made.status().message())));
    }
    origin = *std::move(made);
    options.asset_origin = origin.get();
  }
  absl::StatusOr<std::unique_ptr<cairn::server::CairnServer>> server =
      cairn::server::CairnServer::Start(options);
  if (!server.ok()) {
    return Fail(server.status());
  }
  std::unique_ptr<cairn::server::MetricsHttpServer> metrics;
  std::string metrics_note;
  if (const std::string listen = absl::GetFlag(FLAGS_metrics_listen);
      !listen.empty()) {
    auto started = cairn::server::StartMetricsHttpServer(listen, &registry);
    if (!started.ok()) {
      return Fail(started.status());
    }
    metrics = *std::move(started);
    metrics_note =
        absl::StrCat(", metrics on http://",
                     BoundAddress(listen, metrics->port()), "/metrics");
  }
  std::unique_ptr<cairn::http::HttpCache> http;
  std::string http_note;
  if (const std::string listen = absl::GetFlag(FLAGS_http_listen);
      !listen.empty()) {
    cairn::http::HttpCacheOptions http_options;
    http_options.listen = listen;
    http_options.store = store->get();
    http_options.authorizer = authorizer->get();
    http_options.read_only = options.read_only;
    http_options.max_blob_size_bytes = options.max_cas_blob_size_bytes;
    http_options.threads = absl::GetFlag(FLAGS_http_threads);
    http_options.spool_dir = ExpandHome(absl::GetFlag(FLAGS_http_spool_dir));
    http_options.tls_cert_file = tls.cert_file;
    http_options.tls_key_file = tls.key_file;
    http_options.tls_client_ca_file = tls.client_ca_file;
    http_options.metrics = &registry;
    http_options.write_quota = (*server)->write_quota();
    auto started = cairn::http::StartHttpCache(http_options);
    if (!started.ok()) {
      return Fail(started.status());
    }
    http = *std::move(started);
    http_note =
        absl::StrCat(", HTTP cache on ", tls.enabled() ? "https://" : "http://",
                     BoundAddress(listen, http->port()));
  }
  const std::string address =
      BoundAddress(options.listen_address, (*server)->port());
  const std::string url =
      absl::StartsWith(address, "unix:")
          ? address
          : absl::StrCat(tls.enabled() ? "grpcs://" : "grpc://", address);
  spdlog::info(
      "cairn-server: listening on {}, store {}, open in {:.2f}s{}{}{}{}{}; "
      "Bazel: --remote_cache={}; Go: GOCACHEPROG=\"cairn-gocacheprog "
      "--remote={}\"",
      address, store_description, load_seconds,
      index_loading ? " (index loading)" : "",
      options.read_only ? ", read-only" : "", auth_note, metrics_note,
      http_note, url, url);

  int signal_number = 0;
  while (true) {  // Ends at SIGINT or SIGTERM.
    sigwait(&signals, &signal_number);
    if (signal_number != SIGHUP) {
      break;
    }
    if (*authorizer == nullptr) {
      spdlog::info("cairn-server: SIGHUP ignored (no --auth_tokens_file)");
    } else if (absl::Status s = (*authorizer)->Reload(); s.ok()) {
      spdlog::info("cairn-server: SIGHUP: tokens reloaded");
    } else {
      spdlog::error("cairn-server: SIGHUP: {}; the previous tokens stay",
                    s.ToString());
    }
  }
  spdlog::info("cairn-server: {} received, shutting down",
               signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  if (http != nullptr) {
    http->Stop();  // Lets requests in progress finish.
  }
  (*server)->Shutdown(absl::Seconds(10));
  (*server)->Wait();
  if (metrics != nullptr) {
    metrics->Stop();  // Its gauges read the server's pool and the store.
  }
  server->reset();
  spdlog::info("cairn-server: stopped");
  spdlog::default_logger()->flush();
  // Everything is stopped and the store is closed. Skip gRPC's global
  // teardown at exit, which lingers for seconds while clients stay connected.
  std::_Exit(index_load_failed.load() ? 1 : 0);
}
