// The container spec as the guest must see it: the host's bundle config.json rewritten for the
// agent (rootfs on the share, host-only parts dropped). Pure functions, unit tested.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "agent/agent.pb.h"
#include "agent/oci.pb.h"

namespace kata::shim {

struct GuestSpecOptions {
    // runtime.disable_guest_seccomp: the guest kernel enforces no profile when true.
    bool disableGuestSeccomp = false;
};

// A bind mount of a host path that must reach the guest through the share.
struct HostBindMount {
    int index;               // into spec.Mounts
    std::string hostSource;  // absolute host path
    std::string shareName;   // file name under the shared dir: "<cid>-<index>-<basename>"
    bool readonly;
};

// Kubernetes emptyDir volumes: a bind mount whose source has this in its path.
inline constexpr const char* kEmptyDirMarker = "kubernetes.io~empty-dir";
// Where the guest keeps a pod's emptyDirs (shared by the pod's containers).
inline constexpr const char* kGuestEphemeralDir = "/run/kata-containers/sandbox/ephemeral";
inline constexpr const char* kGuestLocalDir = "/run/kata-containers/sandbox/local";

bool isEmptyDirMount(const grpc::Mount& m);

// Rewrites the spec's emptyDir mounts to guest-local storage and returns the storages the agent
// must provide for them (Kata's rule): medium Memory (the kubelet put a tmpfs on the host path,
// isTmpfs says so) becomes an `ephemeral` tmpfs in the guest, a disk emptyDir a `local`
// directory in the guest. The storage is named after the volume, so every container of the
// pod that mounts it gets the same one.
std::vector<grpc::Storage> rewriteEmptyDirs(grpc::Spec& spec,
                                            const std::function<bool(const std::string&)>& isTmpfs);

// Host bind mounts of the spec that the guest needs (volumes, /etc/hosts, ...); system mounts
// (/proc, /sys, /dev destinations), emptyDirs and non-bind mounts are the guest's own business.
std::vector<HostBindMount> hostBindMounts(const grpc::Spec& spec, const std::string& cid);

// Rewrites spec in place for container cid:
//  - root.path -> /run/kata-containers/shared/containers/<cid>/rootfs
//  - shared bind mounts' sources -> their guest path on the share; a bind mount of /dev/shm
//    becomes a tmpfs in the guest
//  - hooks dropped (they ran, or run, on the host), SELinux labels dropped
//  - network and cgroup namespaces dropped (the VM is the pod's network and cgroup boundary),
//    the host paths of the other namespaces cleared
//  - linux.devices and resource kinds the guest cannot honour (device cgroup rules, block IO,
//    hugepages, net classes, cpuset) dropped; memory/cpu/pids kept
//  - systemd cgroupsPath "slice:prefix:name" -> "/prefix/name" (no systemd in the guest)
//  - seccomp dropped when the guest does not enforce it
void rewriteSpecForGuest(grpc::Spec& spec, const std::string& cid,
                         const std::vector<HostBindMount>& shared, const GuestSpecOptions& opts);

}  // namespace kata::shim
