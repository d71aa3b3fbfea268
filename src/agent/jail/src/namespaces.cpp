#include "namespaces.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "kata/common/error.h"
#include "sync.h"

namespace kata::jail {

namespace {
struct NsInfo {
    const char* specName;
    const char* procName;
    int flag;
};
// setns order: the user namespace first (it grants rights over the others), mount last.
constexpr NsInfo kNamespaces[] = {
    {"user", "user", CLONE_NEWUSER}, {"ipc", "ipc", CLONE_NEWIPC},
    {"uts", "uts", CLONE_NEWUTS},    {"network", "net", CLONE_NEWNET},
    {"pid", "pid", CLONE_NEWPID},    {"cgroup", "cgroup", CLONE_NEWCGROUP},
    {"mount", "mnt", CLONE_NEWNS},
};

int orderOf(int type) {
    for (size_t i = 0; i < std::size(kNamespaces); ++i)
        if (kNamespaces[i].flag == type) return static_cast<int>(i);
    return 100;
}
}  // namespace

const char* namespaceName(int type) {
    for (const auto& ns : kNamespaces)
        if (ns.flag == type) return ns.specName;
    return "unknown";
}

bool NamespacePlan::has(int type) const {
    if (cloneFlags & type) return true;
    return std::any_of(joins.begin(), joins.end(), [&](const auto& j) { return j.type == type; });
}

NamespacePlan planNamespaces(const grpc::Spec& spec, const std::string& sandboxPidNsPath) {
    NamespacePlan plan;
    for (const auto& ns : spec.linux().namespaces()) {
        const NsInfo* info = nullptr;
        for (const auto& n : kNamespaces)
            if (ns.type() == n.specName) info = &n;
        if (!info)
            throw Error(StatusCode::kInvalidArgument,
                        "namespace type \"" + ns.type() + "\" is not supported");
        if (info->flag == CLONE_NEWPID && !sandboxPidNsPath.empty()) continue;
        if (ns.path().empty())
            plan.cloneFlags |= info->flag;
        else
            plan.joins.push_back({info->flag, ns.path()});
    }
    if (!sandboxPidNsPath.empty()) plan.joins.push_back({CLONE_NEWPID, sandboxPidNsPath});
    // A container always gets its own mount namespace: the rootfs is set up in it.
    if (!plan.has(CLONE_NEWNS)) plan.cloneFlags |= CLONE_NEWNS;
    std::stable_sort(plan.joins.begin(), plan.joins.end(), [](const auto& a, const auto& b) {
        return orderOf(a.type) < orderOf(b.type);
    });
    return plan;
}

std::vector<UniqueFd> openJoins(NamespacePlan& plan) {
    std::vector<UniqueFd> fds;
    for (auto& j : plan.joins) {
        UniqueFd fd(::open(j.path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) throwErrno("open " + std::string(namespaceName(j.type)) + " namespace", j.path);
        j.fd = fd.get();
        fds.push_back(std::move(fd));
    }
    return fds;
}

std::vector<NamespaceJoin> processNamespaces(pid_t pid, std::vector<UniqueFd>* owners) {
    std::vector<NamespaceJoin> out;
    for (const auto& ns : kNamespaces) {
        std::string theirs = "/proc/" + std::to_string(pid) + "/ns/" + ns.procName;
        std::string ours = std::string("/proc/self/ns/") + ns.procName;
        struct stat a, b;
        if (::stat(theirs.c_str(), &a) != 0) {
            if (errno == ENOENT && ns.flag == CLONE_NEWCGROUP) continue;
            throwErrno("stat", theirs);
        }
        if (::stat(ours.c_str(), &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) continue;
        UniqueFd fd(::open(theirs.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) throwErrno("open", theirs);
        out.push_back({ns.flag, theirs, fd.get()});
        owners->push_back(std::move(fd));
    }
    return out;
}

void childJoinNamespaces(int syncFd, const std::vector<NamespaceJoin>& joins) {
    for (const auto& j : joins) {
        if (::setns(j.fd, j.type) != 0) {
            int err = errno;
            char what[1100];
            snprintf(what, sizeof what, "%s namespace %s", namespaceName(j.type), j.path.c_str());
            childFail(syncFd, "setns", what, err);
        }
    }
}

}  // namespace kata::jail
