// Fuzzes GetTree (cas/service/cas_service.cc): the client's page_token and
// the Directory blobs the walk reads from the CAS. The input is split
// (FuzzedDataProvider) into up to 12 blobs and a GetTreeRequest. A blob that
// parses as a Directory has each child whose digest has no hash pointed, by
// its size_bytes, at another blob, a missing digest or the empty blob, and
// may be padded to up to 1 MiB (so pages hit the 2 MiB page limit); one that
// does not parse is stored as it came. Blob i is stored under a digest made
// from its index, not from its bytes (a store that lost its verification, or
// a hash collision), so a walk can meet cycles and self-references; the
// store serves exactly the blobs of one input. The request names one of the
// blobs (or a missing, empty or malformed root), a page size (extremes
// included) and a token: none, "tree-offset:N", or raw bytes.
// Invariants, against a breadth-first walk computed here: the call answers
// exactly as predicted (INVALID_ARGUMENT for a malformed root or a token the
// server never issues, which is "" or "tree-offset:" and a canonical
// decimal; NOT_FOUND for an absent root; else OK); the pages together are
// the walk's directories from the token's offset on, each directory once
// (cycles end); a page holds at most the page size, and a page with a next
// token holds exactly that many or is past the 2 MiB byte limit; the last
// page has no token; and a second call with the first page's token returns
// exactly the directories that followed it.
#include <fuzzer/FuzzedDataProvider.h>
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/client_context.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cas/digest.h"
#include "cas/memory_blob_store.h"
#include "cas/service/service_util.h"
#include "server/server.h"

namespace {

namespace v2 = ::build::bazel::remote::execution::v2;
using cairn::cas::BlobStore;
using cairn::cas::Digest;

constexpr int kMaxBlobs = 12;
constexpr size_t kPageBytes = size_t{2} << 20;  // cas_service.cc's limit.

// Serves Contains/Read from the blobs of the current input, unverified (the
// empty blob always exists); everything else goes to a memory store.
class FuzzStore final : public BlobStore {
 public:
  FuzzStore() : base_(cairn::cas::NewMemoryBlobStore({int64_t{8} << 20})) {}

  void Reset(absl::flat_hash_map<Digest, std::string> blobs) {
    absl::MutexLock lock(&mu_);
    blobs_ = std::move(blobs);
  }

  bool Contains(const Digest& digest) override {
    absl::MutexLock lock(&mu_);
    return digest == Digest::Empty() || blobs_.contains(digest);
  }
  absl::StatusOr<std::string> Read(const Digest& digest) override {
    absl::MutexLock lock(&mu_);
    if (digest == Digest::Empty()) {
      return std::string();
    }
    auto it = blobs_.find(digest);
    if (it == blobs_.end()) {
      return absl::NotFoundError(digest.ToString());
    }
    return it->second;
  }

  std::vector<Digest> FindMissing(absl::Span<const Digest> d) override {
    return base_->FindMissing(d);
  }
  absl::StatusOr<std::unique_ptr<cairn::cas::BlobReader>> OpenRead(
      const Digest& d, int64_t offset) override {
    return base_->OpenRead(d, offset);
  }
  absl::Status Write(const Digest& d, absl::string_view data) override {
    return base_->Write(d, data);
  }
  absl::StatusOr<std::unique_ptr<cairn::cas::BlobWriter>> OpenWrite(
      const Digest& d) override {
    return base_->OpenWrite(d);
  }
  absl::StatusOr<std::string> GetEntry(absl::string_view key) override {
    return base_->GetEntry(key);
  }
  cairn::cas::StoreStats Stats() override { return base_->Stats(); }

 protected:
  absl::Status PutEntryImpl(absl::string_view key, absl::string_view value,
                            absl::Span<const Digest> blobs,
                            PutCallback* then) override {
    return Reply(base_->PutEntry(key, value, blobs), then);
  }

 private:
  std::unique_ptr<BlobStore> base_;
  absl::Mutex mu_;
  absl::flat_hash_map<Digest, std::string> blobs_ ABSL_GUARDED_BY(mu_);
};

struct Server {
  FuzzStore store;
  std::unique_ptr<cairn::server::CairnServer> server;
  std::unique_ptr<v2::ContentAddressableStorage::Stub> cas;
};

// Starts the server once; it lives until the process exits.
Server* TheServer() {
  static Server* server = [] {
    google::protobuf::SetLogHandler(nullptr);  // Invalid UTF-8 is logged.
    auto* s = new Server;
    cairn::server::ServerOptions options;
    options.store = &s->store;
    options.listen_address = "";
    options.io_threads = 2;
    auto started = cairn::server::CairnServer::Start(options);
    if (!started.ok()) abort();
    s->server = *std::move(started);
    s->cas =
        v2::ContentAddressableStorage::NewStub(s->server->InProcessChannel());
    return s;
  }();
  return server;
}

[[noreturn]] void Fail(const std::string& why) {
  fprintf(stderr, "get_tree_fuzz: %s\n", why.c_str());
  abort();
}

// The digest blob `i` is stored under.
Digest NodeDigest(int i, size_t size) {
  return *Digest::Create(
      Digest::OfData(absl::StrCat("get_tree_fuzz node ", i)).hash(),
      static_cast<int64_t>(size) + 1);  // Size 0 is the empty blob only.
}

// One input's store: blob i under digests[i] (blobs with its bytes).
struct Store {
  std::vector<Digest> digests;
  absl::flat_hash_map<Digest, std::string> blobs;
};

// Points each hashless child of `dir` at a node (size_bytes % (n + 2) < n),
// a missing digest (n, or a negative size) or the empty blob (n + 1), and pads
// `dir` by `pad` KiB.
void Link(v2::Directory* dir, const std::vector<Digest>& nodes, int pad) {
  const int64_t choices = static_cast<int64_t>(nodes.size()) + 2;
  for (v2::DirectoryNode& child : *dir->mutable_directories()) {
    if (!child.digest().hash().empty()) {
      continue;
    }
    const int64_t pick = child.digest().size_bytes() % choices;
    Digest d = Digest::OfData("get_tree_fuzz missing");
    if (pick >= 0 && pick < choices - 2) {
      d = nodes[pick];
    } else if (pick == choices - 1) {
      d = Digest::Empty();
    }
    child.mutable_digest()->set_hash(d.hash());
    child.mutable_digest()->set_size_bytes(d.size_bytes());
  }
  if (pad > 0) {
    dir->add_files()->set_name(std::string(size_t(pad) << 10, 'p'));
  }
}

Store MakeStore(FuzzedDataProvider& in) {
  const int n = in.ConsumeIntegralInRange<int>(0, kMaxBlobs);
  std::vector<std::string> raw(n);
  std::vector<int> pad(n);
  for (int i = 0; i < n; ++i) {
    const uint8_t p = in.ConsumeIntegral<uint8_t>();
    pad[i] = p >= 0xF0 ? (p - 0xEF) * 64 : 0;  // Up to 1 MiB, rarely.
    raw[i] = in.ConsumeRandomLengthString(2048);
  }
  // Digests are named by index and the raw size: the store does not
  // verify, so a size is only part of the name.
  Store store;
  for (int i = 0; i < n; ++i) {
    store.digests.push_back(NodeDigest(i, raw[i].size()));
  }
  for (int i = 0; i < n; ++i) {
    v2::Directory dir;
    std::string bytes = raw[i];
    if (dir.ParseFromString(raw[i])) {
      Link(&dir, store.digests, pad[i]);
      bytes = dir.SerializeAsString();
    }
    store.blobs[store.digests[i]] = std::move(bytes);
  }
  return store;
}

// The request's parts as the input chose them.
v2::GetTreeRequest MakeRequest(FuzzedDataProvider& in, const Store& store) {
  v2::GetTreeRequest request;
  const int n = static_cast<int>(store.digests.size());
  const int root = in.ConsumeIntegralInRange<int>(0, n + 2);
  Digest d = root < n    ? store.digests[root]
             : root == n ? Digest::OfData("get_tree_fuzz missing")
                         : Digest::Empty();
  request.mutable_root_digest()->set_hash(d.hash());
  request.mutable_root_digest()->set_size_bytes(d.size_bytes());
  if (root == n + 2) {
    request.mutable_root_digest()->set_hash("not hex");
  }
  constexpr int32_t kMin = std::numeric_limits<int32_t>::min();
  constexpr int32_t kMax = std::numeric_limits<int32_t>::max();
  static constexpr int32_t kSizes[] = {0,    1,    2,     3,    -1,
                                       kMin, kMax, 10000, 10001};
  const uint8_t size = in.ConsumeIntegral<uint8_t>();
  request.set_page_size(size < 9 ? kSizes[size] : size % 5);
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      break;
    case 1:
      request.set_page_token(
          absl::StrCat("tree-offset:", in.ConsumeIntegralInRange(0, 20)));
      break;
    case 2:
      request.set_page_token(
          absl::StrCat("tree-offset:", in.ConsumeIntegral<int64_t>()));
      break;
    default:
      request.set_page_token(in.ConsumeRandomLengthString(40));
  }
  if (in.ConsumeBool()) {  // Rarely valid: the scope check is fuzzed too.
    request.set_instance_name(in.ConsumeRandomLengthString(16));
    request.set_digest_function(
        static_cast<v2::DigestFunction::Value>(in.ConsumeIntegral<int8_t>()));
  }
  return request;
}

// Returns the offset a token the server issues stands for: "" is 0, else
// "tree-offset:" and a decimal without sign, spaces or leading zeros.
std::optional<int64_t> IssuedOffset(absl::string_view token) {
  int64_t offset = 0;
  if (token.empty()) {
    return 0;
  }
  if (!absl::ConsumePrefix(&token, "tree-offset:") ||
      !absl::SimpleAtoi(token, &offset) || offset < 0 ||
      absl::StrCat(offset) != token) {
    return std::nullopt;
  }
  return offset;
}

// The walk's directories, serialized, breadth first from `root`: each
// digest once, absent or unparsable blobs left out.
std::vector<std::string> Walk(const Store& store, const Digest& root) {
  std::vector<std::string> out;
  std::deque<Digest> queue = {root};
  absl::flat_hash_set<Digest> seen = {root};
  while (!queue.empty()) {
    const Digest d = queue.front();
    queue.pop_front();
    auto it = store.blobs.find(d);
    v2::Directory dir;
    if (d != Digest::Empty() &&
        (it == store.blobs.end() || !dir.ParseFromString(it->second))) {
      continue;
    }
    for (const v2::DirectoryNode& child : dir.directories()) {
      auto c = cairn::cas::FromProto(child.digest());
      if (c.ok() && seen.insert(*c).second) {
        queue.push_back(*c);
      }
    }
    out.push_back(dir.SerializeAsString());
  }
  return out;
}

// Runs `request` and returns its status and pages.
grpc::Status Call(Server* s, const v2::GetTreeRequest& request,
                  std::vector<v2::GetTreeResponse>* pages) {
  grpc::ClientContext context;
  auto reader = s->cas->GetTree(&context, request);
  v2::GetTreeResponse page;
  while (reader->Read(&page)) {
    pages->push_back(page);
  }
  return reader->Finish();
}

// Checks the page invariants and returns the pages' directories.
std::vector<std::string> Directories(
    const v2::GetTreeRequest& request,
    const std::vector<v2::GetTreeResponse>& pages) {
  const int32_t size = request.page_size();
  const int limit = size <= 0 ? 1000 : size > 10000 ? 10000 : size;
  std::vector<std::string> out;
  for (size_t i = 0; i < pages.size(); ++i) {
    const v2::GetTreeResponse& page = pages[i];
    const bool last = i + 1 == pages.size();
    if (page.directories_size() > limit ||
        last != page.next_page_token().empty()) {
      abort();
    }
    if (!last && page.directories_size() < limit &&
        page.ByteSizeLong() < kPageBytes) {
      abort();  // Cut short without reason.
    }
    for (const v2::Directory& dir : page.directories()) {
      out.push_back(dir.SerializeAsString());
    }
  }
  return out;
}

// Returns the status code the call must answer.
grpc::StatusCode Expected(const v2::GetTreeRequest& request, const Store& st) {
  if (!cairn::cas::ValidateRequestScope(request.instance_name(),
                                        request.digest_function())
           .ok()) {
    return grpc::StatusCode::INVALID_ARGUMENT;
  }
  auto root = cairn::cas::FromProto(request.root_digest());
  if (!root.ok() || !IssuedOffset(request.page_token()).has_value()) {
    return grpc::StatusCode::INVALID_ARGUMENT;
  }
  if (*root != Digest::Empty() && !st.blobs.contains(*root)) {
    return grpc::StatusCode::NOT_FOUND;
  }
  return grpc::StatusCode::OK;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Server* s = TheServer();
  FuzzedDataProvider in(data, size);
  Store store = MakeStore(in);
  const v2::GetTreeRequest request = MakeRequest(in, store);
  if (v2::GetTreeRequest wire;
      !wire.ParseFromString(request.SerializeAsString())) {
    return 0;  // Invalid UTF-8: gRPC refuses it before the service.
  }
  s->store.Reset(store.blobs);
  std::vector<v2::GetTreeResponse> pages;
  const grpc::Status status = Call(s, request, &pages);
  if (status.error_code() != Expected(request, store)) {
    Fail(absl::StrCat("answered ", status.error_code(), " ",
                      status.error_message(), " to ", request.DebugString()));
  }
  if (!status.ok()) {
    return 0;
  }
  const std::vector<std::string> got = Directories(request, pages);
  std::vector<std::string> walk =
      Walk(store, *cairn::cas::FromProto(request.root_digest()));
  const int64_t skip = *IssuedOffset(request.page_token());
  walk.erase(walk.begin(), walk.begin() + std::min<int64_t>(skip, walk.size()));
  if (got != walk) {
    Fail(absl::StrCat(got.size(), " directories, not the walk's ", walk.size(),
                      ", for ", request.DebugString()));
  }
  // The first page's token resumes right after it.
  if (pages.size() > 1) {
    v2::GetTreeRequest next = request;
    next.set_page_token(pages[0].next_page_token());
    std::vector<v2::GetTreeResponse> rest;
    if (!Call(s, next, &rest).ok()) {
      abort();
    }
    const std::vector<std::string> resumed = Directories(next, rest);
    if (!std::equal(resumed.begin(), resumed.end(),
                    got.begin() + pages[0].directories_size(), got.end())) {
      abort();
    }
  }
  return 0;
}
