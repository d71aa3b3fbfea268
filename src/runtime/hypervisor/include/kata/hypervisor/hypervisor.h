// The hypervisor seam: one VM per sandbox. Qemu is the only implementation that ships.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kata/common/error.h"
#include "kata/hypervisor/config.h"

namespace kata::hypervisor {

// A guest NIC backed by a tap device the caller opened (in the pod's network namespace): QEMU
// inherits the fd, so it needs no access to that namespace.
struct NetDevice {
    std::string id;    // QEMU netdev/device id, "net0"
    std::string mac;   // the guest NIC's MAC: the pod veth's
    uint32_t mtu = 0;  // host_mtu offered to the guest; 0 = QEMU's default
    int tapFd = -1;    // open tap (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR); the caller keeps it open
};

struct VmSpec {
    std::string sandboxId;
    std::string runDir;             // /run/vc/vm/<sid> (created by start, removed by stop)
    std::string sharedDir;          // host dir exported as mount_tag kataShared; empty = none
    std::string extraKernelParams;  // from the agent config (agent.log=debug, ...)
    // A state file written by Hypervisor::saveTemplate: the VM is restored from it instead of
    // booted. The config and the devices (shared dir set or not) must match the template's.
    std::string templateState;
    // Cold-plugged virtio-net NICs (a VM restored from a template cannot have them).
    std::vector<NetDevice> nics;
    // A second virtio-serial port, kata.portforward.0, for CRI PortForward into the guest.
    bool portForwardChannel = false;
};

// Where a sandbox's VM lives on the host: /run/vc/vm/<sid>.
std::string defaultRunDir(const std::string& sandboxId);

class Hypervisor {
  public:
    virtual ~Hypervisor() = default;
    // Returns once QEMU runs and QMP answered; throws naming the cause (missing kernel path,
    // QEMU's stderr, ...); leaves nothing behind on failure.
    virtual void start() = 0;
    // QMP quit, then SIGKILL; reaps; removes runDir; idempotent.
    virtual void stop(std::chrono::milliseconds timeout) = 0;
    // For kata::ttrpc::dial: "unix:///run/vc/vm/<sid>/agent.sock" or "vsock://<cid>:1024".
    virtual std::string agentAddress() const = 0;
    // The host end of the port-forward channel ("unix:///run/vc/vm/<sid>/portforward.sock"),
    // "" when VmSpec::portForwardChannel was not asked for.
    virtual std::string portForwardAddress() const { return ""; }
    virtual pid_t pid() const = 0;
    virtual std::string consoleLogPath() const = 0;
    virtual std::string consoleTail(size_t lines) const = 0;
    // Called once, from a watcher thread, if QEMU exits without stop(): reason includes the
    // exit status and the console tail.
    virtual void setExitCallback(std::function<void(const std::string& reason)> cb) = 0;
    // QMP query-status: "running", "paused", ...
    virtual std::string status() = 0;
    virtual void pause() = 0;   // QMP stop
    virtual void resume() = 0;  // QMP cont
    // Returns the guest PCI path "bus/slot".
    virtual std::string hotplugBlockDevice(const std::string& id, const std::string& hostPath,
                                           bool readonly) = 0;
    virtual void unplugDevice(const std::string& id) = 0;
    // Pauses the VM and saves its whole state to statePath (VM templating: later VMs start from
    // it through VmSpec::templateState). The VM stays paused; stop it afterwards.
    virtual void saveTemplate(const std::string& statePath) {
        throw Error(StatusCode::kUnimplemented, "saveTemplate " + statePath + ": not supported");
    }
};

std::unique_ptr<Hypervisor> createHypervisor(const HypervisorConfig& config, const VmSpec& spec);

// "kvm" or "tcg" for this host. "kvm"/"tcg" are honoured ("kvm" without a working KVM throws
// saying why); "auto" picks KVM only when it really works, and *warning explains a fallback.
std::string resolveAccelerator(const std::string& configured, std::string* warning);

// Kills a QEMU left behind by a dead shim: pid is read from <runDir>/pid and only signalled
// if it is still a QEMU whose command line names runDir; then runDir is removed. Idempotent.
void cleanupStaleVm(const std::string& runDir);

}  // namespace kata::hypervisor
