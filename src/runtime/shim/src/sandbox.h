// One pod: its VM (through the hypervisor library), the agent connection and the shared
// directory. Containers live in the task service; the sandbox is what they run in.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent_client.h"
#include "container.h"
#include "containerd/types/mount.pb.h"
#include "host_cgroup.h"
#include "kata/common/log.h"
#include "kata/config/config.h"
#include "kata/hypervisor/hypervisor.h"
#include "paths.h"
#include "pod_network.h"
#include "port_forward.h"

namespace kata::shim {

// The two things the sandbox creates that tests replace: the VM and the agent connection.
struct SandboxDeps {
    std::function<std::unique_ptr<hypervisor::Hypervisor>(const hypervisor::HypervisorConfig&,
                                                          const hypervisor::VmSpec&)>
        createHypervisor;
    std::function<std::shared_ptr<AgentClient>(const std::string& address,
                                               std::chrono::milliseconds timeout)>
        connectAgent;
    // The pod network in a netns (CRI); a sandbox without a netns path has loopback only.
    AttachNetworkFn attachNetwork;
};
SandboxDeps realSandboxDeps();

// The guest storage that mounts the share (driver 9p, source kataShared) at
// /run/kata-containers/shared/containers/.
grpc::Storage sharedFsStorage(const config::RuntimeConfig& cfg);

// What the pod asks of its sandbox, from the sandbox container's spec.
// A container to make in the sandbox: containerd's bundle and rootfs mounts, and its spec.
struct ContainerSetup {
    std::string id;
    std::string bundle;
    std::vector<containerd::types::Mount> rootfs;
    grpc::Spec spec;              // the bundle's config.json, as the host sees it
    bool sharesPodPidns = false;  // shareProcessNamespace
};

struct SandboxSetup {
    std::string netnsPath;         // the pod's network namespace (CNI's veth); empty = none
    std::string hostname;          // the guest's and every container's hostname
    std::vector<std::string> dns;  // resolv.conf lines for the guest
    bool sandboxPidns = false;     // containers may join the sandbox's pid namespace
    std::string cgroupsPath;       // the sandbox container's linux.cgroupsPath (host side)
};

class Sandbox : public std::enable_shared_from_this<Sandbox> {
  public:
    Sandbox(std::string id, config::RuntimeConfig cfg, Paths paths, SandboxDeps deps);
    ~Sandbox();  // stop()s
    Sandbox(const Sandbox&) = delete;
    Sandbox& operator=(const Sandbox&) = delete;

    // Creates the shared dir, attaches the pod network, boots the VM, waits for the agent
    // (dial_timeout), configures the guest network and creates the sandbox in the guest. On
    // failure everything made so far is undone before it throws.
    void start(const SandboxSetup& setup = {});
    // Best-effort DestroySandbox, stops the VM, unmounts and removes the share tree. Idempotent.
    void stop();

    // Mounts the container's rootfs and host bind mounts on the share, hot-plugs its block
    // devices, rewrites its spec for the guest and creates it there. On failure nothing of it
    // is left. The sandbox must be owned by a shared_ptr (the container unplugs through it).
    std::shared_ptr<Container> createContainer(const ContainerSetup& setup);

    // Called from the sandbox's OOM watcher thread with the id of each container that had an
    // OOM kill in the guest (containerd's /tasks/oom). Set before start().
    void setOomHandler(std::function<void(const std::string& cid)> fn);

    // Called once, from the hypervisor's watcher thread, if the VM dies under us.
    void setVmExitHandler(std::function<void(const std::string& reason)> fn);
    bool vmAlive() const;

    const std::string& id() const { return id_; }
    const config::RuntimeConfig& config() const { return cfg_; }
    const Paths& paths() const { return paths_; }
    pid_t vmPid() const;
    std::string vmRunDir() const { return paths_.vmRunDir(id_); }
    std::string sharedDir() const { return paths_.sharedDir(id_); }
    std::string consoleTail(size_t lines) const;
    void pauseVm();
    void resumeVm();

  private:
    std::shared_ptr<AgentClient> agent() const;
    // Hot-plugs the spec's block devices (linux.devices of type "b", found on the host by
    // major:minor) as virtio-blk; returns the agent's Device entries and fills ids.
    std::vector<grpc::Device> plugBlockDevices(const grpc::Spec& spec, const std::string& cid,
                                               std::vector<std::string>& ids);
    void unplugDevices(const std::vector<std::string>& ids);

    std::string id_;
    config::RuntimeConfig cfg_;
    Paths paths_;
    SandboxDeps deps_;
    log::Logger log_;
    mutable std::mutex mu_;
    std::unique_ptr<PodNetwork> network_;        // destroyed after the VM is stopped
    std::unique_ptr<SandboxCgroup> hostCgroup_;  // sandbox_cgroup_only; left after the VM
    std::unique_ptr<PortForward> portForward_;   // CRI PortForward; null without a netns
    std::unique_ptr<hypervisor::Hypervisor> vm_;
    std::shared_ptr<AgentClient> agent_;
    std::function<void(const std::string&)> onVmExit_;
    std::function<void(const std::string&)> onOom_;
    std::thread oomWatcher_;
    bool vmDead_ = false;
    unsigned nextDeviceId_ = 0;
    bool stopped_ = false;
};

}  // namespace kata::shim
