#include "files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "kata/common/error.h"
#include "kata/common/fd.h"

namespace kata::deploy {

namespace fs = std::filesystem;

std::string directoryProblem(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::strerror(errno);
    if (!S_ISDIR(st.st_mode)) return "not a directory";
    return "";
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

void makeDirs(const std::string& path, std::vector<std::string>* created) {
    if (path.empty() || path == "/") return;
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            throw Error(StatusCode::kFailedPrecondition, path + ": not a directory");
        return;
    }
    makeDirs(fs::path(path).parent_path().string(), created);
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) throwErrno("mkdir", path);
    if (created) created->push_back(path);
}

namespace {

void copyRegular(const std::string& src, const std::string& dst, mode_t mode) {
    UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) throwErrno("open", src);
    // A running binary cannot be opened for writing (ETXTBSY): write a new inode instead.
    std::string tmp = dst + ".kata-deploy-tmp";
    ::unlink(tmp.c_str());
    UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 07777));
    if (!out) throwErrno("create", tmp);
    char buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(in.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            throwErrno("read", src);
        }
        if (n == 0) break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = ::write(out.get(), buf + off, static_cast<size_t>(n - off));
            if (w < 0) {
                if (errno == EINTR) continue;
                throwErrno("write", tmp);
            }
            off += w;
        }
    }
    if (::fchmod(out.get(), mode & 07777) != 0) throwErrno("chmod", tmp);
    out.reset();
    if (::rename(tmp.c_str(), dst.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        throw SystemError("rename", tmp + " to " + dst, err);
    }
}

void copyInto(const std::string& src, const std::string& dst, const std::string& rel,
              CreatedPaths* created) {
    DIR* d = ::opendir(src.c_str());
    if (!d) throwErrno("opendir", src);
    std::vector<std::string> names;
    while (auto* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
        std::string s = src + "/" + n, t = dst + "/" + n, r = rel.empty() ? n : rel + "/" + n;
        struct stat st {};
        if (::lstat(s.c_str(), &st) != 0) throwErrno("lstat", s);
        if (S_ISDIR(st.st_mode)) {
            struct stat tst {};
            if (::lstat(t.c_str(), &tst) != 0) {
                if (::mkdir(t.c_str(), st.st_mode & 07777) != 0) throwErrno("mkdir", t);
                created->dirs.push_back(r);
            } else if (!S_ISDIR(tst.st_mode)) {
                throw Error(
                    StatusCode::kFailedPrecondition,
                    t + " is in the way of the payload's directory " + s + ": not a directory");
            }
            copyInto(s, t, r, created);
        } else if (S_ISLNK(st.st_mode)) {
            std::string target = readLink(s);
            removeFile(t);
            if (::symlink(target.c_str(), t.c_str()) != 0) throwErrno("symlink", t);
            created->files.push_back(r);
        } else if (S_ISREG(st.st_mode)) {
            copyRegular(s, t, st.st_mode);
            created->files.push_back(r);
        }
        // Device nodes, sockets and FIFOs have no place in a payload: skipped.
    }
}

}  // namespace

void copyTree(const std::string& src, const std::string& dst, CreatedPaths* created) {
    copyInto(src, dst, "", created);
}

void writeFileAtomic(const std::string& given, const std::string& content, unsigned mode) {
    // A symlinked config (config.toml -> /somewhere/else) stays a symlink: the file it points
    // to is the one rewritten.
    std::string path = given;
    if (!readLink(given).empty()) {
        std::error_code ec;
        auto real = fs::canonical(given, ec);
        if (ec) throw SystemError("resolve symlink", given, ec.value());
        path = real.string();
    }
    struct stat st {};
    bool had = ::stat(path.c_str(), &st) == 0;
    std::string tmp = path + ".kata-deploy-tmp";
    ::unlink(tmp.c_str());
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                       had ? (st.st_mode & 07777) : mode));
    if (!fd) throwErrno("create", tmp);
    for (size_t off = 0; off < content.size();) {
        ssize_t w = ::write(fd.get(), content.data() + off, content.size() - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            ::unlink(tmp.c_str());
            throw SystemError("write", tmp, err);
        }
        off += static_cast<size_t>(w);
    }
    if (had) {
        (void)!::fchown(fd.get(), st.st_uid, st.st_gid);
        ::fchmod(fd.get(), st.st_mode & 07777);
    }
    if (::fsync(fd.get()) != 0) throwErrno("fsync", tmp);
    fd.reset();
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        throw SystemError("rename", tmp + " to " + path, err);
    }
}

std::string readLink(const std::string& path) {
    char buf[4096];
    ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
    if (n < 0) return "";
    return std::string(buf, static_cast<size_t>(n));
}

void removeFile(const std::string& path) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) throwErrno("unlink", path);
}

bool removeDirIfEmpty(const std::string& path) {
    if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return true;
    return false;
}

void removeTree(const std::string& path) {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (ec) throw SystemError("remove", path, ec.value());
}

}  // namespace kata::deploy
