// Guest storages: the mounts the shim asks for in CreateSandbox/CreateContainer (shared fs,
// block volumes, tmpfs, local dirs), refcounted per mount point across the sandbox's containers.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "agent/agent.pb.h"
#include "kata/agent/devices.h"

namespace kata::agent {

// Storage driver names, as the shim sends them (Storage.driver).
inline constexpr const char* kDriver9p = "9p";
inline constexpr const char* kDriverVirtioFs = "virtio-fs";
inline constexpr const char* kDriverBlk = "blk";
inline constexpr const char* kDriverVirtioBlk = "virtio-blk";
inline constexpr const char* kDriverMmioBlk = "mmioblk";
inline constexpr const char* kDriverScsi = "scsi";
inline constexpr const char* kDriverLocal = "local";
inline constexpr const char* kDriverEphemeral = "ephemeral";
inline constexpr const char* kDriverBind = "bind";
inline constexpr const char* kDriverOverlayFs = "overlayfs";

// Mounts the storages of CreateContainer/CreateSandbox under rootDir. Mount points must lie under
// rootDir (an absolute path under it, or a path relative to it); ".." components and escaping
// paths are rejected with kInvalidArgument. Each mount point is mounted once and refcounted: a
// second container asking for the same storage shares it; asking for a different storage on a
// mounted point is kAlreadyExists. Thread safe.
class StorageManager {
  public:
    explicit StorageManager(std::string rootDir = "/run/kata-containers");
    // Does not unmount: the guest's storages outlive the agent's bookkeeping only at shutdown.
    ~StorageManager() = default;
    StorageManager(const StorageManager&) = delete;
    StorageManager& operator=(const StorageManager&) = delete;

    // Where block devices are looked up (sysfs, /dev) and how long to wait for them.
    void setDeviceEnvironment(const DeviceEnvironment& env);

    // Returns the mount points, in order. On failure, unmounts what this call mounted and
    // drops the references it took, then rethrows.
    std::vector<std::string> add(const std::string& containerId,
                                 const google::protobuf::RepeatedPtrField<grpc::Storage>& storages);
    // Drops the container's references; unmounts (and removes the directories this manager
    // created) when the last user is gone. Unknown ids are a no-op. Throws if an unmount fails
    // (the reference is dropped anyway and the error names the mount point).
    void remove(const std::string& containerId);

    // Number of containers (references) holding a mount point; 0 when not managed.
    int refCount(const std::string& mountPoint) const;
    const std::string& rootDir() const { return rootDir_; }

    // Resolves a Storage.mount_point against rootDir, rejecting "..", empty and escaping paths.
    std::string resolveMountPoint(const std::string& mountPoint) const;

  private:
    struct Entry {
        std::string driver;
        std::string source;
        bool mounted = false;                  // false for "local" (a plain directory)
        bool removeTree = false;               // "local": the directory's content goes with it
        std::vector<std::string> createdDirs;  // deepest last; removed when the entry goes
        std::string createdFile;               // bind mount of a file: the placeholder file
        int refs = 0;
    };
    // Mounts one storage; returns its entry (refs = 0). Throws naming driver, source and point.
    Entry mountOne(const grpc::Storage& storage, const std::string& mountPoint);
    // Unmounts/cleans one entry; throws on unmount failure.
    void release(const std::string& mountPoint, Entry& entry);

    std::string rootDir_;
    DeviceEnvironment devEnv_;
    mutable std::mutex mu_;
    std::map<std::string, Entry> entries_;                             // by mount point
    std::map<std::string, std::vector<std::string>> containerPoints_;  // by container id
};

}  // namespace kata::agent
