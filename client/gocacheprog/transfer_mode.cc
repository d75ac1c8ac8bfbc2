#include "client/gocacheprog/transfer_mode.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace cairn::client::gocacheprog {

absl::StatusOr<ZstdPolicy> ParseZstdPolicy(absl::string_view text) {
  const std::string t = absl::AsciiStrToLower(text);
  if (t == "auto") {
    return ZstdPolicy::kAuto;
  }
  if (t == "always" || t == "true" || t == "1") {
    return ZstdPolicy::kAlways;
  }
  if (t == "never" || t == "false" || t == "0") {
    return ZstdPolicy::kNever;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--zstd=", text, ": want auto, always or never"));
}

TransferMode TransferChooser::Next() {
  if (policy_ != ZstdPolicy::kAuto) {
    return policy_ == ZstdPolicy::kAlways ? TransferMode::kZstd
                                          : TransferMode::kPlain;
  }
  absl::MutexLock lock(&mu_);
  return decided_ ? mode_ : TransferMode::kPlain;
}

void TransferChooser::Record(TransferMode mode, int64_t bytes,
                             absl::Duration elapsed) {
  if (policy_ != ZstdPolicy::kAuto || mode != TransferMode::kPlain ||
      bytes <= 0 || elapsed <= absl::ZeroDuration()) {
    return;
  }
  const absl::Time end = absl::Now();
  absl::MutexLock lock(&mu_);
  if (decided_) {
    return;
  }
  // Every body shares the link: all count towards the aggregate rate.
  window_start_ = std::min(window_start_, end - elapsed);
  window_bytes_ += bytes;
  if (bytes < kMinSampleBytes) {
    return;
  }
  best_rate_ = std::max(
      best_rate_, static_cast<double>(bytes) / absl::ToDoubleSeconds(elapsed));
  const double window = absl::ToDoubleSeconds(end - window_start_);
  rate_ = std::max(best_rate_,
                   window > 0 ? static_cast<double>(window_bytes_) / window : 0);
  if (++samples_ < kProbeSamples) {
    return;
  }
  mode_ = rate_ < kZstdBelowBytesPerSecond ? TransferMode::kZstd
                                           : TransferMode::kPlain;
  decided_ = true;
}

bool TransferChooser::Decided() const {
  if (policy_ != ZstdPolicy::kAuto) {
    return true;
  }
  absl::MutexLock lock(&mu_);
  return decided_;
}

double TransferChooser::EstimatedRate() const {
  absl::MutexLock lock(&mu_);
  return rate_;
}

}  // namespace cairn::client::gocacheprog
