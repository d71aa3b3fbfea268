// containerd's config.toml as kata-deploy touches it: read and validated with toml++, edited as
// text so that the user's file keeps every byte except its `imports` line, and the drop-in with
// our runtime classes rendered from the RuntimeClassSpecs.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtimes.h"

namespace kata::deploy {

// The CRI plugin's table, where runtimes live in a version 2 config.
inline constexpr const char* kCriPlugin = "io.containerd.grpc.v1.cri";

struct ContainerdConfig {
    std::string path;
    std::string text;
    int64_t version = 1;
    bool hasImports = false;
    std::vector<std::string> imports;
};

// Parses and validates: a TOML error names path:line:column; a config without `version = 2`
// (containerd reads it as version 1) and an `imports` that is not an array of strings are
// refused, naming the path and the reason.
ContainerdConfig parseContainerdConfig(const std::string& path, const std::string& text);

// Reads path (errors name it) and parses it.
ContainerdConfig loadContainerdConfig(const std::string& path);

// The drop-in: a version 2 config with one runtimes.<handler> table per class. containerd 1.x
// merges an imported file plugin by plugin: the imported [plugins."io.containerd.grpc.v1.cri"]
// replaces the whole table of the main file. So the drop-in carries the user's own cri table
// (from `user`) with our runtimes added to it, and the main file's settings keep working.
std::string renderDropIn(const ContainerdConfig& user, const std::vector<RuntimeClassSpec>& classes,
                         const std::string& prefix);

// cfg.text with entry in its top-level `imports` (a new `imports = [...]` line right after the
// `version` line when there is none); the text itself when entry is imported already. The
// result is re-parsed and must equal cfg in everything but the one imports entry.
std::string withImport(const ContainerdConfig& cfg, const std::string& entry);

// cfg.text without entry in `imports`; when no entry is left and dropEmptyLine is set, the
// whole `imports = [...]` line goes (it was ours).
std::string withoutImport(const ContainerdConfig& cfg, const std::string& entry,
                          bool dropEmptyLine);

// handler -> runtime_type of every CRI runtime in a (merged, e.g. `containerd config dump`)
// version 2 config; `what` names the text in errors.
std::map<std::string, std::string> criRuntimes(const std::string& what, const std::string& text);

}  // namespace kata::deploy
