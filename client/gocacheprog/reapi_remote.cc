#include <atomic>
#include <utility>

#include "absl/base/call_once.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "client/gocacheprog/bundle.h"
#include "client/gocacheprog/manifest.h"
#include "client/gocacheprog/remote.h"
#include "google/protobuf/timestamp.pb.h"

// The mapping (docs/go.md, "Mapping Go's cache onto REAPI"): a Go ActionID
// becomes the AC key GoActionKey(); the body is the CAS blob
// SHA-256(body)/size, which is Go's OutputID; the ActionResult names that
// blob as its one output file kGoOutputPath and records the put time in
// execution_metadata. A prefetch manifest is the same shape: AC key
// ManifestKey(scope), one output file kManifestOutputPath naming the manifest
// blob; a prefetch bundle's index likewise under BundleKey(scope), output
// file kBundleOutputPath; its parts are plain CAS blobs.

namespace cairn::client::gocacheprog {
namespace {

// Domain separation: no other client hashes this prefix into an AC key.
constexpr absl::string_view kKeyPrefix("cairn-gocacheprog/v1 go-action\0", 31);
constexpr char kWorker[] = "cairn-gocacheprog";

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  google::protobuf::Timestamp ts;
  int64_t ns = absl::ToUnixNanos(t);
  ts.set_seconds(ns / 1000000000);
  ts.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return ts;
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

reapi::ActionResult MakeResult(const Entry& entry) {
  reapi::ActionResult r;
  reapi::OutputFile* f = r.add_output_files();
  f->set_path(kGoOutputPath);
  f->mutable_digest()->set_hash(cas::HexEncode(entry.output_id));
  f->mutable_digest()->set_size_bytes(entry.size);
  reapi::ExecutedActionMetadata* md = r.mutable_execution_metadata();
  md->set_worker(kWorker);
  const google::protobuf::Timestamp ts = ToTimestamp(entry.time);
  *md->mutable_queued_timestamp() = ts;
  *md->mutable_worker_start_timestamp() = ts;
  *md->mutable_worker_completed_timestamp() = ts;
  *md->mutable_execution_start_timestamp() = ts;
  *md->mutable_execution_completed_timestamp() = ts;
  return r;
}

class ReapiRemote final : public Remote {
 public:
  ReapiRemote(std::unique_ptr<ReapiClient> client, ZstdPolicy zstd)
      : client_(std::move(client)), chooser_(zstd) {}

  absl::StatusOr<Entry> Get(absl::string_view action_id, SizeGate admit,
                            BodySink sink) override {
    // Inlined outputs travel uncompressed (up to the server's inline limit,
    // 1 MiB on cairn-server); a compressed body costs one more round trip
    // and moves a fraction of the bytes. The chooser measures which pays.
    if (!client_->CompressesReads()) {
      return GetAs(action_id, admit, sink, /*zstd=*/false, nullptr);
    }
    // The network's round trip, before the first fetch (the others wait
    // here), then once in a while while far (transfer_mode.h).
    absl::call_once(start_pings_, [this] {
      while (chooser_.ClaimPing(absl::Now()) && PingOnce()) {
      }
    });
    if (chooser_.ClaimPing(absl::Now())) {
      PingOnce();
    }
    const absl::Time start = absl::Now();
    const TransferMode mode = chooser_.Next();
    const bool zstd = mode == TransferMode::kZstd;
    // A body fetched in a call of its own is timed from that call: the
    // lookup before it waited for the server's storage as much as for the
    // network (a cold node's bucket), and its time says nothing of the link.
    absl::Time body_start = start;
    absl::StatusOr<Entry> entry =
        GetAs(action_id, admit, sink, zstd, &body_start);
    const int64_t moved = entry.ok() ? entry->size : 0;
    chooser_.Record(mode, moved, body_start, absl::Now());
    if (moved > 0) {
      (zstd ? zstd_fetches_ : plain_fetches_).fetch_add(1);
    }
    return entry;
  }

  Transfers TransferCounts() const override {
    return {zstd_fetches_.load(), plain_fetches_.load(),
            chooser_.EstimatedRate(), chooser_.Changes(), chooser_.RoundTrip()};
  }

  absl::Status Put(absl::string_view action_id, const Entry& entry,
                   const std::string& body_path) override {
    absl::StatusOr<cas::Digest> digest =
        cas::Digest::Create(cas::HexEncode(entry.output_id), entry.size);
    if (!digest.ok()) {
      return digest.status();
    }
    if (absl::Status s =
            client_->UploadBlob(*digest, FileChunkSource(body_path));
        !s.ok()) {
      return s;
    }
    return client_->UpdateActionResult(GoActionKey(action_id),
                                       MakeResult(entry));
  }

  absl::StatusOr<std::string> GetManifest(absl::string_view scope,
                                          int64_t max_bytes) override {
    return GetKeyedBlob(ManifestKey(scope), kManifestOutputPath, max_bytes,
                        "prefetch manifest");
  }

  absl::Status PutManifest(absl::string_view scope,
                           absl::string_view manifest) override {
    return PutKeyedBlob(ManifestKey(scope), kManifestOutputPath, manifest);
  }

  absl::StatusOr<std::string> GetBundleIndex(absl::string_view scope,
                                             int64_t max_bytes) override {
    return GetKeyedBlob(BundleKey(scope), kBundleOutputPath, max_bytes,
                        "bundle index");
  }

  absl::Status PutBundleIndex(absl::string_view scope,
                              absl::string_view index) override {
    return PutKeyedBlob(BundleKey(scope), kBundleOutputPath, index);
  }

  bool CompressesBlobs() override { return client_->CompressesReads(); }

  absl::Status ReadBlob(const cas::Digest& digest, bool compress,
                        BodySink sink) override {
    // Every body cut from a part is hashed by the caller.
    return client_->ReadBlobWith(
        digest, sink, {.allow_compression = compress, .verify_hash = false});
  }

  absl::Status UploadFile(const cas::Digest& digest,
                          const std::string& path) override {
    return client_->UploadBlob(digest, FileChunkSource(path));
  }

  // The client's counters plus the bodies that came inline.
  WireCounters Counters() const override {
    WireCounters w = client_->Counters();
    w.received += inline_bytes_.load();
    w.received_plain += inline_bytes_.load();
    return w;
  }

 private:
  // Returns the blob the one output file `path` of the ActionResult under
  // `key` names (inlined, or read), at most `max_bytes`; NOT_FOUND when the
  // entry is absent or not of that shape.
  absl::StatusOr<std::string> GetKeyedBlob(const cas::Digest& key,
                                           const std::string& path,
                                           int64_t max_bytes,
                                           absl::string_view what) {
    const std::string inline_files[] = {path};
    absl::StatusOr<reapi::ActionResult> result =
        client_->GetActionResult(key, inline_files);
    if (!result.ok()) {
      return result.status();
    }
    if (result->output_files_size() != 1 ||
        result->output_files(0).path() != path) {
      return absl::NotFoundError(
          absl::StrCat("ac entry ", key.ToString(), " is not a ", what));
    }
    const reapi::OutputFile& out = result->output_files(0);
    absl::StatusOr<cas::Digest> digest =
        cas::Digest::Create(out.digest().hash(), out.digest().size_bytes());
    if (!digest.ok() || digest->size_bytes() > max_bytes) {
      return absl::NotFoundError(absl::StrCat(what, " ", key.ToString(),
                                              " is malformed or too big"));
    }
    if (static_cast<int64_t>(out.contents().size()) == digest->size_bytes()) {
      return out.contents();
    }
    std::string data;
    absl::Status s = client_->ReadBlob(*digest, [&](absl::string_view chunk) {
      data.append(chunk.data(), chunk.size());
      return absl::OkStatus();
    });
    if (!s.ok()) {
      return s;
    }
    return data;
  }

  // Uploads `blob`, then stores under `key` an ActionResult naming it as
  // its one output file `path`.
  absl::Status PutKeyedBlob(const cas::Digest& key, const char* path,
                            absl::string_view blob) {
    cas::Sha256Hasher h;
    h.Update(blob);
    const cas::Digest digest = h.FinishDigest();
    if (absl::Status s = client_->UploadBlob(digest, StringChunkSource(blob));
        !s.ok()) {
      return s;
    }
    reapi::ActionResult r;
    reapi::OutputFile* f = r.add_output_files();
    f->set_path(path);
    f->mutable_digest()->set_hash(digest.hash());
    f->mutable_digest()->set_size_bytes(digest.size_bytes());
    r.mutable_execution_metadata()->set_worker(kWorker);
    return client_->UpdateActionResult(key, r);
  }

  // Times one storage-free call for the chooser; returns false when it
  // failed.
  bool PingOnce() {
    const absl::Time start = absl::Now();
    if (!client_->Ping().ok()) {
      chooser_.PingFailed();
      return false;
    }
    chooser_.RecordPing(start, absl::Now());
    return true;
  }

  // Get() with bodies moving zstd-compressed (`zstd`) or plain. Sets
  // `*body_start` (when not null) to when a body not inlined was requested.
  absl::StatusOr<Entry> GetAs(absl::string_view action_id, SizeGate admit,
                              BodySink sink, bool zstd,
                              absl::Time* body_start) {
    const cas::Digest key = GoActionKey(action_id);
    const std::string inline_files[] = {kGoOutputPath};
    absl::Span<const std::string> ask_inline = inline_files;
    if (zstd) {
      ask_inline = {};
    }
    absl::StatusOr<reapi::ActionResult> result =
        client_->GetActionResult(key, ask_inline);
    if (!result.ok()) {
      return result.status();
    }
    const reapi::OutputFile* out = nullptr;
    for (const reapi::OutputFile& f : result->output_files()) {
      if (f.path() == kGoOutputPath) {
        out = &f;
      }
    }
    absl::StatusOr<cas::Digest> digest =
        out == nullptr ? absl::NotFoundError("no go-output")
                       : cas::Digest::Create(out->digest().hash(),
                                             out->digest().size_bytes());
    if (!digest.ok() || result->output_files_size() != 1) {
      return absl::NotFoundError(absl::StrCat("ac entry ", key.ToString(),
                                              " is not a Go cache entry"));
    }
    Entry entry;
    entry.output_id = absl::HexStringToBytes(digest->hash());
    entry.size = digest->size_bytes();
    const auto& md = result->execution_metadata();
    entry.time = md.has_worker_completed_timestamp()
                     ? FromTimestamp(md.worker_completed_timestamp())
                     : absl::Now();
    if (!admit(entry.size)) {
      return absl::NotFoundError(
          absl::StrCat("ac entry ", key.ToString(), ": body fetch skipped"));
    }
    absl::Status s;
    if (static_cast<int64_t>(out->contents().size()) == entry.size) {
      s = entry.size > 0 ? sink(out->contents()) : absl::OkStatus();
      inline_bytes_.fetch_add(entry.size);
    } else {
      if (body_start != nullptr) {
        *body_start = absl::Now();
      }
      // The caller hashes the body against its OutputID as it stores it
      // (Remote::Get's contract): hashing it here too cost a second pass.
      s = client_->ReadBlobWith(
          *digest, sink, {.allow_compression = zstd, .verify_hash = false});
    }
    if (!s.ok()) {
      return s;
    }
    return entry;
  }

  std::unique_ptr<ReapiClient> client_;
  TransferChooser chooser_;
  absl::once_flag start_pings_;
  std::atomic<int64_t> zstd_fetches_{0};
  std::atomic<int64_t> plain_fetches_{0};
  std::atomic<int64_t> inline_bytes_{0};
};

}  // namespace

cas::Digest GoActionKey(absl::string_view action_id) {
  cas::Sha256Hasher h;
  h.Update(kKeyPrefix);
  h.Update(action_id);
  return h.FinishDigest();
}

std::unique_ptr<Remote> NewReapiRemote(std::unique_ptr<ReapiClient> client,
                                       ZstdPolicy zstd) {
  return std::make_unique<ReapiRemote>(std::move(client), zstd);
}

}  // namespace cairn::client::gocacheprog
