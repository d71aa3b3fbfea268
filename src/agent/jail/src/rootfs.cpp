#include "rootfs.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>

#include "kata/common/error.h"
#include "kata/common/mount_options.h"
#include "sync.h"
#include "util.h"

namespace kata::jail {

namespace {
constexpr unsigned long kBindRemountMask = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC |
                                           MS_NOATIME | MS_NODIRATIME | MS_RELATIME |
                                           MS_STRICTATIME;

std::string cleanContainerPath(const std::string& p) {
    std::vector<std::string> parts;
    for (const auto& c : split(p, '/')) {
        if (c.empty() || c == ".") continue;
        if (c == "..") {
            if (!parts.empty()) parts.pop_back();
            continue;
        }
        parts.push_back(c);
    }
    std::string out;
    for (const auto& c : parts) out += "/" + c;
    return out.empty() ? "/" : out;
}

// Flags a read-only/bind remount must keep, read back from the mount itself.
unsigned long currentMountFlags(const char* path) {
    struct statvfs sv;
    if (::statvfs(path, &sv) != 0) return 0;
    unsigned long f = 0;
    if (sv.f_flag & ST_RDONLY) f |= MS_RDONLY;
    if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
    return f;
}

struct ChildCtx {
    int syncFd;
    const RootfsPlan& plan;
    int rootFd;
};

[[noreturn]] void failMount(const ChildCtx& c, const std::string& what, int err) {
    childFail(c.syncFd, "mount", what, err);
}

// An O_PATH fd on containerPath that cannot resolve outside the rootfs. Re-open after mounting
// on it: an fd opened before refers to the covered directory, not to the new mount.
int openInRoot(const ChildCtx& c, const std::string& containerPath) {
    struct open_how how = {};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    std::string rel = cleanContainerPath(containerPath).substr(1);
    if (rel.empty()) rel = ".";
    long fd = ::syscall(SYS_openat2, c.rootFd, rel.c_str(), &how, sizeof how);
    if (fd < 0) childFail(c.syncFd, "open mount point", containerPath, errno);
    return static_cast<int>(fd);
}

// Creates the mount point for containerPath inside the rootfs (a directory, or a file when
// the source is not one) and returns an O_PATH fd on it that is guaranteed to be inside root.
int makeMountPoint(const ChildCtx& c, const std::string& containerPath, bool dir) {
    int err = 0;
    std::string host = resolveInRoot(c.plan.rootfs, containerPath, &err);
    if (err) childFail(c.syncFd, "resolve", containerPath + " in the rootfs", err);
    std::string rel = host.substr(c.plan.rootfs.size());
    std::string cur = c.plan.rootfs;
    auto parts = split(rel, '/');
    parts.erase(std::remove(parts.begin(), parts.end(), std::string()), parts.end());
    for (size_t i = 0; i < parts.size(); ++i) {
        cur += "/" + parts[i];
        bool last = i + 1 == parts.size();
        if (last && !dir) {
            int fd = ::open(cur.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
            if (fd < 0 && errno != EISDIR && errno != ELOOP)
                childFail(c.syncFd, "create", cur, errno);
            if (fd >= 0) ::close(fd);
        } else if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
            childFail(c.syncFd, "mkdir", cur, errno);
        }
    }
    return openInRoot(c, containerPath);
}

std::string fdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

void bindRemount(const ChildCtx& c, const std::string& target, const std::string& what,
                 unsigned long flags) {
    unsigned long f = (flags & kBindRemountMask) | MS_BIND | MS_REMOUNT;
    if (::mount(nullptr, target.c_str(), nullptr, f, nullptr) != 0) {
        // Flags locked by a user namespace must be kept: retry with the mount's own ones.
        f |= currentMountFlags(target.c_str());
        if (::mount(nullptr, target.c_str(), nullptr, f, nullptr) != 0)
            failMount(c, "remount " + what, errno);
    }
}

void doMount(const ChildCtx& c, const MountPlan& m) {
    std::string what = m.type + " \"" + m.source + "\" on " + m.destination;
    if (m.type == "cgroup" || m.type == "cgroup2") {
        int fd = makeMountPoint(c, m.destination, true);
        std::string target = fdPath(fd);
        if (c.plan.cgroupDirs.size() == 1 && c.plan.cgroupDirs[0].first.empty()) {
            if (::mount(c.plan.cgroupDirs[0].second.c_str(), target.c_str(), nullptr,
                        MS_BIND | MS_REC, nullptr) != 0)
                failMount(c, what, errno);
            int mfd = openInRoot(c, m.destination);
            bindRemount(c, fdPath(mfd), what, m.flags);
            ::close(mfd);
        } else {
            if (::mount("tmpfs", target.c_str(), "tmpfs", (m.flags & ~MS_RDONLY), "mode=755") != 0)
                failMount(c, what, errno);
            std::string base = c.plan.rootfs + cleanContainerPath(m.destination);
            for (const auto& [name, dir] : c.plan.cgroupDirs) {
                std::string sub = m.destination + "/" + name;
                int sfd = makeMountPoint(c, sub, true);
                std::string st = fdPath(sfd);
                if (::mount(dir.c_str(), st.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
                    failMount(c, "cgroup " + dir + " on " + sub, errno);
                ::close(sfd);
                sfd = openInRoot(c, sub);
                bindRemount(c, fdPath(sfd), "cgroup " + sub, m.flags);
                ::close(sfd);
            }
            if (m.flags & MS_RDONLY) {
                int mfd = openInRoot(c, m.destination);
                if (::mount(nullptr, fdPath(mfd).c_str(), nullptr, MS_REMOUNT | m.flags,
                            "mode=755") != 0)
                    failMount(c, "remount " + what + " read-only", errno);
                ::close(mfd);
            }
        }
        ::close(fd);
        return;
    }
    bool dir = true;
    if (m.bind) {
        struct stat st;
        if (::stat(m.source.c_str(), &st) != 0)
            childFail(c.syncFd, "stat", "bind source " + m.source, errno);
        dir = S_ISDIR(st.st_mode);
    }
    int fd = makeMountPoint(c, m.destination, dir);
    std::string target = fdPath(fd);
    if (m.bind) {
        unsigned long f = MS_BIND | (m.recursive ? MS_REC : 0);
        if (::mount(m.source.c_str(), target.c_str(), nullptr, f, nullptr) != 0)
            failMount(c, what, errno);
    } else {
        const char* data = m.data.empty() ? nullptr : m.data.c_str();
        if (::mount(m.source.c_str(), target.c_str(), m.type.c_str(), m.flags, data) != 0)
            failMount(c, what, errno);
    }
    ::close(fd);
    if ((m.bind && (m.flags & kBindRemountMask)) || m.propagation) {
        fd = openInRoot(c, m.destination);
        target = fdPath(fd);
        if (m.bind && (m.flags & kBindRemountMask)) bindRemount(c, target, what, m.flags);
        if (m.propagation && ::mount(nullptr, target.c_str(), nullptr, m.propagation, nullptr) != 0)
            failMount(c, "set propagation of " + m.destination, errno);
        ::close(fd);
    }
}

bool hasMountAt(const RootfsPlan& plan, const char* dest) {
    return std::any_of(plan.mounts.begin(), plan.mounts.end(), [&](const MountPlan& m) {
        return cleanContainerPath(m.destination) == dest;
    });
}

void makeDevice(const ChildCtx& c, const DevicePlan& d) {
    int err = 0;
    std::string host = resolveInRoot(c.plan.rootfs, d.path, &err);
    if (err) childFail(c.syncFd, "resolve", d.path + " in the rootfs", err);
    std::string parent = host.substr(0, host.rfind('/'));
    if (parent.size() > c.plan.rootfs.size()) {
        try {
            mkdirAll(parent);
        } catch (const SystemError& e) {
            childFail(c.syncFd, "mkdir", parent, e.err());
        }
    }
    ::unlink(host.c_str());
    if (::mknod(host.c_str(), d.mode, d.dev) == 0) {
        if (::chmod(host.c_str(), d.mode & 07777) != 0) childFail(c.syncFd, "chmod", host, errno);
        if (::chown(host.c_str(), d.uid, d.gid) != 0) childFail(c.syncFd, "chown", host, errno);
        return;
    }
    if (errno != EPERM) childFail(c.syncFd, "mknod", d.path, errno);
    // In a user namespace devices cannot be made: bind the agent's node instead.
    int fd = makeMountPoint(c, d.path, false);
    if (::mount(d.path.c_str(), fdPath(fd).c_str(), nullptr, MS_BIND, nullptr) != 0)
        failMount(c, "bind device " + d.path, errno);
    ::close(fd);
}

void setupDev(const ChildCtx& c) {
    const RootfsPlan& p = c.plan;
    if (!hasMountAt(p, "/dev")) {
        MountPlan m{"tmpfs", "/dev", "tmpfs", "mode=755,size=65536k", MS_NOSUID | MS_STRICTATIME};
        doMount(c, m);
    }
    if (!hasMountAt(p, "/dev/pts")) {
        MountPlan m{"devpts", "/dev/pts", "devpts", "newinstance,ptmxmode=0666,mode=0620",
                    MS_NOSUID | MS_NOEXEC};
        doMount(c, m);
    }
    if (!hasMountAt(p, "/dev/shm")) {
        MountPlan m{"shm", "/dev/shm", "tmpfs", "mode=1777,size=65536k",
                    MS_NOSUID | MS_NOEXEC | MS_NODEV};
        doMount(c, m);
    }
    for (const auto& d : p.devices) makeDevice(c, d);
    const std::pair<const char*, const char*> links[] = {
        {"/proc/self/fd", "/dev/fd"},       {"/proc/self/fd/0", "/dev/stdin"},
        {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"},
        {"pts/ptmx", "/dev/ptmx"},
    };
    for (const auto& [target, link] : links) {
        int err = 0;
        std::string host = resolveInRoot(p.rootfs, link, &err);
        if (err) childFail(c.syncFd, "resolve", link, err);
        if (std::string(link) == "/dev/ptmx") ::unlink(host.c_str());
        if (::symlink(target, host.c_str()) != 0 && errno != EEXIST)
            childFail(c.syncFd, "symlink", link, errno);
    }
}

void pivotRoot(const ChildCtx& c) {
    const char* root = c.plan.rootfs.c_str();
    if (c.plan.noPivotRoot) {
        if (::chdir(root) != 0) childFail(c.syncFd, "chdir", root, errno);
        if (::mount(root, "/", nullptr, MS_MOVE, nullptr) != 0)
            failMount(c, std::string("move rootfs ") + root + " to /", errno);
        if (::chroot(".") != 0) childFail(c.syncFd, "chroot", root, errno);
        if (::chdir("/") != 0) childFail(c.syncFd, "chdir", "/", errno);
        return;
    }
    int oldRoot = ::open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (oldRoot < 0) childFail(c.syncFd, "open", "/", errno);
    if (::chdir(root) != 0) childFail(c.syncFd, "chdir", root, errno);
    if (::syscall(SYS_pivot_root, ".", ".") != 0) childFail(c.syncFd, "pivot_root", root, errno);
    // The old root is stacked under the new one: detach it without propagating the unmount.
    if (::fchdir(oldRoot) != 0) childFail(c.syncFd, "fchdir", "old root", errno);
    if (::mount(nullptr, ".", nullptr, MS_SLAVE | MS_REC, nullptr) != 0)
        failMount(c, "make old root rslave", errno);
    if (::umount2(".", MNT_DETACH) != 0) childFail(c.syncFd, "umount", "old root", errno);
    if (::chdir("/") != 0) childFail(c.syncFd, "chdir", "/", errno);
    ::close(oldRoot);
}

void maskPath(const ChildCtx& c, const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return;
        childFail(c.syncFd, "stat", "masked path " + path, errno);
    }
    int rc = S_ISDIR(st.st_mode) ? ::mount("tmpfs", path.c_str(), "tmpfs", MS_RDONLY, nullptr)
                                 : ::mount("/dev/null", path.c_str(), nullptr, MS_BIND, nullptr);
    if (rc != 0) failMount(c, "mask " + path, errno);
}

void readonlyPath(const ChildCtx& c, const std::string& path) {
    if (::mount(path.c_str(), path.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
        if (errno == ENOENT) return;
        failMount(c, "bind read-only path " + path, errno);
    }
    bindRemount(c, path, "read-only path " + path, currentMountFlags(path.c_str()) | MS_RDONLY);
}
}  // namespace

std::string resolveInRoot(const std::string& root, const std::string& path, int* err) {
    *err = 0;
    std::deque<std::string> todo;
    for (auto& p : split(path, '/')) todo.push_back(p);
    std::vector<std::string> done;
    int links = 0;
    while (!todo.empty()) {
        std::string part = todo.front();
        todo.pop_front();
        if (part.empty() || part == ".") continue;
        if (part == "..") {
            if (!done.empty()) done.pop_back();
            continue;
        }
        std::string cur = root;
        for (const auto& d : done) cur += "/" + d;
        cur += "/" + part;
        struct stat st;
        if (::lstat(cur.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) {
            done.push_back(part);
            continue;
        }
        if (++links > 255) {
            *err = ELOOP;
            return "";
        }
        char buf[4096];
        ssize_t n = ::readlink(cur.c_str(), buf, sizeof buf - 1);
        if (n < 0) {
            *err = errno;
            return "";
        }
        buf[n] = 0;
        if (buf[0] == '/') done.clear();
        auto targetParts = split(buf, '/');
        todo.insert(todo.begin(), targetParts.begin(), targetParts.end());
    }
    std::string out = root;
    for (const auto& d : done) out += "/" + d;
    return out;
}

MountPlan planMount(const grpc::Mount& mount) {
    MountPlan m;
    m.source = mount.source();
    m.destination = cleanContainerPath(mount.destination());
    m.type = mount.type();
    if (mount.destination().empty() || mount.destination()[0] != '/')
        throw Error(StatusCode::kInvalidArgument,
                    "mount destination \"" + mount.destination() + "\" is not absolute");
    MountOptions mo =
        parseMountOptions(std::vector<std::string>(mount.options().begin(), mount.options().end()));
    m.flags = mo.flags;
    m.propagation = mo.propagation;
    m.bind = mo.bind;
    m.recursive = mo.recursive;
    m.data = std::move(mo.data);
    if (m.type == "bind") m.bind = true;
    if (m.bind && (m.source.empty() || m.source[0] != '/'))
        throw Error(StatusCode::kInvalidArgument, "bind mount source \"" + m.source + "\" for " +
                                                      m.destination + " is not an absolute path");
    if (!m.bind && m.type.empty())
        throw Error(StatusCode::kInvalidArgument, "mount on " + m.destination + " has no type");
    return m;
}

RootfsPlan planRootfs(const grpc::Spec& spec, bool newUts) {
    RootfsPlan p;
    p.rootfs = spec.root().path();
    while (p.rootfs.size() > 1 && p.rootfs.back() == '/') p.rootfs.pop_back();
    p.readonly = spec.root().readonly();
    const auto& prop = spec.linux().rootfspropagation();
    if (!prop.empty() && !parsePropagation(prop, &p.rootPropagation))
        throw Error(StatusCode::kInvalidArgument, "rootfsPropagation \"" + prop + "\" is invalid");
    for (const auto& m : spec.mounts()) p.mounts.push_back(planMount(m));
    struct Default {
        const char* path;
        int major, minor;
    };
    const Default defaults[] = {{"/dev/null", 1, 3},   {"/dev/zero", 1, 5},    {"/dev/full", 1, 7},
                                {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0}};
    for (const auto& d : defaults) {
        bool overridden = std::any_of(spec.linux().devices().begin(), spec.linux().devices().end(),
                                      [&](const auto& sd) { return sd.path() == d.path; });
        if (!overridden)
            p.devices.push_back({d.path, S_IFCHR | 0666, makedev(d.major, d.minor), 0, 0});
    }
    for (const auto& d : spec.linux().devices()) {
        if (d.path().empty() || d.path()[0] != '/')
            throw Error(StatusCode::kInvalidArgument,
                        "device path \"" + d.path() + "\" is not absolute");
        mode_t type;
        if (d.type() == "c" || d.type() == "u")
            type = S_IFCHR;
        else if (d.type() == "b")
            type = S_IFBLK;
        else if (d.type() == "p")
            type = S_IFIFO;
        else
            throw Error(StatusCode::kInvalidArgument,
                        "device " + d.path() + " has invalid type \"" + d.type() + "\"");
        mode_t perm = d.filemode() ? (d.filemode() & 07777) : 0666;
        p.devices.push_back(
            {d.path(), type | perm,
             makedev(static_cast<unsigned>((d.major)()), static_cast<unsigned>((d.minor)())),
             d.uid(), d.gid()});
    }
    p.maskedPaths.assign(spec.linux().maskedpaths().begin(), spec.linux().maskedpaths().end());
    p.readonlyPaths.assign(spec.linux().readonlypaths().begin(),
                           spec.linux().readonlypaths().end());
    for (const auto& [k, v] : spec.linux().sysctl()) {
        if (k.find("..") != std::string::npos || k.find('/') == 0)
            throw Error(StatusCode::kInvalidArgument, "sysctl \"" + k + "\" is invalid");
        p.sysctls[k] = v;
    }
    if (!spec.hostname().empty()) {
        if (!newUts)
            throw Error(StatusCode::kInvalidArgument,
                        "hostname \"" + spec.hostname() + "\" needs a new uts namespace");
        p.setHostname = true;
        p.hostname = spec.hostname();
    }
    return p;
}

void childPrepareRootfs(int syncFd, const RootfsPlan& plan) {
    ::umask(0);
    unsigned long setupProp = MS_SLAVE | MS_REC;
    if (plan.rootPropagation & MS_PRIVATE) setupProp = MS_PRIVATE | MS_REC;
    if (::mount(nullptr, "/", nullptr, setupProp, nullptr) != 0)
        childFail(syncFd, "mount", "make / rslave", errno);
    if (::mount(plan.rootfs.c_str(), plan.rootfs.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
        childFail(syncFd, "mount", "bind rootfs " + plan.rootfs, errno);
    int rootFd = ::open(plan.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootFd < 0) childFail(syncFd, "open", "rootfs " + plan.rootfs, errno);
    ChildCtx c{syncFd, plan, rootFd};
    if (plan.setHostname && ::sethostname(plan.hostname.data(), plan.hostname.size()) != 0)
        childFail(syncFd, "sethostname", "\"" + plan.hostname + "\"", errno);
    for (const auto& m : plan.mounts) doMount(c, m);
    setupDev(c);
    ::close(rootFd);
}

void childFinishRootfs(int syncFd, const RootfsPlan& plan) {
    ChildCtx c{syncFd, plan, -1};
    pivotRoot(c);
    if (plan.rootPropagation &&
        ::mount(nullptr, "/", nullptr, plan.rootPropagation | MS_REC, nullptr) != 0)
        childFail(syncFd, "mount", "set rootfs propagation", errno);
    for (const auto& [key, value] : plan.sysctls) {
        std::string path = "/proc/sys/" + key;
        std::replace(path.begin() + 10, path.end(), '.', '/');
        int err = tryWriteFile(path, value);
        if (err) childFail(syncFd, "write", "sysctl " + key + "=" + value, err);
    }
    for (const auto& p : plan.readonlyPaths) readonlyPath(c, p);
    for (const auto& p : plan.maskedPaths) maskPath(c, p);
    if (plan.readonly &&
        ::mount(nullptr, "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | currentMountFlags("/"),
                nullptr) != 0)
        childFail(syncFd, "mount", "remount rootfs read-only", errno);
    ::umask(022);
}

}  // namespace kata::jail
