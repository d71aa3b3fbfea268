// kata-agent settings: defaults, then the kernel command line (`agent.*` options, when the agent
// is the guest's init), then command-line flags. Read in one place and passed down.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace kata::agent {

// The guest-side directory that holds bundles (<cid>/config.json, rootfs) and the shared fs.
inline constexpr const char* kDefaultRunDir = "/run/kata-containers";
// File listing the kernel modules to load at boot (absolute .ko paths, one a line).
inline constexpr const char* kModulesLoadFile = "/etc/kata-agent/modules.load";
// virtio-serial port name of the agent channel (docs/CONTRACTS.md).
inline constexpr const char* kSerialChannelName = "agent.channel.0";
inline constexpr uint32_t kVsockPort = 1024;

struct AgentConfig {
    bool initMode = false;   // running as PID 1 in the guest
    std::string serverAddr;  // unix:///p | vsock://cid:port | serial:/dev/... ; empty = find
    std::string channel;     // "serial" (default) | "vsock" when serverAddr is empty
    std::string logLevel = "info";
    bool debugConsole = false;
    uint32_t debugConsoleVport = 0;
    std::string containerPolicyFile;  // kept for the image service
    bool trace = false;
    std::chrono::milliseconds hotplugTimeout{3000};
    std::chrono::milliseconds dialTimeout{10000};  // how long to wait for the channel device
    std::string runDir = kDefaultRunDir;
    std::string console;  // console device from `console=` (e.g. ttyS0), for the debug shell
};

// Applies `agent.*` options (and `console=`) found in a kernel command line to cfg. Unknown
// agent options are ignored; malformed values throw kInvalidArgument naming the option.
void applyKernelCmdline(const std::string& cmdline, AgentConfig* cfg);

std::string sharedContainersDir(const AgentConfig& cfg);  // <runDir>/shared/containers

}  // namespace kata::agent
