#include "kata/hypervisor/accelerator.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/hypervisor/hypervisor.h"

namespace kata::hypervisor {

namespace {

bool isDir(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string errnoText(int err) {
    return std::string(std::strerror(err)) + " (" + errnoName(err) + ")";
}

}  // namespace

KvmProbe probeKvm(const std::string& devicePath, const std::string& sysModuleDir) {
    KvmProbe probe;
    probe.kvmIntel = isDir(sysModuleDir + "/kvm_intel");
    probe.kvmAmd = isDir(sysModuleDir + "/kvm_amd");
    probe.kvmPvm = isDir(sysModuleDir + "/kvm_pvm");

    // O_NONBLOCK: a character device that is not KVM must not make us wait.
    UniqueFd kvm(::open(devicePath.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK));
    if (!kvm) {
        probe.openError = "open " + devicePath + ": " + errnoText(errno);
        return probe;
    }
    probe.deviceOpens = true;
    probe.apiVersion = ::ioctl(kvm.get(), KVM_GET_API_VERSION, 0);
    if (probe.apiVersion != KVM_API_VERSION) return probe;
    int vm = ::ioctl(kvm.get(), KVM_CREATE_VM, 0);
    if (vm < 0) {
        probe.createVmError = "KVM_CREATE_VM on " + devicePath + ": " + errnoText(errno);
        return probe;
    }
    ::close(vm);
    probe.createVmWorks = true;
    return probe;
}

std::string kvmUnusableReason(const KvmProbe& p) {
    if (!p.deviceOpens) return p.openError.empty() ? "/dev/kvm cannot be opened" : p.openError;
    if (p.apiVersion != KVM_API_VERSION)
        return "KVM_GET_API_VERSION returned " + std::to_string(p.apiVersion) + ", expected " +
               std::to_string(KVM_API_VERSION);
    if (!p.createVmWorks) return p.createVmError.empty() ? "KVM_CREATE_VM failed" : p.createVmError;
    if (!p.kvmIntel && !p.kvmAmd) {
        if (p.kvmPvm)
            return "/dev/kvm is the PVM nested hypervisor (kvm_pvm module), which cannot boot a "
                   "standard guest kernel (no kvm_intel or kvm_amd loaded)";
        return "neither kvm_intel nor kvm_amd is loaded, so /dev/kvm is not a standard "
               "hardware-assisted KVM";
    }
    return "";
}

std::string decideAccelerator(const std::string& configured, const KvmProbe& probe,
                              std::string* warning) {
    if (warning) warning->clear();
    if (configured == "tcg") return "tcg";
    if (configured == "kvm") {
        std::string why = kvmUnusableReason(probe);
        // A KVM that opens and creates VMs is honoured when asked for by name, even if it
        // looks non-standard: the operator knows their host; we only say what we saw.
        if (!probe.deviceOpens || probe.apiVersion != KVM_API_VERSION || !probe.createVmWorks)
            throw Error(StatusCode::kFailedPrecondition,
                        "accelerator \"kvm\" configured but KVM is not usable: " + why);
        if (!why.empty() && warning) *warning = "accelerator \"kvm\" forced although " + why;
        return "kvm";
    }
    if (configured == "auto" || configured.empty()) {
        std::string why = kvmUnusableReason(probe);
        if (why.empty()) return "kvm";
        if (warning) *warning = "falling back to TCG software emulation (slow): " + why;
        return "tcg";
    }
    throw Error(StatusCode::kInvalidArgument,
                "accelerator \"" + configured + "\" unknown: expected auto, kvm or tcg");
}

std::string resolveAccelerator(const std::string& configured, std::string* warning) {
    if (configured == "tcg") {
        if (warning) warning->clear();
        return "tcg";
    }
    return decideAccelerator(configured, probeKvm(), warning);
}

}  // namespace kata::hypervisor
