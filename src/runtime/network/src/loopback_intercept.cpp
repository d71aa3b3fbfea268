#include "kata/network/loopback_intercept.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <map>

#include "kata/common/error.h"
#include "kata/network/pod_network.h"
#include "rtnl.h"

namespace kata::network {

namespace {

// Keys of the SOCKMAP: which listener takes which family.
constexpr uint32_t kKeyIpv4 = 0;
constexpr uint32_t kKeyIpv6 = 1;

long bpfCall(int cmd, bpf_attr* attr) { return ::syscall(__NR_bpf, cmd, attr, sizeof *attr); }

uint64_t ptr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

std::string describe(int err) {
    return std::strerror(err) + std::string(" (") + errnoName(err) + ")";
}

// ENOSYS/EPERM/EINVAL/... from bpf(2): the kernel cannot or will not do it here.
[[noreturn]] void refused(const std::string& what, int err, const std::string& detail = "") {
    throw Error(StatusCode::kUnavailable,
                what + ": " + describe(err) + (detail.empty() ? "" : "; " + detail));
}

// A tiny assembler: instructions with symbolic jump targets, resolved at the end.
class Program {
  public:
    void ins(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
        bpf_insn i{};
        i.code = code;
        i.dst_reg = dst & 0xf;
        i.src_reg = src & 0xf;
        i.off = off;
        i.imm = imm;
        insns_.push_back(i);
    }
    void movReg(uint8_t dst, uint8_t src) { ins(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0); }
    void movImm(uint8_t dst, int32_t imm) { ins(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm); }
    void addImm(uint8_t dst, int32_t imm) { ins(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, imm); }
    void loadU32(uint8_t dst, uint8_t src, int16_t off) {
        ins(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0);
    }
    void storeU32(uint8_t dst, int16_t off, uint8_t src) {
        ins(BPF_STX | BPF_MEM | BPF_W, dst, src, off, 0);
    }
    void loadMapFd(uint8_t dst, int fd) {
        ins(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, fd);
        ins(0, 0, 0, 0, 0);  // the upper half of the 64-bit immediate
    }
    void call(int32_t helper) { ins(BPF_JMP | BPF_CALL, 0, 0, 0, helper); }
    void exit() { ins(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }
    void jump(uint8_t op, uint8_t dst, int32_t imm, const std::string& label) {
        fixups_.emplace_back(insns_.size(), label);
        ins(BPF_JMP | op | BPF_K, dst, 0, 0, imm);
    }
    void goTo(const std::string& label) { jump(BPF_JA, 0, 0, label); }
    void label(const std::string& name) { labels_[name] = insns_.size(); }

    std::vector<bpf_insn> finish() {
        for (const auto& [at, name] : fixups_)
            insns_[at].off = int16_t(int(labels_.at(name)) - int(at) - 1);
        return insns_;
    }

  private:
    std::vector<bpf_insn> insns_;
    std::vector<std::pair<size_t, std::string>> fixups_;
    std::map<std::string, size_t> labels_;
};

// For TCP to 127.0.0.1 (key 0) or ::1 (key 1): look the listener up in the SOCKMAP, assign it,
// release the reference the lookup took. Everything else, and a missing listener, goes on to
// the kernel's own lookup (SK_PASS without an assignment).
std::vector<bpf_insn> interceptProgram(int mapFd) {
    constexpr uint8_t r0 = BPF_REG_0, r1 = BPF_REG_1, r2 = BPF_REG_2, r3 = BPF_REG_3,
                      r6 = BPF_REG_6, r7 = BPF_REG_7, fp = BPF_REG_10;
    uint32_t lo4 = htonl(INADDR_LOOPBACK);
    uint32_t lo6[4];
    std::memcpy(lo6, &in6addr_loopback, sizeof lo6);
    const auto ip6 = [](int word) {
        return int16_t(offsetof(bpf_sk_lookup, local_ip6) + 4 * word);
    };

    Program p;
    p.movReg(r6, r1);  // the context
    p.loadU32(r2, r6, offsetof(bpf_sk_lookup, protocol));
    p.jump(BPF_JNE, r2, IPPROTO_TCP, "pass");
    p.loadU32(r2, r6, offsetof(bpf_sk_lookup, family));
    p.jump(BPF_JEQ, r2, AF_INET, "v4");
    p.jump(BPF_JNE, r2, AF_INET6, "pass");
    for (int w = 0; w < 4; ++w) {
        p.loadU32(r2, r6, ip6(w));
        p.jump(BPF_JNE, r2, int32_t(lo6[w]), "pass");
    }
    p.movImm(r2, kKeyIpv6);
    p.goTo("lookup");
    p.label("v4");
    p.loadU32(r2, r6, offsetof(bpf_sk_lookup, local_ip4));
    p.jump(BPF_JNE, r2, int32_t(lo4), "pass");
    p.movImm(r2, kKeyIpv4);
    p.label("lookup");
    p.storeU32(fp, -4, r2);
    p.movReg(r2, fp);
    p.addImm(r2, -4);
    p.loadMapFd(r1, mapFd);
    p.call(BPF_FUNC_map_lookup_elem);
    p.jump(BPF_JEQ, r0, 0, "pass");
    p.movReg(r7, r0);
    p.movReg(r1, r6);
    p.movReg(r2, r7);
    p.movImm(r3, 0);
    p.call(BPF_FUNC_sk_assign);
    p.movReg(r1, r7);
    p.call(BPF_FUNC_sk_release);
    p.label("pass");
    p.movImm(r0, SK_PASS);
    p.exit();
    return p.finish();
}

UniqueFd createSockmap() {
    bpf_attr a{};
    a.map_type = BPF_MAP_TYPE_SOCKMAP;
    a.key_size = sizeof(uint32_t);
    a.value_size = sizeof(uint64_t);
    a.max_entries = 2;
    std::strncpy(a.map_name, "kata_pf_lo", sizeof a.map_name - 1);
    UniqueFd fd(int(bpfCall(BPF_MAP_CREATE, &a)));
    if (!fd) refused("create BPF SOCKMAP for the loopback listeners", errno);
    return fd;
}

void putListener(int mapFd, uint32_t key, int sockFd) {
    uint64_t value = uint64_t(sockFd);
    bpf_attr a{};
    a.map_fd = uint32_t(mapFd);
    a.key = ptr(&key);
    a.value = ptr(&value);
    a.flags = BPF_ANY;
    if (bpfCall(BPF_MAP_UPDATE_ELEM, &a) != 0)
        refused("put the listening socket for " +
                    std::string(key == kKeyIpv4 ? "127.0.0.1" : "[::1]") + " into the BPF SOCKMAP",
                errno);
}

UniqueFd loadProgram(int mapFd) {
    const std::vector<bpf_insn> insns = interceptProgram(mapFd);
    static const char kLicense[] = "GPL";
    auto load = [&](char* log, uint32_t logSize) {
        bpf_attr a{};
        a.prog_type = BPF_PROG_TYPE_SK_LOOKUP;
        a.expected_attach_type = BPF_SK_LOOKUP;
        a.insns = ptr(insns.data());
        a.insn_cnt = uint32_t(insns.size());
        a.license = ptr(kLicense);
        std::strncpy(a.prog_name, "kata_pf_lo", sizeof a.prog_name - 1);
        if (log) {
            a.log_buf = ptr(log);
            a.log_size = logSize;
            a.log_level = 1;
        }
        return UniqueFd(int(bpfCall(BPF_PROG_LOAD, &a)));
    };
    UniqueFd fd = load(nullptr, 0);
    if (fd) return fd;
    int err = errno;
    // Again with the verifier's log, which names what it did not accept.
    std::string log(64 * 1024, '\0');
    UniqueFd again = load(log.data(), uint32_t(log.size()));
    if (again) return again;
    log.resize(std::strlen(log.c_str()));
    while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
    if (auto nl = log.rfind('\n'); nl != std::string::npos && log.size() > 600)
        log = "..." + log.substr(log.size() - 600);
    refused("load BPF_PROG_TYPE_SK_LOOKUP program", err, log.empty() ? "" : "verifier: " + log);
}

UniqueFd listenLoopback(int family) {
    UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) throwErrno("create listening socket", family == AF_INET ? "127.0.0.1" : "[::1]");
    int one = 1;
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
        // The address needs not be up: sk_lookup hands connections over whatever is bound.
        ::setsockopt(fd.get(), IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    } else {
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one);
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    }
    const char* what = family == AF_INET ? "127.0.0.1:0" : "[::1]:0";
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) throwErrno("bind", what);
    if (::listen(fd.get(), SOMAXCONN) != 0) throwErrno("listen on", what);
    return fd;
}

}  // namespace

std::unique_ptr<LoopbackIntercept> LoopbackIntercept::attach(const std::string& netnsPath) {
    std::unique_ptr<LoopbackIntercept> li(new LoopbackIntercept());
    UniqueFd netns = detail::openNetns(netnsPath);
    runInNetns(netns.get(), netnsPath, [&] {
        li->listeners_.push_back(listenLoopback(AF_INET));
        try {
            li->listeners_.push_back(listenLoopback(AF_INET6));
        } catch (const SystemError& e) {
            // No IPv6 in this namespace: IPv4 alone, as containerd tries it first.
            if (e.err() != EAFNOSUPPORT && e.err() != EADDRNOTAVAIL) throw;
        }
    });
    UniqueFd map = createSockmap();
    putListener(map.get(), kKeyIpv4, li->listeners_[0].get());
    if (li->listeners_.size() > 1) putListener(map.get(), kKeyIpv6, li->listeners_[1].get());
    UniqueFd prog = loadProgram(map.get());

    bpf_attr a{};
    a.link_create.prog_fd = uint32_t(prog.get());
    a.link_create.target_fd = uint32_t(netns.get());
    a.link_create.attach_type = BPF_SK_LOOKUP;
    li->link_ = UniqueFd(int(bpfCall(BPF_LINK_CREATE, &a)));
    if (!li->link_) refused("attach the sk_lookup program to netns " + netnsPath, errno);
    // The link holds the program and the program its map: their own fds can go.
    return li;
}

std::vector<UniqueFd> LoopbackIntercept::takeListeners() { return std::move(listeners_); }

}  // namespace kata::network
