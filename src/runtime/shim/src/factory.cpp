#include "factory.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "timing.h"

namespace kata::shim {

namespace fs = std::filesystem;

namespace {

// An exclusive flock held for the object's lifetime.
UniqueFd lockFile(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) throwErrno("open template lock", path);
    while (::flock(fd.get(), LOCK_EX) != 0) {
        if (errno != EINTR) throwErrno("lock template", path);
    }
    return fd;
}

void makeDir(const std::string& path) {
    std::error_code ec;
    fs::create_directories(path, ec);
    if (ec) throw SystemError("create template dir", path, ec.value());
}

std::string fileIdentity(const std::string& path) {
    if (path.empty()) return "-";
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return path + " (missing)";
    return path + " size=" + std::to_string(st.st_size) +
           " mtime=" + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

std::string readFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The state is usable only if it was made from this fingerprint.
bool stateMatches(const TemplateFiles& t, const std::string& fingerprint) {
    return fs::exists(t.state) && readFile(t.fingerprint) == fingerprint;
}

}  // namespace

std::string templateFingerprint(const config::RuntimeConfig& cfg) {
    const auto& h = cfg.hypervisor;
    std::ostringstream f;
    f << "qemu " << fileIdentity(h.path) << "\n"
      << "kernel " << fileIdentity(h.kernel) << "\n"
      << "initrd " << fileIdentity(h.initrd) << "\n"
      << "image " << fileIdentity(h.image) << "\n"
      << "firmware " << fileIdentity(h.firmware) << "\n"
      << "machine " << h.machineType << " accelerator " << h.accelerator << " cpu " << h.cpuFeatures
      << "\n"
      << "vcpus " << h.defaultVcpus << "/" << h.defaultMaxVcpus << " memory " << h.defaultMemoryMiB
      << " slots " << h.memorySlots << "\n"
      << "shared_fs " << h.sharedFs << " msize " << h.msize9p << " channel " << h.agentChannel
      << " block " << h.blockDeviceDriver << "\n"
      << "kernel_params " << h.kernelParams << "\n"
      << "agent_params " << config::agentKernelParams(cfg) << "\n"
      << "debug " << h.enableDebug << "\n";
    for (const auto& a : h.extraArgs) f << "arg " << a << "\n";
    return f.str();
}

TemplateFiles templateFiles(const std::string& templatePath) {
    TemplateFiles t;
    t.dir = templatePath;
    t.state = templatePath + "/state";
    t.lock = templatePath + "/lock";
    t.vmRunDir = templatePath + "/vm";
    t.sharedDir = templatePath + "/shared";
    t.fingerprint = templatePath + "/fingerprint";
    return t;
}

bool templateUsable(const config::RuntimeConfig& cfg, std::string* why) {
    if (cfg.hypervisor.sharedFs == "virtio-fs") {
        if (why) *why = "shared_fs virtio-fs (its vhost-user device cannot be restored)";
        return false;
    }
    if (cfg.factory.templatePath.empty()) {
        if (why) *why = "template_path is empty";
        return false;
    }
    return true;
}

std::string ensureTemplate(const config::RuntimeConfig& cfg, const SandboxDeps& deps,
                           const log::Logger& parentLog) {
    const TemplateFiles t = templateFiles(cfg.factory.templatePath);
    log::Logger log = parentLog.with("template", t.state);
    const std::string fingerprint = templateFingerprint(cfg);
    if (stateMatches(t, fingerprint)) return t.state;
    makeDir(t.dir);
    UniqueFd lock = lockFile(t.lock);
    if (stateMatches(t, fingerprint)) return t.state;  // another shim made it while we waited
    if (fs::exists(t.state)) {
        log.info("VM template was made from another configuration or guest: making it anew");
        ::unlink(t.state.c_str());
    }

    StepTimer timer;
    const bool share = cfg.hypervisor.sharedFs != "none";
    if (share) makeDir(t.sharedDir);
    hypervisor::VmSpec spec;
    spec.sandboxId = "template";
    spec.runDir = t.vmRunDir;
    // The device must be there (the restored VM has one), but the guest never mounts it:
    // QEMU cannot migrate a mounted 9p export, and each sandbox exports its own dir.
    spec.sharedDir = share ? t.sharedDir : "";
    spec.extraKernelParams = config::agentKernelParams(cfg);
    log.info("no VM template yet: booting the template VM");
    auto vm = deps.createHypervisor(cfg.hypervisor, spec);
    try {
        vm->start();
        {
            auto agent = deps.connectAgent(vm->agentAddress(),
                                           std::chrono::seconds(cfg.agent.dialTimeoutSec));
            // No request in flight when the state is saved: restored VMs see a fresh client.
            agent->close();
        }
        vm->saveTemplate(t.state);
        const std::string tmp = t.fingerprint + ".tmp";
        std::ofstream(tmp) << fingerprint;
        if (::rename(tmp.c_str(), t.fingerprint.c_str()) != 0)
            throwErrno("rename template fingerprint to", t.fingerprint);
    } catch (const Error& e) {
        std::string tail = vm->consoleTail(20);
        try {
            vm->stop(std::chrono::seconds(5));
        } catch (const std::exception&) {
        }
        throw Error(e.code(), "make VM template " + t.state + ": " + e.what() +
                                  (tail.empty() ? "" : "; guest console:\n" + tail));
    }
    vm->stop(std::chrono::seconds(5));
    timer.done(log, "template-create", "VM template saved");
    return t.state;
}

void destroyTemplate(const std::string& templatePath) {
    const TemplateFiles t = templateFiles(templatePath);
    if (!fs::exists(t.dir)) return;
    UniqueFd lock = lockFile(t.lock);
    hypervisor::cleanupStaleVm(t.vmRunDir);
    std::error_code ec;
    for (const auto& p : {t.state, t.state + ".tmp", t.fingerprint, t.sharedDir}) {
        fs::remove_all(p, ec);
        if (ec) throw SystemError("remove", p, ec.value());
    }
    ::unlink(t.lock.c_str());
    fs::remove(t.dir, ec);  // only if empty: template_path may be shared with other files
}

}  // namespace kata::shim
