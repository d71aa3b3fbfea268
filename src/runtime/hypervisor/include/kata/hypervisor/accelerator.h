// Deciding between KVM and TCG. The probe reads the host; the decision is a pure function of
// the probe, so both halves are tested apart.
#pragma once

#include <string>

namespace kata::hypervisor {

struct KvmProbe {
    bool deviceOpens = false;  // /dev/kvm opened read-write
    std::string openError;     // why not, when it did not
    int apiVersion = -1;       // KVM_GET_API_VERSION (12 on every sane kernel)
    bool createVmWorks = false;
    std::string createVmError;
    bool kvmIntel = false, kvmAmd = false;  // /sys/module/kvm_intel, kvm_amd
    bool kvmPvm = false;                    // /sys/module/kvm_pvm: nested PVM hypervisor
};

// Looks at /dev/kvm and /sys/module; never blocks.
KvmProbe probeKvm(const std::string& devicePath = "/dev/kvm",
                  const std::string& sysModuleDir = "/sys/module");

// Empty when the probe shows a KVM that boots a standard guest kernel, else the reason.
std::string kvmUnusableReason(const KvmProbe& probe);

// The decision behind resolveAccelerator, for a given probe.
std::string decideAccelerator(const std::string& configured, const KvmProbe& probe,
                              std::string* warning);

}  // namespace kata::hypervisor
