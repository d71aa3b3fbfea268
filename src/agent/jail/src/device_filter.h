// cgroup v2 device control: the spec's linux.resources.devices rules compiled into a
// BPF_PROG_TYPE_CGROUP_DEVICE program (raw bpf(2), no libbpf) attached to the container's cgroup.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <string>
#include <vector>

#include "agent/oci.pb.h"
#include "kata/common/fd.h"

namespace kata::jail {

struct DeviceRule {
    bool allow = false;
    char type = 'a';     // 'a', 'b' or 'c'
    int64_t major = -1;  // -1: any
    int64_t minor = -1;  // -1: any
    std::string access = "rwm";
};

// The spec's rules followed by the devices every container gets (as runc appends them); the
// one list both cgroup backends apply.
std::vector<DeviceRule> deviceRules(const grpc::LinuxResources& resources);

// The rule as cgroup v1's devices.allow/devices.deny take it: "c 1:3 rwm", "b 8:* r", "a".
std::string cgroupV1DeviceRule(const DeviceRule& rule);

// The program for rules: the last matching rule decides, nothing matching denies. A rule matches
// when type, major and minor match and the requested access is a subset of the rule's access.
std::vector<bpf_insn> deviceFilterProgram(const std::vector<DeviceRule>& rules);

// Loads a program; throws SystemError("bpf BPF_PROG_LOAD", ...) naming the errno.
UniqueFd loadDeviceFilter(const std::vector<bpf_insn>& program, const std::string& what);

// Owns the program attached to one cgroup: replace() attaches the new one before detaching the
// old (no moment without a filter), the destructor detaches.
class DeviceFilter {
  public:
    explicit DeviceFilter(std::string cgroupDir) : dir_(std::move(cgroupDir)) {}
    ~DeviceFilter();
    DeviceFilter(const DeviceFilter&) = delete;
    DeviceFilter& operator=(const DeviceFilter&) = delete;

    void replace(const std::vector<bpf_insn>& program);
    void detach();
    bool attached() const { return prog_.get() >= 0; }

  private:
    std::string dir_;
    UniqueFd prog_;
};

// True when err from loading/attaching means the kernel has no cgroup BPF device support.
bool isBpfUnsupported(int err);

}  // namespace kata::jail
