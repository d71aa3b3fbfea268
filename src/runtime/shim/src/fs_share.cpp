#include "fs_share.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/common/mountinfo.h"

namespace kata::shim {

namespace fs = std::filesystem;

namespace {

void mkdirs(const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw SystemError("create directory", dir, ec.value());
}

void doMount(const std::string& type, const std::string& source, const std::string& target,
             const MountOptions& o) {
    const bool bind = o.bind;
    const char* data = o.data.empty() ? nullptr : o.data.c_str();
    // A bind mount ignores MS_RDONLY (and the other per-mount flags) until a remount.
    unsigned long first = bind ? (MS_BIND | (o.recursive ? MS_REC : 0)) : o.flags;
    if (::mount(source.c_str(), target.c_str(), type.empty() || bind ? nullptr : type.c_str(),
                first, data) != 0) {
        throw SystemError("mount " + (bind ? std::string("bind") : type) + " \"" + source + "\" on",
                          target, errno);
    }
    unsigned long perMount = o.flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
    if (bind && perMount) {
        if (::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | perMount, nullptr) !=
            0) {
            int err = errno;
            ::umount2(target.c_str(), MNT_DETACH);
            throw SystemError("remount bind mount with its flags", target, err);
        }
    }
    if (o.propagation) {
        if (::mount(nullptr, target.c_str(), nullptr, o.propagation, nullptr) != 0) {
            int err = errno;
            ::umount2(target.c_str(), MNT_DETACH);
            throw SystemError("set mount propagation of", target, err);
        }
    }
}

}  // namespace

MountSet::~MountSet() { unmountAll(); }
MountSet::MountSet(MountSet&& o) noexcept : points_(std::move(o.points_)) { o.points_.clear(); }
MountSet& MountSet::operator=(MountSet&& o) noexcept {
    if (this != &o) {
        unmountAll();
        points_ = std::move(o.points_);
        o.points_.clear();
    }
    return *this;
}
std::vector<std::string> MountSet::release() { return std::exchange(points_, {}); }

void MountSet::unmountAll() {
    for (auto it = points_.rbegin(); it != points_.rend(); ++it) {
        if (::umount2(it->c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
            log::Logger("fs-share")
                .with("path", *it)
                .warn("unmount " + *it + ": " + SystemError("umount2", *it, errno).what());
        }
    }
    points_.clear();
}

MountSet mountRootfs(const std::vector<containerd::types::Mount>& mounts, const std::string& bundle,
                     const std::string& rootPath, const std::string& target) {
    mkdirs(target);
    MountSet set;
    if (mounts.empty()) {
        std::string src = rootPath.empty() ? "rootfs" : rootPath;
        if (src[0] != '/') src = bundle + "/" + src;
        bindMount(src, target, false, set);
        return set;
    }
    for (const auto& m : mounts) {
        std::vector<std::string> opts(m.options().begin(), m.options().end());
        MountOptions o = parseMountOptions(opts);
        doMount(m.type(), m.source(), target, o);
        set.add(target);
    }
    return set;
}

void bindMount(const std::string& source, const std::string& target, bool readonly, MountSet& set) {
    struct stat st {};
    if (::stat(source.c_str(), &st) != 0) throwErrno("stat bind mount source", source);
    if (S_ISDIR(st.st_mode)) {
        mkdirs(target);
    } else {
        mkdirs(fs::path(target).parent_path().string());
        int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) throwErrno("create bind mount target", target);
        ::close(fd);
    }
    MountOptions o;
    o.bind = o.recursive = true;
    o.flags = readonly ? MS_RDONLY : 0;
    o.propagation = MS_PRIVATE;
    doMount("", source, target, o);
    set.add(target);
}

std::vector<std::string> mountsUnder(const std::string& prefix) {
    std::vector<std::string> out;
    for (const auto& m : readMountinfo()) {
        const std::string& mp = m.mountPoint;
        if (mp == prefix || mp.rfind(prefix + "/", 0) == 0) out.push_back(mp);
    }
    // mountinfo lists in mount order; deeper paths and later mounts go first.
    std::stable_sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
        return a.size() > b.size();
    });
    return out;
}

std::string cleanupTree(const std::string& prefix) {
    std::string problems;
    for (int round = 0; round < 3; ++round) {
        auto mps = mountsUnder(prefix);
        if (mps.empty()) break;
        for (const auto& mp : mps) ::umount2(mp.c_str(), MNT_DETACH);
    }
    auto left = mountsUnder(prefix);
    if (!left.empty()) {
        problems = "still mounted: " + left.front();
        return problems;
    }
    std::error_code ec;
    fs::remove_all(prefix, ec);
    if (ec && ec != std::errc::no_such_file_or_directory) {
        problems = SystemError("remove", prefix, ec.value()).what();
    }
    return problems;
}

}  // namespace kata::shim
