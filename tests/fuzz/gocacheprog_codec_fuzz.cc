// Fuzzes the GOCACHEPROG wire decoder (client/gocacheprog/codec.h). The input
// is what the go command would write to the shim's stdin: request lines, put
// bodies as base64 JSON strings. Invariants: nothing crashes, hangs or
// throws; errors are INVALID_ARGUMENT; a parsed request has a non-negative
// BodySize; the reader consumes at least one byte per step (so the loop
// ends); a body never decodes to more bytes than its line could hold; and an
// encoded response is one line of valid JSON.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "client/gocacheprog/codec.h"
#include "nlohmann/json.hpp"

namespace {

namespace gcp = ::cairn::client::gocacheprog;

void CheckError(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    abort();
  }
}

// Encodes a response echoing `request` and checks it is one JSON line.
void CheckEncode(const gcp::Request& request) {
  gcp::Response response;
  response.id = request.id;
  response.err = request.command;  // Arbitrary bytes, maybe not UTF-8.
  response.output_id = request.output_id;
  response.disk_path = request.action_id;
  response.size = request.body_size;
  std::string line = gcp::EncodeResponse(response);
  if (line.empty() || line.back() != '\n' ||
      line.find('\n') != line.size() - 1) {
    abort();
  }
  if (nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false)
          .is_discarded()) {
    abort();
  }
}

// Feeds `input` through a LineReader as the shim's main loop would.
void ReadStream(const uint8_t* data, size_t size) {
  int fd = memfd_create("gocacheprog_fuzz", MFD_CLOEXEC);
  if (fd < 0) {
    abort();
  }
  if (size > 0 && write(fd, data, size) != static_cast<ssize_t>(size)) {
    abort();
  }
  lseek(fd, 0, SEEK_SET);
  gcp::LineReader reader(fd);
  std::string line;
  for (size_t step = 0; step <= size + 1; ++step) {
    absl::StatusOr<bool> more = reader.ReadLine(&line);
    if (!more.ok()) {
      CheckError(more.status());
      break;
    }
    if (!*more) {
      break;
    }
    absl::StatusOr<gcp::Request> request = gcp::ParseRequest(line);
    if (!request.ok()) {
      CheckError(request.status());
      continue;
    }
    if (request->command != "put" || request->body_size <= 0) {
      continue;
    }
    int64_t seen = 0;
    absl::StatusOr<int64_t> body =
        reader.ReadBase64Body([&](absl::string_view chunk) {
          seen += static_cast<int64_t>(chunk.size());
          return absl::OkStatus();
        });
    if (!body.ok()) {
      CheckError(body.status());
      break;
    }
    if (*body != seen || static_cast<size_t>(*body) > size) {
      abort();
    }
  }
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<gcp::Request> request = gcp::ParseRequest(text);
  if (request.ok()) {
    if (request->body_size < 0) {
      abort();
    }
    CheckEncode(*request);
  } else {
    CheckError(request.status());
  }
  ReadStream(data, size);
  return 0;
}
