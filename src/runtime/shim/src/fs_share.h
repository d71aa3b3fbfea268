// The host side of the shared filesystem: container rootfs (containerd's snapshot mounts) and
// host bind mounts made visible under the exported directory, and their removal.
#pragma once

#include <string>
#include <vector>

#include "containerd/types/mount.pb.h"
#include "kata/common/mount_options.h"

namespace kata::shim {

// Mount points made, unmounted in reverse order (MNT_DETACH) when the owner goes away unless
// released; the directories the set created are removed too.
class MountSet {
  public:
    MountSet() = default;
    ~MountSet();
    MountSet(MountSet&& o) noexcept;
    MountSet& operator=(MountSet&& o) noexcept;
    MountSet(const MountSet&) = delete;
    MountSet& operator=(const MountSet&) = delete;

    void add(const std::string& mountPoint) { points_.push_back(mountPoint); }
    const std::vector<std::string>& points() const { return points_; }
    std::vector<std::string> release();
    void unmountAll();

  private:
    std::vector<std::string> points_;
};

// Mounts containerd's rootfs mounts (overlay, bind, ...) at target, creating it. With no mounts
// the bundle's own rootfs directory (rootPath, relative to bundle unless absolute) is bind
// mounted. Throws naming type, source, target and errno.
MountSet mountRootfs(const std::vector<containerd::types::Mount>& mounts, const std::string& bundle,
                     const std::string& rootPath, const std::string& target);

// Bind mounts a host file or directory at target (creating a file or directory to mount on),
// read-only when asked.
void bindMount(const std::string& source, const std::string& target, bool readonly, MountSet& set);

// Mount points at or below prefix in /proc/self/mountinfo, deepest first.
std::vector<std::string> mountsUnder(const std::string& prefix);
// Unmounts everything at or below prefix, then removes the tree (only if nothing stays mounted).
// Returns what could not be cleaned (empty on success).
std::string cleanupTree(const std::string& prefix);

}  // namespace kata::shim
