// The OCI runtime spec (config.json) of a pulled image's bundle, from its image config.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/oci.pb.h"
#include "kata/agent/image/manifest.h"

namespace kata::agent::image {

struct ResolvedUser {
    uint32_t uid = 0;
    uint32_t gid = 0;
    std::vector<uint32_t> additionalGids;
    std::string name;  // when known from /etc/passwd
};

// Resolves an image config's User ("", "uid", "uid:gid", "name", "name:group", "uid:group")
// against the rootfs's /etc/passwd and /etc/group (read inside the root). Named users get the
// groups that list them as members. An unknown name is kata::Error(kNotFound) naming `what`.
ResolvedUser resolveUser(const std::string& user, int rootfsFd, const std::string& what);

// process.args = Entrypoint + Cmd, env (PATH added when the image has none), cwd (WorkingDir or
// "/"), user; root "rootfs"; containerd's default mounts, capabilities, masked and read-only
// paths; pid, ipc, uts and mount namespaces (the network is the sandbox's). An image without
// Entrypoint and Cmd is kata::Error(kInvalidArgument).
grpc::Spec specFromImageConfig(const ImageConfig& config, int rootfsFd, const std::string& what);

}  // namespace kata::agent::image
