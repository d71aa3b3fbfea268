// The [hypervisor.qemu] section of configuration.toml, as the hypervisor layer consumes it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kata::hypervisor {

struct HypervisorConfig {
    std::string path = "/usr/bin/qemu-system-x86_64";
    std::string kernel, initrd, image;  // exactly one of initrd / image
    std::string kernelParams;           // kernel_params (extra, appended)
    std::string machineType = "q35";    // machine_type: "q35" | "microvm"
    std::string accelerator = "auto";   // ours: "auto" | "kvm" | "tcg"
    uint32_t tcgTbSizeMiB = 16;  // ours, tcg_tb_size: TCG's translated-code cache; 0 = QEMU's
    std::string firmware;        // firmware; empty = QEMU default
    std::string cpuFeatures;     // cpu_features
    uint32_t defaultVcpus = 1, defaultMaxVcpus = 0;
    uint32_t defaultMemoryMiB = 2048, memorySlots = 10;
    std::string sharedFs = "virtio-9p";  // shared_fs: "virtio-9p" | "virtio-fs" | "none"
    std::string virtioFsDaemon;          // virtio_fs_daemon
    std::string virtioFsCache = "auto";  // virtio_fs_cache
    uint32_t msize9p = 8192;             // msize_9p
    std::string agentChannel = "auto";   // ours: "serial" | "vsock" | "auto"
    std::string blockDeviceDriver = "virtio-blk";
    bool enableDebug = false;  // enable_debug
    bool disableNestingChecks = false;
    std::vector<std::string> extraArgs;  // ours, appended to QEMU's command line
};

}  // namespace kata::hypervisor
