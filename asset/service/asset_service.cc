#include "asset/service/asset_service.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cas/service/service_util.h"
#include "google/rpc/error_details.pb.h"
#include "rpc/grpc_status.h"
#include "rpc/reactors.h"

namespace cairn::asset {
namespace {

namespace ra = ::build::bazel::remote::asset::v1;
namespace v2 = ::build::bazel::remote::execution::v2;
using rpc::Access;

std::vector<Qualifier> QualifiersOf(
    const google::protobuf::RepeatedPtrField<ra::Qualifier>& qualifiers) {
  std::vector<Qualifier> out;
  out.reserve(qualifiers.size());
  for (const ra::Qualifier& q : qualifiers) {
    out.emplace_back(q.name(), q.value());
  }
  return out;
}

std::vector<std::string> UrisOf(
    const google::protobuf::RepeatedPtrField<std::string>& uris) {
  return std::vector<std::string>(uris.begin(), uris.end());
}

absl::Time TimeOf(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) {
    return absl::InfinitePast();
  }
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// Saturates: a timestamp past what int64 microseconds hold is "never"
// (INT64_MAX), before it the earliest time (found by asset_fuzz: seconds *
// 1000000 overflowed).
int64_t MicrosOf(const google::protobuf::Timestamp& t) {
  return absl::ToUnixMicros(absl::FromUnixSeconds(t.seconds()) +
                            absl::Nanoseconds(t.nanos()));
}

void SetTimestamp(int64_t micros, google::protobuf::Timestamp* t) {
  t->set_seconds(micros / 1000000);
  t->set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
}

constexpr char kBadRequestTypeUrl[] =
    "type.googleapis.com/google.rpc.BadRequest";

// Qualifiers an origin download can honour: the checksum (verified) and
// Bazel's canonical id (part of the name only).
absl::Status CheckOriginQualifiers(absl::Span<const Qualifier> qualifiers) {
  google::rpc::BadRequest bad;
  for (const Qualifier& q : qualifiers) {
    if (q.first != "checksum.sri" && q.first != "bazel.canonical_id") {
      google::rpc::BadRequest::FieldViolation* v = bad.add_field_violations();
      v->set_field("qualifiers.name");
      v->set_description(absl::StrCat("\"", q.first, "\" not supported"));
    }
  }
  if (bad.field_violations().empty()) {
    return absl::OkStatus();
  }
  // The API asks for INVALID_ARGUMENT plus a BadRequest detail naming each.
  absl::Status status = absl::InvalidArgumentError(
      absl::StrCat("qualifiers.name: ", bad.field_violations(0).description(),
                   bad.field_violations_size() > 1 ? " (and others)" : "",
                   "; fetching from an origin honours only checksum.sri and "
                   "bazel.canonical_id"));
  status.SetPayload(kBadRequestTypeUrl, absl::Cord(bad.SerializeAsString()));
  return status;
}

// Returns the hex SHA-256 a checksum.sri qualifier asks for, or "".
std::string WantedSha256(absl::Span<const Qualifier> qualifiers) {
  for (const Qualifier& q : qualifiers) {
    if (q.first == "checksum.sri") {
      std::string raw;
      absl::string_view v = q.second;
      if (absl::ConsumePrefix(&v, "sha256-") && absl::Base64Unescape(v, &raw)) {
        return cas::HexEncode(raw);
      }
    }
  }
  return "";
}

absl::Duration DurationOf(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// The checks every request makes before touching the store.
template <typename Request>
absl::Status CheckRequest(const Request& request) {
  absl::Status status = cas::ValidateRequestScope(request.instance_name(),
                                                  request.digest_function());
  if (!status.ok()) {
    return status;
  }
  return ValidateAssetName(UrisOf(request.uris()),
                           QualifiersOf(request.qualifiers()));
}

// Fills the fields FetchBlobResponse and FetchDirectoryResponse share.
template <typename Response>
void FillResponse(const ResolvedAsset& found,
                  const google::protobuf::RepeatedPtrField<ra::Qualifier>& q,
                  Response* response) {
  response->set_uri(found.uri);
  *response->mutable_qualifiers() = q;
  if (found.asset.expire_at_micros() != 0) {
    SetTimestamp(found.asset.expire_at_micros(),
                 response->mutable_expires_at());
  }
  response->set_digest_function(v2::DigestFunction::SHA256);
}

class FetchService final : public ra::Fetch::CallbackService {
 public:
  explicit FetchService(const AssetServiceOptions& options)
      : options_(options) {}

  grpc::ServerUnaryReactor* FetchBlob(
      grpc::CallbackServerContext* context, const ra::FetchBlobRequest* request,
      ra::FetchBlobResponse* response) override {
    return rpc::UnaryCall(context, options_.authorizer, Access::kRead,
                          options_.pool, "FetchBlob")
        .Validate([&] { return CheckRequest(*request); })
        .RunOnPool([this, request, response]() -> absl::Status {
          absl::StatusOr<ResolvedAsset> found = options_.assets->Resolve(
              StoredAsset::BLOB, request->instance_name(),
              UrisOf(request->uris()), QualifiersOf(request->qualifiers()),
              TimeOf(request->oldest_content_accepted()));
          if (!found.ok() && absl::IsNotFound(found.status())) {
            found = FromOrigin(*request, found.status());
          }
          if (!found.ok()) {
            return found.status();
          }
          FillResponse(*found, request->qualifiers(), response);
          *response->mutable_blob_digest() = found->asset.digest();
          if (found->fetch_status.ok()) {
            return absl::OkStatus();
          }
          response->clear_blob_digest();
          *response->mutable_status() = rpc::ToRpcStatus(found->fetch_status);
          return absl::OkStatus();
        });
  }

  grpc::ServerUnaryReactor* FetchDirectory(
      grpc::CallbackServerContext* context,
      const ra::FetchDirectoryRequest* request,
      ra::FetchDirectoryResponse* response) override {
    return Fetch(context, "FetchDirectory", StoredAsset::DIRECTORY, *request,
                 [response](const ResolvedAsset& found,
                            const ra::FetchDirectoryRequest& req) {
                   FillResponse(found, req.qualifiers(), response);
                   *response->mutable_root_directory_digest() =
                       found.asset.digest();
                 });
  }

 private:
  // Answers a FetchBlob miss from the first URI the origin fetcher allows:
  // `miss` when there is none. A failed download comes back as a
  // ResolvedAsset whose fetch_status says why (answered inline).
  absl::StatusOr<ResolvedAsset> FromOrigin(const ra::FetchBlobRequest& request,
                                           absl::Status miss) {
    if (options_.origin == nullptr) {
      return miss;
    }
    const std::vector<Qualifier> qualifiers =
        QualifiersOf(request.qualifiers());
    const std::string wanted = WantedSha256(qualifiers);
    absl::Status why = miss;
    bool tried = false;
    for (const std::string& uri : request.uris()) {
      if (!options_.origin->Allows(uri)) {
        continue;
      }
      if (absl::Status s = CheckOriginQualifiers(qualifiers); !s.ok()) {
        return s;
      }
      tried = true;
      absl::StatusOr<cas::Digest> digest =
          options_.origin->Fetch(uri, DurationOf(request.timeout()));
      if (digest.ok() && !wanted.empty() && digest->hash() != wanted) {
        digest = absl::InvalidArgumentError(absl::StrCat(
            "origin fetch ", uri, ": content is ", digest->ToString(),
            ", not the checksum.sri ", wanted));
      }
      if (!digest.ok()) {
        why = digest.status();
        continue;
      }
      StoredAsset asset;
      asset.set_kind(StoredAsset::BLOB);
      *asset.mutable_digest() = cas::ToProto(*digest);
      if (absl::Status s = options_.assets->Record(request.instance_name(),
                                                   {uri}, qualifiers, asset);
          !s.ok()) {
        return s;
      }
      return ResolvedAsset{uri, std::move(asset), absl::OkStatus()};
    }
    if (!tried) {
      return miss;
    }
    ResolvedAsset failed;
    failed.fetch_status = why;
    return failed;
  }

  template <typename Request, typename Fill>
  grpc::ServerUnaryReactor* Fetch(grpc::CallbackServerContext* context,
                                  const char* what, StoredAsset::Kind kind,
                                  const Request& request, Fill fill) {
    return rpc::UnaryCall(context, options_.authorizer, Access::kRead,
                          options_.pool, what)
        .Validate([&] { return CheckRequest(request); })
        .RunOnPool(
            [this, kind, &request, fill = std::move(fill)]() -> absl::Status {
              absl::StatusOr<ResolvedAsset> found = options_.assets->Resolve(
                  kind, request.instance_name(), UrisOf(request.uris()),
                  QualifiersOf(request.qualifiers()),
                  TimeOf(request.oldest_content_accepted()));
              if (!found.ok()) {
                return found.status();
              }
              fill(*found, request);
              return absl::OkStatus();
            });
  }

  const AssetServiceOptions options_;
};

class PushService final : public ra::Push::CallbackService {
 public:
  explicit PushService(const AssetServiceOptions& options)
      : options_(options) {}

  grpc::ServerUnaryReactor* PushBlob(grpc::CallbackServerContext* context,
                                     const ra::PushBlobRequest* request,
                                     ra::PushBlobResponse*) override {
    return Push(context, "PushBlob", StoredAsset::BLOB, *request,
                request->blob_digest());
  }

  grpc::ServerUnaryReactor* PushDirectory(
      grpc::CallbackServerContext* context,
      const ra::PushDirectoryRequest* request,
      ra::PushDirectoryResponse*) override {
    return Push(context, "PushDirectory", StoredAsset::DIRECTORY, *request,
                request->root_directory_digest());
  }

 private:
  template <typename Request>
  grpc::ServerUnaryReactor* Push(grpc::CallbackServerContext* context,
                                 const char* what, StoredAsset::Kind kind,
                                 const Request& request,
                                 const v2::Digest& digest) {
    return rpc::UnaryCall(context, options_.authorizer, Access::kWrite,
                          options_.pool, what)
        .Validate([&] {
          return options_.read_only ? absl::PermissionDeniedError(absl::StrCat(
                                          what, ": this cache is read-only"))
                                    : absl::OkStatus();
        })
        .Validate([&] { return CheckRequest(request); })
        .Validate([&] { return cas::FromProto(digest, "digest").status(); })
        .RunOnPool(
            [this, kind, what, &request, &digest,
             principal = options_.write_quota == nullptr
                             ? std::string()
                             : rpc::PrincipalOf(
                                   *context, options_.authorizer !=
                                                 nullptr)]() -> absl::Status {
              rpc::QuotaCharge charge(options_.write_quota, principal);
              if (absl::Status s = charge.Take(
                      static_cast<int64_t>(request.ByteSizeLong()), what);
                  !s.ok()) {
                return s;
              }
              StoredAsset asset;
              asset.set_kind(kind);
              *asset.mutable_digest() = digest;
              *asset.mutable_references_blobs() = request.references_blobs();
              *asset.mutable_references_directories() =
                  request.references_directories();
              if (request.has_expire_at()) {
                asset.set_expire_at_micros(MicrosOf(request.expire_at()));
              }
              cas::WriteOwnerScope owner(
                  rpc::OwnerIdOf(options_.write_quota, principal));
              absl::Status recorded = options_.assets->Record(
                  request.instance_name(), UrisOf(request.uris()),
                  QualifiersOf(request.qualifiers()), std::move(asset));
              if (recorded.ok()) {
                charge.Stored();
              }
              return recorded;
            });
  }

  const AssetServiceOptions options_;
};

}  // namespace

std::unique_ptr<ra::Fetch::CallbackService> NewFetchService(
    const AssetServiceOptions& options) {
  return std::make_unique<FetchService>(options);
}

std::unique_ptr<ra::Push::CallbackService> NewPushService(
    const AssetServiceOptions& options) {
  return std::make_unique<PushService>(options);
}

}  // namespace cairn::asset
