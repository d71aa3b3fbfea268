#include "kata/hypervisor/qemu_cmdline.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/portforward/protocol.h"

namespace kata::hypervisor {

namespace {

// Kata's fast-boot parameters for x86 guests: trust the TSC, skip slow probes (i8042, crypto
// self-tests), reboot by keyboard controller (QEMU's -no-reboot turns it into an exit), stable
// interface names.
const char* const kBaseKernelParams =
    "tsc=reliable no_timer_check rcupdate.rcu_expedited=1 i8042.direct=1 i8042.dumbkbd=1 "
    "i8042.nopnp=1 i8042.noaux=1 noreplace-smp reboot=k cryptomgr.notests net.ifnames=0";

bool isMicrovm(const HypervisorConfig& c) { return c.machineType == "microvm"; }

// virtio devices are PCI on q35 and MMIO on microvm.
std::string virtioDevice(const HypervisorConfig& c, const std::string& kind) {
    return kind + (isMicrovm(c) ? "-device" : "-pci");
}

void appendWords(std::string& out, const std::string& words) {
    std::istringstream in(words);
    std::string w;
    while (in >> w) {
        if (!out.empty()) out += ' ';
        out += w;
    }
}

std::string describeErrno(int err) {
    return std::string(std::strerror(err)) + " (" + errnoName(err) + ")";
}

[[noreturn]] void invalid(const std::string& key, const std::string& value,
                          const std::string& reason) {
    throw Error(StatusCode::kInvalidArgument,
                "invalid hypervisor config: " + key + " \"" + value + "\": " + reason);
}

void requireReadableFile(const std::string& key, const std::string& path) {
    if (path.empty()) invalid(key, path, "not set");
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) invalid(key, path, describeErrno(errno));
    if (!S_ISREG(st.st_mode)) invalid(key, path, "not a regular file");
    if (::access(path.c_str(), R_OK) != 0) invalid(key, path, describeErrno(errno));
}

void requireExecutable(const std::string& key, const std::string& path) {
    requireReadableFile(key, path);
    if (::access(path.c_str(), X_OK) != 0) invalid(key, path, describeErrno(errno));
}

}  // namespace

QemuRunPaths QemuRunPaths::forRunDir(const std::string& runDir) {
    QemuRunPaths p;
    p.qmpSocket = runDir + "/qmp.sock";
    p.agentSocket = runDir + "/agent.sock";
    p.consoleLog = runDir + "/console.log";
    p.pidFile = runDir + "/pid";
    p.virtiofsSocket = runDir + "/vhost-fs.sock";
    p.portForwardSocket = runDir + "/portforward.sock";
    return p;
}

std::string buildKernelCommandLine(const HypervisorConfig& config, const VmSpec& spec,
                                   const QemuLaunchParams& launch) {
    std::string params;
    appendWords(params, kBaseKernelParams);
    if (!isMicrovm(config)) appendWords(params, "pci=lastbus=0");
    if (!config.image.empty()) appendWords(params, "root=/dev/vda ro rootwait");
    appendWords(params, "console=ttyS0 panic=1");
    if (!config.enableDebug) appendWords(params, "quiet");
    appendWords(params, "agent.channel=" + launch.agentChannel);
    appendWords(params, config.kernelParams);
    appendWords(params, spec.extraKernelParams);
    return params;
}

std::vector<std::string> buildQemuCommandLine(const HypervisorConfig& config, const VmSpec& spec,
                                              const QemuLaunchParams& launch) {
    const QemuRunPaths paths = QemuRunPaths::forRunDir(spec.runDir);
    const bool microvm = isMicrovm(config);
    std::vector<std::string> args;
    auto add = [&args](std::initializer_list<std::string> items) {
        args.insert(args.end(), items.begin(), items.end());
    };

    args.push_back(config.path);
    add({"-name", "sandbox-" + spec.sandboxId});
    if (microvm)
        // The ISA serial port carries the console; the RTC gives the guest wall time.
        add({"-machine", "microvm,accel=" + launch.accelerator + ",isa-serial=on,rtc=on"});
    else if (launch.accelerator == "tcg" && config.tcgTbSizeMiB > 0)
        add({"-machine", "q35", "-accel", "tcg,tb-size=" + std::to_string(config.tcgTbSizeMiB)});
    else
        add({"-machine", "q35,accel=" + launch.accelerator});

    std::string cpu = launch.accelerator == "kvm" ? "host" : "max";
    if (!config.cpuFeatures.empty()) cpu += "," + config.cpuFeatures;
    add({"-cpu", cpu});

    uint32_t maxVcpus = config.defaultMaxVcpus ? config.defaultMaxVcpus : launch.hostCpus;
    maxVcpus = std::max(maxVcpus, config.defaultVcpus);
    add({"-smp", std::to_string(config.defaultVcpus) + ",maxcpus=" + std::to_string(maxVcpus)});

    std::string memory = std::to_string(config.defaultMemoryMiB) + "M";
    // Memory hotplug needs DIMM slots and a ceiling; microvm has neither ACPI nor DIMMs.
    if (!microvm && config.memorySlots > 0 && launch.hostMemoryMiB > config.defaultMemoryMiB)
        memory += ",slots=" + std::to_string(config.memorySlots) +
                  ",maxmem=" + std::to_string(launch.hostMemoryMiB) + "M";
    add({"-m", memory});
    if (config.sharedFs == "virtio-fs") {
        // vhost-user-fs needs guest RAM the daemon can map.
        add({"-object",
             "memory-backend-file,id=dimm1,size=" + std::to_string(config.defaultMemoryMiB) +
                 "M,mem-path=/dev/shm,share=on",
             "-numa", "node,memdev=dimm1"});
    }

    if (!config.firmware.empty()) add({"-bios", config.firmware});
    add({"-kernel", config.kernel, "-append", buildKernelCommandLine(config, spec, launch)});
    if (!config.initrd.empty()) add({"-initrd", config.initrd});

    add({"-nographic", "-nodefaults", "-no-user-config", "-no-reboot"});

    // Hotplugged block devices go behind one bridge at a fixed root-bus slot, so their guest
    // PCI path ("02/<slot>") is known without asking the guest. The firmware gives an empty
    // bridge no I/O or memory window unless asked to reserve one; without it a hotplugged
    // device is enumerated by ACPI but its BARs cannot be assigned and no driver binds.
    if (!microvm)
        add({"-device", std::string("pci-bridge,bus=pcie.0,id=") + kHotplugBridgeId +
                            ",chassis_nr=1,shpc=off,addr=" + std::to_string(kHotplugBridgeSlot) +
                            ",io-reserve=4k,mem-reserve=1m,pref64-reserve=1m"});

    add({"-chardev", "socket,id=qmp,path=" + paths.qmpSocket + ",server=on,wait=off", "-mon",
         "chardev=qmp,mode=control"});
    add({"-chardev", "file,id=console,path=" + paths.consoleLog, "-serial", "chardev:console"});

    if (!config.image.empty())
        add({"-drive",
             "id=image,file=" + config.image + ",format=raw,if=none,readonly=on,aio=threads",
             "-device", virtioDevice(config, "virtio-blk") + ",drive=image,serial=image"});

    if (launch.agentChannel == "vsock") {
        std::string dev = virtioDevice(config, "vhost-vsock") +
                          ",id=vsock,guest-cid=" + std::to_string(launch.vsockCid);
        if (launch.vhostFd >= 0) dev += ",vhostfd=" + std::to_string(launch.vhostFd);
        add({"-device", dev});
    } else {
        add({"-device", virtioDevice(config, "virtio-serial") + ",id=serial0", "-chardev",
             "socket,id=agentch,path=" + paths.agentSocket + ",server=on,wait=off", "-device",
             std::string("virtserialport,bus=serial0.0,chardev=agentch,name=") +
                 kAgentChannelName});
    }
    if (spec.portForwardChannel) {
        // With a vsock agent channel the port needs a virtio-serial controller of its own.
        if (launch.agentChannel == "vsock")
            add({"-device", virtioDevice(config, "virtio-serial") + ",id=serial0"});
        add({"-chardev",
             "socket,id=portfwd,path=" + paths.portForwardSocket + ",server=on,wait=off", "-device",
             std::string("virtserialport,bus=serial0.0,chardev=portfwd,name=") +
                 portforward::kSerialPortName});
    }

    if (!spec.sharedDir.empty() && config.sharedFs == "virtio-9p") {
        const std::string fsdev = std::string("extra-9p-") + kSharedFsTag;
        add({"-fsdev",
             "local,id=" + fsdev + ",path=" + spec.sharedDir +
                 ",security_model=none,multidevs=remap",
             "-device",
             virtioDevice(config, "virtio-9p") + ",fsdev=" + fsdev + ",mount_tag=" + kSharedFsTag});
    } else if (!spec.sharedDir.empty() && config.sharedFs == "virtio-fs") {
        add({"-chardev", "socket,id=char-virtiofs,path=" + paths.virtiofsSocket, "-device",
             virtioDevice(config, "vhost-user-fs") + ",chardev=char-virtiofs,tag=" + kSharedFsTag});
    }

    for (size_t i = 0; i < spec.nics.size(); ++i) {
        const NetDevice& nic = spec.nics[i];
        if (i >= launch.nicFds.size()) break;
        add({"-netdev", "tap,id=" + nic.id + ",fd=" + std::to_string(launch.nicFds[i])});
        std::string dev =
            virtioDevice(config, "virtio-net") + ",netdev=" + nic.id + ",mac=" + nic.mac;
        if (nic.mtu) dev += ",host_mtu=" + std::to_string(nic.mtu);
        add({"-device", dev});
    }

    // Entropy for the guest's RNG from the start (the agent also reseeds on request).
    add({"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device",
         virtioDevice(config, "virtio-rng") + ",rng=rng0"});

    // Restore instead of boot: QEMU waits for the state on a pipe from cat, then stays paused.
    if (!spec.templateState.empty()) add({"-incoming", "exec:cat '" + spec.templateState + "'"});

    args.insert(args.end(), config.extraArgs.begin(), config.extraArgs.end());
    return args;
}

void validateConfig(const HypervisorConfig& config, const VmSpec& spec, uint64_t hostMemMiB) {
    if (spec.sandboxId.empty()) invalid("sandbox id", "", "empty");
    if (spec.runDir.empty() || spec.runDir[0] != '/')
        invalid("run dir", spec.runDir, "must be an absolute path");
    requireExecutable("path", config.path);
    requireReadableFile("kernel", config.kernel);
    if (config.initrd.empty() && config.image.empty())
        invalid("initrd", "", "one of initrd or image must be set");
    if (!config.initrd.empty() && !config.image.empty())
        invalid("image", config.image, "initrd and image are both set; set exactly one");
    if (!config.initrd.empty()) requireReadableFile("initrd", config.initrd);
    if (!config.image.empty()) requireReadableFile("image", config.image);
    if (!config.firmware.empty()) requireReadableFile("firmware", config.firmware);
    if (config.machineType != "q35" && config.machineType != "microvm")
        invalid("machine_type", config.machineType, "expected q35 or microvm");
    if (config.accelerator != "auto" && config.accelerator != "kvm" && config.accelerator != "tcg")
        invalid("accelerator", config.accelerator, "expected auto, kvm or tcg");
    if (config.defaultVcpus == 0) invalid("default_vcpus", "0", "must be at least 1");
    if (config.defaultVcpus > 255)
        invalid("default_vcpus", std::to_string(config.defaultVcpus), "at most 255");
    if (config.defaultMaxVcpus != 0 && config.defaultMaxVcpus < config.defaultVcpus)
        invalid("default_maxvcpus", std::to_string(config.defaultMaxVcpus),
                "less than default_vcpus " + std::to_string(config.defaultVcpus));
    if (config.defaultMemoryMiB == 0) invalid("default_memory", "0", "must be more than 0 MiB");
    if (hostMemMiB && config.defaultMemoryMiB > hostMemMiB)
        invalid("default_memory", std::to_string(config.defaultMemoryMiB),
                "more than the host's " + std::to_string(hostMemMiB) + " MiB");
    if (config.sharedFs != "virtio-9p" && config.sharedFs != "virtio-fs" &&
        config.sharedFs != "none")
        invalid("shared_fs", config.sharedFs, "expected virtio-9p, virtio-fs or none");
    if (config.msize9p < 4096 || config.msize9p > 1048576)
        invalid("msize_9p", std::to_string(config.msize9p), "must be between 4096 and 1048576");
    if (config.agentChannel != "auto" && config.agentChannel != "serial" &&
        config.agentChannel != "vsock")
        invalid("agent channel", config.agentChannel, "expected auto, serial or vsock");
    if (config.blockDeviceDriver != "virtio-blk")
        invalid("block_device_driver", config.blockDeviceDriver, "only virtio-blk is supported");
    if (!spec.templateState.empty()) {
        requireReadableFile("template state", spec.templateState);
        if (spec.templateState.find('\'') != std::string::npos)
            invalid("template state", spec.templateState, "must not contain a single quote");
    }
    if (!spec.nics.empty() && !spec.templateState.empty())
        invalid("template state", spec.templateState,
                "a VM restored from a template cannot have cold-plugged NICs");
    for (const NetDevice& nic : spec.nics) {
        if (nic.id.empty() || nic.id.find_first_of(",= ") != std::string::npos)
            invalid("nic id", nic.id, "must be a non-empty word");
        if (nic.tapFd < 0)
            invalid("nic " + nic.id + " tap fd", std::to_string(nic.tapFd), "not open");
        bool macOk = nic.mac.size() == 17;
        for (size_t i = 0; macOk && i < nic.mac.size(); ++i)
            macOk = i % 3 == 2 ? nic.mac[i] == ':'
                               : std::isxdigit(static_cast<unsigned char>(nic.mac[i]));
        if (!macOk) invalid("nic " + nic.id + " mac", nic.mac, "expected xx:xx:xx:xx:xx:xx");
        if (nic.mtu != 0 && (nic.mtu < 68 || nic.mtu > 65535))
            invalid("nic " + nic.id + " mtu", std::to_string(nic.mtu),
                    "must be between 68 and 65535");
    }
    if (!spec.sharedDir.empty() && config.sharedFs != "none") {
        struct stat st {};
        if (::stat(spec.sharedDir.c_str(), &st) != 0)
            invalid("shared dir", spec.sharedDir, describeErrno(errno));
        if (!S_ISDIR(st.st_mode)) invalid("shared dir", spec.sharedDir, "not a directory");
        if (config.sharedFs == "virtio-fs")
            requireExecutable("virtio_fs_daemon", config.virtioFsDaemon);
    }
}

std::string resolveAgentChannel(const std::string& configured, std::string* why) {
    if (configured == "serial") {
        if (why) *why = "agent channel configured as serial";
        return "serial";
    }
    UniqueFd fd(::open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC));
    std::string reason = fd ? "" : "open /dev/vhost-vsock: " + describeErrno(errno);
    if (configured == "vsock") {
        if (!fd)
            throw Error(StatusCode::kFailedPrecondition,
                        "agent channel \"vsock\" configured but " + reason);
        if (why) *why = "agent channel configured as vsock";
        return "vsock";
    }
    if (configured != "auto" && !configured.empty())
        throw Error(StatusCode::kInvalidArgument,
                    "agent channel \"" + configured + "\" unknown: expected auto, serial or vsock");
    if (fd) {
        if (why) *why = "/dev/vhost-vsock is usable";
        return "vsock";
    }
    if (why) *why = "virtio-serial port; " + reason;
    return "serial";
}

uint64_t hostMemoryMiB() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    uint64_t kib = 0;
    std::string unit;
    while (in >> key >> kib >> unit) {
        if (key == "MemTotal:") return kib / 1024;
    }
    return 0;
}

uint32_t hostCpuCount() {
    unsigned n = std::thread::hardware_concurrency();
    return n ? n : 1;
}

}  // namespace kata::hypervisor
