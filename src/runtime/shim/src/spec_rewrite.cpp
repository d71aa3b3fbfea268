#include "spec_rewrite.h"

#include <algorithm>

#include "paths.h"

namespace kata::shim {

namespace {

bool hasPrefixPath(const std::string& path, const std::string& prefix) {
    return path == prefix || path.rfind(prefix + "/", 0) == 0;
}

bool isBind(const grpc::Mount& m) {
    if (m.type() == "bind") return true;
    return std::any_of(m.options().begin(), m.options().end(),
                       [](const std::string& o) { return o == "bind" || o == "rbind"; });
}

bool isReadonly(const grpc::Mount& m) {
    return std::any_of(m.options().begin(), m.options().end(),
                       [](const std::string& o) { return o == "ro"; });
}

std::string basenameOf(const std::string& p) {
    std::string s = p;
    while (s.size() > 1 && s.back() == '/') s.pop_back();
    auto slash = s.rfind('/');
    return slash == std::string::npos ? s : s.substr(slash + 1);
}

}  // namespace

bool isEmptyDirMount(const grpc::Mount& m) {
    return isBind(m) && m.source().find(kEmptyDirMarker) != std::string::npos;
}

std::vector<grpc::Storage> rewriteEmptyDirs(
    grpc::Spec& spec, const std::function<bool(const std::string&)>& isTmpfs) {
    std::vector<grpc::Storage> out;
    for (auto& m : *spec.mutable_mounts()) {
        if (!isEmptyDirMount(m)) continue;
        const bool memory = isTmpfs && isTmpfs(m.source());
        const std::string guestPath = std::string(memory ? kGuestEphemeralDir : kGuestLocalDir) +
                                      "/" + basenameOf(m.source());
        grpc::Storage st;
        st.set_mount_point(guestPath);
        if (memory) {
            st.set_driver("ephemeral");
            st.set_source("tmpfs");
            st.set_fstype("tmpfs");
        } else {
            st.set_driver("local");
            st.set_source("local");
            st.set_fstype("local");
            st.add_options("mode=0777");
        }
        bool dup = false;
        for (const auto& o : out) dup = dup || o.mount_point() == guestPath;
        if (!dup) out.push_back(st);
        m.set_source(guestPath);
        m.set_type("bind");
    }
    return out;
}

std::vector<HostBindMount> hostBindMounts(const grpc::Spec& spec, const std::string& cid) {
    std::vector<HostBindMount> out;
    for (int i = 0; i < spec.mounts_size(); ++i) {
        const grpc::Mount& m = spec.mounts(i);
        if (!isBind(m) || m.source().empty() || m.source()[0] != '/') continue;
        if (isEmptyDirMount(m)) continue;
        const std::string& dst = m.destination();
        if (hasPrefixPath(dst, "/proc") || hasPrefixPath(dst, "/sys") ||
            hasPrefixPath(dst, "/dev")) {
            continue;
        }
        out.push_back({i, m.source(), cid + "-" + std::to_string(i) + "-" + basenameOf(m.source()),
                       isReadonly(m)});
    }
    return out;
}

void rewriteSpecForGuest(grpc::Spec& spec, const std::string& cid,
                         const std::vector<HostBindMount>& shared, const GuestSpecOptions& opts) {
    spec.mutable_root()->set_path(containerRootfsGuest(cid));
    spec.clear_hooks();

    for (const HostBindMount& b : shared) {
        spec.mutable_mounts(b.index)->set_source(std::string(kGuestSharedDir) + "/" + b.shareName);
    }
    // /dev/shm bound from the host (CRI's sandbox shm) cannot be shared; the guest gets its own.
    for (auto& m : *spec.mutable_mounts()) {
        if (m.destination() == "/dev/shm" && isBind(m)) {
            m.set_type("tmpfs");
            m.set_source("shm");
            m.clear_options();
            for (const char* o : {"nosuid", "noexec", "nodev", "mode=1777"}) m.add_options(o);
        }
    }

    if (spec.has_process()) spec.mutable_process()->clear_selinuxlabel();
    if (!spec.has_linux()) return;
    grpc::Linux* lx = spec.mutable_linux();
    lx->clear_mountlabel();
    if (opts.disableGuestSeccomp) lx->clear_seccomp();

    google::protobuf::RepeatedPtrField<grpc::LinuxNamespace> kept;
    for (const auto& ns : lx->namespaces()) {
        if (ns.type() == "network" || ns.type() == "cgroup") continue;
        grpc::LinuxNamespace n = ns;
        n.clear_path();
        *kept.Add() = n;
    }
    lx->mutable_namespaces()->Swap(&kept);

    lx->clear_devices();
    if (lx->has_resources()) {
        grpc::LinuxResources* r = lx->mutable_resources();
        r->clear_devices();
        r->clear_blockio();
        r->clear_hugepagelimits();
        r->clear_network();
        if (r->has_cpu()) {
            r->mutable_cpu()->clear_cpus();
            r->mutable_cpu()->clear_mems();
        }
    }

    const std::string& cg = lx->cgroupspath();
    if (!cg.empty() && cg[0] != '/') {
        auto first = cg.find(':');
        auto second = first == std::string::npos ? first : cg.find(':', first + 1);
        if (second != std::string::npos) {
            std::string prefix = cg.substr(first + 1, second - first - 1);
            std::string name = cg.substr(second + 1);
            lx->set_cgroupspath(prefix.empty() ? "/" + name : "/" + prefix + "/" + name);
        }
    }
}

}  // namespace kata::shim
