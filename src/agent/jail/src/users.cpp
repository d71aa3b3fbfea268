#include "users.h"

#include <grp.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>

#include "kata/common/error.h"
#include "sync.h"
#include "util.h"

namespace kata::jail {

namespace {
// Lines of an /etc/passwd-style file split on ':'; a missing file reads as empty.
std::vector<std::vector<std::string>> readColonFile(const std::string& path) {
    std::vector<std::vector<std::string>> out;
    if (!pathExists(path)) return out;
    for (const auto& line : split(readFile(path), '\n')) {
        if (line.empty() || line[0] == '#') continue;
        out.push_back(split(line, ':'));
    }
    return out;
}

bool parseId(const std::string& s, unsigned long* out) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return false;
    *out = std::stoul(s);
    return true;
}
}  // namespace

UserPlan resolveUser(const std::string& rootfs, const grpc::User& user) {
    UserPlan plan;
    plan.uid = user.uid();
    plan.gid = user.gid();
    std::string passwdPath = joinPath(rootfs, "etc/passwd");
    auto passwd = readColonFile(passwdPath);
    std::string name;
    if (!user.username().empty()) {
        std::string wanted = user.username();
        std::string groupPart;
        if (auto colon = wanted.find(':'); colon != std::string::npos) {
            groupPart = wanted.substr(colon + 1);
            wanted = wanted.substr(0, colon);
        }
        unsigned long numeric;
        bool found = false;
        for (const auto& f : passwd) {
            if (f.size() >= 6 &&
                (f[0] == wanted || (parseId(wanted, &numeric) && f[2] == wanted))) {
                unsigned long uid = 0, gid = 0;
                parseId(f[2], &uid);
                parseId(f[3], &gid);
                plan.uid = static_cast<uid_t>(uid);
                plan.gid = static_cast<gid_t>(gid);
                plan.home = f[5].empty() ? "/" : f[5];
                name = f[0];
                found = true;
                break;
            }
        }
        if (!found) {
            if (!parseId(wanted, &numeric))
                throw Error(StatusCode::kNotFound,
                            "user \"" + wanted + "\" not found in " + passwdPath);
            plan.uid = static_cast<uid_t>(numeric);
        }
        if (!groupPart.empty()) {
            bool gfound = false;
            for (const auto& f : readColonFile(joinPath(rootfs, "etc/group"))) {
                if (f.size() >= 3 && f[0] == groupPart) {
                    unsigned long gid = 0;
                    parseId(f[2], &gid);
                    plan.gid = static_cast<gid_t>(gid);
                    gfound = true;
                }
            }
            if (!gfound) {
                if (!parseId(groupPart, &numeric))
                    throw Error(StatusCode::kNotFound, "group \"" + groupPart + "\" not found in " +
                                                           joinPath(rootfs, "etc/group"));
                plan.gid = static_cast<gid_t>(numeric);
            }
        }
    } else {
        for (const auto& f : passwd) {
            unsigned long uid;
            if (f.size() >= 6 && parseId(f[2], &uid) && uid == plan.uid) {
                plan.home = f[5].empty() ? "/" : f[5];
                name = f[0];
                break;
            }
        }
    }
    for (auto g : user.additionalgids()) plan.groups.push_back(g);
    if (!name.empty()) {
        for (const auto& f : readColonFile(joinPath(rootfs, "etc/group"))) {
            if (f.size() < 4) continue;
            auto members = split(f[3], ',');
            unsigned long gid;
            if (std::find(members.begin(), members.end(), name) != members.end() &&
                parseId(f[2], &gid))
                plan.groups.push_back(static_cast<gid_t>(gid));
        }
    }
    std::sort(plan.groups.begin(), plan.groups.end());
    plan.groups.erase(std::unique(plan.groups.begin(), plan.groups.end()), plan.groups.end());
    return plan;
}

std::vector<RlimitPlan> planRlimits(const grpc::Process& process) {
    static const std::map<std::string, int> kTypes = {
        {"RLIMIT_AS", RLIMIT_AS},
        {"RLIMIT_CORE", RLIMIT_CORE},
        {"RLIMIT_CPU", RLIMIT_CPU},
        {"RLIMIT_DATA", RLIMIT_DATA},
        {"RLIMIT_FSIZE", RLIMIT_FSIZE},
        {"RLIMIT_LOCKS", RLIMIT_LOCKS},
        {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
        {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
        {"RLIMIT_NICE", RLIMIT_NICE},
        {"RLIMIT_NOFILE", RLIMIT_NOFILE},
        {"RLIMIT_NPROC", RLIMIT_NPROC},
        {"RLIMIT_RSS", RLIMIT_RSS},
        {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
        {"RLIMIT_RTTIME", RLIMIT_RTTIME},
        {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
        {"RLIMIT_STACK", RLIMIT_STACK},
    };
    std::vector<RlimitPlan> out;
    for (const auto& r : process.rlimits()) {
        auto it = kTypes.find(r.type());
        if (it == kTypes.end())
            throw Error(StatusCode::kInvalidArgument,
                        "rlimit type \"" + r.type() + "\" is unknown");
        RlimitPlan p;
        p.resource = it->second;
        p.limit.rlim_cur = r.soft();
        p.limit.rlim_max = r.hard();
        out.push_back(p);
    }
    return out;
}

void childSwitchUser(int syncFd, const UserPlan& user) {
    if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
        childFail(syncFd, "prctl", "PR_SET_KEEPCAPS", errno);
    if (::setgroups(user.groups.size(), user.groups.data()) != 0)
        childFail(syncFd, "setgroups", "", errno);
    if (::setresgid(user.gid, user.gid, user.gid) != 0)
        childFail(syncFd, "setresgid", std::to_string(user.gid), errno);
    if (::setresuid(user.uid, user.uid, user.uid) != 0)
        childFail(syncFd, "setresuid", std::to_string(user.uid), errno);
    ::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
}

void childSetRlimits(int syncFd, const std::vector<RlimitPlan>& rlimits) {
    for (const auto& r : rlimits)
        if (::setrlimit(r.resource, &r.limit) != 0)
            childFail(syncFd, "setrlimit", std::to_string(r.resource), errno);
}

}  // namespace kata::jail
