// What kata-agent does when it is the guest's init (PID 1): mount the base filesystems and
// cgroups, load kernel modules, find the agent channel, run the debug console, and never exit.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "kata/agent/service/config.h"

namespace kata::agent {

// Mounts proc, sysfs, devtmpfs (+ devpts, shm), /run and the cgroup hierarchies (v2 when the
// kernel has it, else one v1 hierarchy per enabled controller). Already-mounted ones are kept.
void setupInitMounts();
// Which cgroup layout setupInitMounts mounted ("v2" or "v1").
std::string mountCgroups();

// Loads each absolute .ko path listed in listFile, in order, with finit_module; EEXIST is fine,
// a missing list file means nothing to load. Throws naming the module that failed.
void loadKernelModules(const std::string& listFile = kModulesLoadFile);

// /dev/<vportNpM> of the virtio-serial port whose name is `name`, polling sysfs until timeout.
std::string findSerialPort(const std::string& name, std::chrono::milliseconds timeout,
                           const std::string& sysfsRoot = "/sys");

// The address to serve on: cfg.serverAddr if set, else vsock port 1024 when cfg.channel is
// "vsock", else "serial:" + the agent.channel.0 port.
std::string resolveServerAddr(const AgentConfig& cfg);

// Starts a thread that keeps /bin/sh running on the console (restarted when it exits), and,
// when vport != 0, one that serves a shell on that vsock port. No-op without /bin/sh.
void startDebugConsole(const AgentConfig& cfg);

// Logs the reason and powers the VM off (PID 1 must never exit: that panics the kernel).
[[noreturn]] void fatalPowerOff(const std::string& reason);

}  // namespace kata::agent
