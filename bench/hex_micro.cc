// hex_micro: Google Benchmark micro-benchmark of the per-digest hex work on
// Cairn's FindMissingBlobs path (profiled at about a third of server CPU for
// 1000-digest requests of random hashes before 0e0e8be): Digest::Create
// (ValidateSha256Hex, a branchy per-character check) followed by
// ItemKey::FromHex (table-driven since 0e0e8be; before, it validated again
// and decoded with a branchy helper), each alone, against one branch-free,
// table-driven validate-and-decode pass.
//
// Run: build-bench/bin/hex_micro
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "cas/digest.h"
#include "cas/lru_index.h"

namespace {

std::vector<std::string> RandomHashes(int n) {
  std::mt19937_64 rng(42);
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    std::string raw(32, '\0');
    for (char& c : raw) {
      c = static_cast<char>(rng());
    }
    out.push_back(cairn::cas::HexEncode(raw));
  }
  return out;
}

// 0..15 for lowercase hex digits, 0x80 for everything else.
constexpr std::array<uint8_t, 256> MakeTable() {
  std::array<uint8_t, 256> t{};
  for (int i = 0; i < 256; ++i) {
    t[i] = 0x80;
  }
  for (int i = 0; i < 10; ++i) {
    t['0' + i] = static_cast<uint8_t>(i);
  }
  for (int i = 0; i < 6; ++i) {
    t['a' + i] = static_cast<uint8_t>(10 + i);
  }
  return t;
}
constexpr std::array<uint8_t, 256> kHexTable = MakeTable();

// Validates and decodes in one pass with no data-dependent branch.
bool DecodeSha256Hex(absl::string_view hex, std::array<uint8_t, 32>& out) {
  if (hex.size() != 64) {
    return false;
  }
  uint8_t bad = 0;
  for (size_t i = 0; i < 32; ++i) {
    uint8_t hi = kHexTable[static_cast<uint8_t>(hex[2 * i])];
    uint8_t lo = kHexTable[static_cast<uint8_t>(hex[2 * i + 1])];
    bad |= hi | lo;
    out[i] = static_cast<uint8_t>(hi << 4 | (lo & 0x0f));
  }
  return (bad & 0x80) == 0;
}

void BM_CurrentCreateThenFromHex(benchmark::State& state) {
  std::vector<std::string> hashes = RandomHashes(1000);
  for (auto _ : state) {
    for (const std::string& h : hashes) {
      auto d = cairn::cas::Digest::Create(h, 100);
      auto k =
          cairn::cas::ItemKey::FromHex(cairn::cas::ItemKind::kCas, d->hash());
      benchmark::DoNotOptimize(k);
    }
  }
  state.SetItemsProcessed(state.iterations() * hashes.size());
}
BENCHMARK(BM_CurrentCreateThenFromHex);

void BM_CurrentValidateOnly(benchmark::State& state) {
  std::vector<std::string> hashes = RandomHashes(1000);
  for (auto _ : state) {
    for (const std::string& h : hashes) {
      benchmark::DoNotOptimize(cairn::cas::ValidateSha256Hex(h));
    }
  }
  state.SetItemsProcessed(state.iterations() * hashes.size());
}
BENCHMARK(BM_CurrentValidateOnly);

void BM_CurrentFromHexOnly(benchmark::State& state) {
  std::vector<std::string> hashes = RandomHashes(1000);
  for (auto _ : state) {
    for (const std::string& h : hashes) {
      benchmark::DoNotOptimize(
          cairn::cas::ItemKey::FromHex(cairn::cas::ItemKind::kCas, h));
    }
  }
  state.SetItemsProcessed(state.iterations() * hashes.size());
}
BENCHMARK(BM_CurrentFromHexOnly);

void BM_TableDecodeOnce(benchmark::State& state) {
  std::vector<std::string> hashes = RandomHashes(1000);
  std::array<uint8_t, 32> id;
  for (auto _ : state) {
    for (const std::string& h : hashes) {
      benchmark::DoNotOptimize(DecodeSha256Hex(h, id));
      benchmark::DoNotOptimize(id);
    }
  }
  state.SetItemsProcessed(state.iterations() * hashes.size());
}
BENCHMARK(BM_TableDecodeOnce);

}  // namespace

BENCHMARK_MAIN();
