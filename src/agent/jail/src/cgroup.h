// A container's cgroup, behind one interface with a backend per cgroup version (cgroup_v1.cpp,
// cgroup_v2.cpp). The agent decides what it mounts in the guest; we detect it from mountinfo.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agent/agent.pb.h"
#include "agent/oci.pb.h"

namespace kata::jail {

// Watches a cgroup for OOM kills and calls back from its own thread until destroyed.
class OomWatcher {
  public:
    virtual ~OomWatcher() = default;
};

class Cgroup {
  public:
    virtual ~Cgroup() = default;
    // Creates the cgroup at path (relative paths are placed under the agent's own cgroup).
    static std::unique_ptr<Cgroup> create(const std::string& path);
    // Relative paths are resolved under the agent's cgroup; empty becomes kata_agent/<id>.
    static std::string defaultPath(const std::string& id);

    virtual bool isV2() const = 0;
    virtual const std::string& path() const = 0;
    virtual void apply(const grpc::LinuxResources& resources, bool initial) = 0;
    // Files a process writes "0" to in order to join (one per hierarchy).
    virtual std::vector<std::string> procsFiles() const = 0;
    // Container-visible directories for a "cgroup" mount: (name, dir); v2: one with empty name.
    virtual std::vector<std::pair<std::string, std::string>> mountDirs() const = 0;
    virtual std::vector<pid_t> pids() const = 0;
    virtual void freeze() = 0;
    virtual void thaw() = 0;
    virtual void stats(grpc::CgroupStats* out) const = 0;
    // nullptr when the memory controller is not available.
    virtual std::unique_ptr<OomWatcher> watchOom(std::function<void()> onOom) = 0;
    // Kills what is left, then removes every directory; retries while processes exit.
    virtual void destroy() = 0;
};

// Backends (cgroup_v1.cpp, cgroup_v2.cpp). mounts: (mount point, controllers) of each v1
// hierarchy; selfPaths: the agent's own cgroup per controller ("" key for v2).
std::unique_ptr<Cgroup> makeCgroupV1(const std::string& path);
std::unique_ptr<Cgroup> makeCgroupV2(const std::string& mountPoint, const std::string& path);

// Helpers shared by the backends.
std::vector<pid_t> readPids(const std::string& procsFile);
uint64_t readU64(const std::string& file);  // 0 when missing; "max" reads as UINT64_MAX
std::vector<std::pair<std::string, uint64_t>> readKeyValues(const std::string& file);
// Removes dir, retrying while it is busy (tasks still exiting) for up to ~5 s.
void removeCgroupDir(const std::string& dir);

}  // namespace kata::jail
