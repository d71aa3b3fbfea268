#include "device_filter.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kata/common/error.h"
#include "kata/common/log.h"

namespace kata::jail {

namespace {

// Devices every container gets, whatever the spec's device rules say: null, zero, full, random,
// urandom, tty, console, ptmx and the pty slaves.
const DeviceRule kDefaultAllowed[] = {
    {true, 'c', 1, 3, "rwm"}, {true, 'c', 1, 5, "rwm"}, {true, 'c', 1, 7, "rwm"},
    {true, 'c', 1, 8, "rwm"}, {true, 'c', 1, 9, "rwm"}, {true, 'c', 5, 0, "rwm"},
    {true, 'c', 5, 1, "rwm"}, {true, 'c', 5, 2, "rwm"}, {true, 'c', 136, -1, "rwm"},
};

bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
    bpf_insn i{};
    i.code = code;
    i.dst_reg = dst;
    i.src_reg = src;
    i.off = off;
    i.imm = imm;
    return i;
}

uint32_t accessBits(const std::string& access) {
    uint32_t bits = 0;
    for (char c : access) {
        if (c == 'r')
            bits |= BPF_DEVCG_ACC_READ;
        else if (c == 'w')
            bits |= BPF_DEVCG_ACC_WRITE;
        else if (c == 'm')
            bits |= BPF_DEVCG_ACC_MKNOD;
        else
            throw Error(StatusCode::kInvalidArgument,
                        "device cgroup rule: invalid access \"" + access + "\"");
    }
    return bits;
}

long sysBpf(int cmd, bpf_attr* attr) { return ::syscall(SYS_bpf, cmd, attr, sizeof(*attr)); }

constexpr uint32_t kAllAccess = BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD;

}  // namespace

std::vector<DeviceRule> deviceRules(const grpc::LinuxResources& r) {
    std::vector<DeviceRule> rules;
    for (const auto& d : r.devices()) {
        DeviceRule rule;
        rule.allow = d.allow();
        std::string type = d.type().empty() ? "a" : d.type();
        if (type != "a" && type != "b" && type != "c")
            throw Error(StatusCode::kInvalidArgument,
                        "device cgroup rule: invalid type \"" + type + "\"");
        rule.type = type[0];
        rule.major = d.major() < 0 ? -1 : d.major();
        rule.minor = d.minor() < 0 ? -1 : d.minor();
        rule.access = d.access().empty() ? "rwm" : d.access();
        rules.push_back(rule);
    }
    for (const auto& d : kDefaultAllowed) rules.push_back(d);
    return rules;
}

std::string cgroupV1DeviceRule(const DeviceRule& rule) {
    if (rule.type == 'a') return "a";
    auto num = [](int64_t v) { return v < 0 ? std::string("*") : std::to_string(v); };
    return std::string(1, rule.type) + " " + num(rule.major) + ":" + num(rule.minor) + " " +
           rule.access;
}

std::vector<bpf_insn> deviceFilterProgram(const std::vector<DeviceRule>& rules) {
    // r1 = struct bpf_cgroup_dev_ctx *; r2 = type, r3 = access, r4 = major, r5 = minor.
    std::vector<bpf_insn> p = {
        insn(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 0, 0),
        insn(BPF_ALU | BPF_AND | BPF_K, 2, 0, 0, 0xffff),
        insn(BPF_LDX | BPF_MEM | BPF_W, 3, 1, 0, 0),
        insn(BPF_ALU | BPF_RSH | BPF_K, 3, 0, 0, 16),
        insn(BPF_LDX | BPF_MEM | BPF_W, 4, 1, 4, 0),
        insn(BPF_LDX | BPF_MEM | BPF_W, 5, 1, 8, 0),
    };
    // Last match wins: test the rules from the last one back, the first hit returns.
    for (auto it = rules.rbegin(); it != rules.rend(); ++it) {
        const DeviceRule& rule = *it;
        std::vector<bpf_insn> block;
        std::vector<size_t> skips;  // jumps to the end of this block
        if (rule.type != 'a') {
            int32_t t = rule.type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR;
            skips.push_back(block.size());
            block.push_back(insn(BPF_JMP | BPF_JNE | BPF_K, 2, 0, 0, t));
        }
        uint32_t acc = accessBits(rule.access);
        if (acc != kAllAccess) {
            // A request asking for more than the rule grants (or denies) is not this rule's.
            block.push_back(insn(BPF_ALU | BPF_MOV | BPF_X, 1, 3, 0, 0));
            block.push_back(insn(BPF_ALU | BPF_AND | BPF_K, 1, 0, 0, static_cast<int32_t>(~acc)));
            skips.push_back(block.size());
            block.push_back(insn(BPF_JMP | BPF_JNE | BPF_K, 1, 0, 0, 0));
        }
        if (rule.major >= 0) {
            skips.push_back(block.size());
            block.push_back(
                insn(BPF_JMP | BPF_JNE | BPF_K, 4, 0, 0, static_cast<int32_t>(rule.major)));
        }
        if (rule.minor >= 0) {
            skips.push_back(block.size());
            block.push_back(
                insn(BPF_JMP | BPF_JNE | BPF_K, 5, 0, 0, static_cast<int32_t>(rule.minor)));
        }
        block.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, rule.allow ? 1 : 0));
        block.push_back(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
        for (size_t s : skips) block[s].off = static_cast<int16_t>(block.size() - (s + 1));
        p.insert(p.end(), block.begin(), block.end());
        // A rule matching everything makes every earlier rule unreachable.
        if (skips.empty()) return p;
    }
    p.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0));
    p.push_back(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    return p;
}

UniqueFd loadDeviceFilter(const std::vector<bpf_insn>& program, const std::string& what) {
    static const char kLicense[] = "Apache-2.0";
    std::vector<char> logBuf(16384);
    bpf_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = reinterpret_cast<uint64_t>(program.data());
    attr.insn_cnt = static_cast<uint32_t>(program.size());
    attr.license = reinterpret_cast<uint64_t>(kLicense);
    attr.log_buf = reinterpret_cast<uint64_t>(logBuf.data());
    attr.log_size = static_cast<uint32_t>(logBuf.size());
    attr.log_level = 1;
    long fd = sysBpf(BPF_PROG_LOAD, &attr);
    if (fd < 0) {
        int err = errno;
        std::string verifier(logBuf.data());
        if (!verifier.empty() && err == EACCES)
            throw SystemError("bpf BPF_PROG_LOAD device filter",
                              what + " (verifier: " + verifier + ")", err);
        throw SystemError("bpf BPF_PROG_LOAD device filter", what, err);
    }
    return UniqueFd(static_cast<int>(fd));
}

bool isBpfUnsupported(int err) { return err == ENOSYS || err == EINVAL || err == EOPNOTSUPP; }

void DeviceFilter::replace(const std::vector<bpf_insn>& program) {
    UniqueFd prog = loadDeviceFilter(program, dir_);
    UniqueFd cg(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cg) throwErrno("open cgroup", dir_);
    bpf_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.target_fd = static_cast<uint32_t>(cg.get());
    attr.attach_bpf_fd = static_cast<uint32_t>(prog.get());
    attr.attach_type = BPF_CGROUP_DEVICE;
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    if (sysBpf(BPF_PROG_ATTACH, &attr) != 0) throwErrno("bpf BPF_PROG_ATTACH device filter", dir_);
    std::swap(prog, prog_);
    if (prog.get() >= 0) {
        std::memset(&attr, 0, sizeof attr);
        attr.target_fd = static_cast<uint32_t>(cg.get());
        attr.attach_bpf_fd = static_cast<uint32_t>(prog.get());
        attr.attach_type = BPF_CGROUP_DEVICE;
        if (sysBpf(BPF_PROG_DETACH, &attr) != 0)
            throwErrno("bpf BPF_PROG_DETACH old device filter", dir_);
    }
}

void DeviceFilter::detach() {
    if (prog_.get() < 0) return;
    UniqueFd prog = std::move(prog_);
    UniqueFd cg(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cg) {
        if (errno == ENOENT) return;  // the cgroup is gone, and its programs with it
        throwErrno("open cgroup", dir_);
    }
    bpf_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.target_fd = static_cast<uint32_t>(cg.get());
    attr.attach_bpf_fd = static_cast<uint32_t>(prog.get());
    attr.attach_type = BPF_CGROUP_DEVICE;
    if (sysBpf(BPF_PROG_DETACH, &attr) != 0 && errno != ENOENT)
        throwErrno("bpf BPF_PROG_DETACH device filter", dir_);
}

DeviceFilter::~DeviceFilter() {
    try {
        detach();
    } catch (const std::exception& e) {
        log::Logger("jail").with("cgroup", dir_).warn(e.what());
    }
}

}  // namespace kata::jail
