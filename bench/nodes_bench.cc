// nodes_bench: one phase of the several-nodes benchmark (bench/nodes.sh),
// run against one REAPI node; the script runs the phases against different
// nodes sharing a bucket and reads the bucket's request counters between them.
//
// The workload is fixed by --seed: --blobs small blobs (64 B - 4 KiB, two
// thirds under 1 KiB) and --actions action results, action i naming blob i
// as its one output file.
//   --phase=write  uploads every blob (one FindMissingBlobs, then one
//                  BatchUpdateBlobs per missing blob, as clients do) and
//                  stores every action result.
//   --phase=check  asks FindMissingBlobs for every blob and GetActionResult
//                  for every action: prints how many were present / hits.
//   --phase=find   one FindMissingBlobs call with every blob (1000 by default).
// Prints "key=value" lines for the script.
#include <cstdint>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/reapi_client.h"

ABSL_FLAG(std::string, target, "grpc://127.0.0.1:9092", "Node to talk to.");
ABSL_FLAG(std::string, phase, "check", "write | check | find");
ABSL_FLAG(int, blobs, 1000, "Blobs in the workload.");
ABSL_FLAG(int, actions, 200, "Action results in the workload (<= blobs).");
ABSL_FLAG(uint64_t, seed, 1, "Workload seed.");

namespace {

using cairn::cas::Digest;
namespace reapi = cairn::client::reapi;

std::string BlobData(uint64_t seed, int i) {
  std::mt19937_64 rng(seed * 1000003u + static_cast<uint64_t>(i));
  const size_t size = (i % 3 != 2) ? 64 + rng() % 960 : 1024 + rng() % 3072;
  std::string s(size, '\0');
  for (char& c : s) {
    c = static_cast<char>(rng());
  }
  return s;
}

Digest ActionDigest(uint64_t seed, int i) {
  return Digest::OfData(absl::StrCat("nodes_bench action ", seed, " ", i));
}

reapi::ActionResult ResultFor(const Digest& output) {
  reapi::ActionResult r;
  auto* f = r.add_output_files();
  f->set_path("out/file");
  f->mutable_digest()->set_hash(output.hash());
  f->mutable_digest()->set_size_bytes(output.size_bytes());
  return r;
}

int Run() {
  cairn::client::ReapiClientOptions o;
  o.target = absl::GetFlag(FLAGS_target);
  o.compression = false;
  auto client = cairn::client::NewReapiClient(o);
  if (!client.ok()) {
    std::cerr << "nodes_bench: " << client.status() << "\n";
    return 2;
  }
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const int n = absl::GetFlag(FLAGS_blobs);
  const int actions = std::min(absl::GetFlag(FLAGS_actions), n);
  std::vector<std::string> data;
  std::vector<Digest> digests;
  for (int i = 0; i < n; ++i) {
    data.push_back(BlobData(seed, i));
    digests.push_back(Digest::OfData(data.back()));
  }
  const std::string phase = absl::GetFlag(FLAGS_phase);
  const absl::Time start = absl::Now();
  int errors = 0;
  if (phase == "write") {
    auto missing = (*client)->FindMissingBlobs(digests);
    if (!missing.ok()) {
      std::cerr << "nodes_bench: " << missing.status() << "\n";
      return 1;
    }
    int uploaded = 0;
    for (int i = 0; i < n; ++i) {
      absl::Status s = (*client)->UploadBlob(
          digests[i], cairn::client::StringChunkSource(data[i]));
      errors += !s.ok();
      uploaded += s.ok();
    }
    for (int i = 0; i < actions; ++i) {
      absl::Status s = (*client)->UpdateActionResult(ActionDigest(seed, i),
                                                     ResultFor(digests[i]));
      errors += !s.ok();
    }
    std::cout << "missing_before=" << missing->size()
              << "\nuploaded=" << uploaded << "\n";
  } else if (phase == "check") {
    auto missing = (*client)->FindMissingBlobs(digests);
    int hits = 0;
    for (int i = 0; i < actions; ++i) {
      hits += (*client)->GetActionResult(ActionDigest(seed, i), {}).ok();
    }
    std::cout << "blobs_present="
              << (missing.ok() ? n - static_cast<int>(missing->size()) : -1)
              << "\nblobs=" << n << "\nac_hits=" << hits
              << "\nactions=" << actions << "\n";
    errors += !missing.ok();
  } else if (phase == "find") {
    auto missing = (*client)->FindMissingBlobs(digests);
    errors += !missing.ok();
    std::cout << "missing=" << (missing.ok() ? missing->size() : -1) << "\n";
  } else {
    std::cerr << "nodes_bench: unknown --phase " << phase << "\n";
    return 2;
  }
  std::cout << "seconds=" << absl::ToDoubleSeconds(absl::Now() - start)
            << "\nerrors=" << errors << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Run();
}
