// kata-runtime: management CLI. A thin layer over the config and hypervisor libraries: it reads
// the same configuration the shim reads and reports what the shim would do with it.
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "kata/common/error.h"
#include "kata/common/version.h"
#include "kata/config/config.h"
#include "kata/hypervisor/accelerator.h"
#include "kata/hypervisor/hypervisor.h"
#include "kata/hypervisor/qemu_cmdline.h"

namespace {

using kata::config::RuntimeConfig;
namespace hv = kata::hypervisor;

std::string errnoText(int err) {
    return std::string(std::strerror(err)) + " (" + kata::errnoName(err) + ")";
}

// "" when path is a readable regular file (and executable when asked), else why not.
std::string fileProblem(const std::string& path, bool executable) {
    if (path.empty()) return "not configured";
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return errnoText(errno);
    if (!S_ISREG(st.st_mode)) return "not a regular file";
    if (::access(path.c_str(), executable ? X_OK : R_OK) != 0) return errnoText(errno);
    return "";
}

std::string qemuVersion(const std::string& path) {
    if (!fileProblem(path, true).empty()) return "";
    std::string cmd = "'" + path + "' --version 2>/dev/null";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return "";
    char line[256] = {};
    std::string first = std::fgets(line, sizeof line, p) ? line : "";
    ::pclose(p);
    while (!first.empty() && (first.back() == '\n' || first.back() == '\r')) first.pop_back();
    return first;
}

RuntimeConfig load(const std::string& configPath) {
    return kata::config::loadConfig(kata::config::resolveConfigPath(configPath, "kata-runtime"));
}

struct CheckReport {
    int failures = 0;
    void line(const char* status, const std::string& what, const std::string& detail) {
        std::cout << "[" << status << "] " << what;
        if (!detail.empty()) std::cout << ": " << detail;
        std::cout << "\n";
    }
    void ok(const std::string& what, const std::string& detail = "") { line(" ok ", what, detail); }
    void warn(const std::string& what, const std::string& detail) { line("warn", what, detail); }
    void fail(const std::string& what, const std::string& detail) {
        line("FAIL", what, detail);
        ++failures;
    }
};

int runCheck(const std::string& configPath) {
    RuntimeConfig cfg = load(configPath);
    const auto& h = cfg.hypervisor;
    CheckReport r;
    std::cout << "Checking whether this system can run Kata Containers VMs\n";
    r.ok("configuration", cfg.path);
    for (const auto& w : cfg.warnings) r.warn("configuration", w);

    if (auto why = fileProblem(h.path, true); why.empty())
        r.ok("QEMU binary " + h.path, qemuVersion(h.path));
    else
        r.fail("QEMU binary " + h.path, why);

    if (auto why = fileProblem(h.kernel, false); why.empty())
        r.ok("guest kernel " + h.kernel);
    else
        r.fail("guest kernel " + h.kernel, why);

    if (!h.initrd.empty() && !h.image.empty())
        r.fail("guest root", "both initrd and image are set");
    else if (h.initrd.empty() && h.image.empty())
        r.fail("guest root", "neither initrd nor image is set");
    else {
        const std::string& root = h.initrd.empty() ? h.image : h.initrd;
        const std::string what = (h.initrd.empty() ? "guest image " : "guest initrd ") + root;
        if (auto why = fileProblem(root, false); why.empty())
            r.ok(what);
        else
            r.fail(what, why);
    }
    if (!h.firmware.empty()) {
        if (auto why = fileProblem(h.firmware, false); why.empty())
            r.ok("firmware " + h.firmware);
        else
            r.fail("firmware " + h.firmware, why);
    }

    try {
        std::string warning;
        std::string accel = hv::resolveAccelerator(h.accelerator, &warning);
        if (accel == "kvm" && warning.empty())
            r.ok("accelerator", "kvm (/dev/kvm is a working hardware-assisted KVM)");
        else if (accel == "kvm")
            r.warn("accelerator", "kvm: " + warning);
        else if (h.accelerator == "tcg")
            r.ok("accelerator", "tcg (configured)");
        else
            r.warn("accelerator", "tcg: " + warning);
    } catch (const kata::Error& e) {
        r.fail("accelerator", e.what());
    }

    try {
        std::string why;
        std::string channel = hv::resolveAgentChannel(h.agentChannel, &why);
        r.ok("agent channel", channel + " (" + why + ")");
    } catch (const kata::Error& e) {
        r.fail("agent channel", e.what());
    }

    uint64_t hostMem = hv::hostMemoryMiB();
    if (h.defaultMemoryMiB == 0 || (hostMem && h.defaultMemoryMiB > hostMem))
        r.fail("guest memory", std::to_string(h.defaultMemoryMiB) + " MiB, host has " +
                                   std::to_string(hostMem) + " MiB");
    else
        r.ok("guest memory", std::to_string(h.defaultMemoryMiB) + " MiB of " +
                                 std::to_string(hostMem) + " MiB on the host");

    if (h.sharedFs == "virtio-fs") {
        if (auto why = fileProblem(h.virtioFsDaemon, true); why.empty())
            r.ok("shared fs", "virtio-fs with " + h.virtioFsDaemon);
        else
            r.fail("shared fs",
                   "virtio-fs needs virtio_fs_daemon " + h.virtioFsDaemon + ": " + why);
    } else {
        r.ok("shared fs", h.sharedFs);
    }

    if (r.failures) {
        std::cout << "System is not capable of running Kata Containers (" << r.failures
                  << " problem" << (r.failures > 1 ? "s" : "") << ")\n";
        return 1;
    }
    std::cout << "System is capable of running Kata Containers\n";
    return 0;
}

nlohmann::json envJson(const RuntimeConfig& cfg) {
    const auto& h = cfg.hypervisor;
    nlohmann::json j;
    j["Meta"] = {{"Version", "1.0.27"}};  // version of this report's format
    char self[4096] = {};
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    j["Runtime"] = {{"Path", n > 0 ? std::string(self, static_cast<size_t>(n)) : ""},
                    {"Version", kata::versionString()},
                    {"Config", {{"Path", cfg.path}}},
                    {"Debug", cfg.runtime.enableDebug},
                    {"InterNetworkingModel", cfg.runtime.internetworkingModel},
                    {"DisableNewNetNs", cfg.runtime.disableNewNetns},
                    {"SandboxCgroupOnly", cfg.runtime.sandboxCgroupOnly},
                    {"DisableGuestSeccomp", cfg.runtime.disableGuestSeccomp}};

    std::string accelWarning, accel, channelWhy, channel;
    try {
        accel = hv::resolveAccelerator(h.accelerator, &accelWarning);
    } catch (const kata::Error& e) {
        accel = "unusable";
        accelWarning = e.what();
    }
    try {
        channel = hv::resolveAgentChannel(h.agentChannel, &channelWhy);
    } catch (const kata::Error& e) {
        channel = "unusable";
        channelWhy = e.what();
    }
    j["Hypervisor"] = {
        {"Name", cfg.hypervisorName},
        {"Path", h.path},
        {"Version", qemuVersion(h.path)},
        {"MachineType", h.machineType},
        {"Accelerator",
         {{"Configured", h.accelerator}, {"Resolved", accel}, {"Note", accelWarning}}},
        {"Firmware", h.firmware},
        {"CPUFeatures", h.cpuFeatures},
        {"DefaultVCPUs", h.defaultVcpus},
        {"DefaultMaxVCPUs", h.defaultMaxVcpus},
        {"DefaultMemoryMiB", h.defaultMemoryMiB},
        {"MemorySlots", h.memorySlots},
        {"SharedFS", h.sharedFs},
        {"VirtioFSDaemon", h.virtioFsDaemon},
        {"Msize9p", h.msize9p},
        {"AgentChannel",
         {{"Configured", h.agentChannel}, {"Resolved", channel}, {"Note", channelWhy}}},
        {"BlockDeviceDriver", h.blockDeviceDriver},
        {"Debug", h.enableDebug},
        {"ExtraArgs", h.extraArgs}};

    hv::VmSpec spec;
    spec.sandboxId = "<sandbox-id>";
    spec.runDir = hv::defaultRunDir(spec.sandboxId);
    spec.extraKernelParams = kata::config::agentKernelParams(cfg);
    hv::QemuLaunchParams launch;
    launch.accelerator = accel;
    launch.agentChannel = channel == "vsock" ? "vsock" : "serial";
    j["Kernel"] = {{"Path", h.kernel}, {"Parameters", hv::buildKernelCommandLine(h, spec, launch)}};
    j["Initrd"] = {{"Path", h.initrd}};
    j["Image"] = {{"Path", h.image}};
    j["Agent"] = {{"Debug", cfg.agent.enableDebug},
                  {"Trace", cfg.agent.enableTracing},
                  {"DialTimeoutSec", cfg.agent.dialTimeoutSec},
                  {"DebugConsoleEnabled", cfg.agent.debugConsoleEnabled},
                  {"KernelModules", cfg.agent.kernelModules}};
    j["Factory"] = {{"Template", cfg.factory.enableTemplate},
                    {"TemplatePath", cfg.factory.templatePath}};
    utsname u{};
    ::uname(&u);
    hv::KvmProbe probe = hv::probeKvm();
    j["Host"] = {{"Kernel", u.release},
                 {"Architecture", u.machine},
                 {"CPUs", hv::hostCpuCount()},
                 {"MemTotalMiB", hv::hostMemoryMiB()},
                 {"KVM",
                  {{"DeviceOpens", probe.deviceOpens},
                   {"KvmIntel", probe.kvmIntel},
                   {"KvmAmd", probe.kvmAmd},
                   {"KvmPvm", probe.kvmPvm},
                   {"Unusable", hv::kvmUnusableReason(probe)}}},
                 {"VhostVsock", ::access("/dev/vhost-vsock", F_OK) == 0}};
    j["Warnings"] = cfg.warnings;
    return j;
}

// Kata prints env as TOML; so do we: one [Section] per object, nested objects flattened.
void printToml(const nlohmann::json& j, const std::string& prefix = "") {
    for (const auto& [key, value] : j.items())
        if (!value.is_object()) std::cout << key << " = " << value.dump() << "\n";
    for (const auto& [key, value] : j.items()) {
        if (!value.is_object()) continue;
        std::string name = prefix.empty() ? key : prefix + "." + key;
        std::cout << "\n[" << name << "]\n";
        printToml(value, name);
    }
}

[[noreturn]] void notImplemented(const std::string& what) {
    throw kata::Error(kata::StatusCode::kUnimplemented,
                      "kata-runtime " + what + ": not implemented yet");
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"kata-runtime: manage and inspect Kata Containers (kata-cpp)", "kata-runtime"};
    std::string configPath;
    app.add_option("--config,--kata-config", configPath,
                   "configuration file to use instead of the default lookup");
    app.set_version_flag("--version,-v", std::string("kata-runtime  : ") + kata::versionString());
    app.require_subcommand(1);

    auto* check = app.add_subcommand("check", "check whether this system can run Kata VMs");
    check->alias("kata-check");
    bool checkVerbose = false;
    check->add_flag("--verbose", checkVerbose, "accepted for compatibility");

    auto* env = app.add_subcommand("env", "show the resolved configuration and host facts");
    env->alias("kata-env");
    bool envJsonFlag = false;
    env->add_flag("--json", envJsonFlag, "print JSON instead of TOML");

    auto* version = app.add_subcommand("version", "print the version");
    auto* exec = app.add_subcommand("exec", "open a shell in a sandbox's VM (debug console)");
    exec->allow_extras();
    auto* metrics = app.add_subcommand("metrics", "print a sandbox's metrics");
    metrics->allow_extras();
    auto* paths = app.add_subcommand("config-paths", "print the configuration lookup order");

    CLI11_PARSE(app, argc, argv);

    try {
        if (*check) return runCheck(configPath);
        if (*env) {
            auto j = envJson(load(configPath));
            if (envJsonFlag)
                std::cout << j.dump(2) << "\n";
            else
                printToml(j);
            return 0;
        }
        if (*version) {
            std::cout << "kata-runtime  : " << kata::versionString() << "\n";
            return 0;
        }
        if (*paths) {
            for (const auto& p : kata::config::configSearchPaths(configPath, "kata-runtime"))
                std::cout << p << "\n";
            return 0;
        }
        if (*exec) notImplemented("exec");
        if (*metrics) notImplemented("metrics");
    } catch (const std::exception& e) {
        std::cerr << "kata-runtime: " << e.what() << "\n";
        return 1;
    }
    return 1;
}
