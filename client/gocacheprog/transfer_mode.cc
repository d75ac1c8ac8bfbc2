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
      bytes < kMinSampleBytes || elapsed <= absl::ZeroDuration()) {
    return;
  }
  absl::MutexLock lock(&mu_);
  if (decided_) {
    return;
  }
  best_rate_ = std::max(
      best_rate_, static_cast<double>(bytes) / absl::ToDoubleSeconds(elapsed));
  if (++samples_ < kProbeSamples) {
    return;
  }
  mode_ = best_rate_ < kZstdBelowBytesPerSecond ? TransferMode::kZstd
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
  return best_rate_;
}

}  // namespace cairn::client::gocacheprog
