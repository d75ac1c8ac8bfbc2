// A small Prometheus metrics registry: counter, gauge and histogram families
// with labels, and callback gauges read at scrape time, rendered in the
// Prometheus text exposition format (version 0.0.4).
//
// Families are created once at start-up; the returned pointers live as long as
// the Registry. Looking up a labelled child takes a short lock the first time
// per label set; callers on hot paths keep the child pointer.
//
// Thread safety: everything here is safe to use from any thread. Counter,
// Gauge and Histogram updates are lock-free atomics.
#ifndef CAIRN_RPC_METRICS_H_
#define CAIRN_RPC_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace cairn::rpc {

class Counter {
 public:
  // Adds `n` (>= 0).
  void Increment(int64_t n = 1) {
    value_.fetch_add(n, std::memory_order_relaxed);
  }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

class Gauge {
 public:
  void Set(int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void Add(int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Cumulative histogram over fixed upper bounds (plus +Inf).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  // Records one observation.
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Returns the per-bucket (non-cumulative) counts; the last is +Inf.
  std::vector<int64_t> BucketCounts() const;
  int64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const;

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<int64_t>[]> buckets_;
  std::atomic<int64_t> count_{0};
  std::atomic<int64_t> sum_micros_{0};  // Sum in millionths of a unit.
};

// Latency buckets in seconds, 50 µs .. 60 s.
std::vector<double> LatencyBuckets();

// A family of metrics of one type sharing a name and label names.
template <typename T>
class Family {
 public:
  // Returns the child for `label_values` (one per label name), creating it.
  T* WithLabels(const std::vector<std::string>& label_values);

 private:
  friend class Registry;
  Family(std::vector<std::string> label_names, std::function<T*()> make)
      : label_names_(std::move(label_names)), make_(std::move(make)) {}

  const std::vector<std::string> label_names_;
  const std::function<T*()> make_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_
      ABSL_GUARDED_BY(mu_);
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Each New* registers a family under `name` (which must be unique) and
  // returns it; the pointer lives as long as the registry.
  Family<Counter>* NewCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>* NewGauge(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>* NewHistogram(const std::string& name,
                                  const std::string& help,
                                  std::vector<std::string> label_names,
                                  std::vector<double> bounds);
  // Registers a gauge whose value `read` returns at scrape time. `read` must
  // be thread-safe and outlive the registry's use.
  void NewCallbackGauge(const std::string& name, const std::string& help,
                        std::function<double()> read);
  // Same, for a monotonic count kept elsewhere (type "counter").
  void NewCallbackCounter(const std::string& name, const std::string& help,
                          std::function<double()> read);
  // The values of a labelled counter family, read at scrape time: one pair
  // of label values (one per label name) and count per child.
  using LabelledValues =
      std::vector<std::pair<std::vector<std::string>, double>>;
  // Registers a counter family with labels whose children `read` returns
  // at scrape time (thread-safe; must outlive the registry's use).
  void NewCallbackCounterFamily(const std::string& name,
                                const std::string& help,
                                std::vector<std::string> label_names,
                                std::function<LabelledValues()> read);

  // Returns every metric in the Prometheus text format.
  std::string Render() const;

 private:
  struct Entry;
  // Registers `e`, filled in before (Render() may read it at once), in one
  // locked step; returns it (entries are never removed).
  Entry& Add(std::unique_ptr<Entry> e);
  // Registers a callback entry of `type`.
  void AddCallback(const std::string& name, const std::string& help,
                   const char* type, std::function<double()> read);
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn::rpc

#endif  // CAIRN_RPC_METRICS_H_
