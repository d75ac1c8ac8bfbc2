// The one real-process harness: runs the real cairn-server binary as a child
// on 127.0.0.1:0 (a free port, read back from its start-up line), with the
// test's flags and optionally a store in a temp dir it owns; waits until it
// serves; can signal it, kill -9 it and start it again on the same store; and
// prints everything the server wrote to stderr when the test has failed.
// Used by every test of the binary (tests/integration/); the other single
// way to run a server is the in-process fixture (service_fixture.h).
//
// The binary is CAIRN_SERVER_BINARY, defined by the test target (CMake:
// cairn_server_process_test; Bazel: cairn_server_process_test in
// tools/bazel/cairn.bzl).
//
// Thread safety: a ServerProcess is driven by one test thread; log(),
// address() and RssKb() may be called from any thread.
#ifndef CAIRN_TESTS_TESTUTIL_SERVER_PROCESS_H_
#define CAIRN_TESTS_TESTUTIL_SERVER_PROCESS_H_

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "tests/testutil/temp_dir.h"

extern char** environ;

namespace cairn::testutil {

// A running cairn-server child. Its stderr is collected by a thread.
class ServerProcess {
 public:
  // Starts CAIRN_SERVER_BINARY --listen=127.0.0.1:0 `flags` (a later
  // --listen wins) and waits (at most 120 s) for its start-up line.
  // started() is false when it did not start (log() says why).
  explicit ServerProcess(std::vector<std::string> flags)
      : flags_(std::move(flags)) {
    Start();
  }

  // Like the constructor, with the store in a fresh temp dir that the
  // harness owns (--dir=dir(), removed at destruction) and survives Restart().
  static std::unique_ptr<ServerProcess> WithTempStore(
      std::vector<std::string> flags) {
    auto dir = std::make_unique<TempDir>();
    flags.insert(flags.begin(), "--dir=" + dir->path() + "/store");
    auto server = std::make_unique<ServerProcess>(std::move(flags));
    server->dir_ = std::move(dir);
    return server;
  }

  // Kills the server (-9) and, when the test has failed, prints its log.
  ~ServerProcess() {
    Stop();
    if (::testing::Test::HasFailure()) {
      std::fprintf(stderr, "--- cairn-server log (%s) ---\n%s--- end ---\n",
                   absl::StrJoin(flags_, " ").c_str(), log().c_str());
    }
  }

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Returns "127.0.0.1:PORT", or "" if the server did not start.
  std::string address() const {
    std::lock_guard<std::mutex> lock(mu_);
    return address_;
  }

  // Returns true when the server printed its start-up line.
  bool started() const { return !address().empty(); }

  // Returns everything the server wrote to stderr so far (across restarts).
  std::string log() const {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }

  // Returns the store directory of WithTempStore() ("" otherwise).
  std::string dir() const { return dir_ ? dir_->path() + "/store" : ""; }

  pid_t pid() const { return pid_; }

  // Returns the port logged right after `marker` by the current run (e.g.
  // "metrics on http://127.0.0.1:"), or -1.
  int LoggedPort(const std::string& marker) const {
    std::lock_guard<std::mutex> lock(mu_);
    size_t at = log_.find(marker, run_start_);
    if (at == std::string::npos) {
      return -1;
    }
    return std::atoi(log_.c_str() + at + marker.size());
  }

  // SIGKILLs the server and reaps it.
  void Kill9() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  // Sends `signal` without waiting.
  void Signal(int signal) {
    if (pid_ > 0) {
      kill(pid_, signal);
    }
  }

  // SIGTERMs the server; returns its exit code (-1 if killed by a signal).
  int Terminate() {
    if (pid_ <= 0) {
      return -1;
    }
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  // Starts the server again with the same flags (and store), after it
  // exited or was stopped (Terminate, Kill9); kills it -9 first if it still
  // runs. The new run has a new address. Returns started().
  bool Restart() {
    Stop();
    {
      std::lock_guard<std::mutex> lock(mu_);
      log_ += "--- restart ---\n";
      run_start_ = log_.size();
      address_.clear();
      eof_ = false;
    }
    Start();
    return started();
  }

  // Returns the resident set size in KiB from /proc (0 if unknown).
  int64_t RssKb() const {
    std::ifstream status(absl::StrCat("/proc/", pid_, "/status"));
    std::string line;
    while (std::getline(status, line)) {
      if (absl::StartsWith(line, "VmRSS:")) {
        return std::strtoll(line.c_str() + 6, nullptr, 10);
      }
    }
    return 0;
  }

 private:
  void Start() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
      return;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
    std::vector<std::string> args = {CAIRN_SERVER_BINARY,
                                     "--listen=127.0.0.1:0"};
    args.insert(args.end(), flags_.begin(), flags_.end());
    std::vector<char*> argv;
    for (std::string& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) !=
        0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    int read_fd = fds[0];
    reader_ = std::thread([this, read_fd] { Collect(read_fd); });
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(120),
                 [this] { return eof_ || !address_.empty(); });
  }

  // Kills the current run and waits for its log to end.
  void Stop() {
    Kill9();
    if (reader_.joinable()) {
      reader_.join();
    }
  }

  void Collect(int fd) {
    char buf[4096];
    while (true) {  // Ends at EOF, when the child exits.
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) {
        continue;
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (n <= 0) {
        eof_ = true;
        cv_.notify_all();
        break;
      }
      log_.append(buf, static_cast<size_t>(n));
      const std::string marker = "listening on ";
      size_t at = log_.find(marker, run_start_);
      if (address_.empty() && at != std::string::npos) {
        at += marker.size();
        size_t end = log_.find_first_of(", \n", at);
        if (end != std::string::npos) {
          address_ = log_.substr(at, end - at);
          cv_.notify_all();
        }
      }
    }
    close(fd);
  }

  std::vector<std::string> flags_;
  std::unique_ptr<TempDir> dir_;  // Set by WithTempStore().
  pid_t pid_ = -1;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string log_;
  size_t run_start_ = 0;  // Where the current run's output starts in log_.
  std::string address_;
  bool eof_ = false;
};

}  // namespace cairn::testutil

#endif  // CAIRN_TESTS_TESTUTIL_SERVER_PROCESS_H_
