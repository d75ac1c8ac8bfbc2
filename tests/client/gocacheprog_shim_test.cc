// The GOCACHEPROG protocol loop driven through pipes, with an in-process fake
// remote; and the real binary driven through pipes for malformed input.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "cas/digest.h"
#include "cas/zstd_codec.h"
#include "client/gocacheprog/bundle.h"
#include "client/gocacheprog/local_store.h"
#include "client/gocacheprog/manifest.h"
#include "client/gocacheprog/remote.h"
#include "client/gocacheprog/shim.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testutil/temp_dir.h"

namespace cairn::client::gocacheprog {
namespace {

using Json = nlohmann::json;

std::string Sha(absl::string_view data) {
  cas::Sha256Hasher h;
  h.Update(data);
  return h.FinishRaw();
}

std::string ActionId(int n) { return Sha(absl::StrCat("action ", n)); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (char& c : s) {
    c = static_cast<char>(gen());
  }
  return s;
}

class FakeRemote final : public Remote {
 public:
  absl::StatusOr<Entry> Get(absl::string_view action_id, SizeGate admit,
                            BodySink sink) override {
    {
      absl::MutexLock lock(&mu_);
      ++gets_;
      max_in_get_ = std::max(max_in_get_, ++in_get_);
      while ((block_ == action_id || block_gets_) && !released_) {
        released_cv_.Wait(&mu_);
      }
    }
    absl::Cleanup left = [this] {
      absl::MutexLock lock(&mu_);
      --in_get_;
    };
    if (!fail_.ok()) {
      return fail_;
    }
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(action_id);
    if (it == entries_.end()) {
      return absl::NotFoundError("miss");
    }
    if (!admit(it->second.first.size)) {
      return absl::NotFoundError("skipped");
    }
    absl::SleepFor(body_delay_);
    if (absl::Status s = sink(it->second.second); !s.ok()) {
      return s;
    }
    return it->second.first;
  }
  absl::Status Put(absl::string_view action_id, const Entry& entry,
                   const std::string& body_path) override {
    {
      absl::MutexLock lock(&mu_);
      ++put_calls_;
      while (block_puts_ && !released_) {
        released_cv_.Wait(&mu_);
      }
    }
    if (!fail_.ok()) {
      return fail_;
    }
    absl::MutexLock lock(&mu_);
    ++puts_;
    entries_[action_id] = {entry, ReadFile(body_path)};
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> GetManifest(absl::string_view scope,
                                          int64_t max_bytes) override {
    if (!fail_.ok()) {
      return fail_;
    }
    absl::MutexLock lock(&mu_);
    ++manifest_gets_;
    return Keyed(manifests_, scope, max_bytes, "no manifest");
  }
  absl::Status PutManifest(absl::string_view scope,
                           absl::string_view manifest) override {
    absl::MutexLock lock(&mu_);
    ++manifest_puts_;
    manifests_[scope] = std::string(manifest);
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> GetBundleIndex(absl::string_view scope,
                                             int64_t max_bytes) override {
    if (!fail_.ok()) {
      return fail_;
    }
    absl::MutexLock lock(&mu_);
    ++bundle_gets_;
    return Keyed(bundles_, scope, max_bytes, "no bundle");
  }
  // Sends the blob in chunks of `chunk_bytes_`; `truncate_reads_`: only
  // the first half, then DATA_LOSS (as the client reports a short stream).
  bool CompressesBlobs() override { return compresses_; }
  absl::Status ReadBlob(const cas::Digest& digest, bool compress,
                        BodySink sink) override {
    std::string blob;
    {
      absl::MutexLock lock(&mu_);
      ++blob_reads_;
      compressed_reads_ += compress ? 1 : 0;
      auto it = blobs_.find(digest.hash());
      if (it == blobs_.end()) {
        return absl::NotFoundError("no blob");
      }
      blob = it->second;
    }
    const size_t end = truncate_reads_ ? blob.size() / 2 : blob.size();
    for (size_t at = 0; at < end; at += chunk_bytes_) {
      const size_t n = std::min(chunk_bytes_, end - at);
      if (absl::Status s = sink(absl::string_view(blob).substr(at, n));
          !s.ok()) {
        return s;
      }
      if (after_chunk_) {
        after_chunk_(at + n);
      }
    }
    if (truncate_reads_) {
      return absl::DataLossError("stream ended early");
    }
    return absl::OkStatus();
  }
  absl::Status UploadFile(const cas::Digest& digest,
                          const std::string& path) override {
    const std::string data = ReadFile(path);
    if (Sha(data) != absl::HexStringToBytes(digest.hash()) ||
        static_cast<int64_t>(data.size()) != digest.size_bytes()) {
      return absl::InvalidArgumentError("blob does not match its digest");
    }
    absl::MutexLock lock(&mu_);
    if (blobs_.contains(digest.hash())) {
      ++uploads_skipped_;
      return absl::OkStatus();
    }
    ++blob_uploads_;
    blobs_[digest.hash()] = data;
    return absl::OkStatus();
  }
  absl::Status PutBundleIndex(absl::string_view scope,
                              absl::string_view index) override {
    absl::MutexLock lock(&mu_);
    ++bundle_puts_;
    bundles_[scope] = std::string(index);
    return absl::OkStatus();
  }

  void SetBundle(const std::string& scope, const std::string& index) {
    absl::MutexLock lock(&mu_);
    bundles_[scope] = index;
  }
  std::string Bundle(const std::string& scope) {
    absl::MutexLock lock(&mu_);
    return bundles_.contains(scope) ? bundles_[scope] : "<absent>";
  }
  void SetBlob(const std::string& data) {
    absl::MutexLock lock(&mu_);
    blobs_[cas::HexEncode(Sha(data))] = data;
  }
  void RemoveBlob(const std::string& hex) {
    absl::MutexLock lock(&mu_);
    blobs_.erase(hex);
  }
  int bundle_gets() {
    absl::MutexLock lock(&mu_);
    return bundle_gets_;
  }
  int bundle_puts() {
    absl::MutexLock lock(&mu_);
    return bundle_puts_;
  }
  int blob_reads() {
    absl::MutexLock lock(&mu_);
    return blob_reads_;
  }
  int compressed_reads() {
    absl::MutexLock lock(&mu_);
    return compressed_reads_;
  }
  int blob_uploads() {
    absl::MutexLock lock(&mu_);
    return blob_uploads_;
  }
  int uploads_skipped() {
    absl::MutexLock lock(&mu_);
    return uploads_skipped_;
  }

  void SetManifest(const std::string& scope, const std::string& blob) {
    absl::MutexLock lock(&mu_);
    manifests_[scope] = blob;
  }
  std::string Manifest(const std::string& scope) {
    absl::MutexLock lock(&mu_);
    return manifests_.contains(scope) ? manifests_[scope] : "<absent>";
  }
  int manifest_gets() {
    absl::MutexLock lock(&mu_);
    return manifest_gets_;
  }
  int manifest_puts() {
    absl::MutexLock lock(&mu_);
    return manifest_puts_;
  }

  void Add(const std::string& action_id, const std::string& body) {
    absl::MutexLock lock(&mu_);
    entries_[action_id] = {Entry{Sha(body), static_cast<int64_t>(body.size()),
                                 absl::FromUnixSeconds(1700000000)},
                           body};
  }
  // Stores an entry for `body` but serves it with one bit flipped.
  void AddCorrupt(const std::string& action_id, const std::string& body) {
    Add(action_id, body);
    absl::MutexLock lock(&mu_);
    entries_[action_id].second[body.size() / 2] ^= 1;
  }
  void Block(const std::string& action_id) {
    absl::MutexLock lock(&mu_);
    block_ = action_id;
  }
  // Every Get waits until Release().
  void BlockGets() {
    absl::MutexLock lock(&mu_);
    block_gets_ = true;
  }
  // Most Gets seen in progress at once.
  int max_in_get() {
    absl::MutexLock lock(&mu_);
    return max_in_get_;
  }
  // Every Put waits until Release().
  void BlockPuts() {
    absl::MutexLock lock(&mu_);
    block_puts_ = true;
  }
  int put_calls() {
    absl::MutexLock lock(&mu_);
    return put_calls_;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
    released_cv_.SignalAll();
  }
  int gets() {
    absl::MutexLock lock(&mu_);
    return gets_;
  }
  int puts() {
    absl::MutexLock lock(&mu_);
    return puts_;
  }
  std::string Body(const std::string& action_id) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(action_id);
    return it == entries_.end() ? "<absent>" : it->second.second;
  }
  // Set before the shim runs.
  absl::Status fail_;
  absl::Duration body_delay_;  // Before each body is sent.
  size_t chunk_bytes_ = 64 * 1024;
  bool truncate_reads_ = false;
  bool compresses_ = false;  // CompressesBlobs().
  // Called after each chunk ReadBlob sent, with the bytes sent so far.
  std::function<void(size_t)> after_chunk_;

 private:
  // The blob stored under `scope` in `blobs`, when at most `max_bytes`.
  static absl::StatusOr<std::string> Keyed(
      const absl::flat_hash_map<std::string, std::string>& blobs,
      absl::string_view scope, int64_t max_bytes, const char* missing) {
    auto it = blobs.find(scope);
    if (it == blobs.end() ||
        static_cast<int64_t>(it->second.size()) > max_bytes) {
      return absl::NotFoundError(missing);
    }
    return it->second;
  }

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::pair<Entry, std::string>> entries_
      ABSL_GUARDED_BY(mu_);
  std::string block_ ABSL_GUARDED_BY(mu_);
  bool block_puts_ ABSL_GUARDED_BY(mu_) = false;
  bool block_gets_ ABSL_GUARDED_BY(mu_) = false;
  int in_get_ ABSL_GUARDED_BY(mu_) = 0;
  int max_in_get_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar released_cv_;
  int put_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int gets_ ABSL_GUARDED_BY(mu_) = 0;
  int puts_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, std::string> manifests_ ABSL_GUARDED_BY(mu_);
  int manifest_gets_ ABSL_GUARDED_BY(mu_) = 0;
  int manifest_puts_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, std::string> bundles_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> blobs_ ABSL_GUARDED_BY(mu_);
  int bundle_gets_ ABSL_GUARDED_BY(mu_) = 0;
  int bundle_puts_ ABSL_GUARDED_BY(mu_) = 0;
  int blob_reads_ ABSL_GUARDED_BY(mu_) = 0;
  int compressed_reads_ ABSL_GUARDED_BY(mu_) = 0;
  int blob_uploads_ ABSL_GUARDED_BY(mu_) = 0;
  int uploads_skipped_ ABSL_GUARDED_BY(mu_) = 0;
};

// Waits (up to 20 s, not an assertion on speed) until `done` holds.
bool WaitFor(const std::function<bool()>& done) {
  for (int i = 0; i < 2000 && !done(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// Runs a Shim on pipes in a background thread.
class ShimTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (runner_.joinable()) {
      close(to_shim_);
      runner_.join();
    }
    close(from_shim_);
  }

  // Each Start() after the first opens a fresh local directory: a fresh
  // machine over the same remote.
  void Start(Remote* remote, ShimOptions options = {},
             int64_t max_size = int64_t{1} << 32) {
    if (!reuse_local_ || local_dir_.empty()) {
      local_dir_ = absl::StrCat(dir_, "/local",
                                starts_ == 0 ? "" : absl::StrCat(starts_));
    }
    auto local = OpenLocalStore(local_dir_, max_size);
    ++starts_;
    ASSERT_TRUE(local.ok()) << local.status();
    local_ = *std::move(local);
    shim_ = std::make_unique<Shim>(local_.get(), remote, options);
    int in[2], out[2];
    ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
    to_shim_ = in[1];
    from_shim_ = out[0];
    runner_ = std::thread([this, r = in[0], w = out[1]] {
      run_status_ = shim_->Run(r, w);
      close(r);
      close(w);
    });
    Json hello = NextResponse();
    EXPECT_EQ(hello,
              Json::parse(R"({"ID":0,"KnownCommands":["get","put","close"]})"));
  }

  void Send(absl::string_view text) {
    while (!text.empty()) {
      ssize_t n = write(to_shim_, text.data(), text.size());
      ASSERT_GT(n, 0);
      text.remove_prefix(n);
    }
  }
  // Sends a request as the go command does: JSON, newline, blank line.
  void SendRequest(const Json& j) { Send(j.dump() + "\n\n"); }
  void SendGet(int64_t id, const std::string& action) {
    SendRequest({{"ID", id},
                 {"Command", "get"},
                 {"ActionID", absl::Base64Escape(action)}});
  }
  void SendPut(int64_t id, const std::string& action, const std::string& body,
               const char* id_field = "OutputID") {
    Json j = {{"ID", id},
              {"Command", "put"},
              {"ActionID", absl::Base64Escape(action)},
              {id_field, absl::Base64Escape(Sha(body))}};
    if (!body.empty()) {
      j["BodySize"] = body.size();
    }
    SendRequest(j);
    if (!body.empty()) {
      Send(absl::StrCat("\"", absl::Base64Escape(body), "\"\n"));
    }
  }

  // Returns the next response line, failing (not hanging) after 120 s (a
  // guard against hangs only; sanitizer builds are many times slower).
  Json NextResponse() {
    std::string line;
    for (;;) {
      size_t nl = pending_.find('\n');
      if (nl != std::string::npos) {
        line = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        break;
      }
      pollfd p{from_shim_, POLLIN, 0};
      if (poll(&p, 1, 120000) <= 0) {
        ADD_FAILURE() << "no response within 120 s";
        return Json();
      }
      char buf[4096];
      ssize_t n = read(from_shim_, buf, sizeof(buf));
      if (n <= 0) {
        ADD_FAILURE() << "shim closed its output";
        return Json();
      }
      pending_.append(buf, n);
    }
    Json j = Json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << line;
    return j;
  }

  // Ends the last shim (after CloseAndWait) and starts another on a fresh
  // local directory over `remote`.
  void Restart(Remote* remote, ShimOptions options) {
    close(from_shim_);
    pending_.clear();
    shim_.reset();
    local_.reset();
    Start(remote, options);
  }

  void CloseAndWait(int64_t id) {
    SendRequest({{"ID", id}, {"Command", "close"}});
    EXPECT_EQ(NextResponse(), Json({{"ID", id}}));
    close(to_shim_);
    runner_.join();
    EXPECT_TRUE(run_status_.ok()) << run_status_;
  }

  testutil::TempDir tmp_;
  std::string dir_ = tmp_.path();
  // Start() opens the previous local tier again (the same machine) when
  // set, else a fresh one.
  bool reuse_local_ = false;
  std::string local_dir_;
  std::unique_ptr<LocalStore> local_;
  std::unique_ptr<Shim> shim_;
  std::thread runner_;
  absl::Status run_status_;
  int to_shim_ = -1;
  int from_shim_ = -1;
  int starts_ = 0;
  std::string pending_;
};

TEST_F(ShimTest, HandshakeThenClose) {
  Start(nullptr);
  CloseAndWait(1);
}

TEST_F(ShimTest, PutThenGetHitsLocally) {
  Start(nullptr);
  const std::string body = "compiled package bytes";
  SendPut(1, ActionId(1), body);
  Json put = NextResponse();
  EXPECT_EQ(put["ID"], 1);
  ASSERT_TRUE(put.contains("DiskPath")) << put;
  EXPECT_EQ(ReadFile(put["DiskPath"]), body);
  SendGet(2, ActionId(1));
  Json get = NextResponse();
  EXPECT_EQ(get["ID"], 2);
  EXPECT_EQ(get["OutputID"], absl::Base64Escape(Sha(body)));
  EXPECT_EQ(get["Size"], body.size());
  EXPECT_TRUE(get.contains("Time"));
  EXPECT_EQ(ReadFile(get["DiskPath"]), body);
  SendGet(3, ActionId(2));
  EXPECT_EQ(NextResponse(), Json({{"ID", 3}, {"Miss", true}}));
  CloseAndWait(4);
  EXPECT_EQ(shim_->stats().local_hits.load(), 1);
  EXPECT_EQ(shim_->stats().misses.load(), 1);
}

TEST_F(ShimTest, AnswersOutOfOrder) {
  FakeRemote remote;
  remote.Add(ActionId(1), "slow body");
  remote.Block(ActionId(1));
  Start(&remote);
  SendGet(1, ActionId(1));  // Held inside the remote.
  SendGet(2, ActionId(2));  // A miss, answered while 1 is still pending.
  EXPECT_EQ(NextResponse(), Json({{"ID", 2}, {"Miss", true}}));
  remote.Release();
  Json first = NextResponse();
  EXPECT_EQ(first["ID"], 1);
  EXPECT_EQ(ReadFile(first["DiskPath"]), "slow body");
  CloseAndWait(3);
  EXPECT_EQ(shim_->stats().remote_hits.load(), 1);
}

// A local hit is answered by the reading thread: even with every worker
// busy on a slow remote lookup it is not queued behind it.
TEST_F(ShimTest, LocalHitIsAnsweredWhileWorkersAreBusy) {
  FakeRemote remote;
  remote.Add(ActionId(1), "slow body");
  remote.Block(ActionId(1));
  ShimOptions options;
  options.workers = 1;
  Start(&remote, options);
  SendGet(1, ActionId(1));  // Holds the only worker inside the remote.
  ASSERT_TRUE(WaitFor([&] { return remote.gets() == 1; }));
  SendPut(2, ActionId(2), "local body");
  EXPECT_EQ(NextResponse()["ID"], 2);
  SendGet(3, ActionId(2));
  Json hit = NextResponse();  // Without the fast path: no answer (120 s).
  EXPECT_EQ(hit["ID"], 3);
  EXPECT_EQ(ReadFile(hit["DiskPath"]), "local body");
  remote.Release();
  Json slow = NextResponse();
  EXPECT_EQ(slow["ID"], 1);
  EXPECT_EQ(ReadFile(slow["DiskPath"]), "slow body");
  CloseAndWait(4);
  EXPECT_EQ(shim_->stats().gets.load(), 2);
  EXPECT_EQ(shim_->stats().local_hits.load(), 1);
  EXPECT_EQ(shim_->stats().remote_hits.load(), 1);
}

TEST_F(ShimTest, ManyRequestsInFlightAreEachAnsweredOnce) {
  FakeRemote remote;
  for (int i = 0; i < 400; i += 2) {
    remote.Add(ActionId(i), absl::StrCat("body ", i));
  }
  Start(&remote);
  std::thread writer([&] {
    for (int i = 0; i < 400; ++i) {
      SendGet(i + 1, ActionId(i));
    }
  });
  absl::flat_hash_map<int64_t, Json> answers;
  for (int i = 0; i < 400; ++i) {
    Json r = NextResponse();
    EXPECT_TRUE(answers.emplace(r["ID"].get<int64_t>(), r).second) << r;
  }
  writer.join();
  for (int i = 0; i < 400; ++i) {
    const Json& r = answers[i + 1];
    if (i % 2 == 0) {
      EXPECT_EQ(ReadFile(r["DiskPath"]), absl::StrCat("body ", i)) << r;
    } else {
      EXPECT_EQ(r, Json({{"ID", i + 1}, {"Miss", true}}));
    }
  }
  CloseAndWait(1000);
  EXPECT_EQ(shim_->stats().remote_hits.load(), 200);
}

TEST_F(ShimTest, LargeBodyStreamsThroughAndUploads) {
  FakeRemote remote;
  Start(&remote);
  const std::string body = RandomBytes(40 << 20, 7);  // 40 MiB
  std::thread writer([&] { SendPut(1, ActionId(1), body); });
  Json put = NextResponse();
  writer.join();
  ASSERT_TRUE(put.contains("DiskPath")) << put;
  EXPECT_TRUE(ReadFile(put["DiskPath"]) == body);
  CloseAndWait(2);  // Close waits for the upload.
  EXPECT_TRUE(remote.Body(ActionId(1)) == body);
  EXPECT_EQ(shim_->stats().bytes_up.load(), 40 << 20);
}

TEST_F(ShimTest, EmptyBody) {
  FakeRemote remote;
  Start(&remote);
  SendPut(1, ActionId(1), "");
  Json put = NextResponse();
  ASSERT_TRUE(put.contains("DiskPath")) << put;
  EXPECT_EQ(ReadFile(put["DiskPath"]), "");
  SendGet(2, ActionId(1));
  Json get = NextResponse();
  EXPECT_EQ(get["OutputID"], absl::Base64Escape(Sha("")));
  EXPECT_FALSE(get.contains("Size"));  // Zero is omitted, as Go does.
  EXPECT_FALSE(get.contains("Miss"));
  CloseAndWait(3);
  EXPECT_EQ(remote.Body(ActionId(1)), "");
}

TEST_F(ShimTest, AcceptsObjectIdSpelling) {
  Start(nullptr);
  SendPut(1, ActionId(1), "old go", "ObjectID");
  Json put = NextResponse();
  ASSERT_TRUE(put.contains("DiskPath")) << put;
  SendGet(2, ActionId(1));
  EXPECT_EQ(NextResponse()["OutputID"], absl::Base64Escape(Sha("old go")));
  CloseAndWait(3);
}

TEST_F(ShimTest, RejectsBodyNotMatchingOutputId) {
  Start(nullptr);
  SendRequest({{"ID", 1},
               {"Command", "put"},
               {"ActionID", absl::Base64Escape(ActionId(1))},
               {"OutputID", absl::Base64Escape(Sha("other"))},
               {"BodySize", 4}});
  Send(absl::StrCat("\"", absl::Base64Escape("body"), "\"\n"));
  Json put = NextResponse();
  EXPECT_NE(put.value("Err", ""), "") << put;
  SendGet(2, ActionId(1));  // Nothing was stored; the loop goes on.
  EXPECT_EQ(NextResponse(), Json({{"ID", 2}, {"Miss", true}}));
  CloseAndWait(3);
}

TEST_F(ShimTest, RemoteHitIsKeptLocally) {
  FakeRemote remote;
  remote.Add(ActionId(1), "from another machine");
  Start(&remote);
  SendGet(1, ActionId(1));
  Json first = NextResponse();
  EXPECT_EQ(ReadFile(first["DiskPath"]), "from another machine");
  EXPECT_EQ(first["Time"], "2023-11-14T22:13:20+00:00");
  SendGet(2, ActionId(1));
  Json second = NextResponse();
  EXPECT_EQ(second["DiskPath"], first["DiskPath"]);
  // The put time of the other machine, also from the local tier: `go clean
  // -testcache` expires test results by this time.
  EXPECT_EQ(second["Time"], "2023-11-14T22:13:20+00:00");
  CloseAndWait(3);
  EXPECT_EQ(remote.gets(), 1);
  EXPECT_EQ(shim_->stats().local_hits.load(), 1);
  EXPECT_EQ(shim_->stats().remote_hits.load(), 1);
}

// Remote::Get leaves the body's hash to the shim: a body that does not
// hash to its OutputID is a miss and is never stored or handed out.
TEST_F(ShimTest, RemoteBodyNotMatchingItsOutputIdIsAMiss) {
  FakeRemote remote;
  remote.AddCorrupt(ActionId(1), RandomBytes(100000, 1));
  Start(&remote);
  SendGet(1, ActionId(1));
  EXPECT_EQ(NextResponse(), Json({{"ID", 1}, {"Miss", true}}));
  SendGet(2, ActionId(1));  // Not kept locally: asked again.
  EXPECT_EQ(NextResponse(), Json({{"ID", 2}, {"Miss", true}}));
  CloseAndWait(3);
  EXPECT_EQ(remote.gets(), 2);
  EXPECT_EQ(shim_->stats().remote_hits.load(), 0);
  EXPECT_EQ(shim_->stats().misses.load(), 2);
  EXPECT_FALSE(local_->Get(ActionId(1)).has_value());
}

// A remote that is down, times out (slow), or answers errors: every get is a
// miss, the remote is asked once and then skipped, puts stay local.
class FailingRemoteTest : public ShimTest,
                          public ::testing::WithParamInterface<absl::Status> {};

TEST_P(FailingRemoteTest, MissesOnceThenIsSkipped) {
  FakeRemote remote;
  remote.fail_ = GetParam();
  ShimOptions options;
  options.workers = 1;  // Sequential, so the breaker opens after one call.
  Start(&remote, options);
  for (int i = 1; i <= 5; ++i) {
    SendGet(i, ActionId(i));
    EXPECT_EQ(NextResponse(), Json({{"ID", i}, {"Miss", true}}));
  }
  SendPut(6, ActionId(6), "kept locally");
  EXPECT_TRUE(NextResponse().contains("DiskPath"));
  SendGet(7, ActionId(6));
  EXPECT_EQ(NextResponse()["Size"], 12);
  CloseAndWait(8);
  EXPECT_EQ(remote.gets(), 1);
  EXPECT_EQ(shim_->stats().uploads.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Codes, FailingRemoteTest,
    ::testing::Values(absl::UnavailableError("connection refused"),
                      absl::DeadlineExceededError("slow"),
                      absl::InternalError("server bug"),
                      absl::UnauthenticatedError("bad key"),
                      absl::ResourceExhaustedError("overloaded")));

TEST_F(ShimTest, ReadOnlyNeverUploads) {
  FakeRemote remote;
  ShimOptions options;
  options.read_only = true;
  Start(&remote, options);
  SendPut(1, ActionId(1), "local only");
  EXPECT_TRUE(NextResponse().contains("DiskPath"));
  CloseAndWait(2);
  EXPECT_EQ(remote.puts(), 0);
}

// Go-side traps (docs/go.md): cmd/go aborts on some
// failed puts, opens DiskPaths after close (go list -export), and waits for
// close before it exits.
TEST_F(ShimTest, PutSucceedsLocallyWhenUploadFails) {
  FakeRemote remote;
  remote.fail_ = absl::UnavailableError("connection refused");
  Start(&remote);
  SendPut(1, ActionId(1), "module index entry");
  Json put = NextResponse();
  EXPECT_FALSE(put.contains("Err")) << put;
  EXPECT_EQ(ReadFile(put["DiskPath"]), "module index entry");
  EXPECT_TRUE(WaitFor([&] { return remote.put_calls() == 1; }));
  SendGet(2, ActionId(1));
  EXPECT_EQ(NextResponse()["DiskPath"], put["DiskPath"]);
  CloseAndWait(3);
  EXPECT_EQ(shim_->stats().upload_failures.load(), 1);
  EXPECT_EQ(shim_->stats().errors.load(), 0);
}

TEST_F(ShimTest, DiskPathHasNoExtensionAndOutlivesClose) {
  Start(nullptr);
  SendPut(1, ActionId(1), "export data");
  const std::string path = NextResponse()["DiskPath"];
  CloseAndWait(2);
  const std::string base = path.substr(path.rfind('/') + 1);
  EXPECT_EQ(base, cas::HexEncode(Sha("export data")));
  EXPECT_EQ(base.find('.'), std::string::npos);
  // The next go command's shim, with a bound far below what is stored,
  // must not delete a body the last one handed out (go list -export
  // consumers open it after the go command exited).
  close(from_shim_);
  pending_.clear();
  Start(nullptr, {}, /*max_size=*/1);
  SendPut(1, ActionId(2), "another body pushes the store over its bound");
  EXPECT_TRUE(NextResponse().contains("DiskPath"));
  CloseAndWait(2);
  EXPECT_EQ(ReadFile(path), "export data");
}

TEST_F(ShimTest, CloseReturnsWithinFlushTimeoutWhileUploadsHang) {
  FakeRemote remote;
  remote.BlockPuts();
  ShimOptions options;
  options.flush_timeout = absl::Milliseconds(200);
  Start(&remote, options);
  SendPut(1, ActionId(1), "upload never finishes");
  EXPECT_TRUE(NextResponse().contains("DiskPath"));
  EXPECT_TRUE(WaitFor([&] { return remote.put_calls() == 1; }));
  SendRequest({{"ID", 2}, {"Command", "close"}});
  // Answered while the upload is still blocked (a close waiting for it
  // would never answer: NextResponse fails after its guard).
  EXPECT_EQ(NextResponse(), Json({{"ID", 2}}));
  EXPECT_EQ(remote.puts(), 0);
  remote.Release();
  close(to_shim_);
  runner_.join();
  EXPECT_TRUE(run_status_.ok()) << run_status_;
  shim_.reset();  // Joins the upload thread before `remote` goes.
}

// Latency budget: a remote that does not answer in time costs a miss, never
// a hang.
TEST_F(ShimTest, HangingRemoteGetIsAMissWithinTheBudget) {
  FakeRemote remote;
  remote.Add(ActionId(1), "slow to arrive");
  remote.Block(ActionId(1));
  ShimOptions options;
  options.get_budget = absl::Milliseconds(200);
  Start(&remote, options);
  SendGet(1, ActionId(1));
  // Answered while the remote still holds the call.
  EXPECT_EQ(NextResponse(), Json({{"ID", 1}, {"Miss", true}}));
  EXPECT_EQ(shim_->stats().budget_misses.load(), 1);
  remote.Release();  // The late fetch skips the body: past its budget.
  // Once the remote answers again, a later get is a hit. On a slow
  // (sanitizer) build one get can itself exceed the 200 ms budget, so ask
  // again (bounded: 50 gets) until one is answered from the remote.
  int64_t id = 2;
  Json answer;
  do {
    SendGet(id++, ActionId(1));
    answer = NextResponse();
  } while (!answer.contains("Size") && id < 52);
  EXPECT_EQ(answer["Size"], 14);
  EXPECT_EQ(shim_->stats().remote_hits.load(), 1);
  CloseAndWait(id);
}

TEST_F(ShimTest, BodyExpectedPastTheBudgetIsNotFetched) {
  FakeRemote remote;
  const std::string first = RandomBytes(256 << 10, 1);
  const std::string big = RandomBytes(4 << 20, 2);
  remote.Add(ActionId(1), first);
  remote.Add(ActionId(2), big);
  remote.body_delay_ = absl::Milliseconds(300);  // < 1 MB/s for `first`
  ShimOptions options;
  options.get_budget = absl::Seconds(3);
  Start(&remote, options);
  SendGet(1, ActionId(1));
  EXPECT_EQ(NextResponse()["Size"], first.size());  // Measures the link.
  SendGet(2, ActionId(2));  // 4 MiB at < 1 MB/s: over 4 s.
  EXPECT_EQ(NextResponse(), Json({{"ID", 2}, {"Miss", true}}));
  CloseAndWait(3);
  EXPECT_EQ(shim_->stats().budget_skips.load(), 1);
  EXPECT_EQ(shim_->stats().budget_misses.load(), 0);
  EXPECT_GT(shim_->stats().link_bytes_per_s.load(), 0);
  EXPECT_LT(shim_->stats().link_bytes_per_s.load(), 1000000);
}

ShimOptions PrefetchOptions() {
  ShimOptions options;
  options.prefetch_scope = "scope";
  return options;
}

TEST_F(ShimTest, PrefetchedEntriesAreLocalHits) {
  FakeRemote remote;
  std::vector<std::string> ids;
  for (int i = 1; i <= 5; ++i) {
    remote.Add(ActionId(i), absl::StrCat("body ", i));
    ids.push_back(ActionId(i));
  }
  const std::string manifest = EncodeManifest(ids);
  remote.SetManifest("scope", manifest);
  Start(&remote, PrefetchOptions());
  ASSERT_TRUE(WaitFor([&] { return shim_->stats().prefetched.load() == 5; }));
  for (int i = 5; i >= 1; --i) {  // Another order: the same build.
    SendGet(i, ActionId(i));
    EXPECT_EQ(ReadFile(NextResponse()["DiskPath"]), absl::StrCat("body ", i));
  }
  CloseAndWait(6);
  EXPECT_EQ(remote.gets(), 5);  // The prefetch's only.
  EXPECT_EQ(shim_->stats().prefetch_hits.load(), 5);
  EXPECT_EQ(shim_->stats().remote_hits.load(), 0);
  EXPECT_EQ(shim_->stats().prefetch_bytes.load(), 30);
  // The same build again (any order): the manifest is not rewritten.
  EXPECT_EQ(remote.manifest_puts(), 0);
  EXPECT_EQ(remote.Manifest("scope"), manifest);
}

TEST_F(ShimTest, GetWaitsForPrefetchInFlight) {
  FakeRemote remote;
  remote.Add(ActionId(1), "slow body");
  remote.SetManifest("scope", EncodeManifest({ActionId(1)}));
  remote.Block(ActionId(1));
  Start(&remote, PrefetchOptions());
  ASSERT_TRUE(WaitFor([&] { return remote.gets() == 1; }));
  SendGet(1, ActionId(1));
  // Give the get time to reach the single-flight wait (correct either way).
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  remote.Release();
  EXPECT_EQ(ReadFile(NextResponse()["DiskPath"]), "slow body");
  CloseAndWait(2);
  EXPECT_EQ(remote.gets(), 1);  // No second lookup of the same ActionID.
  EXPECT_EQ(shim_->stats().prefetch_hits.load(), 1);
}

TEST(PrefetchDepthTest, CoversBandwidthTimesDelay) {
  // 2 x 25 ms x 6.25 MB/s = 312.5 KB in flight: 32 bodies of 10 KB, +1.
  EXPECT_EQ(PrefetchDepth(absl::Milliseconds(25), 6.25e6, 10000, 4, 64), 33);
  // Larger bodies fill the same link with fewer fetches.
  EXPECT_EQ(PrefetchDepth(absl::Milliseconds(25), 6.25e6, 100000, 4, 64), 5);
  // Loopback (50 us, 100 MB/s, 200 KB bodies): the minimum.
  EXPECT_EQ(PrefetchDepth(absl::Microseconds(50), 100e6, 200000, 16, 64), 16);
  // Bounded above; nothing measured yet: the minimum.
  EXPECT_EQ(PrefetchDepth(absl::Milliseconds(100), 125e6, 1000, 16, 64), 64);
  EXPECT_EQ(PrefetchDepth(absl::ZeroDuration(), 0, 0, 16, 64), 16);
  EXPECT_EQ(PrefetchDepth(absl::Milliseconds(5), 1e6, 0, 16, 64), 16);
  // The maximum wins over the minimum; never below one.
  EXPECT_EQ(PrefetchDepth(absl::Milliseconds(5), 1e6, 1000, 16, 2), 2);
  EXPECT_EQ(PrefetchDepth(absl::Milliseconds(5), 1e6, 1000, 0, 0), 1);
}

// Adds entries 1..n ("body i") to `remote`, lists them in the scope's
// manifest and blocks gets until Release().
void AddBlockedManifest(FakeRemote& remote, int n) {
  std::vector<std::string> ids;
  for (int i = 1; i <= n; ++i) {
    remote.Add(ActionId(i), absl::StrCat("body ", i));
    ids.push_back(ActionId(i));
  }
  remote.SetManifest("scope", EncodeManifest(ids));
  remote.BlockGets();
}

// Before any fetch has ended (nothing measured) the prefetch keeps
// prefetch_min_depth fetches in flight, not one per thread. (Once the three
// end, each after one long round trip, the depth may grow: 2 x rtt x rate /
// mean body = 2 x 3 here.)
TEST_F(ShimTest, PrefetchStartsAtTheMinimumDepth) {
  FakeRemote remote;
  AddBlockedManifest(remote, 20);
  ShimOptions options = PrefetchOptions();
  options.prefetch_threads = 64;
  options.prefetch_min_depth = 3;
  Start(&remote, options);
  ASSERT_TRUE(WaitFor([&] { return remote.gets() >= 3; }));
  // While the three are blocked nothing ends, so the depth stays 3.
  EXPECT_EQ(remote.gets(), 3);
  EXPECT_EQ(remote.max_in_get(), 3);
  EXPECT_EQ(shim_->stats().prefetch_depth.load(), 3);
  remote.Release();
  ASSERT_TRUE(WaitFor([&] { return shim_->stats().prefetched.load() == 20; }));
  CloseAndWait(1);
}

// By default the prefetch starts (and, unmeasured, stays) 64 deep: with
// compressed bodies the depth formula measured its own throughput at 16 and
// kept 16 (gh warm remote under the cloud profile: 14.72 s at 16 against
// 9.39 s at 64, same 141 MB on the wire, back to back).
TEST_F(ShimTest, PrefetchStartsSixtyFourDeepByDefault) {
  FakeRemote remote;
  AddBlockedManifest(remote, 80);
  Start(&remote, PrefetchOptions());
  // EXPECT, not ASSERT: the blocked gets must be released either way.
  EXPECT_TRUE(WaitFor([&] { return remote.gets() >= 64; }));
  EXPECT_EQ(remote.max_in_get(), 64);
  EXPECT_EQ(shim_->stats().prefetch_depth.load(), 64);
  remote.Release();
  ASSERT_TRUE(WaitFor([&] { return shim_->stats().prefetched.load() == 80; }));
  CloseAndWait(1);
}

TEST_F(ShimTest, PrefetchStopsAtByteCap) {
  FakeRemote remote;
  std::vector<std::string> ids;
  for (int i = 1; i <= 3; ++i) {
    remote.Add(ActionId(i), "8 bytes!");
    ids.push_back(ActionId(i));
  }
  remote.SetManifest("scope", EncodeManifest(ids));
  ShimOptions options = PrefetchOptions();
  options.prefetch_threads = 1;
  options.prefetch_max_bytes = 10;
  Start(&remote, options);
  ASSERT_TRUE(WaitFor([&] { return remote.gets() >= 2; }));
  for (int i = 1; i <= 3; ++i) {
    SendGet(i, ActionId(i));
    EXPECT_EQ(ReadFile(NextResponse()["DiskPath"]), "8 bytes!");
  }
  CloseAndWait(4);
  EXPECT_EQ(shim_->stats().prefetched.load(), 1);
  EXPECT_EQ(shim_->stats().prefetch_bytes.load(), 8);
  EXPECT_EQ(shim_->stats().prefetch_hits.load(), 1);
  EXPECT_EQ(shim_->stats().remote_hits.load(), 2);
}

TEST_F(ShimTest, PrefetchOffNeverTouchesManifests) {
  FakeRemote remote;
  remote.Add(ActionId(1), "body");
  remote.SetManifest("scope", EncodeManifest({ActionId(1)}));
  ShimOptions options = PrefetchOptions();
  options.prefetch = false;
  Start(&remote, options);
  SendGet(1, ActionId(1));
  EXPECT_EQ(ReadFile(NextResponse()["DiskPath"]), "body");
  SendPut(2, ActionId(2), "new");
  EXPECT_TRUE(NextResponse().contains("DiskPath"));
  CloseAndWait(3);
  EXPECT_EQ(remote.manifest_gets(), 0);
  EXPECT_EQ(remote.manifest_puts(), 0);
  EXPECT_EQ(shim_->stats().remote_hits.load(), 1);
}

// The manifest lists what a get asked for and a hit or put resolved, and
// empty puts no get asked for. A cold gh build puts, unasked, 1058 non-empty
// "srcfiles" lists a warm build never reads (left out: the first warm build
// fetched 3522 entries for 2464 gets) and one empty "stdout" record per
// compiled package, which every warm build reads back (kept: without them
// the first warm build fetched 1046 of its gets on demand, 2026-12-02).
TEST_F(ShimTest, CloseStoresAskedHitsAndPutsInRequestOrder) {
  FakeRemote remote;
  remote.Add(ActionId(2), "remote");
  Start(&remote, PrefetchOptions());
  SendGet(1, ActionId(1));  // Miss, then put: kept.
  EXPECT_EQ(NextResponse()["Miss"], true);
  SendPut(2, ActionId(1), "built");
  EXPECT_TRUE(NextResponse().contains("DiskPath"));
  SendGet(3, ActionId(2));  // Remote hit: kept.
  EXPECT_TRUE(NextResponse().contains("DiskPath"));
  SendGet(4, ActionId(3));  // Miss never put: dropped.
  EXPECT_EQ(NextResponse()["Miss"], true);
  SendPut(5, ActionId(4), "put without a get");  // Dropped.
  EXPECT_TRUE(NextResponse().contains("DiskPath"));
  SendPut(6, ActionId(5), "");  // Empty, without a get: kept.
  EXPECT_TRUE(NextResponse().contains("DiskPath"));
  SendGet(7, ActionId(1));  // Repeated: once.
  EXPECT_TRUE(NextResponse().contains("DiskPath"));
  CloseAndWait(8);
  EXPECT_EQ(remote.manifest_gets(), 1);
  EXPECT_EQ(shim_->stats().manifests_stored.load(), 1);
  auto ids = DecodeManifest(remote.Manifest("scope"));
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids,
            (std::vector<std::string>{ActionId(1), ActionId(2), ActionId(5)}));
}

// A manifest from an older shim lists a cold build's puts too; a warm
// build asks for fewer.
// The manifest shrinks to what this run asked for, in its order, so the next
// run downloads nothing it will not ask for.
TEST_F(ShimTest, CloseReplacesManifestListingMoreThanThisRun) {
  FakeRemote remote;
  std::vector<std::string> ids;
  for (int i = 1; i <= 4; ++i) {
    remote.Add(ActionId(i), absl::StrCat("body ", i));
    ids.push_back(ActionId(i));
  }
  remote.SetManifest("scope", EncodeManifest(ids));
  Start(&remote, PrefetchOptions());
  ASSERT_TRUE(WaitFor([&] { return shim_->stats().prefetched.load() == 4; }));
  SendGet(1, ActionId(3));
  EXPECT_EQ(ReadFile(NextResponse()["DiskPath"]), "body 3");
  SendGet(2, ActionId(1));
  EXPECT_EQ(ReadFile(NextResponse()["DiskPath"]), "body 1");
  CloseAndWait(3);
  EXPECT_EQ(shim_->stats().manifests_stored.load(), 1);
  auto stored = DecodeManifest(remote.Manifest("scope"));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, (std::vector<std::string>{ActionId(3), ActionId(1)}));
}

TEST_F(ShimTest, ReadOnlyStoresNoManifest) {
  FakeRemote remote;
  ShimOptions options = PrefetchOptions();
  options.read_only = true;
  Start(&remote, options);
  SendPut(1, ActionId(1), "local only");
  EXPECT_TRUE(NextResponse().contains("DiskPath"));
  CloseAndWait(2);
  EXPECT_EQ(remote.manifest_puts(), 0);
}

// A manifest that does not parse, or names entries the remote lacks: the
// build goes on through the normal path.
class ManifestFallbackTest : public ShimTest,
                             public ::testing::WithParamInterface<int> {};

TEST_P(ManifestFallbackTest, BuildGoesOnThroughNormalPath) {
  FakeRemote remote;
  remote.Add(ActionId(1), "body");
  remote.SetManifest("scope", GetParam() == 0
                                  ? std::string("garbage")
                                  : EncodeManifest({ActionId(7), ActionId(8)}));
  Start(&remote, PrefetchOptions());
  SendGet(1, ActionId(1));
  EXPECT_EQ(ReadFile(NextResponse()["DiskPath"]), "body");
  SendGet(2, ActionId(7));
  EXPECT_EQ(NextResponse()["Miss"], true);
  CloseAndWait(3);
  EXPECT_EQ(shim_->stats().remote_hits.load(), 1);
  EXPECT_EQ(shim_->stats().prefetched.load(), 0);
}

// 0: a manifest that does not parse; 1: one naming absent entries.
INSTANTIATE_TEST_SUITE_P(BadOrStale, ManifestFallbackTest,
                         ::testing::Values(0, 1));

TEST_F(ShimTest, FailingManifestFetchIsFailOpen) {
  FakeRemote remote;
  remote.fail_ = absl::UnavailableError("down");
  Start(&remote, PrefetchOptions());
  SendPut(1, ActionId(1), "still works");
  EXPECT_TRUE(NextResponse().contains("DiskPath"));
  SendGet(2, ActionId(1));
  EXPECT_EQ(ReadFile(NextResponse()["DiskPath"]), "still works");
  CloseAndWait(3);
  EXPECT_EQ(shim_->stats().errors.load(), 0);
}

// --- Bundles ---

ShimOptions BundleOptions(int64_t part_bytes = 4096) {
  ShimOptions options = PrefetchOptions();
  options.bundle_part_bytes = part_bytes;
  return options;
}

std::string BodyOf(int i) {
  return RandomBytes(500 + (i * 211) % 2500, static_cast<uint32_t>(i));
}

// Builds by hand, in `remote`, the bundle of entries 1..n (bodies
// `body_of`) for "scope", in parts of `part_bytes`, encoded as `encoding`;
// `mangle` may change a part's content before it is stored. Returns the
// index.
BundleIndex MakeBundle(
    FakeRemote& remote, int n, int64_t part_bytes, PartEncoding encoding,
    const std::function<void(size_t part, std::string* content)>& mangle =
        nullptr,
    const std::function<std::string(int)>& body_of = BodyOf) {
  std::vector<BundleEntry> entries;
  for (int i = 1; i <= n; ++i) {
    const std::string body = body_of(i);
    entries.push_back(BundleEntry{ActionId(i), Sha(body),
                                  static_cast<int64_t>(body.size()),
                                  absl::FromUnixSeconds(1700000000)});
  }
  BundleIndex index = PlanBundle(entries, int64_t{1} << 30, part_bytes);
  const auto bodies = BodiesByPart(index);
  for (size_t p = 0; p < index.parts.size(); ++p) {
    std::string content;
    for (const PartBody& b : bodies[p]) {
      content += body_of(static_cast<int>(b.records[0]) + 1);
    }
    if (mangle) {
      mangle(p, &content);
    }
    std::string blob = content;
    if (encoding == PartEncoding::kZstd) {
      blob.clear();
      cas::ZstdCompressor c;
      EXPECT_TRUE(c.Compress(content, /*last=*/true, &blob).ok());
    }
    index.parts[p].encoding = encoding;
    index.parts[p].hash = Sha(blob);
    index.parts[p].blob_size = static_cast<int64_t>(blob.size());
    remote.SetBlob(blob);
  }
  remote.SetBundle("scope", EncodeBundleIndex(index));
  return index;
}

TEST_F(ShimTest, FreshMachineWarmsFromTheBundleWithoutPerEntryGets) {
  FakeRemote remote;
  Start(&remote, BundleOptions());
  for (int i = 1; i <= 30; ++i) {
    SendGet(2 * i, ActionId(i));
    EXPECT_EQ(NextResponse()["Miss"], true);
    SendPut(2 * i + 1, ActionId(i), BodyOf(i));
    EXPECT_TRUE(NextResponse().contains("DiskPath"));
  }
  SendPut(100, ActionId(31), "");  // Empty: in the bundle, without a part.
  EXPECT_TRUE(NextResponse().contains("DiskPath"));
  CloseAndWait(101);
  EXPECT_EQ(shim_->stats().bundles_stored.load(), 1);
  EXPECT_EQ(remote.bundle_puts(), 1);
  auto index = DecodeBundleIndex(remote.Bundle("scope"));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->records.size(), 31u);
  ASSERT_GE(index->parts.size(), 3u);  // ~52 KB in parts of about 4 KB.
  EXPECT_EQ(index->parts[0].encoding, PartEncoding::kZstd);
  const int gets_before = remote.gets();

  Restart(&remote, BundleOptions());
  ASSERT_TRUE(
      WaitFor([&] { return shim_->stats().bundle_entries.load() == 31; }));
  for (int i = 1; i <= 31; ++i) {
    SendGet(i, ActionId(i));
    Json r = NextResponse();
    ASSERT_TRUE(r.contains("DiskPath")) << r;
    EXPECT_EQ(ReadFile(r["DiskPath"]), i == 31 ? "" : BodyOf(i));
  }
  CloseAndWait(40);
  EXPECT_EQ(remote.gets(), gets_before);  // No per-entry lookup at all.
  EXPECT_EQ(remote.manifest_gets(), 1);   // The first run's only.
  EXPECT_EQ(shim_->stats().bundle_hits.load(), 31);
  EXPECT_EQ(shim_->stats().bundle_parts.load(),
            static_cast<int64_t>(index->parts.size()));
  EXPECT_EQ(remote.blob_reads(), static_cast<int>(index->parts.size()));
  // The same list again: neither the bundle nor the manifest is rewritten.
  EXPECT_EQ(shim_->stats().bundles_stored.load(), 0);
  EXPECT_EQ(remote.bundle_puts(), 1);
  EXPECT_EQ(remote.manifest_puts(), 1);
}

// With a remote that compresses on the wire, parts are stored plain (the
// server may recompress them at rest, which it cannot do to zstd frames)
// and read with compression asked for; the bodies come back intact.
TEST_F(ShimTest, PlainPartsTravelCompressedWhenTheRemoteCompresses) {
  FakeRemote remote;
  remote.compresses_ = true;
  Start(&remote, BundleOptions());
  int64_t content = 0;
  for (int i = 1; i <= 30; ++i) {
    SendGet(2 * i, ActionId(i));
    EXPECT_EQ(NextResponse()["Miss"], true);
    SendPut(2 * i + 1, ActionId(i), BodyOf(i));
    EXPECT_TRUE(NextResponse().contains("DiskPath"));
    content += static_cast<int64_t>(BodyOf(i).size());
  }
  CloseAndWait(101);
  auto index = DecodeBundleIndex(remote.Bundle("scope"));
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_GE(index->parts.size(), 3u);
  int64_t stored = 0;
  for (const BundlePart& part : index->parts) {
    EXPECT_EQ(part.encoding, PartEncoding::kPlain);
    EXPECT_EQ(part.blob_size, part.content_size);
    stored += part.blob_size;
  }
  EXPECT_EQ(stored, content);

  Restart(&remote, BundleOptions());
  ASSERT_TRUE(
      WaitFor([&] { return shim_->stats().bundle_entries.load() == 30; }));
  for (int i = 1; i <= 30; ++i) {
    SendGet(i, ActionId(i));
    Json r = NextResponse();
    ASSERT_TRUE(r.contains("DiskPath")) << r;
    EXPECT_EQ(ReadFile(r["DiskPath"]), BodyOf(i));
  }
  CloseAndWait(40);
  EXPECT_EQ(shim_->stats().bundle_hits.load(), 30);
  EXPECT_EQ(remote.blob_reads(), static_cast<int>(index->parts.size()));
  EXPECT_EQ(remote.compressed_reads(), remote.blob_reads());
}

// A machine whose local tier holds every entry of the bundle (a kept
// --dir) reads the index but none of its parts.
TEST_F(ShimTest, WarmShimDirReadsNoBundlePart) {
  FakeRemote remote;
  Start(&remote, BundleOptions());
  for (int i = 1; i <= 30; ++i) {
    SendGet(2 * i, ActionId(i));
    EXPECT_EQ(NextResponse()["Miss"], true);
    SendPut(2 * i + 1, ActionId(i), BodyOf(i));
    EXPECT_TRUE(NextResponse().contains("DiskPath"));
  }
  CloseAndWait(101);
  ASSERT_EQ(remote.bundle_puts(), 1);
  const int reads_before = remote.blob_reads();
  const int index_gets_before = remote.bundle_gets();

  reuse_local_ = true;
  Restart(&remote, BundleOptions());
  ASSERT_TRUE(
      WaitFor([&] { return remote.bundle_gets() == index_gets_before + 1; }));
  for (int i = 1; i <= 30; ++i) {
    SendGet(i, ActionId(i));
    Json r = NextResponse();
    ASSERT_TRUE(r.contains("DiskPath")) << r;
    EXPECT_EQ(ReadFile(r["DiskPath"]), BodyOf(i));
  }
  // Parts would be queued right after the index: give them the time.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CloseAndWait(40);
  EXPECT_EQ(remote.blob_reads(), reads_before);
  EXPECT_EQ(shim_->stats().bundle_parts.load(), 0);
  EXPECT_EQ(shim_->stats().local_hits.load(), 30);
}

// A body in a part that does not hash to its OutputID is not stored; its
// entry goes the normal way and the get still gets the right bytes.
TEST_F(ShimTest, BundleBodyNotMatchingItsOutputIdFallsBack) {
  FakeRemote remote;
  for (int i = 1; i <= 3; ++i) {
    remote.Add(ActionId(i), BodyOf(i));
  }
  MakeBundle(remote, 3, 1 << 20, PartEncoding::kPlain,
             [](size_t, std::string* content) {
               (*content)[BodyOf(1).size() + 5] ^= 1;  // Inside body 2.
             });
  Start(&remote, BundleOptions());
  ASSERT_TRUE(WaitFor([&] { return shim_->stats().bundle_parts.load() == 1; }));
  for (int i = 1; i <= 3; ++i) {
    SendGet(i, ActionId(i));
    EXPECT_EQ(ReadFile(NextResponse()["DiskPath"]), BodyOf(i));
  }
  CloseAndWait(4);
  EXPECT_EQ(shim_->stats().bundle_entries.load(), 2);
  EXPECT_EQ(shim_->stats().bundle_hits.load(), 2);
  EXPECT_EQ(shim_->stats().remote_hits.load(), 1);
  EXPECT_EQ(remote.gets(), 1);  // Body 2 only.
}

// A part that is missing, or whose stream ends early, releases its entries
// to the normal path (those cut before the end are kept).
class BundlePartFailureTest : public ShimTest,
                              public ::testing::WithParamInterface<int> {};

TEST_P(BundlePartFailureTest, ReleasesItsEntries) {
  FakeRemote remote;
  for (int i = 1; i <= 4; ++i) {
    remote.Add(ActionId(i), BodyOf(i));
  }
  const BundleIndex index =
      MakeBundle(remote, 4, 1 << 20, PartEncoding::kZstd);
  ASSERT_EQ(index.parts.size(), 1u);
  if (GetParam() == 0) {
    remote.RemoveBlob(cas::HexEncode(index.parts[0].hash));
  } else {
    remote.truncate_reads_ = true;
    remote.chunk_bytes_ = 64;
  }
  ShimOptions options = BundleOptions();
  options.get_budget = absl::Seconds(30);  // A wait would show as a hang.
  Start(&remote, options);
  ASSERT_TRUE(WaitFor([&] { return remote.blob_reads() == 1; }));
  for (int i = 1; i <= 4; ++i) {
    SendGet(i, ActionId(i));
    EXPECT_EQ(ReadFile(NextResponse()["DiskPath"]), BodyOf(i));
  }
  CloseAndWait(5);
  EXPECT_EQ(shim_->stats().bundle_parts.load(), 0);
  EXPECT_EQ(shim_->stats().bundle_hits.load() +
                shim_->stats().remote_hits.load(),
            4);
  EXPECT_GE(shim_->stats().remote_hits.load(), 1);
  EXPECT_EQ(shim_->stats().misses.load(), 0);
}

// 0: the part is missing; 1: its stream ends halfway (zstd).
INSTANTIATE_TEST_SUITE_P(MissingOrTruncated, BundlePartFailureTest,
                         ::testing::Values(0, 1));

TEST_F(ShimTest, ManifestStillServesWhenThereIsNoBundle) {
  FakeRemote remote;
  std::vector<std::string> ids;
  for (int i = 1; i <= 3; ++i) {
    remote.Add(ActionId(i), BodyOf(i));
    ids.push_back(ActionId(i));
  }
  remote.SetManifest("scope", EncodeManifest(ids));
  remote.SetBundle("scope", "not a bundle index");
  Start(&remote, BundleOptions());
  ASSERT_TRUE(WaitFor([&] { return shim_->stats().prefetched.load() == 3; }));
  for (int i = 1; i <= 3; ++i) {
    SendGet(i, ActionId(i));
    EXPECT_EQ(ReadFile(NextResponse()["DiskPath"]), BodyOf(i));
  }
  CloseAndWait(4);
  EXPECT_EQ(remote.bundle_gets(), 1);
  EXPECT_EQ(remote.manifest_gets(), 1);
  EXPECT_EQ(shim_->stats().prefetch_hits.load(), 3);
  // The manifest lists the same ids: not rewritten; the bundle did not
  // parse, so a new one is stored.
  EXPECT_EQ(remote.manifest_puts(), 0);
  EXPECT_EQ(shim_->stats().bundles_stored.load(), 1);
  EXPECT_TRUE(DecodeBundleIndex(remote.Bundle("scope")).ok());
}

TEST_F(ShimTest, CloseRebuildsTheBundleOnlyPastTheThreshold) {
  FakeRemote remote;
  auto build = [&](int n, int first_id) {
    for (int i = 1; i <= n; ++i) {
      SendGet(first_id + 2 * i, ActionId(i));
      Json r = NextResponse();
      if (r.contains("Miss")) {
        SendPut(first_id + 2 * i + 1, ActionId(i), BodyOf(i));
        EXPECT_TRUE(NextResponse().contains("DiskPath"));
      } else {
        EXPECT_EQ(ReadFile(r["DiskPath"]), BodyOf(i));
      }
    }
    CloseAndWait(first_id + 1000);
  };
  Start(&remote, BundleOptions());
  build(40, 0);
  EXPECT_EQ(remote.bundle_puts(), 1);
  // 41 ids, one new (2.4%): kept.
  Restart(&remote, BundleOptions());
  build(41, 2000);
  EXPECT_EQ(shim_->stats().bundles_stored.load(), 0);
  EXPECT_EQ(remote.bundle_puts(), 1);
  // 48 ids, eight new to the bundle (16.7%): rebuilt; the parts before the
  // new entries are unchanged and not uploaded again.
  const int uploads = remote.blob_uploads();
  Restart(&remote, BundleOptions());
  build(48, 4000);
  EXPECT_EQ(shim_->stats().bundles_stored.load(), 1);
  EXPECT_EQ(remote.bundle_puts(), 2);
  EXPECT_GE(remote.uploads_skipped(), 3);
  EXPECT_GT(remote.blob_uploads(), uploads);
  auto index = DecodeBundleIndex(remote.Bundle("scope"));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->records.size(), 48u);
}

// Bodies are stored as their bytes arrive: the first body of a part is in
// the local store before the rest of the part is sent.
TEST_F(ShimTest, BundlePartsAreStreamedNotHeldWhole) {
  FakeRemote remote;
  const BundleIndex index =
      MakeBundle(remote, 40, int64_t{1} << 20, PartEncoding::kZstd);
  ASSERT_EQ(index.parts.size(), 1u);
  const int64_t blob_size = index.parts[0].blob_size;
  remote.chunk_bytes_ = 1024;
  std::atomic<int64_t> stored_midway{-1};
  remote.after_chunk_ = [&](size_t sent) {
    if (stored_midway.load() < 0 &&
        static_cast<int64_t>(sent) >= blob_size / 2) {
      // Half the part is out: give the shim time to store what it has.
      WaitFor([&] { return shim_->stats().bundle_entries.load() >= 5; });
      stored_midway = shim_->stats().bundle_entries.load();
    }
  };
  Start(&remote, BundleOptions());
  ASSERT_TRUE(WaitFor([&] { return shim_->stats().bundle_parts.load() == 1; }));
  CloseAndWait(1);
  EXPECT_GE(stored_midway.load(), 5);
  EXPECT_EQ(shim_->stats().bundle_entries.load(), 40);
}

// A get for an entry whose part is far behind (measured) does not wait for
// it: it fetches the entry itself.
TEST_F(ShimTest, GetFetchesItselfWhenItsPartIsFarBehind) {
  FakeRemote remote;
  auto big = [](int i) {  // About 35 KB each, 1.4 MB in all.
    std::string b;
    for (int k = 0; k < 20; ++k) {
      b += BodyOf(i);
    }
    return b;
  };
  for (int i = 1; i <= 40; ++i) {
    remote.Add(ActionId(i), big(i));
  }
  const BundleIndex index = MakeBundle(remote, 40, 128 << 10,
                                       PartEncoding::kPlain, nullptr, big);
  ASSERT_GE(index.parts.size(), 4u);
  // About 1 MB/s: the last body is more than a second away.
  remote.chunk_bytes_ = 16 << 10;
  std::atomic<bool> slow{true};
  remote.after_chunk_ = [&](size_t) {
    if (slow.load()) {
      absl::SleepFor(absl::Milliseconds(15));
    }
  };
  ShimOptions options = BundleOptions();
  options.bundle_min_parts = 1;
  options.get_budget = absl::Seconds(30);
  Start(&remote, options);
  ASSERT_TRUE(WaitFor([&] { return remote.blob_reads() >= 1; }));
  SendGet(1, index.records.back().action_id);
  EXPECT_EQ(ReadFile(NextResponse()["DiskPath"]), big(40));
  EXPECT_EQ(shim_->stats().bundle_claims.load(), 1);
  EXPECT_EQ(shim_->stats().remote_hits.load(), 1);
  EXPECT_LT(shim_->stats().bundle_parts.load(),
            static_cast<int64_t>(index.parts.size()));
  slow = false;
  CloseAndWait(2);
  EXPECT_EQ(remote.gets(), 1);
}

TEST_F(ShimTest, UnknownCommandIsAnErrorAnswer) {
  Start(nullptr);
  SendRequest({{"ID", 1}, {"Command", "get2"}});
  EXPECT_NE(NextResponse().value("Err", ""), "");
  CloseAndWait(2);
}

TEST_F(ShimTest, MalformedJsonEndsRunWithError) {
  Start(nullptr);
  Send("{not json\n");
  close(to_shim_);
  runner_.join();
  EXPECT_EQ(run_status_.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(run_status_.message().find("line 1"), std::string::npos)
      << run_status_;
}

TEST_F(ShimTest, MalformedBodyEndsRunWithError) {
  Start(nullptr);
  SendRequest({{"ID", 1},
               {"Command", "put"},
               {"ActionID", absl::Base64Escape(ActionId(1))},
               {"OutputID", absl::Base64Escape(Sha("x"))},
               {"BodySize", 1}});
  Send("\"!!!\"\n");
  close(to_shim_);
  runner_.join();
  EXPECT_EQ(run_status_.code(), absl::StatusCode::kInvalidArgument);
}

// Runs the real binary with `input` on stdin; returns exit code and stderr.
struct ProcessResult {
  int exit_code;
  std::string out;
  std::string err;
};

ProcessResult RunBinary(const std::string& dir, const std::string& input,
                        const std::string& env = "",
                        const std::string& flags = "") {
  const std::string in_path = dir + "/stdin", out_path = dir + "/stdout",
                    err_path = dir + "/stderr";
  std::ofstream(in_path) << input;
  const std::string cmd = absl::StrCat(
      env, " timeout 20 ", CAIRN_GOCACHEPROG_BIN, " ",
      flags.empty() ? absl::StrCat("--dir=", dir, "/local") : flags, " <",
      in_path, " >", out_path, " 2>", err_path);
  int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ReadFile(out_path),
          ReadFile(err_path)};
}

TEST_F(ShimTest, BinaryReportsMalformedInputAndExitsNonZero) {
  for (const char* input :
       {"{\"ID\":1,\"Command\":\"get\",\"ActionID\":\"%%%\"}\n", "[1,2]\n",
        "{\"ID\":1,\"Command\":\"get\"", "garbage\n"}) {
    ProcessResult r = RunBinary(dir_, input);
    EXPECT_EQ(r.exit_code, 2) << input << "\n" << r.err;  // 124 = hung
    EXPECT_NE(r.err.find("malformed input"), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("{\"ID\":0,\"KnownCommands\""), 0u) << r.out;
  }
}

TEST_F(ShimTest, BinaryWorksAsLocalCacheWithoutRemote) {
  const std::string action = absl::Base64Escape(ActionId(1));
  const std::string input =
      absl::StrCat(R"({"ID":1,"Command":"put","ActionID":")", action,
                   R"(","OutputID":")", absl::Base64Escape(Sha("abc")),
                   R"(","BodySize":3})", "\n\n\"", absl::Base64Escape("abc"),
                   "\"\n", R"({"ID":2,"Command":"get","ActionID":")", action,
                   R"("})", "\n\n", R"({"ID":3,"Command":"close"})", "\n\n");
  ProcessResult r = RunBinary(dir_, input);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(R"({"ID":3})"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(absl::StrCat(R"("ID":2,"OutputID":")")),
            std::string::npos)
      << r.out;
}

TEST_F(ShimTest, BinaryTakesSettingsFromEnvironment) {
  const std::string input = "{\"ID\":1,\"Command\":\"close\"}\n\n";
  ProcessResult r = RunBinary(
      dir_, input,
      absl::StrCat("CAIRN_DIR=", dir_, "/from-env CAIRN_STATS=true"), "--v");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("stats: gets=0"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("close id=1"), std::string::npos) << r.err;  // --v
  EXPECT_EQ(access((dir_ + "/from-env/o").c_str(), F_OK), 0);
  // The command line wins over the environment.
  r = RunBinary(dir_, input, "CAIRN_STATS=true",
                absl::StrCat("--dir=", dir_, "/x --stats=false"));
  EXPECT_EQ(r.err.find("stats:"), std::string::npos) << r.err;
  r = RunBinary(dir_, input, "CAIRN_TIMEOUT=soon");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("CAIRN_TIMEOUT"), std::string::npos) << r.err;
}

TEST_F(ShimTest, BinaryWithUnreachableRemoteStillAnswers) {
  const std::string action = absl::Base64Escape(ActionId(1));
  const std::string input =
      absl::StrCat(R"({"ID":1,"Command":"get","ActionID":")", action, R"("})",
                   "\n\n", R"({"ID":2,"Command":"close"})", "\n\n");
  ProcessResult r =
      RunBinary(dir_, input, "",
                absl::StrCat("--dir=", dir_, "/local --remote=unix://", dir_,
                             "/nobody.sock --header=x-api-key=k --header "
                             "authorization=Bearer_t"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(R"({"ID":1,"Miss":true})"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("warning: remote cache"), std::string::npos) << r.err;
}

TEST_F(ShimTest, BinaryCloseReturnsWithinFlushTimeoutWhenRemoteHangs) {
  // A remote that accepts connections and never answers: the upload's call
  // hangs for its whole --timeout; close must not wait for it.
  const std::string sock = dir_ + "/hang.sock";
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(sock.size(), sizeof(addr.sun_path));
  std::memcpy(addr.sun_path, sock.c_str(), sock.size());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 64), 0);
  const std::string input =
      absl::StrCat(R"({"ID":1,"Command":"put","ActionID":")",
                   absl::Base64Escape(ActionId(1)), R"(","OutputID":")",
                   absl::Base64Escape(Sha("abc")), R"(","BodySize":3})",
                   "\n\n\"", absl::Base64Escape("abc"), "\"\n",
                   R"({"ID":2,"Command":"close"})", "\n\n");
  // RunBinary kills the binary after 20 s (exit 124); the call deadline is
  // 120 s, the flush timeout 1 s.
  ProcessResult r =
      RunBinary(dir_, input, "",
                absl::StrCat("--dir=", dir_, "/local --remote=unix://", sock,
                             " --timeout=120s --flush_timeout=1s"));
  close(fd);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(R"({"ID":2})"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("uploads not finished within --flush_timeout"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace cairn::client::gocacheprog
