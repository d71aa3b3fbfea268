// Sandbox state on the host (/run/vc/sbs/<sid>/state.json): what `delete` needs to clean up after
// a shim that died (the VM's run dir and pid, the mounts made for each container).
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "paths.h"

namespace kata::shim {

struct ContainerState {
    std::string id;
    std::string bundle;
    std::vector<std::string> mounts;  // host mount points made for it, in mount order
};

struct SandboxState {
    std::string sandboxId;
    std::string ns;
    std::string vmRunDir;
    std::string shareRoot;  // /run/kata-containers/shared/sandboxes/<sid>
    pid_t hypervisorPid = 0;
    std::string netnsPath;       // the pod's netns, where our taps and tc filters are
    std::string hostCgroupPath;  // sandbox_cgroup_only: the sandbox's cgroupsPath on the host
    std::map<std::string, ContainerState> containers;
};

std::string encodeState(const SandboxState& s);
// Throws kDataLoss naming `what` when the text is not a state document.
SandboxState decodeState(const std::string& text, const std::string& what);

// Atomic write (temp file + rename) of <stateDir>/state.json.
void saveState(const Paths& paths, const SandboxState& s);
std::optional<SandboxState> loadState(const Paths& paths, const std::string& sandboxId);
// Removes /run/vc/sbs/<sid> (recursively); idempotent.
void removeState(const Paths& paths, const std::string& sandboxId);

}  // namespace kata::shim
