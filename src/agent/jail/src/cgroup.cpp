#include "cgroup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/common/mountinfo.h"
#include "util.h"

namespace kata::jail {

namespace {
// The pure v2 mount point, or "" when controllers live on v1 hierarchies (hybrid counts as v1:
// its unified hierarchy has no controllers).
std::string unifiedMountPoint() {
    std::string v2;
    bool anyV1 = false;
    for (const auto& m : readMountinfo()) {
        if (m.fsType == "cgroup2" && v2.empty()) v2 = m.mountPoint;
        if (m.fsType == "cgroup" && m.superOptions.find("name=") == std::string::npos) anyV1 = true;
    }
    if (anyV1) return "";
    if (v2.empty()) throw Error(StatusCode::kFailedPrecondition, "no cgroup filesystem is mounted");
    return v2;
}
}  // namespace

std::string Cgroup::defaultPath(const std::string& id) { return "kata_agent/" + id; }

std::unique_ptr<Cgroup> Cgroup::create(const std::string& path) {
    if (path.find("..") != std::string::npos)
        throw Error(StatusCode::kInvalidArgument, "cgroup path \"" + path + "\" contains \"..\"");
    std::string mp = unifiedMountPoint();
    if (mp.empty()) return makeCgroupV1(path);
    return makeCgroupV2(mp, path);
}

std::vector<pid_t> readPids(const std::string& procsFile) {
    std::vector<pid_t> out;
    std::string text;
    try {
        text = readFile(procsFile);
    } catch (const SystemError& e) {
        if (e.err() == ENOENT) return out;
        throw;
    }
    for (const auto& l : split(text, '\n'))
        if (!l.empty()) out.push_back(static_cast<pid_t>(std::stol(l)));
    return out;
}

uint64_t readU64(const std::string& file) {
    if (!pathExists(file)) return 0;
    std::string t = trim(readFile(file));
    if (t == "max") return UINT64_MAX;
    try {
        return std::stoull(t);
    } catch (...) {
        return 0;
    }
}

std::vector<std::pair<std::string, uint64_t>> readKeyValues(const std::string& file) {
    std::vector<std::pair<std::string, uint64_t>> out;
    if (!pathExists(file)) return out;
    for (const auto& l : split(readFile(file), '\n')) {
        auto sp = l.find(' ');
        if (sp == std::string::npos) continue;
        try {
            out.emplace_back(l.substr(0, sp), std::stoull(l.substr(sp + 1)));
        } catch (...) {
        }
    }
    return out;
}

void removeCgroupDir(const std::string& dir) {
    for (int i = 0; i < 500; ++i) {
        if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
        if (errno != EBUSY) throwErrno("rmdir cgroup", dir);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throwErrno("rmdir cgroup", dir);
}

}  // namespace kata::jail
