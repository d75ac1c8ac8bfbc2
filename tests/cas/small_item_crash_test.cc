// kill -9 in the middle of group commits: a child process (this binary,
// re-executed) writes small CAS blobs (alone and in WriteBlobs() batches)
// and entries (PutEntry(), also with a callback that acknowledges them
// without waiting) from 16 threads into a disk store with fsync on, so that
// commits are always being grouped behind one log sync, and reports each
// acknowledged write on a pipe. The parent
// SIGKILLs it after a number of acknowledgements, reopens the store and
// checks that every acknowledged item is there and intact.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cas/digest.h"
#include "cas/disk_blob_store.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace cairn::cas {
namespace {

constexpr char kRootEnv[] = "CAIRN_CRASH_CHILD_ROOT";
constexpr char kRoundEnv[] = "CAIRN_CRASH_CHILD_ROUND";
constexpr int kAckFd = 3;
constexpr int kThreads = 16;
constexpr int kPerThread = 20000;
constexpr int kBatch = 4;  // Blobs per WriteBlobs() call.

// Item `seed`'s bytes: 64 B to ~3.5 KiB, all under the small-item threshold.
std::string ItemBytes(int64_t seed) {
  std::string s(static_cast<size_t>(64 + (seed * 7919) % 3500), '\0');
  for (size_t i = 0; i < s.size(); ++i) {
    s[i] = static_cast<char>((i * 31 + seed * 17 + i / 7) & 0xff);
  }
  return s;
}

std::string EntryKey(int64_t seed) {
  return Digest::OfData(absl::StrCat("entry", seed)).hash();
}

DiskBlobStoreOptions StoreOptions(const std::string& root) {
  DiskBlobStoreOptions options;
  options.root = root;
  options.max_size_bytes = int64_t{1} << 30;
  options.fsync = true;
  return options;
}

// Stores the blobs of seeds first .. first + kBatch - 1 with one
// WriteBlobs() call; sets `*seeds` to them. The first failure, if any.
absl::Status WriteBatch(BlobStore& store, int64_t first,
                        std::vector<int64_t>* seeds) {
  std::vector<std::string> data;
  std::vector<BlobWrite> blobs;
  seeds->clear();
  for (int k = 0; k < kBatch; ++k) {
    seeds->push_back(first + k);
    data.push_back(ItemBytes(first + k));
  }
  for (const std::string& d : data) {
    blobs.push_back({Digest::OfData(d), d});
  }
  for (const absl::Status& s : store.WriteBlobs(blobs)) {
    if (!s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// Tells the parent that the items `seeds` of `kind` are acknowledged (one
// write(2), atomic on a pipe); exits when the pipe is gone.
void Ack(char kind, const std::vector<int64_t>& seeds) {
  std::string line;
  for (int64_t acked : seeds) {
    absl::StrAppend(&line, std::string(1, kind), " ", acked, "\n");
  }
  if (write(kAckFd, line.data(), line.size()) !=
      static_cast<ssize_t>(line.size())) {
    std::_Exit(4);
  }
}

// The child: writes until killed. Not a test of its own; the parent runs
// this binary filtered to it with kRootEnv set.
TEST(SmallItemCrashChild, WritesUntilKilled) {
  const char* root = std::getenv(kRootEnv);
  const char* round = std::getenv(kRoundEnv);
  if (root == nullptr || round == nullptr) {
    GTEST_SKIP() << "runs only as the child of "
                    "SmallItemCrashTest.KillNineMidGroupCommitLosesNothing";
  }
  auto store = NewDiskBlobStore(StoreOptions(root));
  ASSERT_TRUE(store.ok()) << store.status();
  const int64_t base = std::atoll(round) * 100000000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int64_t seed = base + t * 1000000 + i;
        const std::string bytes = ItemBytes(seed);
        absl::Status s;
        char kind = 'c';
        std::vector<int64_t> seeds = {seed};
        if (i % 4 == 3) {
          s = WriteBatch(**store, base + t * 1000000 + 500000 + i * kBatch,
                         &seeds);
        } else if (i % 4 == 2 && t % 2 == 1) {
          // Acknowledged from the callback, once durable; the thread
          // goes on writing meanwhile.
          (*store)
              ->PutEntry(EntryKey(seed), bytes, {},
                         [seed](absl::Status done) {
                           if (!done.ok()) {
                             std::fprintf(stderr, "child: entry failed: %s\n",
                                          done.ToString().c_str());
                             std::_Exit(3);
                           }
                           Ack('a', {seed});
                         })
              .IgnoreError();  // Answered to the callback.
          continue;
        } else if (i % 4 == 2) {
          kind = 'a';
          s = (*store)->PutEntry(EntryKey(seed), bytes);
        } else if (i % 4 == 1) {
          auto w = (*store)->OpenWrite(Digest::OfData(bytes));
          s = w.ok() ? (*w)->Append(bytes) : w.status();
          s = s.ok() ? (*w)->Commit() : s;
        } else {
          s = (*store)->Write(Digest::OfData(bytes), bytes);
        }
        if (!s.ok()) {
          std::fprintf(stderr, "child: write failed: %s\n",
                       s.ToString().c_str());
          std::_Exit(3);
        }
        Ack(kind, seeds);
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
}

struct Acked {
  std::vector<int64_t> blobs;
  std::vector<int64_t> entries;
};

// Runs the child for `round` until `kill_after` writes are acknowledged,
// SIGKILLs it and returns every acknowledgement it sent.
Acked RunAndKill(const std::string& root, int round, int kill_after) {
  int fds[2];
  EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
  std::vector<std::string> env_strings = {absl::StrCat(kRootEnv, "=", root),
                                          absl::StrCat(kRoundEnv, "=", round)};
  for (char** e = environ; *e != nullptr; ++e) {
    env_strings.push_back(*e);
  }
  std::vector<char*> envp;
  for (std::string& e : env_strings) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);
  std::string arg0 = "small_item_crash_test";
  std::string filter = "--gtest_filter=SmallItemCrashChild.WritesUntilKilled";
  char* argv[] = {arg0.data(), filter.data(), nullptr};
  pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    dup2(fds[1], kAckFd);
    execve("/proc/self/exe", argv, envp.data());
    _exit(127);
  }
  close(fds[1]);
  Acked acked;
  std::string pending;
  char buf[4096];
  bool killed = false;
  for (;;) {
    ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n <= 0) {
      break;  // The child is gone (killed or finished).
    }
    pending.append(buf, static_cast<size_t>(n));
    size_t end;
    while ((end = pending.find('\n')) != std::string::npos) {
      std::vector<std::string> f = absl::StrSplit(pending.substr(0, end), ' ');
      pending.erase(0, end + 1);
      int64_t seed = 0;
      if (f.size() == 2 && absl::SimpleAtoi(f[1], &seed)) {
        (f[0] == "a" ? acked.entries : acked.blobs).push_back(seed);
      }
    }
    if (!killed && static_cast<int>(acked.blobs.size() +
                                    acked.entries.size()) >= kill_after) {
      kill(pid, SIGKILL);  // Acknowledgements already in the pipe still count.
      killed = true;
    }
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the child was not killed mid-run (status " << status << ")";
  return acked;
}

TEST(SmallItemCrashTest, KillNineMidGroupCommitLosesNothing) {
  testutil::TempDir dir;
  const std::string root = dir.path() + "/store";
  Acked all;
  for (int round = 0; round < 3; ++round) {
    Acked acked = RunAndKill(root, round, 150 << round);
    all.blobs.insert(all.blobs.end(), acked.blobs.begin(), acked.blobs.end());
    all.entries.insert(all.entries.end(), acked.entries.begin(),
                       acked.entries.end());
    auto store = NewDiskBlobStore(StoreOptions(root));
    ASSERT_TRUE(store.ok()) << store.status();
    int lost = 0;
    for (int64_t seed : all.blobs) {
      const std::string bytes = ItemBytes(seed);
      absl::StatusOr<std::string> got = (*store)->Read(Digest::OfData(bytes));
      lost += !got.ok();
      EXPECT_TRUE(!got.ok() || *got == bytes);
    }
    for (int64_t seed : all.entries) {
      absl::StatusOr<std::string> got = (*store)->GetEntry(EntryKey(seed));
      lost += !got.ok();
      EXPECT_TRUE(!got.ok() || *got == ItemBytes(seed));
    }
    EXPECT_EQ(lost, 0) << "acknowledged writes lost";
    EXPECT_EQ((*store)->Stats().corruptions, 0);
    std::printf(
        "kill -9 round %d: %zu blobs and %zu entries acknowledged so far, "
        "%d lost\n",
        round + 1, all.blobs.size(), all.entries.size(), lost);
  }
}

}  // namespace
}  // namespace cairn::cas
