// The runtime classes kata-deploy registers with containerd: one per shim ("qemu" ->
// handler "kata-qemu") plus "kata", the default class. One place builds every name, so the
// drop-in, the symlinks, the checks and the `runtimes` listing never disagree.
#pragma once

#include <string>
#include <vector>

namespace kata::deploy {

struct RuntimeClassSpec {
    std::string handler;      // containerd runtime name = Kubernetes RuntimeClass handler
    std::string shim;         // "qemu", "qemu-sev"
    std::string runtimeType;  // "io.containerd.kata-qemu.v2"; "io.containerd.kata.v2" for kata
    std::string shimBinary;   // what containerd looks up on its PATH for runtimeType
    std::string configFile;   // file name under share/defaults/kata-containers
};

// "qemu qemu-sev" or "qemu,qemu-sev" -> {"qemu", "qemu-sev"}; throws naming a bad entry.
std::vector<std::string> parseShimList(const std::string& text);

// The default class "kata" (using defaultShim's configuration) followed by kata-<shim> for
// every shim; defaultShim empty means the first shim. Throws when defaultShim is not listed.
std::vector<RuntimeClassSpec> runtimeClasses(const std::vector<std::string>& shims,
                                             const std::string& defaultShim);

// <prefix>/share/defaults/kata-containers
std::string defaultsDir(const std::string& prefix);

}  // namespace kata::deploy
