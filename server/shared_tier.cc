#include "server/shared_tier.h"

#include <algorithm>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cas/s3_client.h"
#include "cas/tiered_blob_store.h"
#include "spdlog/spdlog.h"

// The shared tier's flags: the same one-ABSL_FLAG-per-setting shape as
// server/main.cc's flag table on purpose (tools/flags_doc.py reads both).
ABSL_FLAG(std::string, s3_bucket, "",
          "Share the store with other nodes through this S3-compatible "
          "bucket (the store of record; the local store becomes a cache in "
          "front of it). Empty: no shared tier. See docs/s3.md.");
ABSL_FLAG(std::string, s3_endpoint, "",
          "S3 endpoint, https://HOST[:PORT] (http:// for a local test engine); "
          "empty: https://s3.REGION.amazonaws.com.");
ABSL_FLAG(std::string, s3_prefix, "",
          "Key prefix inside the bucket, ending in '/' (e.g. 'cairn/').");
ABSL_FLAG(std::string, s3_region, "us-east-1", "Region used in signatures.");
ABSL_FLAG(bool, s3_path_style, false,
          "Address the bucket as ENDPOINT/BUCKET/KEY instead of "
          "BUCKET.HOST/KEY (Ceph RGW, MinIO and most self-hosted engines).");
ABSL_FLAG(std::string, s3_ca_file, "",
          "PEM CA bundle trusted for the endpoint's TLS certificate; empty: "
          "the system's.");
ABSL_FLAG(std::string, s3_degraded, "",
          "While the bucket is down: '' answers writes and unconfirmed "
          "lookups UNAVAILABLE; 'local' keeps accepting writes into the local "
          "store and uploads them when the bucket returns (not shared "
          "meanwhile; see --s3_backlog_max).");
ABSL_FLAG(int64_t, s3_backlog_max, 100000,
          "With --s3_degraded=local: writes kept locally and owed to the "
          "bucket at most (kept in DIR/shared-tier-backlog, uploaded when the "
          "bucket returns); beyond it writes answer UNAVAILABLE.");
ABSL_FLAG(absl::Duration, s3_retention, absl::ZeroDuration(),
          "The bucket's lifecycle expiry (e.g. 720h for 30 days); objects a "
          "lookup finds older than this minus --s3_refresh_margin are "
          "refreshed by a server-side copy. 0: no lifecycle rule.");
ABSL_FLAG(absl::Duration, s3_refresh_margin, absl::Hours(24),
          "See --s3_retention: how long an object reported present is "
          "guaranteed to live.");
ABSL_FLAG(absl::Duration, s3_timeout, absl::Seconds(30),
          "Deadline of one bucket request (for large transfers: the longest "
          "time without progress).");
ABSL_FLAG(int64_t, s3_entry_blobs_max_bytes, int64_t{1} << 20,
          "Most bytes of an action result's outputs copied into the "
          "result's bucket object (outputs this node holds, in order, while "
          "they fit), so that a node without them gets result and outputs in "
          "one request; each copy is checked against its digest. 0: none; "
          "at most 32 MiB.");
ABSL_FLAG(int, s3_max_concurrency, 32,
          "Most bucket requests in flight at once.");

namespace cairn::server {
namespace {

void RegisterMetrics(rpc::Registry* r, cas::TieredBlobStore* store) {
  auto counter = [store](int64_t cas::TieredStats::*field) {
    return [store, field] {
      return static_cast<double>(store->Counters().*field);
    };
  };
  r->NewCallbackCounter("cairn_s3_existence_cache_hits_total",
                        "Digests found present in the existence cache.",
                        counter(&cas::TieredStats::existence_cache_hits));
  r->NewCallbackGauge("cairn_s3_existence_cache_entries",
                      "Digests the existence cache holds.",
                      counter(&cas::TieredStats::existence_cache_entries));
  r->NewCallbackCounter("cairn_s3_lookups_total",
                        "Digests checked against the bucket.",
                        counter(&cas::TieredStats::bucket_lookups));
  r->NewCallbackCounter("cairn_s3_refreshes_total",
                        "Objects refreshed (self-copy) before expiry.",
                        counter(&cas::TieredStats::refreshes));
  r->NewCallbackCounter("cairn_s3_fetches_total",
                        "Read-through fetches from the bucket.",
                        counter(&cas::TieredStats::fetches));
  r->NewCallbackCounter("cairn_s3_fetches_shared_total",
                        "Local misses that joined a fetch in progress.",
                        counter(&cas::TieredStats::fetch_shared));
  r->NewCallbackCounter("cairn_s3_uploads_total",
                        "Objects uploaded to the bucket.",
                        counter(&cas::TieredStats::uploads));
  r->NewCallbackCounter("cairn_s3_uploads_skipped_total",
                        "Uploads skipped because the bucket had the object.",
                        counter(&cas::TieredStats::upload_skipped));
  r->NewCallbackCounter("cairn_s3_degraded_writes_total",
                        "Writes kept locally only while the bucket was down.",
                        counter(&cas::TieredStats::degraded_writes));
  r->NewCallbackCounter("cairn_s3_corrupt_objects_total",
                        "Fetched objects that failed their digest check.",
                        counter(&cas::TieredStats::corrupt_fetches));
  r->NewCallbackCounter("cairn_s3_streamed_fetches_total",
                        "Fetches of big blobs streamed to the reader.",
                        counter(&cas::TieredStats::streamed_fetches));
  r->NewCallbackCounter(
      "cairn_s3_check_fetches_total",
      "Blobs fetched (not only checked) by action-cache completeness checks.",
      counter(&cas::TieredStats::check_fetches));
  r->NewCallbackCounter("cairn_s3_entry_blobs_kept_total",
                        "Output copies of fetched action results kept.",
                        counter(&cas::TieredStats::entry_blobs_kept));
  r->NewCallbackCounter("cairn_s3_entry_refreshes_total",
                        "Action results refreshed or put back in the bucket.",
                        counter(&cas::TieredStats::entry_refreshes));
  r->NewCallbackGauge("cairn_s3_backlog",
                      "Degraded writes not yet uploaded to the bucket.",
                      counter(&cas::TieredStats::backlog));
  r->NewCallbackCounter("cairn_s3_backlog_uploaded_total",
                        "Degraded writes uploaded once the bucket returned.",
                        counter(&cas::TieredStats::backlog_uploaded));
  r->NewCallbackCounter(
      "cairn_s3_backlog_lost_total",
      "Degraded writes evicted locally before they could be uploaded.",
      counter(&cas::TieredStats::backlog_lost));
  r->NewCallbackGauge(
      "cairn_s3_bucket_down", "1 while the last bucket request failed.",
      [store] { return store->Counters().bucket_down ? 1.0 : 0.0; });
}

// Fills the request hooks of `o` with metrics families of `r`.
void AddRequestMetrics(rpc::Registry* r, cas::S3ClientOptions* o) {
  rpc::Family<rpc::Counter>* requests =
      r->NewCounter("cairn_s3_requests_total",
                    "Bucket requests by kind and outcome.", {"kind", "code"});
  rpc::Family<rpc::Histogram>* latency = r->NewHistogram(
      "cairn_s3_request_seconds", "Bucket request latency by kind.", {"kind"},
      rpc::LatencyBuckets());
  rpc::Counter* sent =
      r->NewCounter("cairn_s3_sent_bytes_total", "Bytes sent to the bucket.")
          ->WithLabels({});
  rpc::Counter* received = r->NewCounter("cairn_s3_received_bytes_total",
                                         "Bytes received from the bucket.")
                               ->WithLabels({});
  rpc::Gauge* in_flight =
      r->NewGauge("cairn_s3_requests_in_flight", "Bucket requests in flight.")
          ->WithLabels({});
  rpc::Counter* connections =
      r->NewCounter("cairn_s3_connections_opened_total",
                    "Connections opened to the bucket (the rest reused one).")
          ->WithLabels({});
  o->on_start = [in_flight](absl::string_view) { in_flight->Add(1); };
  o->on_request = [=](const cas::S3RequestRecord& rec) {
    in_flight->Add(-1);
    const std::string kind(rec.kind);
    requests->WithLabels({kind, absl::StatusCodeToString(rec.code)})
        ->Increment();
    latency->WithLabels({kind})->Observe(rec.seconds);
    sent->Increment(rec.bytes_sent);
    received->Increment(rec.bytes_received);
    connections->Increment(rec.connections_opened);
  };
}

absl::Status Explain(const absl::Status& s, const cas::S3ClientOptions& o) {
  const std::string where =
      absl::StrCat("shared tier: bucket ", o.bucket, " at ", o.endpoint);
  switch (s.code()) {
    case absl::StatusCode::kPermissionDenied:
      return absl::PermissionDeniedError(absl::StrCat(
          where,
          ": access denied; check the credentials (AWS_ACCESS_KEY_ID/"
          "AWS_SECRET_ACCESS_KEY or the AWS credentials file) and "
          "--s3_region (",
          s.message(), ")"));
    case absl::StatusCode::kNotFound:
      return absl::NotFoundError(absl::StrCat(
          where, ": no such bucket; create it first (", s.message(), ")"));
    default:
      return absl::Status(
          s.code(), absl::StatusCode::kUnavailable == s.code()
                        ? absl::StrCat(where, ": unreachable (", s.message(),
                                       "); check --s3_endpoint")
                        : absl::StrCat(where, ": ", s.message()));
  }
}

}  // namespace

int SharedTierConcurrency() {
  if (absl::GetFlag(FLAGS_s3_bucket).empty()) {
    return 0;
  }
  return std::max(1, absl::GetFlag(FLAGS_s3_max_concurrency));
}

absl::StatusOr<std::unique_ptr<cas::BlobStore>> MaybeAddSharedTier(
    std::unique_ptr<cas::BlobStore> local, absl::string_view store_dir,
    rpc::Registry* metrics, std::string* description) {
  cas::S3ClientOptions o;
  o.bucket = absl::GetFlag(FLAGS_s3_bucket);
  if (o.bucket.empty()) {
    return local;
  }
  o.region = absl::GetFlag(FLAGS_s3_region);
  o.endpoint = absl::GetFlag(FLAGS_s3_endpoint);
  if (o.endpoint.empty()) {
    o.endpoint = absl::StrCat("https://s3.", o.region, ".amazonaws.com");
  }
  o.path_style = absl::GetFlag(FLAGS_s3_path_style);
  o.ca_file = absl::GetFlag(FLAGS_s3_ca_file);
  o.request_timeout = absl::GetFlag(FLAGS_s3_timeout);
  o.stall_timeout = o.request_timeout;
  o.max_concurrency = absl::GetFlag(FLAGS_s3_max_concurrency);
  absl::StatusOr<cas::S3Credentials> credentials = cas::LoadS3Credentials();
  if (!credentials.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("shared tier: ", credentials.status().message()));
  }
  o.credentials = *std::move(credentials);
  AddRequestMetrics(metrics, &o);
  absl::StatusOr<std::unique_ptr<cas::S3Client>> s3 = cas::NewS3Client(o);
  if (!s3.ok()) {
    return s3.status();
  }
  if (absl::Status s = (*s3)->CheckBucket(); !s.ok()) {
    return Explain(s, o);
  }
  cas::TieredBlobStoreOptions t;
  t.prefix = absl::GetFlag(FLAGS_s3_prefix);
  t.retention = absl::GetFlag(FLAGS_s3_retention);
  t.refresh_margin = absl::GetFlag(FLAGS_s3_refresh_margin);
  const std::string degraded = absl::GetFlag(FLAGS_s3_degraded);
  if (degraded != "" && degraded != "local") {
    return absl::InvalidArgumentError(
        absl::StrCat("--s3_degraded must be '' or 'local', not ", degraded));
  }
  t.degraded_local = degraded == "local";
  t.backlog_max = absl::GetFlag(FLAGS_s3_backlog_max);
  t.entry_blobs_max_bytes = absl::GetFlag(FLAGS_s3_entry_blobs_max_bytes);
  if (t.degraded_local && !store_dir.empty()) {
    t.backlog_file = absl::StrCat(store_dir, "/shared-tier-backlog");
  }
  t.on_bucket_state = [bucket = o.bucket](bool down, const absl::Status& s) {
    if (down) {
      spdlog::warn("cairn-server: shared tier (bucket {}) unavailable: {}",
                   bucket, s.ToString());
    } else {
      spdlog::info("cairn-server: shared tier (bucket {}) available again",
                   bucket);
    }
  };
  absl::StatusOr<std::unique_ptr<cas::TieredBlobStore>> tiered =
      cas::NewTieredBlobStore(std::move(local), *std::move(s3), t);
  if (!tiered.ok()) {
    return tiered.status();
  }
  RegisterMetrics(metrics, tiered->get());
  absl::StrAppend(description, ", shared through bucket ", o.bucket, " at ",
                  o.endpoint, t.degraded_local ? " (degraded: local)" : "");
  return std::unique_ptr<cas::BlobStore>(*std::move(tiered));
}

}  // namespace cairn::server
