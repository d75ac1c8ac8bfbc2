// Fuzzes what the S3 client reads from a bucket's answers and builds from
// keys (cas/s3_client.h): the XML of error and multipart responses (expat,
// entity expansion included) and the query and key encoders. Invariants:
// nothing crashes, hangs or grows past the RSS limit; XML errors are
// INVALID_ARGUMENT; each field returned is one asked for, at most once;
// S3QueryEncode emits only unreserved characters and %XX escapes and
// decodes back to its input; a key S3KeyIsSafe accepts needs no encoding
// beyond '/'.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "cas/s3_client.h"

namespace {

// The element names the client looks for in S3 answers.
const std::vector<std::string>& Names() {
  static const auto* names = new std::vector<std::string>{
      "Code", "Message", "UploadId", "Error", "Key", "ETag", "RequestId"};
  return *names;
}

bool Unreserved(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void FuzzXml(absl::string_view xml) {
  auto fields = cairn::cas::ParseS3XmlForTest(xml, Names());
  if (!fields.ok()) {
    if (fields.status().code() != absl::StatusCode::kInvalidArgument) abort();
    return;
  }
  std::set<std::string> seen;
  for (const auto& [name, value] : *fields) {
    bool asked = false;
    for (const std::string& n : Names()) asked |= n == name;
    if (!asked || !seen.insert(name).second) abort();
  }
}

void FuzzEncoders(absl::string_view text) {
  const std::string encoded = cairn::cas::S3QueryEncode(text);
  std::string decoded;
  for (size_t i = 0; i < encoded.size(); ++i) {
    const char c = encoded[i];
    if (c == '%') {
      if (i + 2 >= encoded.size()) abort();
      const int hi = Hex(encoded[i + 1]);
      const int lo = Hex(encoded[i + 2]);
      if (hi < 0 || lo < 0) abort();
      decoded.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      if (!Unreserved(c)) abort();
      decoded.push_back(c);
    }
  }
  if (decoded != text) abort();
  if (cairn::cas::S3KeyIsSafe(text)) {
    for (char c : text) {
      if (!Unreserved(c) && c != '/') abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  FuzzXml(input);
  FuzzEncoders(input);
  return 0;
}
