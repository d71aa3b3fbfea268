#include "seccomp_filter.h"

#include <seccomp.h>

#include <cctype>
#include <cerrno>
#include <optional>
#include <string>
#include <vector>

#include "kata/common/error.h"
#include "sync.h"

namespace kata::jail {

SeccompFilter::~SeccompFilter() {
    if (ctx_) seccomp_release(static_cast<scmp_filter_ctx>(ctx_));
}

namespace {
uint32_t parseAction(const std::string& action, std::optional<uint32_t> errnoRet) {
    uint32_t err = errnoRet.value_or(EPERM);
    if (action == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
    if (action == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(err);
    if (action == "SCMP_ACT_KILL" || action == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
    if (action == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
    if (action == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
    if (action == "SCMP_ACT_TRACE") return SCMP_ACT_TRACE(err);
    if (action == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
    throw Error(StatusCode::kInvalidArgument, "seccomp action \"" + action + "\" is not supported");
}

scmp_compare parseOp(const std::string& op) {
    if (op == "SCMP_CMP_NE") return SCMP_CMP_NE;
    if (op == "SCMP_CMP_LT") return SCMP_CMP_LT;
    if (op == "SCMP_CMP_LE") return SCMP_CMP_LE;
    if (op == "SCMP_CMP_EQ") return SCMP_CMP_EQ;
    if (op == "SCMP_CMP_GE") return SCMP_CMP_GE;
    if (op == "SCMP_CMP_GT") return SCMP_CMP_GT;
    if (op == "SCMP_CMP_MASKED_EQ") return SCMP_CMP_MASKED_EQ;
    throw Error(StatusCode::kInvalidArgument, "seccomp operator \"" + op + "\" is not supported");
}

uint32_t parseArch(const std::string& arch) {
    std::string name = arch;
    if (name.rfind("SCMP_ARCH_", 0) == 0) name = name.substr(10);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    uint32_t a = seccomp_arch_resolve_name(name.c_str());
    if (a == 0)
        throw Error(StatusCode::kInvalidArgument,
                    "seccomp architecture \"" + arch + "\" is unknown");
    return a;
}
}  // namespace

std::unique_ptr<SeccompFilter> buildSeccompFilter(const grpc::LinuxSeccomp& s) {
    uint32_t def = parseAction(s.defaultaction(), std::nullopt);
    scmp_filter_ctx ctx = seccomp_init(def);
    if (!ctx) throw Error(StatusCode::kInvalidArgument, "seccomp_init: invalid default action");
    auto filter = std::make_unique<SeccompFilter>(ctx);
    // No-new-privileges is the spec's own switch; libseccomp must not set it behind our back.
    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    for (const auto& arch : s.architectures()) {
        int rc = seccomp_arch_add(ctx, parseArch(arch));
        if (rc != 0 && rc != -EEXIST) throw SystemError("seccomp_arch_add", arch, -rc);
    }
    for (const auto& flag : s.flags()) {
        if (flag == "SECCOMP_FILTER_FLAG_LOG")
            seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1);
        else if (flag == "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
            seccomp_attr_set(ctx, SCMP_FLTATR_CTL_SSB, 1);
        else if (flag != "SECCOMP_FILTER_FLAG_TSYNC")
            throw Error(StatusCode::kInvalidArgument,
                        "seccomp flag \"" + flag + "\" is not supported");
    }
    for (const auto& sc : s.syscalls()) {
        std::optional<uint32_t> errnoRet;
        if (sc.ErrnoRet_case() == grpc::LinuxSyscall::kErrnoret) errnoRet = sc.errnoret();
        uint32_t action = parseAction(sc.action(), errnoRet);
        if (action == def) continue;
        std::vector<scmp_arg_cmp> args;
        for (const auto& a : sc.args()) {
            scmp_arg_cmp cmp = {};
            cmp.arg = static_cast<unsigned int>(a.index());
            cmp.op = parseOp(a.op());
            cmp.datum_a = a.value();
            cmp.datum_b = a.valuetwo();
            args.push_back(cmp);
        }
        for (const auto& name : sc.names()) {
            int nr = seccomp_syscall_resolve_name(name.c_str());
            // Profiles list syscalls of every architecture; ones this one lacks are skipped.
            if (nr == __NR_SCMP_ERROR) continue;
            int rc = seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned int>(args.size()),
                                            args.data());
            if (rc != 0) throw SystemError("add seccomp rule", "for " + name, -rc);
        }
    }
    return filter;
}

void childLoadSeccomp(int syncFd, const SeccompFilter* filter) {
    if (!filter) return;
    int rc = seccomp_load(static_cast<scmp_filter_ctx>(filter->ctx()));
    if (rc != 0) childFail(syncFd, "load seccomp filter", "", -rc);
}

}  // namespace kata::jail
