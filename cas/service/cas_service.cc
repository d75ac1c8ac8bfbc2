// ContentAddressableStorage adapter. Reactor methods validate; every store
// call that may touch the disk runs on the IoPool, which finishes the call.
// FindMissingBlobs is answered on the reactor thread when the store can
// answer from memory (BlobStore::TryFindMissing). GetTree keeps its
// breadth-first walk state in its reactor and computes one page per pool task.
#include "cas/service/cas_service.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "cas/service/service_util.h"
#include "cas/zstd_codec.h"
#include "rpc/grpc_status.h"
#include "rpc/reactors.h"

namespace cairn::cas {
namespace {

using rpc::ToGrpcStatus;
using rpc::ToRpcStatus;

constexpr int kDefaultTreePageSize = 1000;
constexpr int kMaxTreePageSize = 10000;
// A GetTree page stops growing past this many serialized bytes so that it
// fits a client's default 4 MiB receive limit.
constexpr size_t kMaxTreePageBytes = size_t{2} << 20;
constexpr absl::string_view kTreeTokenPrefix = "tree-offset:";

// Returns the serialized size of `item` as a repeated field element.
size_t RepeatedFieldBytes(size_t item_bytes) {
  size_t varint = 1;
  for (size_t v = item_bytes; v >= 0x80; v >>= 7) {
    ++varint;
  }
  return 1 + varint + item_bytes;
}

absl::Status CheckBatchUpdate(const v2::BatchUpdateBlobsRequest& request,
                              const CasServiceOptions& options) {
  if (options.read_only) {
    return absl::PermissionDeniedError(
        "BatchUpdateBlobs: this cache is read-only");
  }
  int64_t total = 0;
  for (const auto& item : request.requests()) {
    total += static_cast<int64_t>(item.data().size());
  }
  if (total > options.max_batch_total_size_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("BatchUpdateBlobs: ", total, " bytes of data exceed the ",
                     options.max_batch_total_size_bytes,
                     "-byte max_batch_total_size_bytes; use ByteStream Write"));
  }
  return absl::OkStatus();
}

// Decodes one blob of a BatchUpdateBlobs request and returns what to store
// (`decompressed` holds the bytes of a compressed one, whose frames go to
// the store too: it may keep them).
absl::StatusOr<BlobWrite> Decode(
    const v2::BatchUpdateBlobsRequest::Request& item, Digest digest,
    std::string* decompressed) {
  absl::string_view data = item.data();
  absl::string_view zstd;
  if (item.compressor() == v2::Compressor::ZSTD) {
    zstd = item.data();
    absl::StatusOr<std::string> plain =
        ZstdDecompressAll(item.data(), digest.size_bytes());
    if (!plain.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cas blob ", digest.ToString(), ": ", plain.status().message()));
    }
    *decompressed = *std::move(plain);
    data = *decompressed;
  } else if (item.compressor() != v2::Compressor::IDENTITY) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cas blob ", digest.ToString(), ": unsupported compressor ",
        v2::Compressor::Value_Name(item.compressor())));
  }
  if (static_cast<int64_t>(data.size()) != digest.size_bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cas blob ", digest.ToString(), ": got ", data.size(),
                     " bytes of data"));
  }
  return BlobWrite{std::move(digest), data, zstd};
}

// Checks one blob of a batch, charges it to `principal`'s write quota and
// returns what to store; the caller settles the charge once it is stored.
absl::StatusOr<BlobWrite> PrepareOne(
    const v2::BatchUpdateBlobsRequest::Request& item,
    const CasServiceOptions& options, absl::string_view principal,
    std::string* decompressed) {
  absl::StatusOr<Digest> digest = FromProto(item.digest());
  if (!digest.ok()) {
    return digest.status();
  }
  absl::Status status =
      CheckUploadSize(*digest, options.max_cas_blob_size_bytes);
  if (!status.ok()) {
    return status;
  }
  rpc::WriteQuota* quota = options.write_quota;
  if (quota != nullptr) {
    status = quota->Charge(principal, digest->size_bytes(), "BatchUpdateBlobs");
    if (!status.ok()) {
      return status;
    }
  }
  const int64_t size = digest->size_bytes();
  absl::StatusOr<BlobWrite> write =
      Decode(item, *std::move(digest), decompressed);
  if (!write.ok() && quota != nullptr) {
    quota->Refund(principal, size);
  }
  return write;
}

// Stores the blobs of `request` for `principal` with one
// BlobStore::WriteBlobs() call (the disk store makes its small ones durable
// behind one sync) and answers one status per blob.
void UpdateAll(const v2::BatchUpdateBlobsRequest& request,
               const CasServiceOptions& options, absl::string_view principal,
               v2::BatchUpdateBlobsResponse* response) {
  const int n = request.requests_size();
  std::vector<std::string> decompressed(n);
  std::vector<absl::Status> status(n);
  std::vector<BlobWrite> writes;
  std::vector<int> where;  // writes[k] is request item where[k].
  writes.reserve(n);
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<BlobWrite> w =
        PrepareOne(request.requests(i), options, principal, &decompressed[i]);
    if (w.ok()) {
      writes.push_back(*std::move(w));
      where.push_back(i);
    } else {
      status[i] = w.status();
    }
  }
  std::vector<absl::Status> written;
  {
    WriteOwnerScope owner(rpc::OwnerIdOf(options.write_quota, principal));
    written = options.store->WriteBlobs(writes);
  }
  int64_t stored = 0;  // Settled with the quota once, not per blob.
  int64_t refund = 0;
  for (size_t k = 0; k < where.size(); ++k) {
    (written[k].ok() ? stored : refund) += writes[k].digest.size_bytes();
    status[where[k]] = std::move(written[k]);
  }
  if (rpc::WriteQuota* quota = options.write_quota; quota != nullptr) {
    quota->Refund(principal, refund);
    quota->Written(principal, stored);
  }
  for (int i = 0; i < n; ++i) {
    auto* out = response->add_responses();
    *out->mutable_digest() = request.requests(i).digest();
    *out->mutable_status() = ToRpcStatus(status[i]);
  }
}

absl::Status CheckBatchRead(const v2::BatchReadBlobsRequest& request,
                            const CasServiceOptions& options) {
  int64_t total = 0;  // Stops growing at the first overflow of the limit.
  for (const v2::Digest& d : request.digests()) {
    if (d.size_bytes() > 0 && total <= options.max_batch_total_size_bytes) {
      total += std::min(d.size_bytes(), options.max_batch_total_size_bytes + 1);
    }
  }
  if (total > options.max_batch_total_size_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("BatchReadBlobs: ", total, " requested bytes exceed the ",
                     options.max_batch_total_size_bytes,
                     "-byte max_batch_total_size_bytes; use ByteStream Read"));
  }
  return absl::OkStatus();
}

// Returns true when the client lists zstd in acceptable_compressors.
bool AcceptsZstd(const v2::BatchReadBlobsRequest& request) {
  for (int c : request.acceptable_compressors()) {
    if (c == v2::Compressor::ZSTD) {
      return true;
    }
  }
  return false;
}

// Blobs smaller than this are answered uncompressed even when zstd is
// acceptable: the frame overhead eats most of the saving.
constexpr size_t kMinCompressSize = 512;

// Fills `item` for `requested`, zstd-compressed when `zstd` and smaller.
// `budget` is the number of serialized bytes the answer may still grow by;
// it is reduced by what this item adds.
void ReadOne(const v2::Digest& requested, const CasServiceOptions& options,
             bool zstd, int64_t* budget,
             v2::BatchReadBlobsResponse::Response* item) {
  *item->mutable_digest() = requested;
  item->set_compressor(v2::Compressor::IDENTITY);
  absl::Status status;
  absl::StatusOr<Digest> digest = FromProto(requested);
  if (!digest.ok()) {
    status = digest.status();
  } else if (digest->size_bytes() > *budget) {
    status = absl::ResourceExhaustedError(
        absl::StrCat("cas blob ", digest->ToString(),
                     " does not fit the answer; use ByteStream Read"));
  } else if (zstd) {
    // Served as the store holds it when that is compressed.
    absl::StatusOr<StoredBlob> stored = options.store->ReadAsStored(*digest);
    status = stored.status();
    std::string packed;
    if (stored.ok() && stored->zstd) {
      item->set_compressor(v2::Compressor::ZSTD);
      item->set_data(std::move(stored->data));
    } else if (stored.ok() && stored->data.size() >= kMinCompressSize &&
               ZstdCompressor().Compress(stored->data, true, &packed).ok() &&
               packed.size() < stored->data.size()) {
      item->set_compressor(v2::Compressor::ZSTD);
      item->set_data(std::move(packed));
    } else if (stored.ok()) {
      item->set_data(std::move(stored->data));
    }
  } else {
    absl::StatusOr<std::string> data = options.store->Read(*digest);
    status = data.status();
    if (data.ok()) {
      item->set_data(*std::move(data));
    }
  }
  *item->mutable_status() = ToRpcStatus(status);
  *budget -= static_cast<int64_t>(RepeatedFieldBytes(item->ByteSizeLong()));
}

absl::StatusOr<int64_t> ParseTreeToken(absl::string_view token) {
  if (token.empty()) {
    return 0;
  }
  // Only the form NextPage() writes: SimpleAtoi alone also takes a sign,
  // spaces and leading zeros.
  int64_t offset = 0;
  if (!absl::ConsumePrefix(&token, kTreeTokenPrefix) ||
      !absl::SimpleAtoi(token, &offset) || offset < 0 ||
      absl::StrCat(offset) != token) {
    return absl::InvalidArgumentError(
        "GetTree: page_token was not issued by this server");
  }
  return offset;
}

// Streams one GetTree call. Owned by gRPC; deletes itself in OnDone().
class GetTreeReactor final
    : public grpc::ServerWriteReactor<v2::GetTreeResponse> {
 public:
  GetTreeReactor(const CasServiceOptions& options,
                 const v2::GetTreeRequest& request)
      : options_(options), page_size_(request.page_size()) {
    if (page_size_ <= 0 || page_size_ > kMaxTreePageSize) {
      page_size_ = page_size_ <= 0 ? kDefaultTreePageSize : kMaxTreePageSize;
    }
    absl::Status status = ValidateRequestScope(request.instance_name(),
                                               request.digest_function());
    absl::StatusOr<Digest> root =
        FromProto(request.root_digest(), "root_digest");
    absl::StatusOr<int64_t> skip = ParseTreeToken(request.page_token());
    if (status.ok()) {
      status = !root.ok() ? root.status() : skip.status();
    }
    if (!status.ok()) {
      Finish(ToGrpcStatus(status));
      return;
    }
    skip_ = *skip;
    queue_.push_back(*root);
    seen_.insert(*root);
    ScheduleNextPage();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(ToGrpcStatus(absl::CancelledError("GetTree: client went away")));
      return;
    }
    ScheduleNextPage();
  }

  void OnDone() override { delete this; }

 private:
  void ScheduleNextPage() {
    absl::Status status = options_.pool->Schedule(
        "GetTree", [this] { NextPage(); }, rpc::Lane::kStream);
    if (!status.ok()) {
      Finish(ToGrpcStatus(status));
    }
  }

  // Runs on the pool: fills one page and writes it, or finishes the call.
  void NextPage() {
    response_.Clear();
    if (first_page_) {
      first_page_ = false;
      absl::Status root = CheckRoot();
      if (!root.ok()) {
        Finish(ToGrpcStatus(root));
        return;
      }
    }
    // The page's serialized size, kept as it grows (ByteSizeLong() on the
    // whole response each time made a page quadratic in its directories).
    size_t page_bytes = 0;
    while (response_.directories_size() < page_size_ &&
           page_bytes < kMaxTreePageBytes && FetchNext()) {
      page_bytes += VisitNext();
    }
    if (!FetchNext()) {
      StartWriteAndFinish(&response_, grpc::WriteOptions(),
                          ToGrpcStatus(absl::OkStatus()));
      return;
    }
    response_.set_next_page_token(absl::StrCat(kTreeTokenPrefix, offset_));
    StartWrite(&response_);
  }

  absl::Status CheckRoot() {
    if (!options_.store->Contains(queue_.front())) {
      return absl::NotFoundError(absl::StrCat(
          "GetTree: root directory ", queue_.front().ToString(), " not found"));
    }
    return absl::OkStatus();
  }

  // Makes next_ the next readable directory of the walk, dropping absent or
  // unparsable ones (the API omits missing parts of a tree). Returns false
  // at the end of the walk.
  bool FetchNext() {
    while (!next_.has_value() && !queue_.empty()) {
      absl::StatusOr<std::string> data = options_.store->Read(queue_.front());
      queue_.pop_front();
      v2::Directory directory;
      if (data.ok() && directory.ParseFromString(*data)) {
        next_ = std::move(directory);
      }
    }
    return next_.has_value();
  }

  // Consumes next_: queues its unseen children and emits it unless it lies
  // before the page token's offset. Returns the bytes it added to the page.
  size_t VisitNext() {
    v2::Directory directory = *std::move(next_);
    next_.reset();
    for (const v2::DirectoryNode& child : directory.directories()) {
      absl::StatusOr<Digest> child_digest = FromProto(child.digest());
      if (child_digest.ok() && seen_.insert(*child_digest).second) {
        queue_.push_back(*std::move(child_digest));
      }
    }
    if (offset_++ < skip_) {
      return 0;
    }
    const size_t bytes = RepeatedFieldBytes(directory.ByteSizeLong());
    *response_.add_directories() = std::move(directory);
    return bytes;
  }

  const CasServiceOptions options_;
  int page_size_;
  int64_t skip_ = 0;
  int64_t offset_ = 0;  // Directories walked so far (emitted or skipped).
  bool first_page_ = true;
  std::deque<Digest> queue_;           // Digests still to read, in walk order.
  std::optional<v2::Directory> next_;  // Read ahead of queue_.
  absl::flat_hash_set<Digest> seen_;
  v2::GetTreeResponse response_;
};

void AddMissing(const std::vector<Digest>& missing,
                v2::FindMissingBlobsResponse* response) {
  response->mutable_missing_blob_digests()->Reserve(
      static_cast<int>(missing.size()));
  for (const Digest& d : missing) {
    v2::Digest* out = response->add_missing_blob_digests();
    out->set_hash(d.hash());
    out->set_size_bytes(d.size_bytes());
  }
}

class CasService final : public v2::ContentAddressableStorage::CallbackService {
 public:
  explicit CasService(const CasServiceOptions& options) : options_(options) {}

  grpc::ServerUnaryReactor* FindMissingBlobs(
      grpc::CallbackServerContext* context,
      const v2::FindMissingBlobsRequest* request,
      v2::FindMissingBlobsResponse* response) override {
    std::vector<Digest> digests;
    rpc::UnaryCall call = Call(context, rpc::Access::kRead, "FindMissingBlobs");
    call.Validate([&] { return CheckScope(*request); }).Validate([&] {
      return ParseDigests(request->blob_digests(), &digests);
    });
    if (call.ok()) {  // Answer from the in-memory index when it can.
      std::optional<std::vector<Digest>> missing =
          options_.store->TryFindMissing(digests);
      if (missing.has_value()) {
        AddMissing(*missing, response);
        return call.FinishNow(absl::OkStatus());
      }
    }
    return call.RunOnPool([this, digests = std::move(digests), response] {
      // A store that cannot tell (shared tier down) answers UNAVAILABLE,
      // never "missing".
      absl::StatusOr<std::vector<Digest>> missing =
          options_.store->FindMissingChecked(digests);
      if (!missing.ok()) {
        return missing.status();
      }
      AddMissing(*missing, response);
      return absl::OkStatus();
    });
  }

  grpc::ServerUnaryReactor* BatchUpdateBlobs(
      grpc::CallbackServerContext* context,
      const v2::BatchUpdateBlobsRequest* request,
      v2::BatchUpdateBlobsResponse* response) override {
    return Call(context, rpc::Access::kWrite, "BatchUpdateBlobs")
        .Validate([&] { return CheckScope(*request); })
        .Validate([&] { return CheckBatchUpdate(*request, options_); })
        .RunOnPool(
            [this, request, response,
             principal = options_.write_quota == nullptr
                             ? std::string()
                             : rpc::PrincipalOf(
                                   *context, options_.authorizer != nullptr)] {
              UpdateAll(*request, options_, principal, response);
              return absl::OkStatus();
            });
  }

  grpc::ServerUnaryReactor* BatchReadBlobs(
      grpc::CallbackServerContext* context,
      const v2::BatchReadBlobsRequest* request,
      v2::BatchReadBlobsResponse* response) override {
    return Call(context, rpc::Access::kRead, "BatchReadBlobs")
        .Validate([&] { return CheckScope(*request); })
        .Validate([&] { return CheckBatchRead(*request, options_); })
        .RunOnPool([this, request, response] {
          int64_t budget = options_.max_message_bytes;
          const bool zstd = AcceptsZstd(*request);
          for (const v2::Digest& d : request->digests()) {
            ReadOne(d, options_, zstd, &budget, response->add_responses());
          }
          return absl::OkStatus();
        });
  }

  grpc::ServerWriteReactor<v2::GetTreeResponse>* GetTree(
      grpc::CallbackServerContext* context,
      const v2::GetTreeRequest* request) override {
    absl::Status status =
        rpc::Authorize(options_.authorizer, *context, rpc::Access::kRead);
    if (!status.ok()) {
      return new rpc::RefusedWriteReactor<v2::GetTreeResponse>(
          ToGrpcStatus(status));
    }
    return new GetTreeReactor(options_, *request);
  }

 private:
  // Returns the unary call of `context`, authorised for `access`.
  rpc::UnaryCall Call(grpc::CallbackServerContext* context, rpc::Access access,
                      const char* what) {
    return rpc::UnaryCall(context, options_.authorizer, access, options_.pool,
                          what);
  }

  template <typename Request>
  static absl::Status CheckScope(const Request& request) {
    return ValidateRequestScope(request.instance_name(),
                                request.digest_function());
  }

  // Parses `in` into `*out`; INVALID_ARGUMENT naming the first bad digest.
  static absl::Status ParseDigests(
      const google::protobuf::RepeatedPtrField<v2::Digest>& in,
      std::vector<Digest>* out) {
    out->reserve(in.size());
    for (const v2::Digest& d : in) {
      absl::StatusOr<Digest> digest = FromProto(d, "blob_digests");
      if (!digest.ok()) {
        return digest.status();
      }
      out->push_back(*std::move(digest));
    }
    return absl::OkStatus();
  }

  const CasServiceOptions options_;
};

}  // namespace

std::unique_ptr<v2::ContentAddressableStorage::CallbackService> NewCasService(
    const CasServiceOptions& options) {
  return std::make_unique<CasService>(options);
}

}  // namespace cairn::cas
