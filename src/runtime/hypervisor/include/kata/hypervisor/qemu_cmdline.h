// Building QEMU's command line from the configuration: a pure function, so it is unit-tested
// without starting anything.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kata/hypervisor/config.h"
#include "kata/hypervisor/hypervisor.h"

namespace kata::hypervisor {

// The agent's vsock port (docs/CONTRACTS.md).
inline constexpr uint32_t kAgentVsockPort = 1024;
// The virtio-serial port name the agent looks for (docs/CONTRACTS.md).
inline constexpr const char* kAgentChannelName = "agent.channel.0";
inline constexpr const char* kSharedFsTag = "kataShared";
// The PCI bridge hotplugged block devices sit behind, at this slot of the root bus.
inline constexpr const char* kHotplugBridgeId = "pci-bridge-0";
inline constexpr int kHotplugBridgeSlot = 2;

// Facts about the host and the run that the command line depends on, decided before building.
struct QemuLaunchParams {
    std::string accelerator = "tcg";      // resolved: "kvm" | "tcg"
    std::string agentChannel = "serial";  // resolved: "serial" | "vsock"
    uint32_t vsockCid = 0;                // guest-cid when agentChannel == "vsock"
    int vhostFd = -1;                     // an open /dev/vhost-vsock holding vsockCid, or -1
    uint64_t hostMemoryMiB = 0;           // maxmem for memory hotplug; 0 = no hotplug slots
    uint32_t hostCpus = 1;                // maxcpus when default_maxvcpus is 0
    std::vector<int> nicFds;              // QEMU's fd number for each VmSpec::nics tap
};

// Files QEMU uses inside the VM's run dir.
struct QemuRunPaths {
    std::string qmpSocket, agentSocket, consoleLog, pidFile, virtiofsSocket, portForwardSocket;
    static QemuRunPaths forRunDir(const std::string& runDir);
};

// Kata's base kernel parameters, the console, panic/quiet handling, the channel hint for the
// agent, then kernel_params from the config and the VmSpec's extra parameters.
std::string buildKernelCommandLine(const HypervisorConfig& config, const VmSpec& spec,
                                   const QemuLaunchParams& launch);

// argv for QEMU, argv[0] = config.path. Does not validate paths (see validateConfig).
std::vector<std::string> buildQemuCommandLine(const HypervisorConfig& config, const VmSpec& spec,
                                              const QemuLaunchParams& launch);

// Checks the config before anything is started: paths exist and are readable, sizes are in
// range, enumerations known. Throws kata::Error(kInvalidArgument) naming key, value and reason.
void validateConfig(const HypervisorConfig& config, const VmSpec& spec, uint64_t hostMemoryMiB);

// "serial" or "vsock" for the configured agent_channel ("auto": vsock only if
// /dev/vhost-vsock can be opened). Throws if "vsock" is demanded but unavailable.
std::string resolveAgentChannel(const std::string& configured, std::string* why = nullptr);

// Total host RAM in MiB (/proc/meminfo MemTotal).
uint64_t hostMemoryMiB();
// Online host CPUs.
uint32_t hostCpuCount();

}  // namespace kata::hypervisor
