#include "kata/agent/image/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <unordered_set>
#include <vector>

#include "kata/common/error.h"
#include "kata/common/log.h"

namespace kata::agent::image {

namespace {

constexpr size_t kReadBlockSize = 128 << 10;
constexpr int64_t kBlockSize = 4096;
constexpr const char* kWhiteoutPrefix = ".wh.";
constexpr const char* kWhiteoutMetaPrefix = ".wh..wh.";
constexpr const char* kOpaqueMarker = ".wh..wh..opq";

const log::Logger& logger() {
    static const log::Logger l("image");
    return l;
}

bool startsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

std::vector<std::string> split(const std::string& path) {
    std::vector<std::string> parts;
    size_t i = 0;
    while (i <= path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string::npos) j = path.size();
        if (j > i) parts.push_back(path.substr(i, j - i));
        i = j + 1;
    }
    return parts;
}

std::string join(const std::vector<std::string>& parts, size_t count) {
    std::string out;
    for (size_t i = 0; i < count; ++i) {
        if (i) out += '/';
        out += parts[i];
    }
    return out;
}

// Removes `name` in dirFd, recursively for directories, never following a symlink.
void removeAt(int dirFd, const std::string& name, const std::string& shown);

void removeChildren(int dirFd, const std::string& name, const std::string& shown) {
    int fd = ::openat(dirFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return;
        throwErrno("open", shown);
    }
    DIR* dir = ::fdopendir(fd);
    if (!dir) {
        ::close(fd);
        throwErrno("read directory", shown);
    }
    std::vector<std::string> names;
    while (struct dirent* d = ::readdir(dir)) {
        std::string n = d->d_name;
        if (n != "." && n != "..") names.push_back(n);
    }
    try {
        for (const auto& n : names) removeAt(::dirfd(dir), n, shown + "/" + n);
    } catch (...) {
        ::closedir(dir);
        throw;
    }
    ::closedir(dir);
}

void removeAt(int dirFd, const std::string& name, const std::string& shown) {
    if (::unlinkat(dirFd, name.c_str(), 0) == 0 || errno == ENOENT) return;
    if (errno != EISDIR && errno != EPERM) throwErrno("remove", shown);
    removeChildren(dirFd, name, shown);
    if (::unlinkat(dirFd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
        throwErrno("remove", shown);
}

struct ArchiveHandle {
    struct archive* a = nullptr;
    UniqueFd fd;
    ~ArchiveHandle() {
        if (a) archive_read_free(a);
    }
};

void openArchive(ArchiveHandle& h, const std::string& layerPath, Compression compression,
                 const std::string& what) {
    h.fd.reset(::open(layerPath.c_str(), O_RDONLY | O_CLOEXEC));
    if (!h.fd) throwErrno("open layer", layerPath);
    h.a = archive_read_new();
    if (!h.a) throw Error(what + ": libarchive: out of memory");
    archive_read_support_format_tar(h.a);
    int rc = ARCHIVE_OK;
    if (compression == Compression::kGzip) rc = archive_read_support_filter_gzip(h.a);
    if (compression == Compression::kZstd) rc = archive_read_support_filter_zstd(h.a);
    // A warning means an external program would do the work; the guest has none.
    if (rc != ARCHIVE_OK)
        throw Error(StatusCode::kUnimplemented,
                    what + ": this build of libarchive cannot decompress the layer: " +
                        archive_error_string(h.a));
    if (archive_read_open_fd(h.a, h.fd.get(), kReadBlockSize) != ARCHIVE_OK)
        throw Error(StatusCode::kDataLoss, what + ": corrupt layer: " + archive_error_string(h.a));
}

class LayerApplier {
  public:
    LayerApplier(int rootFd, std::string what, const UnpackOptions& options)
        : rootFd_(rootFd), what_(std::move(what)), options_(options) {}

    LayerStats run(struct archive* a) {
        struct archive_entry* e = nullptr;
        for (;;) {
            int rc = archive_read_next_header(a, &e);
            if (rc == ARCHIVE_EOF) break;
            if (rc == ARCHIVE_WARN) {
                logger().warn("layer entry header warning",
                              {{"layer", what_}, {"warning", archive_error_string(a)}});
            } else if (rc != ARCHIVE_OK) {
                throw Error(StatusCode::kDataLoss,
                            what_ + ": corrupt layer: " + archive_error_string(a));
            }
            apply(a, e);
            ++stats_.entries;
            if (truncatedTail_) break;
        }
        applyDirectoryTimes();
        return stats_;
    }

  private:
    [[noreturn]] void refuse(const std::string& entry, const std::string& why) const {
        throw Error(StatusCode::kInvalidArgument, what_ + ": entry \"" + entry + "\": " + why);
    }

    std::vector<std::string> components(const std::string& raw, const std::string& shown) const {
        // umoci writes the root itself as "/"; any other absolute path is refused.
        if (!raw.empty() && raw.front() == '/' && raw.find_first_not_of('/') != std::string::npos)
            refuse(shown, "absolute paths are not allowed");
        std::vector<std::string> out;
        for (auto& p : split(raw)) {
            if (p == ".") continue;
            if (p == "..") refuse(shown, "\"..\" in a path is not allowed");
            out.push_back(std::move(p));
        }
        return out;
    }

    void invalidateCache() {
        cachedParent_.clear();
        cachedFd_.reset();
        cacheValid_ = false;
    }

    // The directory holding comps[count]: comps[0..count) resolved inside the root. Missing
    // directories are created when `create`; returns -1 when absent and not created.
    int parentDir(const std::vector<std::string>& comps, size_t count, const std::string& shown,
                  bool create) {
        std::string rel = join(comps, count);
        if (cacheValid_ && cachedParent_ == rel) return cachedFd_.get();
        invalidateCache();
        UniqueFd fd = openInRoot(rootFd_, rel, O_PATH | O_DIRECTORY);
        if (!fd && errno == ENOENT && create) {
            for (size_t i = 1; i <= count; ++i) {
                std::string prefix = join(comps, i);
                UniqueFd next = openInRoot(rootFd_, prefix, O_PATH | O_DIRECTORY);
                if (!next && errno == ENOENT) {
                    UniqueFd up = openInRoot(rootFd_, join(comps, i - 1), O_PATH | O_DIRECTORY);
                    if (!up) throwErrno("open", what_ + ": " + join(comps, i - 1));
                    if (::mkdirat(up.get(), comps[i - 1].c_str(), 0755) != 0) {
                        if (errno == EEXIST)
                            refuse(shown, "parent \"" + prefix +
                                              "\" is a symlink that leads nowhere inside the root");
                        throwErrno("create directory", what_ + ": " + prefix);
                    }
                    layerPaths_.insert(prefix);
                    next = openInRoot(rootFd_, prefix, O_PATH | O_DIRECTORY);
                }
                if (!next) {
                    if (errno == ENOTDIR || errno == ELOOP)
                        refuse(shown, "parent \"" + prefix + "\" is not a directory");
                    throwErrno("open", what_ + ": " + prefix);
                }
                fd = std::move(next);
            }
        }
        if (!fd) {
            if (errno == ENOENT && !create) return -1;
            if (errno == ENOTDIR || errno == ELOOP)
                refuse(shown, "parent \"" + rel + "\" is not a directory");
            throwErrno("open", what_ + ": " + rel);
        }
        cachedParent_ = rel;
        cachedFd_ = std::move(fd);
        cacheValid_ = true;
        return cachedFd_.get();
    }

    void apply(struct archive* a, struct archive_entry* e) {
        const char* rawName = archive_entry_pathname(e);
        if (!rawName) rawName = archive_entry_pathname_utf8(e);
        if (!rawName) refuse("(unnamed)", "entry without a path");
        std::string shown = rawName;
        std::vector<std::string> comps = components(shown, shown);
        if (comps.empty()) return;  // "./": the root itself
        const std::string& name = comps.back();
        const size_t parentCount = comps.size() - 1;
        std::string rel = join(comps, comps.size());
        mode_t type = archive_entry_filetype(e);

        if (startsWith(name, kWhiteoutPrefix)) {
            int dir = parentDir(comps, parentCount, shown, false);
            if (dir < 0) return;  // nothing below to hide
            if (name == kOpaqueMarker) {
                makeOpaque(dir, join(comps, parentCount), shown);
            } else if (!startsWith(name, kWhiteoutMetaPrefix)) {
                std::string hidden = name.substr(4);
                if (hidden.empty() || hidden == "." || hidden == "..")
                    refuse(shown, "invalid whiteout");
                removeAt(dir, hidden, what_ + ": " + join(comps, parentCount) + "/" + hidden);
            }
            invalidateCache();
            return;
        }
        if (type == AE_IFCHR || type == AE_IFBLK)
            refuse(shown, "device nodes are not allowed in image layers");

        if (const char* link = archive_entry_hardlink(e)) {
            hardLink(comps, shown, link);
            layerPaths_.insert(rel);
            return;
        }
        int dir = parentDir(comps, parentCount, shown, true);
        switch (type) {
            case AE_IFDIR:
                directory(e, dir, name, rel, shown);
                invalidateCache();
                break;
            case AE_IFREG:
                regularFile(a, e, dir, name, shown);
                break;
            case AE_IFLNK:
                symlink(e, dir, name, parentCount, shown);
                invalidateCache();
                break;
            case AE_IFIFO:
                fifo(e, dir, name, shown);
                break;
            default:
                refuse(shown, "unsupported entry type (sockets and other special files)");
        }
        layerPaths_.insert(rel);
    }

    // Hides everything in the directory that lower layers put there; what this layer already
    // wrote stays.
    void makeOpaque(int dirFd, const std::string& dirRel, const std::string& shown) {
        int fd = ::openat(dirFd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) throwErrno("open", what_ + ": " + (dirRel.empty() ? "/" : dirRel));
        UniqueFd owner(fd);
        pruneLower(fd, dirRel);
    }

    void pruneLower(int fd, const std::string& dirRel) {
        DIR* dir = ::fdopendir(::dup(fd));
        if (!dir) throwErrno("read directory", what_ + ": " + dirRel);
        std::vector<std::string> names;
        while (struct dirent* d = ::readdir(dir)) {
            std::string n = d->d_name;
            if (n != "." && n != "..") names.push_back(n);
        }
        ::closedir(dir);
        for (const auto& n : names) {
            std::string rel = dirRel.empty() ? n : dirRel + "/" + n;
            if (!layerPaths_.count(rel)) {
                removeAt(fd, n, what_ + ": " + rel);
                continue;
            }
            struct stat st {};
            if (::fstatat(fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
                UniqueFd sub(
                    ::openat(fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
                if (!sub) throwErrno("open", what_ + ": " + rel);
                pruneLower(sub.get(), rel);
            }
        }
    }

    void ownership(int dirFd, const std::string& name, struct archive_entry* e, int fd,
                   const std::string& shown) {
        if (!options_.preserveOwnership) return;
        uid_t uid = static_cast<uid_t>(archive_entry_uid(e));
        gid_t gid = static_cast<gid_t>(archive_entry_gid(e));
        int rc = fd >= 0 ? ::fchown(fd, uid, gid)
                         : ::fchownat(dirFd, name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
        if (rc != 0) throwErrno("chown", what_ + ": entry \"" + shown + "\"");
    }

    void xattrs(int fd, struct archive_entry* e, const std::string& shown) {
        if (archive_entry_xattr_reset(e) == 0) return;
        const char* key = nullptr;
        const void* value = nullptr;
        size_t size = 0;
        while (archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK) {
            if (::fsetxattr(fd, key, value, size, 0) == 0) continue;
            int err = errno;
            if (err == ENOTSUP || err == EPERM) {
                logger().warn("xattr not kept", {{"layer", what_},
                                                 {"entry", shown},
                                                 {"xattr", key},
                                                 {"reason", errnoName(err)}});
                continue;
            }
            throw SystemError("set xattr " + std::string(key) + " on",
                              what_ + ": entry \"" + shown + "\"", err);
        }
    }

    static struct timespec mtimeOf(struct archive_entry* e) {
        return {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
    }
    static struct timespec atimeOf(struct archive_entry* e) {
        if (!archive_entry_atime_is_set(e)) return mtimeOf(e);
        return {archive_entry_atime(e), archive_entry_atime_nsec(e)};
    }

    void directory(struct archive_entry* e, int dirFd, const std::string& name,
                   const std::string& rel, const std::string& shown) {
        struct stat st {};
        bool exists = ::fstatat(dirFd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (exists && !S_ISDIR(st.st_mode)) {
            removeAt(dirFd, name, what_ + ": " + rel);
            exists = false;
        }
        if (!exists && ::mkdirat(dirFd, name.c_str(), 0700) != 0)
            throwErrno("create directory", what_ + ": entry \"" + shown + "\"");
        UniqueFd fd(::openat(dirFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd) throwErrno("open", what_ + ": entry \"" + shown + "\"");
        ownership(dirFd, name, e, fd.get(), shown);
        if (::fchmod(fd.get(), archive_entry_perm(e)) != 0)
            throwErrno("chmod", what_ + ": entry \"" + shown + "\"");
        xattrs(fd.get(), e, shown);
        // Children change a directory's mtime: set it once the layer is done.
        dirTimes_.push_back({rel, {atimeOf(e), mtimeOf(e)}});
    }

    void regularFile(struct archive* a, struct archive_entry* e, int dirFd, const std::string& name,
                     const std::string& shown) {
        removeAt(dirFd, name, what_ + ": " + shown);
        UniqueFd fd(::openat(dirFd, name.c_str(),
                             O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!fd) throwErrno("create", what_ + ": entry \"" + shown + "\"");
        const void* buf = nullptr;
        size_t size = 0;
        la_int64_t offset = 0;
        int64_t end = 0;
        for (;;) {
            int rc = archive_read_data_block(a, &buf, &size, &offset);
            if (rc == ARCHIVE_EOF) break;
            if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
                // umoci 0.4 ("umoci insert") ends some layers right after the last file's data,
                // without the tar padding. The blob's digest was checked, so when every byte of
                // the entry arrived, take it as the end of the layer.
                if (archive_entry_size_is_set(e) && end == archive_entry_size(e) &&
                    archive_filter_bytes(a, 0) > 0) {
                    logger().warn("layer ends without tar padding after its last entry",
                                  {{"layer", what_}, {"entry", shown}});
                    truncatedTail_ = true;
                    break;
                }
                throw Error(StatusCode::kDataLoss, what_ + ": corrupt layer at entry \"" + shown +
                                                       "\": " + archive_error_string(a));
            }
            const char* p = static_cast<const char*>(buf);
            size_t left = size;
            off_t at = offset;
            while (left > 0) {
                ssize_t n = ::pwrite(fd.get(), p, left, at);
                if (n < 0) {
                    if (errno == EINTR) continue;
                    throwErrno("write", what_ + ": entry \"" + shown + "\"");
                }
                p += n;
                at += n;
                left -= static_cast<size_t>(n);
            }
            stats_.bytes += static_cast<int64_t>(size);
            end = std::max<int64_t>(end, offset + static_cast<int64_t>(size));
        }
        if (archive_entry_size_is_set(e) && archive_entry_size(e) > end &&
            ::ftruncate(fd.get(), archive_entry_size(e)) != 0)
            throwErrno("write", what_ + ": entry \"" + shown + "\"");
        ownership(dirFd, name, e, fd.get(), shown);
        if (::fchmod(fd.get(), archive_entry_perm(e)) != 0)
            throwErrno("chmod", what_ + ": entry \"" + shown + "\"");
        xattrs(fd.get(), e, shown);
        struct timespec times[2] = {atimeOf(e), mtimeOf(e)};
        ::futimens(fd.get(), times);
    }

    void symlink(struct archive_entry* e, int dirFd, const std::string& name, size_t depth,
                 const std::string& shown) {
        const char* rawTarget = archive_entry_symlink(e);
        if (!rawTarget) rawTarget = archive_entry_symlink_utf8(e);
        std::string target = rawTarget ? rawTarget : "";
        if (target.empty()) refuse(shown, "symlink with an empty target");
        if (target.front() != '/') {
            // Absolute targets are read inside the root; a relative one must not climb above it.
            long level = static_cast<long>(depth);
            for (const auto& p : split(target)) {
                if (p == ".") continue;
                if (p == "..") {
                    if (--level < 0)
                        refuse(shown, "symlink to \"" + target + "\" leads out of the root");
                } else {
                    ++level;
                }
            }
        }
        removeAt(dirFd, name, what_ + ": " + shown);
        if (::symlinkat(target.c_str(), dirFd, name.c_str()) != 0)
            throwErrno("create symlink", what_ + ": entry \"" + shown + "\"");
        ownership(dirFd, name, e, -1, shown);
        struct timespec times[2] = {atimeOf(e), mtimeOf(e)};
        ::utimensat(dirFd, name.c_str(), times, AT_SYMLINK_NOFOLLOW);
    }

    void fifo(struct archive_entry* e, int dirFd, const std::string& name,
              const std::string& shown) {
        removeAt(dirFd, name, what_ + ": " + shown);
        if (::mknodat(dirFd, name.c_str(), S_IFIFO | 0600, 0) != 0)
            throwErrno("create fifo", what_ + ": entry \"" + shown + "\"");
        ownership(dirFd, name, e, -1, shown);
        if (::fchmodat(dirFd, name.c_str(), archive_entry_perm(e), 0) != 0)
            throwErrno("chmod", what_ + ": entry \"" + shown + "\"");
        struct timespec times[2] = {atimeOf(e), mtimeOf(e)};
        ::utimensat(dirFd, name.c_str(), times, AT_SYMLINK_NOFOLLOW);
    }

    void hardLink(const std::vector<std::string>& comps, const std::string& shown,
                  const std::string& link) {
        std::vector<std::string> targetComps;
        bool escapes = !link.empty() && link.front() == '/';
        for (auto& p : split(link)) {
            if (p == ".") continue;
            if (p == "..") escapes = true;
            targetComps.push_back(p);
        }
        if (escapes) refuse(shown, "hard link to \"" + link + "\" points outside the root");
        if (targetComps.empty()) refuse(shown, "hard link with an empty target");
        std::string targetRel = join(targetComps, targetComps.size());
        std::string rel = join(comps, comps.size());
        if (targetRel == rel) return;
        UniqueFd target = openInRoot(rootFd_, targetRel, O_PATH | O_NOFOLLOW);
        if (!target) {
            if (errno == ENOENT || errno == ENOTDIR)
                refuse(shown, "hard link target \"" + link + "\" does not exist in the image");
            throwErrno("open", what_ + ": hard link target \"" + link + "\"");
        }
        struct stat st {};
        if (::fstat(target.get(), &st) != 0) throwErrno("stat", what_ + ": \"" + link + "\"");
        if (S_ISDIR(st.st_mode)) refuse(shown, "hard link to a directory \"" + link + "\"");
        int dir = parentDir(comps, comps.size() - 1, shown, true);
        const std::string& name = comps.back();
        removeAt(dir, name, what_ + ": " + shown);
        if (::linkat(target.get(), "", dir, name.c_str(), AT_EMPTY_PATH) != 0) {
            // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the fd's /proc link does not.
            std::string viaProc = "/proc/self/fd/" + std::to_string(target.get());
            if (::linkat(AT_FDCWD, viaProc.c_str(), dir, name.c_str(), AT_SYMLINK_FOLLOW) != 0)
                throwErrno("create hard link",
                           what_ + ": entry \"" + shown + "\" to \"" + link + "\"");
        }
    }

    void applyDirectoryTimes() {
        for (const auto& [rel, times] : dirTimes_) {
            UniqueFd fd = openInRoot(rootFd_, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            if (fd) ::futimens(fd.get(), times.data());
        }
    }

    int rootFd_;
    std::string what_;
    UnpackOptions options_;
    LayerStats stats_;
    std::unordered_set<std::string> layerPaths_;
    std::vector<std::pair<std::string, std::array<struct timespec, 2>>> dirTimes_;
    std::string cachedParent_;
    UniqueFd cachedFd_;
    bool cacheValid_ = false;
    bool truncatedTail_ = false;
};

}  // namespace

UnpackOptions::UnpackOptions() : preserveOwnership(::geteuid() == 0) {}

UniqueFd openInRoot(int rootFd, const std::string& relPath, int flags) {
    struct open_how how {};
    how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    const char* path = relPath.empty() ? "." : relPath.c_str();
    for (int attempt = 0; attempt < 16; ++attempt) {
        long fd = ::syscall(SYS_openat2, rootFd, path, &how, sizeof how);
        if (fd >= 0) return UniqueFd(static_cast<int>(fd));
        if (errno != EAGAIN && errno != EINTR) break;
    }
    return UniqueFd();
}

void removeTree(const std::string& path) {
    std::string parent = path.substr(0, path.find_last_of('/'));
    std::string name = path.substr(path.find_last_of('/') + 1);
    if (parent.empty()) parent = "/";
    UniqueFd dir(::open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir) {
        if (errno == ENOENT) return;
        throwErrno("open", parent);
    }
    removeAt(dir.get(), name, path);
}

LayerStats applyLayer(int rootFd, const std::string& layerPath, Compression compression,
                      const std::string& what, const UnpackOptions& options) {
    ArchiveHandle h;
    openArchive(h, layerPath, compression, what);
    LayerApplier applier(rootFd, what, options);
    return applier.run(h.a);
}

int64_t unpackedSizeEstimate(const std::string& layerPath, Compression compression,
                             const std::string& what) {
    ArchiveHandle h;
    openArchive(h, layerPath, compression, what);
    struct archive_entry* e = nullptr;
    int64_t total = 0;
    for (;;) {
        int rc = archive_read_next_header(h.a, &e);
        if (rc == ARCHIVE_EOF) break;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
            throw Error(StatusCode::kDataLoss,
                        what + ": corrupt layer: " + archive_error_string(h.a));
        total += kBlockSize;
        if (archive_entry_filetype(e) == AE_IFREG && !archive_entry_hardlink(e))
            total += (archive_entry_size(e) + kBlockSize - 1) / kBlockSize * kBlockSize;
    }
    return total;
}

}  // namespace kata::agent::image
