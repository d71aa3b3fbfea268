// Kata's configuration.toml: where it is looked up and what it says.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kata/hypervisor/config.h"

namespace kata::config {

struct AgentConfig {
    bool enableDebug = false;
    uint32_t dialTimeoutSec = 45;
    std::vector<std::string> kernelModules;
    bool debugConsoleEnabled = false;
    bool enableTracing = false;
};

struct RuntimeSection {
    bool enableDebug = false;
    std::string internetworkingModel = "tcfilter";
    bool disableNewNetns = false;
    bool sandboxCgroupOnly = false;
    bool disableGuestSeccomp = false;  // the guest enforces the containers' profiles
    // Size the VM once, at creation, for what the pod asks (CRI's sandbox annotations), instead
    // of hotplugging per container; the defaults are what a pod that asks nothing gets.
    bool staticSandboxResourceMgmt = false;
    uint32_t staticSandboxDefaultWorkloadMemMiB = 0;
    uint32_t staticSandboxDefaultWorkloadVcpus = 0;
};

// The pod's own resources, from containerd's sandbox annotations (0 = not asked).
struct PodResources {
    int64_t cpuQuota = 0, cpuPeriod = 0;  // io.kubernetes.cri.sandbox-cpu-quota / -period
    uint64_t cpuShares = 0;               // io.kubernetes.cri.sandbox-cpu-shares
    uint64_t memoryBytes = 0;             // io.kubernetes.cri.sandbox-memory
};

struct FactoryConfig {
    bool enableTemplate = false;
    std::string templatePath = "/run/vc/vm/template";
};

struct RuntimeConfig {
    std::string path;  // the file it came from
    std::string hypervisorName = "qemu";
    hypervisor::HypervisorConfig hypervisor;
    AgentConfig agent;
    RuntimeSection runtime;
    FactoryConfig factory;
    std::vector<std::string> warnings;  // unknown keys etc., for the caller to log
};

// With static_sandbox_resource_mgmt: default_vcpus plus ceil(quota / period) vCPUs (or the
// default workload vCPUs), default_memory plus the pod's memory (or the default workload
// memory), in MiB rounded up. Changes nothing when the option is off.
void applyStaticSandboxSizing(RuntimeConfig& config, const PodResources& pod);

// The install prefix's defaults directory ("/opt/kata/share/defaults/kata-containers").
std::string defaultsDir();

// The file name a shim binary name selects: "containerd-shim-kata-qemu-v2" ->
// "configuration-qemu.toml", "containerd-shim-kata-v2" (or anything else) ->
// "configuration.toml".
std::string configFileNameForShim(const std::string& shimName);

// The candidate paths in lookup order (for diagnostics and tests).
std::vector<std::string> configSearchPaths(const std::string& explicitPath,
                                           const std::string& shimName);

// explicitPath = containerd runtime option ConfigPath (may be empty); shimName = argv[0]
// basename. Kata's lookup order. Throws naming every path tried.
std::string resolveConfigPath(const std::string& explicitPath, const std::string& shimName);

// Throws kata::Error(kInvalidArgument) naming file, key and reason.
RuntimeConfig loadConfig(const std::string& path);
// Same, from text (path only used in messages).
RuntimeConfig parseConfig(const std::string& text, const std::string& path);

// Kernel parameters the agent section implies (agent.log=debug, agent.debug_console, ...),
// for VmSpec::extraKernelParams.
std::string agentKernelParams(const RuntimeConfig& config);

}  // namespace kata::config
