#include "rpc/metrics.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace cairn::rpc {

struct Registry::Entry {
  Entry(std::string name, std::string help, const char* type,
        std::vector<std::string> label_names = {})
      : name(std::move(name)),
        help(std::move(help)),
        type(type),
        label_names(std::move(label_names)) {}

  std::string name;
  std::string help;
  std::string type;  // counter, gauge, histogram
  std::vector<std::string> label_names;
  std::unique_ptr<Family<Counter>> counters;
  std::unique_ptr<Family<Gauge>> gauges;
  std::unique_ptr<Family<Histogram>> histograms;
  std::function<double()> callback;
  std::function<Registry::LabelledValues()> family_callback;
};

namespace {

std::string Escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Returns `{a="x",b="y"}` (or "" without labels); `extra` is appended raw.
std::string Labels(const std::vector<std::string>& names,
                   const std::vector<std::string>& values,
                   const std::string& extra = "") {
  std::vector<std::string> parts;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    parts.push_back(absl::StrCat(names[i], "=\"", Escape(values[i]), "\""));
  }
  if (!extra.empty()) {
    parts.push_back(extra);
  }
  return parts.empty() ? "" : absl::StrCat("{", absl::StrJoin(parts, ","), "}");
}

std::string Number(double v) {
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  return absl::StrCat(v);
}

void RenderHistogram(const std::string& name,
                     const std::vector<std::string>& label_names,
                     const std::vector<std::string>& values, const Histogram& h,
                     std::string* out) {
  std::vector<int64_t> counts = h.BucketCounts();
  int64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    std::string le = i < h.bounds().size() ? Number(h.bounds()[i]) : "+Inf";
    absl::StrAppend(
        out, name, "_bucket",
        Labels(label_names, values, absl::StrCat("le=\"", le, "\"")), " ",
        cumulative, "\n");
  }
  absl::StrAppend(out, name, "_sum", Labels(label_names, values), " ",
                  Number(h.sum()), "\n");
  absl::StrAppend(out, name, "_count", Labels(label_names, values), " ",
                  cumulative, "\n");
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(new std::atomic<int64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    buckets_[i].store(0, std::memory_order_relaxed);
  }
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) {
    ++i;
  }
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<int64_t>(std::llround(v * 1e6)),
                        std::memory_order_relaxed);
}

std::vector<int64_t> Histogram::BucketCounts() const {
  std::vector<int64_t> out(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    out[i] = buckets_[i].load(std::memory_order_relaxed);
  }
  return out;
}

double Histogram::sum() const {
  return static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
}

std::vector<double> LatencyBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
          0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1,
          2.5,     5,      10,      30,     60};
}

template <typename T>
T* Family<T>::WithLabels(const std::vector<std::string>& label_values) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<T>& child = children_[label_values];
  if (child == nullptr) {
    child.reset(make_());
  }
  return child.get();
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

Registry::Registry() = default;
Registry::~Registry() = default;

Family<Counter>* Registry::NewCounter(const std::string& name,
                                      const std::string& help,
                                      std::vector<std::string> label_names) {
  auto e = std::make_unique<Entry>(name, help, "counter", label_names);
  e->counters.reset(new Family<Counter>(std::move(label_names),
                                        [] { return new Counter(); }));
  return Add(std::move(e)).counters.get();
}

Family<Gauge>* Registry::NewGauge(const std::string& name,
                                  const std::string& help,
                                  std::vector<std::string> label_names) {
  auto e = std::make_unique<Entry>(name, help, "gauge", label_names);
  e->gauges.reset(
      new Family<Gauge>(std::move(label_names), [] { return new Gauge(); }));
  return Add(std::move(e)).gauges.get();
}

Family<Histogram>* Registry::NewHistogram(const std::string& name,
                                          const std::string& help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  auto e = std::make_unique<Entry>(name, help, "histogram", label_names);
  e->histograms.reset(new Family<Histogram>(
      std::move(label_names), [bounds] { return new Histogram(bounds); }));
  return Add(std::move(e)).histograms.get();
}

void Registry::NewCallbackGauge(const std::string& name,
                                const std::string& help,
                                std::function<double()> read) {
  AddCallback(name, help, "gauge", std::move(read));
}

void Registry::NewCallbackCounter(const std::string& name,
                                  const std::string& help,
                                  std::function<double()> read) {
  AddCallback(name, help, "counter", std::move(read));
}

Registry::Entry& Registry::Add(std::unique_ptr<Entry> e) {
  Entry& added = *e;
  absl::MutexLock lock(&mu_);
  entries_.push_back(std::move(e));
  return added;
}

void Registry::AddCallback(const std::string& name, const std::string& help,
                           const char* type, std::function<double()> read) {
  auto e = std::make_unique<Entry>(name, help, type);
  e->callback = std::move(read);
  Add(std::move(e));
}

void Registry::NewCallbackCounterFamily(const std::string& name,
                                        const std::string& help,
                                        std::vector<std::string> label_names,
                                        std::function<LabelledValues()> read) {
  auto e =
      std::make_unique<Entry>(name, help, "counter", std::move(label_names));
  e->family_callback = std::move(read);
  Add(std::move(e));
}

std::string Registry::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& e : entries_) {
    absl::StrAppend(&out, "# HELP ", e->name, " ", e->help, "\n# TYPE ",
                    e->name, " ", e->type, "\n");
    if (e->callback) {
      absl::StrAppend(&out, e->name, " ", Number(e->callback()), "\n");
    } else if (e->family_callback) {
      LabelledValues values = e->family_callback();
      std::sort(values.begin(), values.end());
      for (const auto& [labels, v] : values) {
        absl::StrAppend(&out, e->name, Labels(e->label_names, labels), " ",
                        Number(v), "\n");
      }
    } else if (e->counters) {
      absl::MutexLock l(&e->counters->mu_);
      for (const auto& [values, c] : e->counters->children_) {
        absl::StrAppend(&out, e->name, Labels(e->label_names, values), " ",
                        c->value(), "\n");
      }
    } else if (e->gauges) {
      absl::MutexLock l(&e->gauges->mu_);
      for (const auto& [values, g] : e->gauges->children_) {
        absl::StrAppend(&out, e->name, Labels(e->label_names, values), " ",
                        g->value(), "\n");
      }
    } else if (e->histograms) {
      absl::MutexLock l(&e->histograms->mu_);
      for (const auto& [values, h] : e->histograms->children_) {
        RenderHistogram(e->name, e->label_names, values, *h, &out);
      }
    }
  }
  return out;
}

}  // namespace cairn::rpc
