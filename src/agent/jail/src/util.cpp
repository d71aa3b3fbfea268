#include "util.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "kata/common/error.h"
#include "kata/common/fd.h"

namespace kata::jail {

int tryWriteFile(const std::string& path, const std::string& data) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return errno;
    ssize_t n = ::write(fd.get(), data.data(), data.size());
    if (n < 0) return errno;
    if (static_cast<size_t>(n) != data.size()) return EIO;
    return 0;
}

void writeFile(const std::string& path, const std::string& data) {
    int err = tryWriteFile(path, data);
    if (err != 0) throw SystemError("write", "\"" + trim(data) + "\" to " + path, err);
}

bool pathExists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

bool isDirectory(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t pos = s.find(sep, start);
        out.push_back(s.substr(start, pos == std::string::npos ? std::string::npos : pos - start));
        if (pos == std::string::npos) break;
        start = pos + 1;
    }
    return out;
}

std::string trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    size_t e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

std::string joinPath(const std::string& a, const std::string& b) {
    if (a.empty()) return b;
    if (b.empty()) return a;
    bool as = a.back() == '/', bs = b.front() == '/';
    if (as && bs) return a + b.substr(1);
    if (!as && !bs) return a + "/" + b;
    return a + b;
}

void mkdirAll(const std::string& path, mode_t mode) {
    std::string cur;
    for (const auto& part : split(path, '/')) {
        if (part.empty()) {
            if (cur.empty()) cur = "/";
            continue;
        }
        cur = joinPath(cur, part);
        if (::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) throwErrno("mkdir", cur);
    }
}

void closeAllExcept(std::vector<int> keep) {
    keep.push_back(2);
    std::sort(keep.begin(), keep.end());
    unsigned int next = 3;
    for (int fd : keep) {
        if (fd < 3) continue;
        if (static_cast<unsigned int>(fd) > next)
            ::syscall(SYS_close_range, next, static_cast<unsigned int>(fd) - 1, 0);
        next = static_cast<unsigned int>(fd) + 1;
    }
    ::syscall(SYS_close_range, next, ~0U, 0);
}

}  // namespace kata::jail
