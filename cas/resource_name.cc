#include "cas/resource_name.h"

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace cairn::cas {
namespace {

using Segments = std::vector<absl::string_view>;

bool IsReserved(absl::string_view s) {
  return s == "blobs" || s == "uploads" || s == "compressed-blobs" ||
         s == "actions" || s == "actionResults" || s == "operations" ||
         s == "capabilities";
}

absl::Status Bad(absl::string_view name, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("resource name \"", name.substr(0, 300), "\": ", why));
}

// Parses the tail starting at segs[i] ("blobs" or "compressed-blobs"). On
// success sets *next to the index after the size segment.
absl::Status ParseBlobPart(absl::string_view name, const Segments& segs,
                           size_t i, ResourceName* out, size_t* next) {
  if (segs[i] == "compressed-blobs") {
    if (i + 1 >= segs.size()) {
      return Bad(name, "missing compressor");
    }
    if (segs[i + 1] == "zstd") {
      out->compressor = Compressor::kZstd;
    } else if (segs[i + 1] == "identity") {
      out->compressor = Compressor::kIdentity;
    } else {
      return Bad(name, absl::StrCat("unsupported compressor \"",
                                    segs[i + 1].substr(0, 40), "\""));
    }
    ++i;
  }
  ++i;
  if (i < segs.size() && segs[i] == "sha256") {
    ++i;
  }
  if (i + 2 > segs.size()) {
    return Bad(name, "expected .../{hash}/{size}");
  }
  int64_t size = 0;
  if (!absl::SimpleAtoi(segs[i + 1], &size) || segs[i + 1].empty() ||
      segs[i + 1][0] == '+' || segs[i + 1][0] == ' ') {
    return Bad(name, "size is not a decimal integer");
  }
  absl::StatusOr<Digest> digest = Digest::Create(segs[i], size);
  if (!digest.ok()) {
    if (segs[i].size() != kSha256HexLength && i + 3 <= segs.size()) {
      return Bad(name, absl::StrCat("unsupported digest function \"",
                                    segs[i].substr(0, 40), "\""));
    }
    return Bad(name, digest.status().message());
  }
  out->digest = *std::move(digest);
  *next = i + 2;
  return absl::OkStatus();
}

absl::Status TakeInstance(absl::string_view name, const Segments& segs,
                          size_t end, ResourceName* out) {
  Segments inst(segs.begin(), segs.begin() + end);
  for (absl::string_view seg : inst) {
    if (seg.empty()) {
      return Bad(name, "empty path segment in instance name");
    }
  }
  out->instance_name = absl::StrJoin(inst, "/");
  return ValidateInstanceName(out->instance_name).ok()
             ? absl::OkStatus()
             : Bad(name, "invalid instance name");
}

size_t FindFirst(const Segments& segs, bool write) {
  for (size_t i = 0; i < segs.size(); ++i) {
    if (write ? segs[i] == "uploads"
              : (segs[i] == "blobs" || segs[i] == "compressed-blobs")) {
      return i;
    }
  }
  return segs.size();
}

}  // namespace

absl::Status ValidateInstanceName(absl::string_view instance_name) {
  if (instance_name.empty()) {
    return absl::OkStatus();
  }
  if (instance_name.size() > 1024) {
    return absl::InvalidArgumentError("instance name longer than 1024 bytes");
  }
  for (absl::string_view seg : absl::StrSplit(instance_name, '/')) {
    if (seg.empty() || seg == "." || seg == ".." || IsReserved(seg)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "instance name \"", instance_name.substr(0, 200),
          "\": empty, '.', '..' or reserved path segment \"", seg, "\""));
    }
    for (char c : seg) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return absl::InvalidArgumentError(
            "instance name contains a control character");
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ResourceName> ParseReadResourceName(absl::string_view name) {
  Segments segs = absl::StrSplit(name, '/');
  size_t i = FindFirst(segs, /*write=*/false);
  if (i == segs.size()) {
    return Bad(name, "expected {instance}/blobs/{hash}/{size}");
  }
  ResourceName out;
  if (absl::Status s = TakeInstance(name, segs, i, &out); !s.ok()) {
    return s;
  }
  size_t next = 0;
  if (absl::Status s = ParseBlobPart(name, segs, i, &out, &next); !s.ok()) {
    return s;
  }
  if (next != segs.size()) {
    return Bad(name, "unexpected segments after the size");
  }
  return out;
}

absl::StatusOr<ResourceName> ParseWriteResourceName(absl::string_view name) {
  Segments segs = absl::StrSplit(name, '/');
  size_t i = FindFirst(segs, /*write=*/true);
  if (i == segs.size() || i + 2 >= segs.size() ||
      (segs[i + 2] != "blobs" && segs[i + 2] != "compressed-blobs")) {
    return Bad(name, "expected {instance}/uploads/{uuid}/blobs/{hash}/{size}");
  }
  ResourceName out;
  if (absl::Status s = TakeInstance(name, segs, i, &out); !s.ok()) {
    return s;
  }
  if (segs[i + 1].empty() || segs[i + 1].size() > 128) {
    return Bad(name, "upload id must be 1..128 characters");
  }
  out.uuid = std::string(segs[i + 1]);
  size_t next = 0;
  // Anything after the size is optional metadata and is ignored.
  if (absl::Status s = ParseBlobPart(name, segs, i + 2, &out, &next);
      !s.ok()) {
    return s;
  }
  return out;
}

std::string MakeReadResourceName(absl::string_view instance_name,
                                 const Digest& digest, Compressor compressor) {
  return absl::StrCat(instance_name, instance_name.empty() ? "" : "/",
                      compressor == Compressor::kZstd ? "compressed-blobs/zstd"
                                                      : "blobs",
                      "/", digest.hash(), "/", digest.size_bytes());
}

std::string MakeWriteResourceName(absl::string_view instance_name,
                                  absl::string_view uuid, const Digest& digest,
                                  Compressor compressor) {
  return absl::StrCat(instance_name, instance_name.empty() ? "" : "/",
                      "uploads/", uuid, "/",
                      MakeReadResourceName("", digest, compressor));
}

}  // namespace cairn::cas
