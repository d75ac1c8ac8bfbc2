#include "client/gocacheprog/codec.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

// JSON is parsed with nlohmann::json's non-throwing entry point, and every
// field is type-checked before it is read, so no exception can escape.

namespace cairn::client::gocacheprog {
namespace {

using Json = nlohmann::json;

// Returns the value of base64 character `c`, or -1.
int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

absl::Status ReadBytesField(const Json& j, const char* name, std::string* out) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    return absl::OkStatus();
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field ", name, " is not a base64 string"));
  }
  if (!absl::Base64Unescape(it->get_ref<const std::string&>(), out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("field ", name, " is not valid base64"));
  }
  return absl::OkStatus();
}

absl::Status ReadIntField(const Json& j, const char* name, int64_t* out) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    return absl::OkStatus();
  }
  if (!it->is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field ", name, " is not an integer"));
  }
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

// Streaming base64 decoder: holds at most three pending characters.
class Base64Decoder {
 public:
  // Decodes `c` into `out`. Returns false for a character that cannot
  // appear at this point.
  bool Add(char c, std::string& out) {
    if (c == '=') {
      ++padding_;
      return padding_ <= 2 && (count_ + padding_) <= 4 && count_ >= 2;
    }
    int v = Base64Value(c);
    if (v < 0 || padding_ > 0) {
      return false;
    }
    acc_ = (acc_ << 6) | static_cast<uint32_t>(v);
    if (++count_ == 4) {
      out.push_back(static_cast<char>(acc_ >> 16));
      out.push_back(static_cast<char>(acc_ >> 8));
      out.push_back(static_cast<char>(acc_));
      acc_ = 0;
      count_ = 0;
    }
    return true;
  }
  // Flushes a padded final quantum. Returns false for a truncated input.
  bool Finish(std::string& out) {
    if (count_ == 0) {
      return padding_ == 0;
    }
    if (count_ + padding_ != 4) {
      return false;
    }
    if (count_ == 2) {
      out.push_back(static_cast<char>(acc_ >> 4));
    } else if (count_ == 3) {
      out.push_back(static_cast<char>(acc_ >> 10));
      out.push_back(static_cast<char>(acc_ >> 2));
    }
    return true;
  }

 private:
  uint32_t acc_ = 0;
  int count_ = 0;
  int padding_ = 0;
};

}  // namespace

absl::StatusOr<Request> ParseRequest(absl::string_view line) {
  Json j = Json::parse(line.begin(), line.end(), nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError("request is not valid JSON");
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError("request is not a JSON object");
  }
  Request r;
  auto cmd = j.find("Command");
  if (cmd == j.end() || !cmd->is_string()) {
    return absl::InvalidArgumentError("request has no Command string");
  }
  r.command = cmd->get<std::string>();
  for (absl::Status s :
       {ReadIntField(j, "ID", &r.id), ReadIntField(j, "BodySize", &r.body_size),
        ReadBytesField(j, "ActionID", &r.action_id),
        ReadBytesField(j, "OutputID", &r.output_id)}) {
    if (!s.ok()) {
      return s;
    }
  }
  if (r.output_id.empty()) {
    if (absl::Status s = ReadBytesField(j, "ObjectID", &r.output_id); !s.ok()) {
      return s;
    }
  }
  if (r.body_size < 0) {
    return absl::InvalidArgumentError("BodySize is negative");
  }
  return r;
}

std::string EncodeResponse(const Response& r) {
  Json j = Json::object();
  j["ID"] = r.id;
  if (!r.err.empty()) {
    j["Err"] = r.err;
  }
  if (!r.known_commands.empty()) {
    j["KnownCommands"] = r.known_commands;
  }
  if (r.miss) {
    j["Miss"] = true;
  }
  if (!r.output_id.empty()) {
    j["OutputID"] = absl::Base64Escape(r.output_id);
  }
  if (r.size != 0) {
    j["Size"] = r.size;
  }
  if (r.time.has_value()) {
    j["Time"] =
        absl::FormatTime(absl::RFC3339_full, *r.time, absl::UTCTimeZone());
  }
  if (!r.disk_path.empty()) {
    j["DiskPath"] = r.disk_path;
  }
  // Replace invalid UTF-8 (e.g. in an error text) instead of throwing.
  std::string out = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  out.push_back('\n');
  return out;
}

absl::StatusOr<bool> LineReader::Fill() {
  if (pos_ < end_) {
    return true;
  }
  for (;;) {
    ssize_t n = read(fd_, buf_.data(), buf_.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return absl::InternalError(
          absl::StrCat("reading requests: ", std::strerror(errno)));
    }
    pos_ = 0;
    end_ = static_cast<size_t>(n);
    return n > 0;
  }
}

absl::StatusOr<bool> LineReader::ReadLine(std::string* line) {
  line->clear();
  ++line_number_;
  for (;;) {
    absl::StatusOr<bool> more = Fill();
    if (!more.ok()) {
      return more.status();
    }
    if (!*more) {
      if (line->empty()) {
        return false;
      }
      return absl::InvalidArgumentError("input ends inside a line");
    }
    const char* start = buf_.data() + pos_;
    const void* nl = std::memchr(start, '\n', end_ - pos_);
    size_t take = nl ? static_cast<const char*>(nl) - start : end_ - pos_;
    if (line->size() + take > kMaxRequestLine) {
      return absl::InvalidArgumentError("request line too long");
    }
    line->append(start, take);
    pos_ += take;
    if (nl != nullptr) {
      ++pos_;
      return true;
    }
  }
}

absl::StatusOr<int64_t> LineReader::ReadBase64Body(
    absl::FunctionRef<absl::Status(absl::string_view)> sink) {
  ++line_number_;
  Base64Decoder decoder;
  std::string out;
  absl::Status sink_status;
  int64_t total = 0;
  enum { kOpen, kBody, kEscape, kClosed } state = kOpen;
  for (;;) {
    absl::StatusOr<bool> more = Fill();
    if (!more.ok()) {
      return more.status();
    }
    if (!*more) {
      return absl::InvalidArgumentError("input ends inside a body line");
    }
    char c = buf_[pos_++];
    bool ok = true;
    if (state == kOpen) {
      // The go command ends each request with two newlines, so blank lines
      // may precede the body.
      if (c == '\n') {
        ++line_number_;
        continue;
      }
      ok = c == '"' || c == ' ' || c == '\r' || c == '\t';
      state = c == '"' ? kBody : kOpen;
    } else if (state == kEscape) {
      ok = c == '/' && decoder.Add('/', out);  // "\/" is a JSON escape.
      state = kBody;
    } else if (state == kBody) {
      if (c == '"') {
        ok = decoder.Finish(out);
        state = kClosed;
      } else if (c == '\\') {
        state = kEscape;
      } else {
        ok = decoder.Add(c, out);
      }
    } else if (c == '\n') {
      break;
    } else {
      ok = c == ' ' || c == '\r' || c == '\t';
    }
    if (!ok) {
      return absl::InvalidArgumentError(
          "body line is not a base64 JSON string");
    }
    if (out.size() >= 64 * 1024 || (state == kClosed && !out.empty())) {
      total += out.size();
      if (sink_status.ok()) {
        sink_status = sink(out);
      }
      out.clear();
    }
  }
  if (!sink_status.ok()) {
    return sink_status;
  }
  return total;
}

}  // namespace cairn::client::gocacheprog
