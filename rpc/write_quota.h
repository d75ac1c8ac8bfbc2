// Per-principal write accounting and the optional bytes-written-per-hour
// quota. Every write path (ByteStream Write, BatchUpdateBlobs,
// UpdateActionResult, Remote Asset Push, HTTP PUT) charges the bytes it is
// about to store to the caller's principal (rpc::PrincipalOf: verified token,
// certificate identity, or peer address) before it writes, refunds them when
// the write does not happen, and reports what it stored.
//
// The quota is a token bucket per principal holding at most
// `bytes_per_hour` bytes and refilling at bytes_per_hour / 3600 per second:
// a principal may write a burst of an hour's allowance, then at the hourly
// rate. A write is admitted when the bucket holds its bytes, or when the
// bucket is full (so a blob larger than the hourly allowance can still be
// written, at most about once an hour; the bucket then goes negative).
// Otherwise it is refused with RESOURCE_EXHAUSTED carrying a
// google.rpc.RetryInfo (WithRetryDelay) of the time the bucket needs to
// refill enough.
//
// Metrics (when a Registry is given), labelled by principal: token and
// certificate principals keep their own label ("token:<12 hex>",
// "cert:<identity>"); every peer address counts under the one label "peer",
// so the label set stays as small as the tokens file:
//   cairn_principal_written_bytes_total{principal}
//   cairn_principal_quota_refused_total{principal}
//
// Thread safety: all methods are safe to call concurrently (one mutex,
// never held across I/O).
#ifndef CAIRN_RPC_WRITE_QUOTA_H_
#define CAIRN_RPC_WRITE_QUOTA_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rpc/metrics.h"

namespace cairn::rpc {

struct WriteQuotaOptions {
  // Bytes each principal may write per hour; 0 turns the quota off (writes
  // are still counted).
  int64_t bytes_per_hour = 0;
  // Returns the current time; null means absl::Now (tests pass a fake).
  std::function<absl::Time()> clock;
};

class WriteQuota {
 public:
  // `metrics` (may be null; not owned, must outlive this) receives the
  // per-principal families named in the file comment.
  WriteQuota(const WriteQuotaOptions& options, Registry* metrics);
  WriteQuota(const WriteQuota&) = delete;
  WriteQuota& operator=(const WriteQuota&) = delete;

  // Charges `bytes` to `principal` before a write of that many bytes.
  // Returns OK (charged), or RESOURCE_EXHAUSTED with a retry delay (nothing
  // charged) when the quota refuses; `what` names the operation in the
  // message.
  absl::Status Charge(absl::string_view principal, int64_t bytes,
                      absl::string_view what);

  // Gives back `bytes` charged for a write that did not happen.
  void Refund(absl::string_view principal, int64_t bytes);

  // Counts `bytes` stored for `principal` (the written-bytes metric).
  void Written(absl::string_view principal, int64_t bytes);

  // Returns the metric label of `principal` (see the file comment).
  static std::string LabelOf(absl::string_view principal);

  // Returns the number that stands for `principal`'s label in the store
  // (cas::WriteOwnerScope: items are attributed to it, their evictions
  // counted by it); 1, 2, ... in order of first use, or 0 (unknown) once
  // kMaxOwners labels are taken.
  uint32_t OwnerIdOf(absl::string_view principal);
  // Returns the label OwnerIdOf() gave `owner`; "unknown" for 0 and ids it
  // never gave.
  std::string LabelOfOwner(uint32_t owner) const;
  static constexpr size_t kMaxOwners = 4096;

  // Returns the bytes counted as written, and the refusals, under `label`.
  int64_t WrittenBytesForTest(absl::string_view label) const;
  int64_t RefusalsForTest(absl::string_view label) const;
  // Returns the refusals under every label.
  int64_t refusals() const;

 private:
  struct Bucket {
    double level = 0;  // Bytes the principal may still write; may go < 0.
    absl::Time refilled;
  };
  struct Counts {
    int64_t written = 0;
    int64_t refused = 0;
  };

  // Returns `principal`'s bucket refilled up to `now`.
  Bucket& RefillLocked(absl::string_view principal, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops full buckets (they equal a new one) once there are many.
  void PruneLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Time Now() const { return clock_ ? clock_() : absl::Now(); }

  const double capacity_;    // Bytes; 0 when off.
  const double per_second_;  // Refill rate.
  const std::function<absl::Time()> clock_;
  Family<Counter>* const written_metric_;  // Null without metrics.
  Family<Counter>* const refused_metric_;  // Null without metrics.

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Counts> counts_ ABSL_GUARDED_BY(mu_);
  // owner_labels_[id - 1] is the label of owner id `id`.
  absl::flat_hash_map<std::string, uint32_t> owner_ids_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> owner_labels_ ABSL_GUARDED_BY(mu_);
  int64_t refusals_ ABSL_GUARDED_BY(mu_) = 0;
};

// Returns quota->OwnerIdOf(principal), or 0 (unknown) when `quota` is null:
// the owner every write path names in its cas::WriteOwnerScope.
inline uint32_t OwnerIdOf(WriteQuota* quota, absl::string_view principal) {
  return quota == nullptr ? 0 : quota->OwnerIdOf(principal);
}

// One write's charge, for write paths that learn the size as they go (HTTP
// PUT, Remote Asset Push): Take() charges the bytes once they are known;
// Stored() counts them as written; the destructor refunds what was taken
// unless Stored() was called.
//
// Thread safety: one write, one thread at a time.
class QuotaCharge {
 public:
  // `quota` may be null (nothing charged or counted); not owned, must
  // outlive this.
  QuotaCharge(WriteQuota* quota, std::string principal)
      : quota_(quota), principal_(std::move(principal)) {}
  QuotaCharge(const QuotaCharge&) = delete;
  QuotaCharge& operator=(const QuotaCharge&) = delete;
  ~QuotaCharge() {
    if (quota_ != nullptr && !stored_) {
      quota_->Refund(principal_, taken_);
    }
  }

  // Charges `bytes` more (WriteQuota::Charge; RESOURCE_EXHAUSTED with a
  // retry delay when refused, nothing charged then).
  absl::Status Take(int64_t bytes, absl::string_view what) {
    if (quota_ == nullptr) {
      return absl::OkStatus();
    }
    absl::Status status = quota_->Charge(principal_, bytes, what);
    if (status.ok()) {
      taken_ += bytes;
    }
    return status;
  }

  const std::string& principal() const { return principal_; }

  // Counts what was taken as written; nothing is refunded after this.
  void Stored() {
    if (quota_ != nullptr && !stored_) {
      stored_ = true;
      quota_->Written(principal_, taken_);
    }
  }

 private:
  WriteQuota* const quota_;
  const std::string principal_;
  int64_t taken_ = 0;
  bool stored_ = false;
};

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_WRITE_QUOTA_H_
