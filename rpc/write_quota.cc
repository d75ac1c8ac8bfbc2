// Buckets are created full on a principal's first write and dropped again
// once full (a full bucket equals a new one), so the map holds only the
// principals that wrote within the last hour.
#include "rpc/write_quota.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "rpc/grpc_status.h"

namespace cairn::rpc {
namespace {

// Buckets kept before full ones are dropped.
constexpr size_t kPruneAbove = 4096;

}  // namespace

WriteQuota::WriteQuota(const WriteQuotaOptions& options, Registry* metrics)
    : capacity_(
          static_cast<double>(std::max<int64_t>(0, options.bytes_per_hour))),
      per_second_(capacity_ / 3600.0),
      clock_(options.clock),
      written_metric_(
          metrics == nullptr
              ? nullptr
              : metrics->NewCounter("cairn_principal_written_bytes_total",
                                    "Bytes stored, by who wrote them (token, "
                                    "certificate identity, or \"peer\").",
                                    {"principal"})),
      refused_metric_(
          metrics == nullptr
              ? nullptr
              : metrics->NewCounter("cairn_principal_quota_refused_total",
                                    "Writes refused by --write_quota_per_hour, "
                                    "by principal.",
                                    {"principal"})) {}

std::string WriteQuota::LabelOf(absl::string_view principal) {
  if (absl::StartsWith(principal, "token:") ||
      absl::StartsWith(principal, "cert:")) {
    return std::string(principal);
  }
  return "peer";
}

WriteQuota::Bucket& WriteQuota::RefillLocked(absl::string_view principal,
                                             absl::Time now) {
  auto [it, added] = buckets_.try_emplace(principal);
  Bucket& b = it->second;
  if (added) {
    b.level = capacity_;
  } else if (now > b.refilled) {
    b.level = std::min(
        capacity_,
        b.level + per_second_ * absl::ToDoubleSeconds(now - b.refilled));
  }
  b.refilled = std::max(b.refilled, now);
  return b;
}

void WriteQuota::PruneLocked(absl::Time now) {
  if (buckets_.size() <= kPruneAbove) {
    return;
  }
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    auto cur = it++;
    Bucket& b = cur->second;
    const double level =
        b.level + per_second_ * absl::ToDoubleSeconds(now - b.refilled);
    if (level >= capacity_) {
      buckets_.erase(cur);
    }
  }
}

absl::Status WriteQuota::Charge(absl::string_view principal, int64_t bytes,
                                absl::string_view what) {
  if (capacity_ <= 0 || bytes <= 0) {
    return absl::OkStatus();
  }
  const absl::Time now = Now();
  const double want = static_cast<double>(bytes);
  absl::Duration wait;
  {
    absl::MutexLock lock(&mu_);
    PruneLocked(now);
    Bucket& b = RefillLocked(principal, now);
    if (b.level >= want || b.level >= capacity_) {
      b.level -= want;
      return absl::OkStatus();
    }
    const double deficit = std::min(want, capacity_) - b.level;
    wait = absl::Seconds(std::ceil(deficit / per_second_));
    ++refusals_;
    ++counts_[LabelOf(principal)].refused;
  }
  if (refused_metric_ != nullptr) {
    refused_metric_->WithLabels({LabelOf(principal)})->Increment();
  }
  return WithRetryDelay(
      absl::ResourceExhaustedError(
          absl::StrCat(what, ": ", principal, " has used its write quota of ",
                       static_cast<int64_t>(capacity_),
                       " bytes per hour (--write_quota_per_hour); ", bytes,
                       " more bytes fit in ", absl::FormatDuration(wait))),
      wait);
}

void WriteQuota::Refund(absl::string_view principal, int64_t bytes) {
  if (capacity_ <= 0 || bytes <= 0) {
    return;
  }
  absl::MutexLock lock(&mu_);
  auto it = buckets_.find(principal);
  if (it != buckets_.end()) {
    it->second.level =
        std::min(capacity_, it->second.level + static_cast<double>(bytes));
  }
}

void WriteQuota::Written(absl::string_view principal, int64_t bytes) {
  if (bytes <= 0) {
    return;
  }
  const std::string label = LabelOf(principal);
  {
    absl::MutexLock lock(&mu_);
    counts_[label].written += bytes;
  }
  if (written_metric_ != nullptr) {
    written_metric_->WithLabels({label})->Increment(bytes);
  }
}

uint32_t WriteQuota::OwnerIdOf(absl::string_view principal) {
  std::string label = LabelOf(principal);
  absl::MutexLock lock(&mu_);
  auto it = owner_ids_.find(label);
  if (it != owner_ids_.end()) {
    return it->second;
  }
  if (owner_labels_.size() >= kMaxOwners) {
    return 0;
  }
  owner_labels_.push_back(label);
  const auto id = static_cast<uint32_t>(owner_labels_.size());
  owner_ids_.emplace(std::move(label), id);
  return id;
}

std::string WriteQuota::LabelOfOwner(uint32_t owner) const {
  absl::MutexLock lock(&mu_);
  if (owner == 0 || owner > owner_labels_.size()) {
    return "unknown";
  }
  return owner_labels_[owner - 1];
}

int64_t WriteQuota::WrittenBytesForTest(absl::string_view label) const {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find(label);
  return it == counts_.end() ? 0 : it->second.written;
}

int64_t WriteQuota::RefusalsForTest(absl::string_view label) const {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find(label);
  return it == counts_.end() ? 0 : it->second.refused;
}

int64_t WriteQuota::refusals() const {
  absl::MutexLock lock(&mu_);
  return refusals_;
}

}  // namespace cairn::rpc
