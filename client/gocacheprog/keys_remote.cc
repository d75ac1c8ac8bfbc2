#include "client/gocacheprog/keys_remote.h"

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cas/digest.h"

namespace cairn::client::gocacheprog {

absl::Status StoreRecord(ReapiClient& client, absl::string_view scope,
                         const KeyRecord& record) {
  const std::string blob = EncodeRecord(record);
  if (blob.size() > kMaxRecordBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("go-keys record for ", record.kind, " ", record.package,
                     " is larger than ", kMaxRecordBytes, " bytes"));
  }
  const cas::Digest digest = cas::Digest::OfData(blob);
  if (absl::Status s = client.UploadBlob(digest, StringChunkSource(blob));
      !s.ok()) {
    return s;
  }
  reapi::ActionResult r;
  reapi::OutputFile* f = r.add_output_files();
  f->set_path(kKeysOutputPath);
  f->mutable_digest()->set_hash(digest.hash());
  f->mutable_digest()->set_size_bytes(digest.size_bytes());
  r.mutable_execution_metadata()->set_worker(record.machine);
  return client.UpdateActionResult(
      RecordKey(scope, record.kind, record.package), r);
}

absl::StatusOr<std::optional<KeyRecord>> LoadRecord(
    ReapiClient& client, absl::string_view scope, absl::string_view kind,
    absl::string_view package) {
  const std::string inline_files[] = {kKeysOutputPath};
  absl::StatusOr<reapi::ActionResult> result =
      client.GetActionResult(RecordKey(scope, kind, package), inline_files);
  if (absl::IsNotFound(result.status())) {
    return std::nullopt;
  }
  if (!result.ok()) {
    return result.status();
  }
  if (result->output_files_size() != 1 ||
      result->output_files(0).path() != kKeysOutputPath) {
    return std::nullopt;
  }
  const reapi::OutputFile& out = result->output_files(0);
  absl::StatusOr<cas::Digest> digest =
      cas::Digest::Create(out.digest().hash(), out.digest().size_bytes());
  if (!digest.ok() ||
      digest->size_bytes() > static_cast<int64_t>(kMaxRecordBytes)) {
    return std::nullopt;
  }
  std::string blob;
  if (static_cast<int64_t>(out.contents().size()) == digest->size_bytes()) {
    blob = out.contents();
  } else {
    absl::Status s = client.ReadBlob(*digest, [&](absl::string_view chunk) {
      blob.append(chunk.data(), chunk.size());
      return absl::OkStatus();
    });
    if (absl::IsNotFound(s)) {
      return std::nullopt;
    }
    if (!s.ok()) {
      return s;
    }
  }
  absl::StatusOr<KeyRecord> record = DecodeRecord(blob);
  if (!record.ok() || record->kind != kind || record->package != package) {
    return std::nullopt;
  }
  return *std::move(record);
}

}  // namespace cairn::client::gocacheprog
