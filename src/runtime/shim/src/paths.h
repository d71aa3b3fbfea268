// Every host path the shim builds, in one place (docs/CONTRACTS.md is the source of truth).
#pragma once

#include <string>

namespace kata::shim {

// Where the ttrpc sockets of shims live (containerd's convention: a hash of containerd's address,
// namespace and id under /run/containerd/s).
constexpr const char* kShimSocketRoot = "/run/containerd/s";
// Guest side of the 9p share, as the agent mounts it.
constexpr const char* kGuestSharedDir = "/run/kata-containers/shared/containers";
constexpr const char* kShareMountTag = "kataShared";

struct Paths {
    // Roots, overridable so unit tests run in a temp dir.
    std::string stateRoot = "/run/vc/sbs";
    std::string vmRoot = "/run/vc/vm";
    std::string shareRoot = "/run/kata-containers/shared/sandboxes";

    std::string sandboxStateDir(const std::string& sid) const { return stateRoot + "/" + sid; }
    std::string sandboxStateFile(const std::string& sid) const {
        return sandboxStateDir(sid) + "/state.json";
    }
    std::string vmRunDir(const std::string& sid) const { return vmRoot + "/" + sid; }
    // /run/kata-containers/shared/sandboxes/<sid>: everything the shim mounts for a sandbox.
    std::string sandboxShareRoot(const std::string& sid) const { return shareRoot + "/" + sid; }
    // The exported directory (mount_tag kataShared).
    std::string sharedDir(const std::string& sid) const {
        return sandboxShareRoot(sid) + "/shared";
    }
    std::string containerRootfsHost(const std::string& sid, const std::string& cid) const {
        return sharedDir(sid) + "/" + cid + "/rootfs";
    }
};

inline std::string containerRootfsGuest(const std::string& cid) {
    return std::string(kGuestSharedDir) + "/" + cid + "/rootfs";
}

// "unix:///run/containerd/s/<sha256(containerdAddress/namespace/id)>".
std::string shimSocketAddress(const std::string& containerdAddress, const std::string& ns,
                              const std::string& id);

// Strips "unix://" (or "unix:") from an address.
std::string socketPathOf(const std::string& address);

}  // namespace kata::shim
