// store_startup: how long a disk store takes to start: until
// NewDiskBlobStore() returns and the store serves (as cairn-server opens it,
// loading the index in the background), and until its index is loaded.
//
// Creates --n small blobs directly in the store's on-disk layout (many
// threads, no fsync; far faster than writing them through the store): with
// --layout=small (the default) in the small-item database, as the store keeps
// items under its threshold; with --layout=files one file each, as releases
// before layout 2 did (and the store still reads). Then opens the store with
// several scan thread counts, with the index loaded in the background (as
// cairn-server does) and, for comparison, before returning; as the peer,
// times a plain single-threaded std::filesystem walk with stat(). Columns:
// "serving s", wall time until NewDiskBlobStore() returned; "first read ms",
// a Read() of a stored blob right after (answered from the disk while the
// index loads); "loaded s", wall time until the index was complete; "cpu s",
// this process's CPU time until then. Prints a table. The page cache is warm
// after creation; run with --reuse on a store made earlier to time a later
// start-up.
//
//   store_startup --n=1000000 [--layout=small|files] [--dir=/path] [--keep]
//                 [--reuse]
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "cas/digest.h"
#include "cas/disk_blob_store.h"
#include "cas/lru_index.h"
#include "cas/small_item_store.h"

ABSL_FLAG(int64_t, n, 1000000, "number of blob files to create");
ABSL_FLAG(std::string, dir, "", "store directory (default: a new temp dir)");
ABSL_FLAG(bool, keep, false, "keep the store directory afterwards");
ABSL_FLAG(bool, reuse, false, "time an existing store in --dir; create none");
ABSL_FLAG(int, create_threads, 4, "threads creating items");
ABSL_FLAG(std::string, layout, "small",
          "where the created items go: small (the small-item database) or "
          "files (one file each)");

namespace {

namespace fs = std::filesystem;

// Runs `create(i)` for every i in [0, n) on `threads` threads; returns how
// many calls returned false.
int64_t CreateInParallel(int64_t n, int threads,
                         const std::function<bool(int64_t)>& create) {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int64_t i = next++; i < n; i = next++) {
        failures += create(i) ? 0 : 1;
      }
    });
  }
  for (std::thread& w : workers) {
    w.join();
  }
  return failures;
}

// Writes blob i ("cairn-bench-blob-<i>") at its place in the layout.
bool CreateBlob(const std::string& root, int64_t i) {
  std::string data = absl::StrCat("cairn-bench-blob-", i);
  std::string hash = cairn::cas::Digest::OfData(data).hash();
  std::string path = absl::StrCat(root, "/cas/", hash.substr(0, 2), "/", hash);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    return false;
  }
  bool ok =
      write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  return close(fd) == 0 && ok;
}

// Writes blobs [0, n) into the small-item database at `root`/small, as the
// store would (the store adds the layout version file when it opens).
bool CreateSmallBlobs(const std::string& root, int64_t n, int threads) {
  auto db = cairn::cas::OpenSmallItemStore({.dir = root + "/small",
                                            .sync = false});
  if (!db.ok()) {
    fprintf(stderr, "%s\n", db.status().ToString().c_str());
    return false;
  }
  return CreateInParallel(n, threads, [&db](int64_t i) {
           std::string data = absl::StrCat("cairn-bench-blob-", i);
           auto key = cairn::cas::ItemKey::FromHex(
               cairn::cas::ItemKind::kCas,
               cairn::cas::Digest::OfData(data).hash());
           return (*db)->Put(*key, i + 1, data).ok();
         }) == 0;
}

double CreateBlobs(const std::string& root, int64_t n, int threads) {
  absl::Time start = absl::Now();
  for (const char* sub : {"/cas", "/ac", "/tmp"}) {
    fs::create_directories(root + sub);
  }
  if (absl::GetFlag(FLAGS_layout) == "small") {
    if (!CreateSmallBlobs(root, n, threads)) {
      exit(1);
    }
    return absl::ToDoubleSeconds(absl::Now() - start);
  }
  for (int s = 0; s < 256; ++s) {
    fs::create_directories(absl::StrFormat("%s/cas/%02x", root, s));
  }
  int64_t failures = CreateInParallel(
      n, threads, [&root](int64_t i) { return CreateBlob(root, i); });
  if (failures > 0) {
    fprintf(stderr, "%ld files could not be created\n", long{failures});
    exit(1);
  }
  return absl::ToDoubleSeconds(absl::Now() - start);
}

// The peer: one thread walking the tree with stat(), no index.
double NaiveWalk(const std::string& root, int64_t* files) {
  absl::Time start = absl::Now();
  *files = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root + "/cas", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (stat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      ++*files;
    }
  }
  return absl::ToDoubleSeconds(absl::Now() - start);
}

// Returns the user + system CPU seconds this process has used.
double CpuSeconds() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

long RssMiB() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::atol(line.c_str() + 6) / 1024;
    }
  }
  return -1;
}

void PrintRow(const std::string& what, int64_t items,
              const std::string& serving, const std::string& first_read,
              double loaded, double cpu, const std::string& rss) {
  printf("| %-44s | %9ld | %9s | %13s | %8.2f | %7.2f | %7s |\n", what.c_str(),
         long{items}, serving.c_str(), first_read.c_str(), loaded, cpu,
         rss.c_str());
}

void TimeStore(const std::string& root, int threads, bool background,
               int64_t n) {
  cairn::cas::DiskBlobStoreOptions options;
  options.root = root;
  options.max_size_bytes = int64_t{1} << 40;
  options.load_threads = threads;
  options.load_index_in_background = background;
  absl::Notification loaded;
  absl::Time loaded_at;
  options.on_index_loaded = [&](const absl::Status& s,
                                const cairn::cas::StoreStats&) {
    if (!s.ok()) {
      fprintf(stderr, "load failed: %s\n", s.ToString().c_str());
      exit(1);
    }
    loaded_at = absl::Now();
    loaded.Notify();
  };
  double cpu = CpuSeconds();
  absl::Time start = absl::Now();
  auto store = cairn::cas::NewDiskBlobStore(options);
  const absl::Time serving = absl::Now();
  if (!store.ok()) {
    fprintf(stderr, "open failed: %s\n", store.status().ToString().c_str());
    exit(1);
  }
  // A blob the bench stored (its layout's items are all blobs 0..n-1).
  const std::string data = absl::StrCat("cairn-bench-blob-", n / 2);
  auto read = (*store)->Read(cairn::cas::Digest::OfData(data));
  const absl::Time read_at = absl::Now();
  if (!read.ok() || *read != data) {
    fprintf(stderr, "first read failed: %s\n",
            read.status().ToString().c_str());
    exit(1);
  }
  if (background) {
    loaded.WaitForNotification();
  } else {
    loaded_at = serving;
  }
  cpu = CpuSeconds() - cpu;
  cairn::cas::StoreStats stats = (*store)->Stats();
  PrintRow(
      absl::StrCat("NewDiskBlobStore, ", threads, " scan threads",
                   background ? ", background" : ""),
      stats.cas_entries,
      absl::StrFormat("%.3f", absl::ToDoubleSeconds(serving - start)),
      absl::StrFormat("%.2f", absl::ToDoubleMilliseconds(read_at - serving)),
      absl::ToDoubleSeconds(loaded_at - start), cpu, absl::StrCat(RssMiB()));
}

void PrintTable(const std::string& root, int64_t n) {
  printf("start-up of a store of %ld items, layout %s (warm page cache)\n\n",
         long{n}, absl::GetFlag(FLAGS_layout).c_str());
  printf("| %-44s | %9s | %9s | %13s | %8s | %7s | %7s |\n", "what", "items",
         "serving s", "first read ms", "loaded s", "cpu s", "RSS MiB");
  printf("|---|---:|---:|---:|---:|---:|---:|\n");
  int64_t files = 0;
  double cpu = CpuSeconds();
  double wall = NaiveWalk(root, &files);
  PrintRow("peer: std::filesystem walk + stat()", files, "-", "-", wall,
           CpuSeconds() - cpu, "-");
  for (int threads : {1, 2, 8}) {
    TimeStore(root, threads, /*background=*/true, n);
  }
  TimeStore(root, 8, /*background=*/false, n);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string root = absl::GetFlag(FLAGS_dir);
  if (root.empty()) {
    root = fs::temp_directory_path().string() + "/cairn-startup-XXXXXX";
    if (mkdtemp(root.data()) == nullptr) {
      perror("mkdtemp");
      return 1;
    }
  }
  int64_t n = absl::GetFlag(FLAGS_n);
  if (!absl::GetFlag(FLAGS_reuse)) {
    double secs = CreateBlobs(root, n, absl::GetFlag(FLAGS_create_threads));
    printf("created %ld blobs (%s) in %s in %.1f s\n\n", long{n},
           absl::GetFlag(FLAGS_layout).c_str(), root.c_str(), secs);
  }
  PrintTable(root, n);
  if (!absl::GetFlag(FLAGS_keep) && absl::GetFlag(FLAGS_dir).empty()) {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  return 0;
}
