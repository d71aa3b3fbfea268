#include "kata/agent/storage.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/common/log.h"
#include "kata/common/mount_options.h"

namespace kata::agent {

namespace {

const log::Logger& logger() {
    static const log::Logger l("storage");
    return l;
}

std::vector<std::string> splitPath(const std::string& path) {
    std::vector<std::string> parts;
    size_t i = 0;
    while (i < path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string::npos) j = path.size();
        if (j > i) parts.push_back(path.substr(i, j - i));
        i = j + 1;
    }
    return parts;
}

bool hasDotDot(const std::string& path) {
    for (const auto& p : splitPath(path)) {
        if (p == "..") return true;
    }
    return false;
}

// Lexically normalises an absolute path: no ".", no empty components, no trailing slash.
std::string normalizeAbsolute(const std::string& path) {
    std::string out;
    for (const auto& p : splitPath(path)) {
        if (p == ".") continue;
        out += "/" + p;
    }
    return out.empty() ? "/" : out;
}

bool isUnder(const std::string& path, const std::string& root) {
    if (root == "/") return path != "/";
    return path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
           path[root.size()] == '/';
}

std::string realPath(const std::string& path) {
    char buf[PATH_MAX];
    if (!::realpath(path.c_str(), buf)) throwErrno("resolve", path);
    return buf;
}

std::string quote(const std::string& s) { return "\"" + s + "\""; }

// "storage <driver> "<source>" on <mount point>" — the prefix of every error about a storage.
std::string describe(const grpc::Storage& s, const std::string& mountPoint) {
    return "storage " + (s.driver().empty() ? std::string("\"\"") : s.driver()) + " " +
           quote(s.source()) + " on " + mountPoint;
}

[[noreturn]] void fail(StatusCode code, const grpc::Storage& s, const std::string& mountPoint,
                       const std::string& reason) {
    throw Error(code, describe(s, mountPoint) + ": " + reason);
}

std::vector<std::string> optionsOf(const grpc::Storage& s) {
    return {s.options().begin(), s.options().end()};
}

// Finds "key=value" among options and driver_options.
bool findOption(const grpc::Storage& s, const std::string& key, std::string* value) {
    auto scan = [&](const auto& list) {
        for (const auto& o : list) {
            if (o.rfind(key + "=", 0) == 0) {
                *value = o.substr(key.size() + 1);
                return true;
            }
        }
        return false;
    };
    return scan(s.options()) || scan(s.driver_options());
}

// shown: how the error names the source when it is not the mount source itself.
void doMount(const std::string& what, const std::string& source, const std::string& target,
             const std::string& fstype, unsigned long flags, const std::string& data,
             const std::string& shown = "") {
    if (::mount(source.c_str(), target.c_str(), fstype.empty() ? nullptr : fstype.c_str(), flags,
                data.empty() ? nullptr : data.c_str()) != 0) {
        throwErrno("mount " + what, (shown.empty() ? quote(source) : shown) + " on " + target);
    }
}

// The read-only and similar flags of a bind mount only apply on a remount.
void remountBindFlags(const std::string& what, const std::string& source, const std::string& target,
                      unsigned long flags) {
    constexpr unsigned long kPerMount =
        MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME;
    if ((flags & kPerMount) == 0) return;
    if (::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | (flags & kPerMount),
                nullptr) != 0) {
        int err = errno;
        ::umount2(target.c_str(), MNT_DETACH);
        throw SystemError("remount " + what, quote(source) + " on " + target, err);
    }
}

bool isPciPath(const std::string& s) {
    if (s.empty()) return false;
    for (const auto& part : splitPath(s)) {
        if (part.size() != 2 || !isxdigit(static_cast<unsigned char>(part[0])) ||
            !isxdigit(static_cast<unsigned char>(part[1])))
            return false;
    }
    return s.front() != '/' && s.back() != '/';
}

}  // namespace

StorageManager::StorageManager(std::string rootDir) : rootDir_(normalizeAbsolute(rootDir)) {
    if (rootDir.empty() || rootDir.front() != '/') {
        throw Error(StatusCode::kInvalidArgument,
                    "storage root " + quote(rootDir) + ": not an absolute path");
    }
}

void StorageManager::setDeviceEnvironment(const DeviceEnvironment& env) {
    std::lock_guard<std::mutex> lock(mu_);
    devEnv_ = env;
}

std::string StorageManager::resolveMountPoint(const std::string& mountPoint) const {
    if (mountPoint.empty()) {
        throw Error(StatusCode::kInvalidArgument, "storage mount point is empty");
    }
    if (hasDotDot(mountPoint)) {
        throw Error(StatusCode::kInvalidArgument,
                    "storage mount point " + quote(mountPoint) + " contains \"..\"");
    }
    std::string path = mountPoint.front() == '/' ? normalizeAbsolute(mountPoint)
                                                 : normalizeAbsolute(rootDir_ + "/" + mountPoint);
    if (!isUnder(path, rootDir_)) {
        throw Error(StatusCode::kInvalidArgument,
                    "storage mount point " + quote(mountPoint) + " is outside " + rootDir_);
    }
    return path;
}

int StorageManager::refCount(const std::string& mountPoint) const {
    std::string mp;
    try {
        mp = resolveMountPoint(mountPoint);
    } catch (const Error&) {
        return 0;
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(mp);
    return it == entries_.end() ? 0 : it->second.refs;
}

StorageManager::Entry StorageManager::mountOne(const grpc::Storage& s, const std::string& mp) {
    const std::string& driver = s.driver();
    if (hasDotDot(s.source())) fail(StatusCode::kInvalidArgument, s, mp, "source contains \"..\"");

    Entry entry;
    entry.driver = driver;
    entry.source = s.source();

    // Creates the missing directories from rootDir down to dir; records them for removal.
    auto makeDirs = [&](const std::string& dir, bool lastIsFile) {
        if (::mkdir(rootDir_.c_str(), 0755) != 0 && errno != EEXIST) {
            throwErrno("mkdir", rootDir_);
        }
        std::string cur = rootDir_;
        auto parts = splitPath(dir.substr(rootDir_ == "/" ? 0 : rootDir_.size()));
        for (size_t i = 0; i < parts.size(); ++i) {
            cur += (cur == "/" ? "" : "/") + parts[i];
            bool last = i + 1 == parts.size();
            if (last && lastIsFile) {
                UniqueFd fd(::open(cur.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
                if (fd) {
                    entry.createdFile = cur;
                } else if (errno != EEXIST) {
                    throwErrno("create", cur);
                }
                continue;
            }
            if (::mkdir(cur.c_str(), 0755) == 0) {
                entry.createdDirs.push_back(cur);
            } else if (errno != EEXIST) {
                throwErrno("mkdir", cur);
            }
        }
        // A symlink planted on the way must not lead the mount out of the root.
        std::string real = realPath(dir);
        std::string realRoot = realPath(rootDir_);
        if (!isUnder(real, realRoot)) {
            throw Error(StatusCode::kInvalidArgument,
                        "mount point resolves to " + real + ", outside " + realRoot);
        }
    };

    // Undoes the directories if anything below fails.
    struct DirUndo {
        Entry* e;
        bool armed = true;
        ~DirUndo() {
            if (!armed) return;
            if (!e->createdFile.empty()) ::unlink(e->createdFile.c_str());
            for (auto it = e->createdDirs.rbegin(); it != e->createdDirs.rend(); ++it) {
                ::rmdir(it->c_str());
            }
        }
    } undo{&entry};

    try {
        MountOptions mo = parseMountOptions(optionsOf(s));
        if (driver == kDriver9p || driver == kDriverVirtioFs) {
            if (s.source().empty() || s.source().find('/') != std::string::npos) {
                fail(StatusCode::kInvalidArgument, s, mp, "source must be a mount tag");
            }
            makeDirs(mp, false);
            std::string fstype = driver == kDriver9p ? "9p" : "virtiofs";
            std::string data = mo.data;
            if (driver == kDriver9p) {
                // The transport and protocol version are what the shim's virtio-9p device needs.
                std::string base;
                if (data.find("trans=") == std::string::npos) base = "trans=virtio";
                if (data.find("version=") == std::string::npos) {
                    base += std::string(base.empty() ? "" : ",") + "version=9p2000.L";
                }
                data = base + (base.empty() || data.empty() ? "" : ",") + data;
            }
            doMount(driver, s.source(), mp, fstype, mo.mountFlags(), data);
            entry.mounted = true;
        } else if (driver == kDriverBlk || driver == kDriverVirtioBlk || driver == kDriverMmioBlk ||
                   driver == kDriverScsi) {
            if (s.fstype().empty()) fail(StatusCode::kInvalidArgument, s, mp, "fstype is empty");
            std::string dev;
            if (driver == kDriverScsi) {
                dev = waitForScsiBlockDevice(s.source(), devEnv_);
            } else if (isPciPath(s.source())) {
                dev = waitForPciBlockDevice(s.source(), devEnv_);
            } else if (!s.source().empty() && s.source().front() == '/') {
                dev = waitForDeviceNode(s.source(), devEnv_);
            } else {
                fail(StatusCode::kInvalidArgument, s, mp,
                     "source is neither a PCI path nor a device path");
            }
            makeDirs(mp, false);
            doMount(driver, dev, mp, s.fstype(), mo.mountFlags(), mo.data,
                    quote(s.source()) + " (" + dev + ", " + s.fstype() + ")");
            entry.mounted = true;
        } else if (driver == kDriverEphemeral) {
            makeDirs(mp, false);
            std::string fstype = s.fstype().empty() ? "tmpfs" : s.fstype();
            std::string source = s.source().empty() ? "tmpfs" : s.source();
            doMount(driver, source, mp, fstype, mo.mountFlags(), mo.data);
            entry.mounted = true;
        } else if (driver == kDriverLocal) {
            makeDirs(mp, false);
            mode_t mode = 0777;
            std::string modeText;
            if (findOption(s, "mode", &modeText)) {
                char* end = nullptr;
                unsigned long m = std::strtoul(modeText.c_str(), &end, 8);
                if (modeText.empty() || *end != '\0' || m > 07777) {
                    fail(StatusCode::kInvalidArgument, s, mp, "bad mode " + quote(modeText));
                }
                mode = static_cast<mode_t>(m);
            }
            if (s.has_fs_group() && s.fs_group().group_id() != 0) {
                if (::chown(mp.c_str(), static_cast<uid_t>(-1), s.fs_group().group_id()) != 0) {
                    throwErrno("chown", mp);
                }
                mode |= S_ISGID;
            }
            if (::chmod(mp.c_str(), mode) != 0) throwErrno("chmod", mp);
            entry.removeTree = !entry.createdDirs.empty() && entry.createdDirs.back() == mp;
        } else if (driver == kDriverBind) {
            if (s.source().empty() || s.source().front() != '/') {
                fail(StatusCode::kInvalidArgument, s, mp, "source is not an absolute path");
            }
            std::string src = normalizeAbsolute(s.source());
            if (!isUnder(src, rootDir_)) {
                fail(StatusCode::kInvalidArgument, s, mp, "source is outside " + rootDir_);
            }
            struct stat st {};
            if (::stat(src.c_str(), &st) != 0) throwErrno("stat bind source", src);
            if (!isUnder(realPath(src), realPath(rootDir_))) {
                fail(StatusCode::kInvalidArgument, s, mp, "source resolves outside " + rootDir_);
            }
            makeDirs(mp, !S_ISDIR(st.st_mode));
            doMount(driver, src, mp, "", MS_BIND | MS_REC | (mo.mountFlags() & ~MS_RDONLY), "");
            entry.mounted = true;
            remountBindFlags(driver, src, mp, mo.mountFlags());
        } else if (driver == kDriverOverlayFs) {
            // Every layer must come from the sandbox's own tree.
            for (const auto& o : s.options()) {
                if (hasDotDot(o)) {
                    fail(StatusCode::kInvalidArgument, s, mp,
                         "option " + quote(o) + " contains \"..\"");
                }
                auto eq = o.find('=');
                std::string key = o.substr(0, eq);
                if (eq == std::string::npos ||
                    (key != "lowerdir" && key != "upperdir" && key != "workdir"))
                    continue;
                std::string dirs = o.substr(eq + 1);
                size_t i = 0;
                while (i <= dirs.size()) {
                    size_t j = dirs.find(':', i);
                    if (j == std::string::npos) j = dirs.size();
                    std::string dir = dirs.substr(i, j - i);
                    if (dir.empty() || dir.front() != '/' ||
                        !isUnder(normalizeAbsolute(dir), rootDir_)) {
                        fail(StatusCode::kInvalidArgument, s, mp,
                             key + " " + quote(dir) + " is outside " + rootDir_);
                    }
                    i = j + 1;
                }
            }
            for (const char* key : {"upperdir", "workdir"}) {
                std::string dir;
                if (findOption(s, key, &dir) && !dir.empty()) {
                    std::filesystem::create_directories(dir);
                }
            }
            makeDirs(mp, false);
            doMount(driver, s.source().empty() ? "overlay" : s.source(), mp, "overlay",
                    mo.mountFlags(), mo.data);
            entry.mounted = true;
        } else {
            fail(StatusCode::kInvalidArgument, s, mp, "unknown storage driver");
        }
    } catch (const SystemError& e) {
        // Mount errors already name driver, source and mount point; others get the context.
        std::string msg = e.what();
        if (msg.rfind("mount ", 0) == 0 || msg.rfind("remount ", 0) == 0) throw;
        throw Error(e.code(), describe(s, mp) + ": " + msg);
    } catch (const Error& e) {
        std::string msg = e.what();
        if (msg.rfind("storage ", 0) == 0) throw;
        throw Error(e.code(), describe(s, mp) + ": " + msg);
    } catch (const std::filesystem::filesystem_error& e) {
        throw Error(StatusCode::kInternal, describe(s, mp) + ": " + e.what());
    }
    undo.armed = false;
    logger()
        .with("driver", driver)
        .with("source", s.source())
        .with("mount-point", mp)
        .info("storage added");
    return entry;
}

void StorageManager::release(const std::string& mp, Entry& entry) {
    if (entry.mounted) {
        if (::umount2(mp.c_str(), 0) != 0) {
            int err = errno;
            if (err == EBUSY) {
                // Still in use by a process of the guest: detach so the last user frees it.
                if (::umount2(mp.c_str(), MNT_DETACH) != 0) {
                    throw SystemError("umount " + entry.driver, quote(entry.source) + " on " + mp,
                                      errno);
                }
            } else if (err != EINVAL && err != ENOENT) {
                throw SystemError("umount " + entry.driver, quote(entry.source) + " on " + mp, err);
            }
        }
        entry.mounted = false;
    }
    if (entry.removeTree) {
        std::error_code ec;
        std::filesystem::remove_all(mp, ec);
    }
    if (!entry.createdFile.empty()) ::unlink(entry.createdFile.c_str());
    for (auto it = entry.createdDirs.rbegin(); it != entry.createdDirs.rend(); ++it) {
        ::rmdir(it->c_str());  // ENOTEMPTY: another storage lives below, leave it
    }
    logger().with("driver", entry.driver).with("mount-point", mp).info("storage removed");
}

std::vector<std::string> StorageManager::add(
    const std::string& containerId,
    const google::protobuf::RepeatedPtrField<grpc::Storage>& storages) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> points;  // the references this call took, in order
    try {
        for (const auto& s : storages) {
            std::string mp;
            try {
                mp = resolveMountPoint(s.mount_point());
            } catch (const Error& e) {
                throw Error(e.code(), describe(s, s.mount_point()) + ": " + e.what());
            }
            auto it = entries_.find(mp);
            if (it != entries_.end()) {
                if (it->second.driver != s.driver() || it->second.source != s.source()) {
                    fail(StatusCode::kAlreadyExists, s, mp,
                         "mount point already holds storage " + it->second.driver + " " +
                             quote(it->second.source));
                }
            } else {
                it = entries_.emplace(mp, mountOne(s, mp)).first;
            }
            ++it->second.refs;
            points.push_back(mp);
        }
    } catch (...) {
        for (auto p = points.rbegin(); p != points.rend(); ++p) {
            auto it = entries_.find(*p);
            if (it == entries_.end() || --it->second.refs > 0) continue;
            try {
                release(*p, it->second);
            } catch (const Error& e) {
                logger().with("mount-point", *p).warn(std::string("rollback: ") + e.what());
            }
            entries_.erase(it);
        }
        throw;
    }
    auto& held = containerPoints_[containerId];
    held.insert(held.end(), points.begin(), points.end());
    return points;
}

void StorageManager::remove(const std::string& containerId) {
    std::lock_guard<std::mutex> lock(mu_);
    auto c = containerPoints_.find(containerId);
    if (c == containerPoints_.end()) return;
    std::vector<std::string> points = std::move(c->second);
    containerPoints_.erase(c);
    std::string firstError;
    StatusCode firstCode = StatusCode::kOk;
    for (auto p = points.rbegin(); p != points.rend(); ++p) {
        auto it = entries_.find(*p);
        if (it == entries_.end() || --it->second.refs > 0) continue;
        try {
            release(*p, it->second);
        } catch (const Error& e) {
            if (firstError.empty()) {
                firstError = e.what();
                firstCode = e.code();
            }
        }
        entries_.erase(it);
    }
    if (!firstError.empty()) {
        throw Error(firstCode, "remove storages of container " + containerId + ": " + firstError);
    }
}

}  // namespace kata::agent
