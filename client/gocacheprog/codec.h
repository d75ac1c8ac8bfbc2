// The GOCACHEPROG wire format: JSON lines over a pipe.
//
// The go command writes one JSON request object per line; a "put" with
// BodySize > 0 is followed by one line holding the body as a base64 JSON
// string. The child answers one JSON response object per line, in any order.
// JSON goes through nlohmann::json with exceptions disabled at the boundary
// (non-throwing parse); the body line is decoded in a streaming fashion so a
// body of any size passes through a fixed-size buffer.
//
// Thread safety: ParseRequest/EncodeResponse are free functions safe from any
// thread. A LineReader is used by one thread at a time.
#ifndef CAIRN_CLIENT_GOCACHEPROG_CODEC_H_
#define CAIRN_CLIENT_GOCACHEPROG_CODEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace cairn::client::gocacheprog {

// Longest request line accepted (the body line is streamed, not bounded).
inline constexpr size_t kMaxRequestLine = 1 << 20;

struct Request {
  int64_t id = 0;
  std::string command;
  // Raw bytes (decoded from base64); empty when absent.
  std::string action_id;
  // Raw bytes of OutputID, or of its pre-Go-1.24 spelling ObjectID.
  std::string output_id;
  int64_t body_size = 0;
};

struct Response {
  int64_t id = 0;
  std::string err;
  std::vector<std::string> known_commands;
  bool miss = false;
  // Raw bytes; encoded as base64.
  std::string output_id;
  int64_t size = 0;
  std::optional<absl::Time> time;
  std::string disk_path;
};

// Parses one request line. INVALID_ARGUMENT names what is wrong (not JSON,
// not an object, a field of the wrong type, bad base64, negative BodySize).
absl::StatusOr<Request> ParseRequest(absl::string_view line);

// Returns `r` as one JSON line, newline included. Empty fields are omitted.
std::string EncodeResponse(const Response& r);

// Buffered reader over a file descriptor (not owned; must outlive it).
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd), buf_(64 * 1024, '\0') {}
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Reads the next line without its newline. Returns false at a clean end of
  // input. INVALID_ARGUMENT for a line longer than kMaxRequestLine or input
  // ending inside a line; INTERNAL for read errors.
  absl::StatusOr<bool> ReadLine(std::string* line);

  // Reads a body line (`"base64"` then a newline) and passes the decoded
  // bytes to `sink` in chunks. Returns the number of decoded bytes.
  // INVALID_ARGUMENT for anything but a base64 JSON string; a sink error is
  // returned as is (the rest of the line is still consumed).
  absl::StatusOr<int64_t> ReadBase64Body(
      absl::FunctionRef<absl::Status(absl::string_view)> sink);

  // Returns the 1-based number of the line last read (for error messages).
  int64_t line_number() const { return line_number_; }

 private:
  // Makes at least one unread byte available. Returns false at end of input.
  absl::StatusOr<bool> Fill();

  int fd_;
  std::string buf_;
  size_t pos_ = 0;
  size_t end_ = 0;
  int64_t line_number_ = 0;
};

}  // namespace cairn::client::gocacheprog

#endif  // CAIRN_CLIENT_GOCACHEPROG_CODEC_H_
