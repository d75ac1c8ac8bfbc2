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
  const absl::Time end = absl::Now();
  Record(mode, bytes, end - elapsed, end);
}

void TransferChooser::Record(TransferMode mode, int64_t bytes, absl::Time start,
                             absl::Time end) {
  if (policy_ != ZstdPolicy::kAuto || bytes <= 0 || end <= start) {
    return;
  }
  absl::MutexLock lock(&mu_);
  if (!decided_) {
    if (mode == TransferMode::kPlain) {
      Probe(bytes, start, end);
    }
    return;
  }
  // Only this window's own fetches: begun in its mode, after it began.
  if (mode != mode_ || start < window_start_) {
    return;
  }
  window_bytes_ += bytes;
  if (window_bytes_ < (trial_ ? kTrialBytes : kWindowBytes)) {
    return;
  }
  const double secs = absl::ToDoubleSeconds(end - window_start_);
  Revise(secs > 0 ? static_cast<double>(window_bytes_) / secs : 0, end);
}

bool TransferChooser::ClaimPing(absl::Time now) {
  if (policy_ != ZstdPolicy::kAuto) {
    return false;
  }
  absl::MutexLock lock(&mu_);
  if (!pings_done_) {
    return true;  // Start-up: the remote pings one after another.
  }
  if (!far_ || now - last_ping_ < kPingInterval) {
    return false;
  }
  last_ping_ = now;
  return true;
}

void TransferChooser::RecordPing(absl::Time start, absl::Time end) {
  const absl::Duration rtt = end - start;
  if (policy_ != ZstdPolicy::kAuto || rtt <= absl::ZeroDuration()) {
    return;
  }
  absl::MutexLock lock(&mu_);
  min_ping_ = std::min(min_ping_, rtt);
  last_ping_ = std::max(last_ping_, end);
  if (rtt < kFarRoundTrip) {
    // Near for good; a far decision (a busy start-up) goes back to the probe.
    near_ = true;
    pings_done_ = true;
    if (far_) {
      RestartProbe();
    }
    return;
  }
  if (pings_done_ || ++pings_ < kPingSamples) {
    return;
  }
  pings_done_ = true;
  if (decided_) {
    return;  // The probe came first (pings that failed, then a late one).
  }
  // A far remote: compressed from here on, plain only from a won trial.
  incumbent_ = TransferMode::kZstd;
  mode_ = incumbent_;
  decided_ = true;
  far_ = true;
  Begin(incumbent_, /*trial=*/false, end);
}

void TransferChooser::PingFailed() {
  absl::MutexLock lock(&mu_);
  pings_done_ = true;
}

absl::Duration TransferChooser::RoundTrip() const {
  absl::MutexLock lock(&mu_);
  return min_ping_ == absl::InfiniteDuration() ? absl::ZeroDuration()
                                               : min_ping_;
}

void TransferChooser::RestartProbe() {
  if (decided_ && mode_ != TransferMode::kPlain) {
    ++changes_;
  }
  decided_ = false;
  far_ = false;
  mode_ = incumbent_ = TransferMode::kPlain;
  samples_ = 0;
  best_rate_ = rate_ = 0;
  window_bytes_ = 0;
  window_start_ = absl::InfiniteFuture();
  trial_ = false;
  rates_[0] = rates_[1] = 0;
  windows_since_trial_ = 0;
  trial_gap_ = 1;
}

void TransferChooser::Probe(int64_t bytes, absl::Time start, absl::Time end) {
  // Every body shares the link: all count towards the aggregate rate.
  window_start_ = std::min(window_start_, start);
  window_bytes_ += bytes;
  if (bytes < kMinSampleBytes) {
    return;
  }
  best_rate_ = std::max(best_rate_, static_cast<double>(bytes) /
                                        absl::ToDoubleSeconds(end - start));
  const double window = absl::ToDoubleSeconds(end - window_start_);
  rate_ = std::max(
      best_rate_, window > 0 ? static_cast<double>(window_bytes_) / window : 0);
  if (++samples_ < kProbeSamples) {
    return;
  }
  rates_[static_cast<int>(TransferMode::kPlain)] = rate_;
  incumbent_ = rate_ < kZstdBelowBytesPerSecond ? TransferMode::kZstd
                                                : TransferMode::kPlain;
  mode_ = incumbent_;  // The decision itself is not a change.
  decided_ = true;
  Begin(incumbent_, /*trial=*/false, end);
}

void TransferChooser::Begin(TransferMode mode, bool trial, absl::Time now) {
  if (decided_ && mode != mode_) {
    ++changes_;
  }
  mode_ = mode;
  trial_ = trial;
  window_start_ = now;
  window_bytes_ = 0;
}

void TransferChooser::Revise(double rate, absl::Time now) {
  rates_[static_cast<int>(mode_)] = rate;
  const TransferMode other = mode_ == TransferMode::kPlain
                                 ? TransferMode::kZstd
                                 : TransferMode::kPlain;
  if (trial_) {
    // The trial against the incumbent's latest window: the faster wins.
    if (rate > rates_[static_cast<int>(other)]) {
      incumbent_ = mode_;
      trial_gap_ = 1;
    } else {
      trial_gap_ *= kGapGrowth;
    }
    windows_since_trial_ = 0;
    Begin(incumbent_, /*trial=*/false, now);
    return;
  }
  if (mode_ == TransferMode::kPlain && rate >= kZstdBelowBytesPerSecond) {
    Begin(mode_, /*trial=*/false, now);  // A fast link: plain it is.
    return;
  }
  if (far_ && mode_ == TransferMode::kZstd && rate < kFarTrialBytesPerSecond) {
    Begin(mode_, /*trial=*/false, now);  // Plain cannot win here.
    return;
  }
  if (++windows_since_trial_ >= trial_gap_) {
    Begin(other, /*trial=*/true, now);
    return;
  }
  Begin(mode_, /*trial=*/false, now);
}

bool TransferChooser::Decided() const {
  if (policy_ != ZstdPolicy::kAuto) {
    return true;
  }
  absl::MutexLock lock(&mu_);
  return decided_;
}

int64_t TransferChooser::Changes() const {
  absl::MutexLock lock(&mu_);
  return changes_;
}

double TransferChooser::EstimatedRate() const {
  absl::MutexLock lock(&mu_);
  return rate_;
}

}  // namespace cairn::client::gocacheprog
