// Temp dirs and mount cleanup shared by the storage tests.
#pragma once

#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace kata::agent::test {

// Mount points from /proc/self/mountinfo (octal escapes decoded).
inline std::vector<std::string> currentMounts() {
    std::vector<std::string> out;
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string id, parent, devno, root, mp;
        ls >> id >> parent >> devno >> root >> mp;
        std::string decoded;
        for (size_t i = 0; i < mp.size(); ++i) {
            if (mp[i] == '\\' && i + 3 < mp.size()) {
                decoded += static_cast<char>(std::stoi(mp.substr(i + 1, 3), nullptr, 8));
                i += 3;
            } else {
                decoded += mp[i];
            }
        }
        out.push_back(decoded);
    }
    return out;
}

inline bool isMounted(const std::string& path) {
    auto m = currentMounts();
    return std::find(m.begin(), m.end(), path) != m.end();
}

inline std::string mountFsType(const std::string& path) {
    std::ifstream in("/proc/self/mountinfo");
    std::string line, type;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string id, parent, devno, root, mp, tok;
        ls >> id >> parent >> devno >> root >> mp;
        if (mp != path) continue;
        while (ls >> tok && tok != "-") {
        }
        ls >> type;
    }
    return type;
}

// A temp dir that unmounts everything below it and removes itself, even when a test fails.
class TempDir {
  public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "kata-storage-XXXXXX");
        char* p = ::mkdtemp(tmpl.data());
        if (!p) throw std::runtime_error("mkdtemp failed");
        path_ = std::filesystem::canonical(p).string();
    }
    ~TempDir() {
        for (int pass = 0; pass < 8; ++pass) {
            auto mounts = currentMounts();
            bool any = false;
            for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
                if (it->rfind(path_ + "/", 0) == 0) {
                    ::umount2(it->c_str(), MNT_DETACH);
                    any = true;
                }
            }
            if (!any) break;
        }
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

// Keeps test mounts out of the host's mount table: a private mount namespace per test process
// (ctest runs each test in its own process). Best effort: on failure the TempDir cleanup still
// unmounts.
inline void privateMountNamespace() {
    static bool done = false;
    if (done) return;
    done = true;
    if (::unshare(CLONE_NEWNS) == 0) {
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
    }
}

}  // namespace kata::agent::test
