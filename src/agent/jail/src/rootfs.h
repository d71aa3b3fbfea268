// The container's filesystem view: mounts from the spec, /dev, pivot_root, masked and read-only
// paths, read-only root, hostname and sysctls. Planned (and validated) by the agent; carried out
// by the container's init inside its new mount namespace.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "agent/oci.pb.h"

namespace kata::jail {

struct MountPlan {
    std::string source, destination, type, data;
    unsigned long flags = 0;        // MS_* applied at mount time
    unsigned long propagation = 0;  // MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE (+MS_REC)
    bool bind = false;
    bool recursive = false;
};

struct DevicePlan {
    std::string path;
    mode_t mode;  // includes S_IFCHR/S_IFBLK/S_IFIFO
    dev_t dev;
    uid_t uid;
    gid_t gid;
};

struct RootfsPlan {
    std::string rootfs;  // absolute, in the agent's mount namespace
    bool readonly = false;
    unsigned long rootPropagation = 0;  // 0: rslave while setting up, unchanged afterwards
    std::vector<MountPlan> mounts;
    std::vector<DevicePlan> devices;  // defaults + spec devices
    std::vector<std::string> maskedPaths, readonlyPaths;
    // For "cgroup" mounts: the container's own cgroup directories to bind, keyed by the name
    // they get under the mount point (one per v1 hierarchy; empty key for cgroup v2).
    std::vector<std::pair<std::string, std::string>> cgroupDirs;
    std::map<std::string, std::string> sysctls;
    bool noPivotRoot = false;  // MS_MOVE + chroot (the agent runs from an initramfs)
    bool setHostname = false;
    std::string hostname;
};

// Parses mount options; unknown options become filesystem data. Throws on an invalid spec.
MountPlan planMount(const grpc::Mount& mount);
RootfsPlan planRootfs(const grpc::Spec& spec, bool newUts);

// Child side (new mount namespace), failures reported on syncFd. Prepare: hostname, the
// rootfs bind, the spec's mounts and /dev. Finish: pivot_root, sysctls, read-only and masked
// paths, read-only root. OCI's createRuntime/createContainer hooks run in between.
void childPrepareRootfs(int syncFd, const RootfsPlan& plan);
void childFinishRootfs(int syncFd, const RootfsPlan& plan);

// Resolves path inside root the way the container would see it (symlinks followed but never out
// of root); returns the absolute path in the caller's view. Exposed for tests.
std::string resolveInRoot(const std::string& root, const std::string& path, int* err);

}  // namespace kata::jail
