// The pod's cgroup on the host, for sandbox_cgroup_only: the shim moves itself (and so every
// process it starts after: QEMU, virtiofsd) into the sandbox's cgroupsPath, so the node's
// accounting (kubelet, the pod's limits) sees the whole VM.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kata/common/mountinfo.h"

namespace kata::shim {

// A cgroup filesystem of the host: a v1 hierarchy (its controllers in `controllers`) or v2.
struct CgroupHierarchy {
    std::string mountPoint;
    std::string controllers;  // "cpu,cpuacct", "memory", ... ; empty for cgroup2
    bool unified = false;
};

// The hierarchies a process's cgroup lives in: every cgroup2 mount and every v1 mount with
// controllers (named-only hierarchies such as name=systemd are left to systemd). One entry per
// hierarchy (the first mount of it).
std::vector<CgroupHierarchy> cgroupHierarchies(const std::vector<MountInfo>& mounts);

// The directory, relative to a hierarchy's root, of an OCI cgroupsPath: "/a/b" as is, a
// relative path under "/", and the systemd driver's "slice:prefix:name" expanded the way
// systemd lays out slices ("a-b.slice" is in "a.slice"). Throws kInvalidArgument naming the
// path when it has ".." or is empty.
std::string cgroupDirOfPath(const std::string& cgroupsPath);

class SandboxCgroup {
  public:
    // Creates the sandbox's cgroup in every hierarchy (parents included, cpuset's cpus/mems
    // copied down from the parent where empty) and moves the calling process, all its threads,
    // into it. Throws naming the cgroup file that refused; nothing is left then.
    static std::unique_ptr<SandboxCgroup> enter(const std::string& cgroupsPath,
                                                const std::vector<CgroupHierarchy>& hierarchies);
    // leave()s.
    ~SandboxCgroup();
    SandboxCgroup(const SandboxCgroup&) = delete;
    SandboxCgroup& operator=(const SandboxCgroup&) = delete;

    // Moves the shim back to where it was and removes the directories enter() made. The VM must
    // be gone (a cgroup with processes cannot be removed; that is logged, not thrown).
    void leave();
    // The sandbox's directory in each hierarchy.
    const std::vector<std::string>& dirs() const { return dirs_; }

  private:
    SandboxCgroup() = default;
    struct Joined {
        std::string dir;       // where the shim went
        std::string previous;  // where it was (the hierarchy's cgroup.procs to go back to)
    };
    std::vector<Joined> joined_;
    std::vector<std::string> created_;  // deepest last
    std::vector<std::string> dirs_;
    bool left_ = false;
};

// For `shim delete` after a shim that died: removes the sandbox's (empty) cgroup directories
// that exist, deepest first; the parents it may have made are kept (they may be shared). Returns
// what could not be removed ("" when nothing).
std::string removeSandboxCgroup(const std::string& cgroupsPath,
                                const std::vector<CgroupHierarchy>& hierarchies);

}  // namespace kata::shim
