// cairn-gocacheprog: Go's GOCACHEPROG protocol over a REAPI cache.
//
// Every flag has an environment twin (CAIRN_<FLAG IN CAPITALS>) that sets its
// default; the command line wins. See docs/go.md.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "client/gocacheprog/keys_command.h"
#include "client/gocacheprog/local_store.h"
#include "client/gocacheprog/manifest.h"
#include "client/gocacheprog/mtimes.h"
#include "client/gocacheprog/remote.h"
#include "client/gocacheprog/shim.h"
#include "client/reapi_client.h"

// The shim's flag table: one ABSL_FLAG per setting, the same shape as
// cairn-server's on purpose (docs/flags.md is generated from both).
ABSL_FLAG(std::string, remote, "",
          "REAPI cache: grpc://HOST:PORT, grpcs://HOST:PORT or unix:///PATH. "
          "Empty: a purely local cache. Env: CAIRN_REMOTE.");
ABSL_FLAG(std::string, dir, "",
          "Local directory of bodies and index (default: "
          "$XDG_CACHE_HOME/cairn-gocacheprog or ~/.cache/cairn-gocacheprog). "
          "Env: CAIRN_DIR.");
ABSL_FLAG(std::string, instance, "",
          "REAPI instance name. Env: CAIRN_INSTANCE.");
ABSL_FLAG(bool, read_only, false,
          "Fetch from the remote but never upload. Env: CAIRN_READ_ONLY.");
ABSL_FLAG(std::vector<std::string>, header, {},
          "Extra request header NAME=VALUE; repeatable. Env: CAIRN_HEADER "
          "(several separated by newlines).");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle for grpcs:// (default: system roots). Env: "
          "CAIRN_TLS_CA.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate for grpcs://. Env: CAIRN_TLS_CERT.");
ABSL_FLAG(std::string, tls_key, "",
          "PEM client key for grpcs://. Env: CAIRN_TLS_KEY.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10),
          "Deadline of each remote call. Env: CAIRN_TIMEOUT.");
ABSL_FLAG(int64_t, local_max_size, int64_t{5} << 30,
          "Bound of the local directory in bytes (LRU trimmed). Env: "
          "CAIRN_LOCAL_MAX_SIZE.");
ABSL_FLAG(absl::Duration, flush_timeout, absl::Seconds(30),
          "How long `close` waits for queued uploads. Env: "
          "CAIRN_FLUSH_TIMEOUT.");
ABSL_FLAG(bool, stats, false,
          "Print one summary line on stderr at exit. Env: CAIRN_STATS.");
ABSL_FLAG(bool, prefetch, true,
          "Fetch the entries the last run of the same build asked for, in "
          "the background, and store this run's list at close. Env: "
          "CAIRN_PREFETCH.");
ABSL_FLAG(std::string, prefetch_scope, "",
          "What counts as the same build for --prefetch (default: the working "
          "directory, go subcommand and package arguments, GOOS, GOARCH, "
          "GOFLAGS and other build-changing variables). Env: "
          "CAIRN_PREFETCH_SCOPE.");
ABSL_FLAG(int64_t, prefetch_max_bytes, int64_t{2} << 30,
          "Most body bytes one run prefetches (also at most "
          "--local_max_size / 2). Env: CAIRN_PREFETCH_MAX_BYTES.");
ABSL_FLAG(bool, prefetch_bundle, true,
          "With --prefetch: read the last run's entries and bodies as a "
          "bundle of a few large blobs (before the per-entry manifest), and "
          "store one at close when this run's list differs from the bundle "
          "read by more than --bundle_rebuild_fraction. Env: "
          "CAIRN_PREFETCH_BUNDLE.");
ABSL_FLAG(int64_t, bundle_max_bytes, int64_t{1} << 30,
          "Most body bytes a stored bundle holds (later bodies are fetched "
          "one by one). Env: CAIRN_BUNDLE_MAX_BYTES.");
ABSL_FLAG(double, bundle_rebuild_fraction, 0.1,
          "Store a new bundle at close when more than this fraction of this "
          "run's list is new to the bundle read, or of the bundle went "
          "unasked; an unchanged list never rebuilds. Env: "
          "CAIRN_BUNDLE_REBUILD_FRACTION.");
ABSL_FLAG(absl::Duration, get_budget, absl::Seconds(2),
          "Longest a get waits for the remote before answering a miss; "
          "bodies expected (measured round trip and rate) to arrive later "
          "are not fetched. 0: no budget. Env: CAIRN_GET_BUDGET.");
ABSL_FLAG(std::string, zstd, "auto",
          "When the remote advertises zstd: auto (uploads compressed; fetched "
          "bodies compressed when the network round trip, timed with "
          "GetCapabilities before the first fetch, is 8 ms or more, or when "
          "the first few plain fetches of 1 MiB or more measure the link "
          "below 40 MB/s; re-checked every 32 MiB against a trial of the "
          "other mode), always, or never (also true, false). Bodies "
          "are verified after decompression. Env: CAIRN_ZSTD.");
ABSL_FLAG(bool, v, false, "Log every request to stderr. Env: CAIRN_VERBOSE.");
ABSL_FLAG(std::string, machine, "",
          "keys: the machine label stored with records (default: the host "
          "name). Env: CAIRN_MACHINE.");
ABSL_FLAG(std::string, keys_scope, "",
          "keys: what records are shared by (e.g. the repository); empty: "
          "one scope for the whole instance. Env: CAIRN_KEYS_SCOPE.");
ABSL_FLAG(bool, keys_env_values, false,
          "keys record: store the values of environment variables tests "
          "read in clear (default: a keyed hash; the name is always kept). "
          "Env: CAIRN_KEYS_ENV_VALUES.");
ABSL_FLAG(bool, json, false, "keys explain: print JSON instead of text.");
ABSL_FLAG(int32_t, keys_max_diffs, 8,
          "keys explain: differing inputs shown per cause.");

namespace {

using cairn::client::gocacheprog::ParseZstdPolicy;
using cairn::client::gocacheprog::ShimOptions;
using cairn::client::gocacheprog::ZstdPolicy;

// Applies CAIRN_* environment variables as flag defaults. Returns false
// (after printing why) when one does not parse.
bool ApplyEnvironment() {
  const std::pair<const char*, const char*> kTwins[] = {
      {"remote", "CAIRN_REMOTE"},
      {"dir", "CAIRN_DIR"},
      {"instance", "CAIRN_INSTANCE"},
      {"read_only", "CAIRN_READ_ONLY"},
      {"tls_ca", "CAIRN_TLS_CA"},
      {"tls_cert", "CAIRN_TLS_CERT"},
      {"tls_key", "CAIRN_TLS_KEY"},
      {"timeout", "CAIRN_TIMEOUT"},
      {"local_max_size", "CAIRN_LOCAL_MAX_SIZE"},
      {"flush_timeout", "CAIRN_FLUSH_TIMEOUT"},
      {"stats", "CAIRN_STATS"},
      {"prefetch", "CAIRN_PREFETCH"},
      {"prefetch_scope", "CAIRN_PREFETCH_SCOPE"},
      {"prefetch_max_bytes", "CAIRN_PREFETCH_MAX_BYTES"},
      {"prefetch_bundle", "CAIRN_PREFETCH_BUNDLE"},
      {"bundle_max_bytes", "CAIRN_BUNDLE_MAX_BYTES"},
      {"bundle_rebuild_fraction", "CAIRN_BUNDLE_REBUILD_FRACTION"},
      {"get_budget", "CAIRN_GET_BUDGET"},
      {"zstd", "CAIRN_ZSTD"},
      {"v", "CAIRN_VERBOSE"},
      {"machine", "CAIRN_MACHINE"},
      {"keys_scope", "CAIRN_KEYS_SCOPE"},
      {"keys_env_values", "CAIRN_KEYS_ENV_VALUES"},
  };
  for (const auto& [flag, env] : kTwins) {
    const char* value = std::getenv(env);
    if (value == nullptr || *value == '\0') {
      continue;
    }
    std::string error;
    absl::CommandLineFlag* f = absl::FindCommandLineFlag(flag);
    if (f == nullptr || !f->ParseFrom(value, &error)) {
      std::fprintf(stderr, "cairn-gocacheprog: %s=%s: %s\n", env, value,
                   error.c_str());
      return false;
    }
  }
  return true;
}

// Collects every --header occurrence (absl keeps only the last one) from
// argv, removing them, plus CAIRN_HEADER.
std::vector<std::string> TakeHeaders(int& argc, char** argv) {
  std::vector<std::string> headers;
  if (const char* env = std::getenv("CAIRN_HEADER"); env != nullptr) {
    for (absl::string_view h : absl::StrSplit(env, '\n', absl::SkipEmpty())) {
      headers.emplace_back(h);
    }
  }
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (absl::ConsumePrefix(&a, "--header=") ||
        absl::ConsumePrefix(&a, "-header=")) {
      headers.emplace_back(a);
    } else if ((a == "--header" || a == "-header") && i + 1 < argc) {
      headers.emplace_back(argv[++i]);
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  return headers;
}

std::string DefaultDir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
    return std::string(xdg) + "/cairn-gocacheprog";
  }
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.cache/cairn-gocacheprog";
}

// Returns the go command's arguments (without argv[0]), read from
// /proc/<parent>/cmdline; empty when unreadable.
std::vector<std::string> ParentArgs() {
  std::ifstream in(absl::StrCat("/proc/", getppid(), "/cmdline"),
                   std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)),
                  std::istreambuf_iterator<char>());
  std::vector<std::string> args = absl::StrSplit(all, '\0');
  if (!args.empty() && args.back().empty()) {
    args.pop_back();
  }
  if (!args.empty()) {
    args.erase(args.begin());
  }
  return args;
}

std::string PrefetchScope() {
  std::string scope = absl::GetFlag(FLAGS_prefetch_scope);
  if (!scope.empty()) {
    return scope;
  }
  char cwd[4096];
  if (getcwd(cwd, sizeof(cwd)) == nullptr) {
    return "";  // No usable default: prefetch stays off.
  }
  return cairn::client::gocacheprog::DefaultPrefetchScope(
      cwd, ParentArgs(), [](const char* name) { return std::getenv(name); });
}

// Returns the client options the flags name.
absl::StatusOr<cairn::client::ReapiClientOptions> ClientOptions(
    const std::vector<std::string>& headers) {
  cairn::client::ReapiClientOptions o;
  o.target = absl::GetFlag(FLAGS_remote);
  o.instance_name = absl::GetFlag(FLAGS_instance);
  o.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  o.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  o.timeout = absl::GetFlag(FLAGS_timeout);
  o.max_attempts = 2;  // Fail fast: the breaker handles longer outages.
  // The policy itself is checked in MakeRemote().
  o.compression =
      ParseZstdPolicy(absl::GetFlag(FLAGS_zstd)).value_or(ZstdPolicy::kNever) !=
      ZstdPolicy::kNever;
  o.tool_name = "cairn-gocacheprog";
  for (const std::string& h : headers) {
    auto parsed = cairn::client::ParseHeader(h);
    if (!parsed.ok()) {
      return parsed.status();
    }
    o.headers.push_back(*std::move(parsed));
  }
  return o;
}

// Builds the remote named by the flags, or null for a purely local cache.
absl::StatusOr<std::unique_ptr<cairn::client::gocacheprog::Remote>> MakeRemote(
    const std::vector<std::string>& headers) {
  if (absl::GetFlag(FLAGS_remote).empty()) {
    return nullptr;
  }
  auto zstd = ParseZstdPolicy(absl::GetFlag(FLAGS_zstd));
  if (!zstd.ok()) {
    return zstd.status();
  }
  auto o = ClientOptions(headers);
  if (!o.ok()) {
    return o.status();
  }
  auto client = cairn::client::NewReapiClient(*o);
  if (!client.ok()) {
    return client.status();
  }
  return cairn::client::gocacheprog::NewReapiRemote(*std::move(client), *zstd);
}

std::string HostName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    return "unknown";
  }
  return host;
}

// `keys record|explain [FILE]`: FILE (default: stdin, also "-") holds the
// go command's GODEBUG=gocachehash=1 stderr.
int RunKeys(const std::vector<char*>& args,
            const std::vector<std::string>& headers) {
  if (args.size() < 3 || args.size() > 4) {
    std::fprintf(stderr,
                 "usage: cairn-gocacheprog --remote=... keys record|explain "
                 "[FILE]\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_remote).empty()) {
    std::fprintf(stderr, "cairn-gocacheprog keys: --remote is required\n");
    return 2;
  }
  std::FILE* in = stdin;
  if (args.size() == 4 && std::string(args[3]) != "-") {
    in = std::fopen(args[3], "rb");
    if (in == nullptr) {
      std::fprintf(stderr, "cairn-gocacheprog keys: cannot open %s\n", args[3]);
      return 2;
    }
  }
  auto o = ClientOptions(headers);
  auto client = o.ok() ? cairn::client::NewReapiClient(*o) : o.status();
  if (!client.ok()) {
    std::fprintf(stderr, "cairn-gocacheprog: %s\n",
                 client.status().ToString().c_str());
    return 2;
  }
  cairn::client::gocacheprog::KeysCommandOptions k;
  k.subcommand = args[2];
  k.machine = absl::GetFlag(FLAGS_machine);
  if (k.machine.empty()) {
    k.machine = HostName();
  }
  k.scope = absl::GetFlag(FLAGS_keys_scope);
  k.record.env_values_in_clear = absl::GetFlag(FLAGS_keys_env_values);
  k.json = absl::GetFlag(FLAGS_json);
  k.max_diffs =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_keys_max_diffs)));
  k.verbose = absl::GetFlag(FLAGS_v);
  absl::Status s = cairn::client::gocacheprog::RunKeysCommand(k, **client, in,
                                                              stdout, stderr);
  std::fflush(stdout);
  if (!s.ok()) {
    std::fprintf(stderr, "cairn-gocacheprog keys: %s\n", s.ToString().c_str());
  }
  std::fflush(stderr);
  _exit(s.ok() ? 0 : (absl::IsInvalidArgument(s) ? 2 : 1));
}

// `cairn-gocacheprog normalize-mtimes DIR...` (mtimes.h): returns the exit
// code.
int NormalizeMtimesCommand(int argc, char** argv) {
  if (argc < 1) {
    std::fprintf(stderr,
                 "usage: cairn-gocacheprog normalize-mtimes DIR...\n"
                 "Sets every file and directory under DIR to a time derived "
                 "from its content, so Go test results that read files hit "
                 "the cache on other machines.\n");
    return 2;
  }
  for (int i = 0; i < argc; ++i) {
    auto counts = cairn::client::gocacheprog::NormalizeMtimes(argv[i]);
    if (!counts.ok()) {
      std::fprintf(stderr, "cairn-gocacheprog: normalize-mtimes: %s\n",
                   counts.status().ToString().c_str());
      return 1;
    }
    std::fprintf(stderr,
                 "cairn-gocacheprog: normalize-mtimes %s: %lld files, %lld "
                 "directories\n",
                 argv[i], static_cast<long long>(counts->files),
                 static_cast<long long>(counts->directories));
  }
  return 0;
}

// Returns true for the files of flags --help lists: all but Abseil's own
// (--flagfile, --fromenv, ...), which --helpfull adds.
bool IsOwnFlagFile(absl::string_view file) {
  return !absl::StrContains(file, "absl/");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && absl::string_view(argv[1]) == "normalize-mtimes") {
    return NormalizeMtimesCommand(argc - 2, argv + 2);
  }
  absl::SetProgramUsageMessage(
      "GOCACHEPROG for the go command, backed by a REAPI cache.\n"
      "Usage: GOCACHEPROG='cairn-gocacheprog --remote=grpc://HOST:PORT' go "
      "build\n"
      "       cairn-gocacheprog --remote=... [--machine=LABEL] keys "
      "record|explain [FILE]\n"
      "         (FILE or stdin: the stderr of GODEBUG=gocachehash=1 go ...)\n"
      "       cairn-gocacheprog normalize-mtimes DIR...  (content-derived "
      "mtimes, for test results across machines)");
  absl::FlagsUsageConfig usage_config;
  // --help lists every flag the binary defines itself (by default Abseil
  // lists only flags from a file named after the program, and there is none).
  // Mirrors server/main.cc, which shares no library with this binary.
  usage_config.contains_help_flags = &IsOwnFlagFile;
  usage_config.contains_helpshort_flags = &IsOwnFlagFile;
  usage_config.version_string = [] {
    return std::string("cairn-gocacheprog " CAIRN_VERSION "\n");
  };
  absl::SetFlagsUsageConfig(usage_config);
  signal(SIGPIPE, SIG_IGN);
  // Debian builds Abseil with the mutex deadlock detector on: its lock-order
  // graph cost 2.7% of the shim's CPU in a warm gh build (perf:
  // GraphCycles::GetId and absl::Mutex). server/main.cc turns it off too.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<std::string> headers = TakeHeaders(argc, argv);
  if (!ApplyEnvironment()) {
    return 2;
  }
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  for (const std::string& h : absl::GetFlag(FLAGS_header)) {
    headers.push_back(h);
  }
  if (args.size() > 1 && std::string(args[1]) == "keys") {
    return RunKeys(args, headers);
  }

  std::string dir = absl::GetFlag(FLAGS_dir);
  auto local = cairn::client::gocacheprog::OpenLocalStore(
      dir.empty() ? DefaultDir() : dir, absl::GetFlag(FLAGS_local_max_size));
  auto remote = local.ok() ? MakeRemote(headers) : local.status();
  if (!local.ok() || !remote.ok()) {
    std::fprintf(
        stderr, "cairn-gocacheprog: %s\n",
        (local.ok() ? remote.status() : local.status()).ToString().c_str());
    return 2;
  }
  // One option per flag, a line each, as in ClientOptions(): a table.
  ShimOptions options;
  options.read_only = absl::GetFlag(FLAGS_read_only);
  options.flush_timeout = absl::GetFlag(FLAGS_flush_timeout);
  options.get_budget = absl::GetFlag(FLAGS_get_budget);
  options.verbose = absl::GetFlag(FLAGS_v);
  options.remote_name = absl::GetFlag(FLAGS_remote);
  options.prefetch = absl::GetFlag(FLAGS_prefetch);
  if (options.prefetch && *remote != nullptr) {
    options.prefetch_scope = PrefetchScope();
  }
  options.prefetch_max_bytes =
      std::min(absl::GetFlag(FLAGS_prefetch_max_bytes),
               absl::GetFlag(FLAGS_local_max_size) / 2);
  options.bundle = absl::GetFlag(FLAGS_prefetch_bundle);
  options.bundle_max_bytes = absl::GetFlag(FLAGS_bundle_max_bytes);
  options.bundle_rebuild_fraction =
      absl::GetFlag(FLAGS_bundle_rebuild_fraction);
  cairn::client::gocacheprog::Shim shim(local->get(), remote->get(), options);
  absl::Status s = shim.Run(STDIN_FILENO, STDOUT_FILENO);
  if (absl::GetFlag(FLAGS_stats)) {
    const cairn::client::WireCounters w = *remote != nullptr
                                              ? (*remote)->Counters()
                                              : cairn::client::WireCounters{};
    const cairn::client::gocacheprog::Remote::Transfers t =
        *remote != nullptr ? (*remote)->TransferCounts()
                           : cairn::client::gocacheprog::Remote::Transfers{};
    std::fprintf(
        stderr,
        "%s wire_down=%lld wire_up=%lld rpcs=%lld fetched_zstd=%lld "
        "fetched_plain=%lld probe=%.1fMB/s zstd_changes=%lld "
        "net_rtt=%.2fms\n",
        shim.stats().Summary().c_str(), static_cast<long long>(w.received),
        static_cast<long long>(w.sent), static_cast<long long>(w.calls),
        static_cast<long long>(t.zstd), static_cast<long long>(t.plain),
        t.probe_rate / 1e6, static_cast<long long>(t.mode_changes),
        absl::ToDoubleMilliseconds(t.round_trip));
  }
  if (!s.ok()) {
    std::fprintf(stderr, "cairn-gocacheprog: %s\n", s.ToString().c_str());
  }
  std::fflush(stderr);
  // Exit without unwinding: abandoned uploads may still be inside gRPC calls,
  // and everything owed has been answered or reported above.
  _exit(s.ok() ? 0 : 2);
}
