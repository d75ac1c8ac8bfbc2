// Fuzzes the small parsers of what a client reads: the input's first byte
// picks one and the rest is its text.
//  0: RetryDelayOf (rpc/grpc_status.h) over a google.rpc.Status as the
//     grpc-status-details-bin trailer carries it; and the delay the input's
//     first 8 bytes give (nanoseconds) sent through WithRetryDelay and
//     ToGrpcStatus comes back unchanged from both RetryDelayOf overloads.
//  1: ParseHeader (client/reapi_client.h, --header flags): an accepted
//     header has a non-empty lowercase name without separators or
//     surrounding spaces and a trimmed value, and "name=value" parses back
//     to it; NewReapiClient takes it exactly when gRPC's metadata rules
//     (checked here independently) allow it, else INVALID_ARGUMENT.
//  2: ParseZstdPolicy (client/gocacheprog/transfer_mode.h, --zstd): accepts
//     exactly the documented words, in any case.
//  3: DecodeManifest (client/gocacheprog/manifest.h), a blob fetched from
//     the remote cache (the input after the magic header when the next byte
//     is odd): an accepted blob is the header and whole 32-byte IDs, at
//     most kMaxManifestIds, and EncodeManifest gives it back.
//  4: DecodeBundleIndex (client/gocacheprog/bundle.h), a bundle index
//     fetched from the remote cache (after the magic header when the next
//     byte is odd): an accepted index encodes back to the same bytes, names
//     distinct ActionIDs, and the bodies BodiesByPart() cuts from each part
//     tile its content exactly (what the shim's part reader relies on).
// Errors are INVALID_ARGUMENT throughout.
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/gocacheprog/bundle.h"
#include "client/gocacheprog/manifest.h"
#include "client/gocacheprog/transfer_mode.h"
#include "client/reapi_client.h"
#include "rpc/grpc_status.h"

namespace {

using cairn::client::gocacheprog::DecodeManifest;
using cairn::client::gocacheprog::EncodeManifest;
using cairn::client::gocacheprog::kManifestMagic;
using cairn::client::gocacheprog::kMaxManifestIds;

[[noreturn]] void Fail(const std::string& why) {
  fprintf(stderr, "client_parse_fuzz: %s\n", why.c_str());
  abort();
}

void CheckInvalid(const absl::Status& s, const char* what) {
  if (s.code() != absl::StatusCode::kInvalidArgument) {
    Fail(absl::StrCat(what, " answered ", s.ToString()));
  }
}

void RetryDelay(absl::string_view text) {
  (void)cairn::rpc::RetryDelayOf(std::string(text));
  if (text.size() < 8) {
    return;
  }
  int64_t nanos = 0;
  memcpy(&nanos, text.data(), sizeof nanos);
  const absl::Duration delay = absl::Nanoseconds(nanos);
  const absl::Status status =
      cairn::rpc::WithRetryDelay(absl::ResourceExhaustedError("quota"), delay);
  if (cairn::rpc::RetryDelayOf(status) != delay ||
      cairn::rpc::RetryDelayOf(
          cairn::rpc::ToGrpcStatus(status).error_details()) != delay) {
    Fail(absl::StrCat("retry delay ", nanos, " ns did not round-trip"));
  }
}

// gRPC metadata rules: a lowercase token name not starting "grpc-"; a
// printable ASCII value unless the name ends in "-bin".
bool GrpcHeaderOk(const std::string& name, const std::string& value) {
  if (name.empty() || absl::StartsWith(name, "grpc-")) {
    return false;
  }
  for (char c : name) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '-' &&
        c != '_' && c != '.') {
      return false;
    }
  }
  if (absl::EndsWith(name, "-bin")) {
    return true;
  }
  for (char c : value) {
    if (c < 0x20 || c > 0x7e) {
      return false;
    }
  }
  return true;
}

void Header(absl::string_view text) {
  auto parsed = cairn::client::ParseHeader(text);
  if (!parsed.ok()) {
    CheckInvalid(parsed.status(), "ParseHeader");
    return;
  }
  const auto& [name, value] = *parsed;
  if (name.empty() || name != absl::AsciiStrToLower(name) ||
      name.find_first_of("=:") != std::string::npos ||
      name != absl::StripAsciiWhitespace(name) ||
      value != absl::StripAsciiWhitespace(value)) {
    Fail(absl::StrCat("ParseHeader accepted name \"", name, "\" value \"",
                      value, "\""));
  }
  auto again = cairn::client::ParseHeader(absl::StrCat(name, "=", value));
  if (!again.ok() || *again != *parsed) {
    Fail(absl::StrCat("header \"", name, "\" did not parse back"));
  }
  cairn::client::ReapiClientOptions options;
  options.target = "unix:///nonexistent/client_parse_fuzz.sock";
  options.headers.push_back(*parsed);
  auto client = cairn::client::NewReapiClient(options);
  if (client.ok() != GrpcHeaderOk(name, value)) {
    Fail(absl::StrCat("NewReapiClient answered ", client.status().ToString(),
                      " to header \"", name, "\""));
  }
  if (!client.ok()) {
    CheckInvalid(client.status(), "NewReapiClient");
  }
}

void ZstdPolicy(absl::string_view text) {
  using cairn::client::gocacheprog::ZstdPolicy;
  const std::string t = absl::AsciiStrToLower(text);
  std::optional<ZstdPolicy> want;
  if (t == "auto") {
    want = ZstdPolicy::kAuto;
  } else if (t == "always" || t == "true" || t == "1") {
    want = ZstdPolicy::kAlways;
  } else if (t == "never" || t == "false" || t == "0") {
    want = ZstdPolicy::kNever;
  }
  auto got = cairn::client::gocacheprog::ParseZstdPolicy(text);
  if (got.ok() != want.has_value() || (got.ok() && *got != *want)) {
    Fail(absl::StrCat("ParseZstdPolicy(\"", text, "\")"));
  }
  if (!got.ok()) {
    CheckInvalid(got.status(), "ParseZstdPolicy");
  }
}

void Manifest(absl::string_view text) {
  std::string blob(text);
  if (!text.empty() && (text[0] & 1)) {
    blob = absl::StrCat(kManifestMagic, text.substr(1));
  }
  auto ids = DecodeManifest(blob);
  if (!ids.ok()) {
    CheckInvalid(ids.status(), "DecodeManifest");
    return;
  }
  if (!absl::StartsWith(blob, kManifestMagic) ||
      ids->size() > kMaxManifestIds ||
      blob.size() != kManifestMagic.size() + 32 * ids->size() ||
      EncodeManifest(*ids) != blob) {
    Fail(absl::StrCat("DecodeManifest accepted ", blob.size(), " bytes as ",
                      ids->size(), " IDs"));
  }
}

void Bundle(absl::string_view text) {
  using cairn::client::gocacheprog::kBundleMagic;
  std::string blob(text);
  if (!text.empty() && (text[0] & 1)) {
    blob = absl::StrCat(kBundleMagic, text.substr(1));
  }
  auto index = cairn::client::gocacheprog::DecodeBundleIndex(blob);
  if (!index.ok()) {
    CheckInvalid(index.status(), "DecodeBundleIndex");
    return;
  }
  if (cairn::client::gocacheprog::EncodeBundleIndex(*index) != blob) {
    Fail("DecodeBundleIndex accepted an index that does not encode back");
  }
  absl::flat_hash_set<std::string> ids;
  for (const auto& r : index->records) {
    if (r.action_id.size() != 32 || r.output_id.size() != 32 ||
        !ids.insert(r.action_id).second || r.size < 0) {
      Fail("DecodeBundleIndex accepted a bad record");
    }
  }
  const auto bodies = cairn::client::gocacheprog::BodiesByPart(*index);
  for (size_t p = 0; p < bodies.size(); ++p) {
    int64_t end = 0;
    for (const auto& b : bodies[p]) {
      if (b.offset != end || b.size <= 0 || b.records.empty()) {
        Fail(absl::StrCat("part ", p, " is not tiled by its bodies"));
      }
      end += b.size;
    }
    if (end != index->parts[p].content_size) {
      Fail(absl::StrCat("part ", p, " bodies end at ", end));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // Invalid UTF-8 is logged.
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const absl::string_view text(reinterpret_cast<const char*>(data) + 1,
                               size - 1);
  switch (data[0] % 5) {
    case 0:
      RetryDelay(text);
      break;
    case 1:
      Header(text);
      break;
    case 2:
      ZstdPolicy(text);
      break;
    case 3:
      Manifest(text);
      break;
    default:
      Bundle(text);
  }
  return 0;
}
