#include "host_cgroup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "kata/common/error.h"
#include "kata/common/file.h"
#include "kata/common/log.h"

namespace kata::shim {
namespace {

void writeCgroupFile(const std::string& path, const std::string& value) {
    std::ofstream out(path);
    if (!out) throw SystemError("open", path, errno);
    out << value;
    out.flush();
    if (!out) throw SystemError("write \"" + value + "\" to", path, errno);
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

// The calling process's cgroup in the hierarchy (from /proc/self/cgroup): "0::/x" for v2,
// "N:memory:/x" for v1 (the controllers field matches the hierarchy's superblock options).
std::string currentCgroup(const CgroupHierarchy& h) {
    std::istringstream in(readFile("/proc/self/cgroup"));
    std::string line;
    while (std::getline(in, line)) {
        auto a = line.find(':');
        auto b = a == std::string::npos ? a : line.find(':', a + 1);
        if (b == std::string::npos) continue;
        std::string ctrls = line.substr(a + 1, b - a - 1);
        if (h.unified ? ctrls.empty() : ctrls == h.controllers) return line.substr(b + 1);
    }
    return "/";
}

bool hasController(const CgroupHierarchy& h, const std::string& c) {
    std::istringstream in(h.controllers);
    std::string part;
    while (std::getline(in, part, ','))
        if (part == c) return true;
    return false;
}

}  // namespace

std::vector<CgroupHierarchy> cgroupHierarchies(const std::vector<MountInfo>& mounts) {
    std::vector<CgroupHierarchy> out;
    std::set<std::string> seen;
    static const std::set<std::string> kNotControllers = {
        "rw",       "ro",    "nosuid",        "nodev", "noexec", "relatime", "clone_children",
        "noprefix", "xattr", "cpuset_v2_mode"};
    for (const auto& m : mounts) {
        if (m.fsType == "cgroup2") {
            if (seen.insert("cgroup2").second) out.push_back({m.mountPoint, "", true});
            continue;
        }
        if (m.fsType != "cgroup") continue;
        std::string ctrls;
        std::istringstream in(m.superOptions);
        std::string opt;
        while (std::getline(in, opt, ',')) {
            if (kNotControllers.count(opt) || opt.rfind("name=", 0) == 0 ||
                opt.rfind("release_agent=", 0) == 0)
                continue;
            ctrls += (ctrls.empty() ? "" : ",") + opt;
        }
        if (ctrls.empty() || !seen.insert(ctrls).second) continue;
        out.push_back({m.mountPoint, ctrls, false});
    }
    return out;
}

std::string cgroupDirOfPath(const std::string& path) {
    auto bad = [&](const std::string& why) {
        return Error(StatusCode::kInvalidArgument, "sandbox cgroupsPath \"" + path + "\": " + why);
    };
    if (path.empty()) throw bad("empty");
    std::string dir;
    if (path[0] != '/' && std::count(path.begin(), path.end(), ':') == 2) {
        // systemd: "<slice>:<prefix>:<name>" -> /<parent slices...>/<slice>/<prefix>-<name>.scope
        auto a = path.find(':'), b = path.find(':', a + 1);
        std::string slice = path.substr(0, a), prefix = path.substr(a + 1, b - a - 1),
                    name = path.substr(b + 1);
        if (name.empty()) throw bad("no unit name after the second ':'");
        if (slice.empty()) slice = "system.slice";
        if (slice.size() < 7 || slice.substr(slice.size() - 6) != ".slice")
            throw bad("\"" + slice + "\" is not a systemd slice (*.slice)");
        if (slice != "-.slice") {
            std::string stem = slice.substr(0, slice.size() - 6);
            size_t pos = 0;
            while ((pos = stem.find('-', pos)) != std::string::npos) {
                dir += "/" + stem.substr(0, pos) + ".slice";
                ++pos;
            }
            dir += "/" + slice;
        }
        dir += "/" + (prefix.empty() ? name : prefix + "-" + name) + ".scope";
    } else {
        dir = path[0] == '/' ? path : "/" + path;
    }
    std::istringstream in(dir);
    std::string part;
    while (std::getline(in, part, '/'))
        if (part == "..") throw bad("has \"..\"");
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    if (dir == "/") throw bad("names the root cgroup");
    return dir;
}

std::unique_ptr<SandboxCgroup> SandboxCgroup::enter(
    const std::string& cgroupsPath, const std::vector<CgroupHierarchy>& hierarchies) {
    const std::string rel = cgroupDirOfPath(cgroupsPath);
    std::unique_ptr<SandboxCgroup> cg(new SandboxCgroup());
    try {
        for (const auto& h : hierarchies) {
            // Parents first: each directory made here is removed again on failure or leave().
            std::string dir = h.mountPoint;
            std::istringstream in(rel);
            std::string part;
            while (std::getline(in, part, '/')) {
                if (part.empty()) continue;
                std::string parent = dir;
                dir += "/" + part;
                if (::mkdir(dir.c_str(), 0755) == 0) {
                    cg->created_.push_back(dir);
                    if (hasController(h, "cpuset")) {
                        for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {
                            std::string mine = dir + "/" + f;
                            if (trimmed(readFile(mine)).empty())
                                writeCgroupFile(mine, trimmed(readFile(parent + "/" + f)));
                        }
                    }
                } else if (errno != EEXIST) {
                    throw SystemError("create cgroup", dir, errno);
                }
            }
            std::string previous = h.mountPoint + currentCgroup(h);
            writeCgroupFile(dir + "/cgroup.procs", std::to_string(::getpid()));
            cg->joined_.push_back({dir, previous});
            cg->dirs_.push_back(dir);
        }
    } catch (...) {
        cg->leave();
        throw;
    }
    return cg;
}

SandboxCgroup::~SandboxCgroup() { leave(); }

void SandboxCgroup::leave() {
    if (left_) return;
    left_ = true;
    log::Logger log("cgroup");
    for (const auto& j : joined_) {
        try {
            writeCgroupFile(j.previous + "/cgroup.procs", std::to_string(::getpid()));
        } catch (const Error& e) {
            log.warn(std::string("move the shim back out of the sandbox cgroup: ") + e.what());
        }
    }
    for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
        if (::rmdir(it->c_str()) != 0 && errno != ENOENT)
            log.with("cgroup", *it)
                .warn(std::string("remove sandbox cgroup: ") + std::strerror(errno));
    }
}

std::string removeSandboxCgroup(const std::string& cgroupsPath,
                                const std::vector<CgroupHierarchy>& hierarchies) {
    const std::string rel = cgroupDirOfPath(cgroupsPath);
    std::string problems;
    for (const auto& h : hierarchies) {
        std::string dir = h.mountPoint + rel;
        if (::rmdir(dir.c_str()) != 0 && errno != ENOENT)
            problems += (problems.empty() ? "" : "; ") + dir + ": " + std::strerror(errno);
    }
    return problems;
}

}  // namespace kata::shim
