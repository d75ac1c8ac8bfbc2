#include "server/config.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "yaml-cpp/yaml.h"

namespace cairn::server {
namespace {

// Renders a YAML node as a flag value. Returns false for maps and nested
// lists, which no flag takes.
bool ToFlagValue(const YAML::Node& node, std::string* out) {
  if (node.IsScalar()) {
    *out = node.Scalar();
    return true;
  }
  if (node.IsNull()) {
    out->clear();
    return true;
  }
  if (node.IsSequence()) {
    std::vector<std::string> items;
    for (const YAML::Node& item : node) {
      if (!item.IsScalar()) {
        return false;
      }
      items.push_back(item.Scalar());
    }
    *out = absl::StrJoin(items, ",");
    return true;
  }
  return false;
}

absl::Status ApplyOne(const std::string& key, const YAML::Node& value,
                      absl::string_view source) {
  std::string name = absl::StrReplaceAll(key, {{"-", "_"}});
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr || name == "config") {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": unknown setting \"", key, "\""));
  }
  std::string text;
  if (!ToFlagValue(value, &text)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": \"", key, "\" must be a scalar or a list"));
  }
  std::string error;
  if (!flag->ParseFrom(text, &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": \"", key, "\": ", error));
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<std::string> FindConfigArg(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg(argv[i]);
    if (arg == "--") {
      break;
    }
    for (absl::string_view prefix : {"--config", "-config"}) {
      if (arg == prefix && i + 1 < argc) {
        return std::string(argv[i + 1]);
      }
      if (absl::StartsWith(arg, absl::StrCat(prefix, "="))) {
        return std::string(arg.substr(prefix.size() + 1));
      }
    }
  }
  return std::nullopt;
}

absl::Status ApplyConfigText(absl::string_view yaml_text,
                             absl::string_view source_name) {
  YAML::Node root;
  // yaml-cpp reports errors by exception; this is the boundary.
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": ", e.what()));
  }
  if (root.IsNull()) {
    return absl::OkStatus();  // An empty file sets nothing.
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": expected a map of setting: value"));
  }
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source_name, ": keys must be setting names"));
    }
    if (absl::Status s = ApplyOne(kv.first.Scalar(), kv.second, source_name);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyConfigFile(absl::string_view path) {
  std::ifstream in{std::string(path)};
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("config file ", path, " not found"));
  }
  std::stringstream buf;
  buf << in.rdbuf();
  return ApplyConfigText(buf.str(), path);
}

}  // namespace cairn::server
