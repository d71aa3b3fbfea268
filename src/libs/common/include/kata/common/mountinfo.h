// /proc/<pid>/mountinfo, parsed once for everyone (see proc(5)).
#pragma once

#include <string>
#include <vector>

namespace kata {

struct MountInfo {
    int id = 0;
    int parentId = 0;
    std::string root;        // the mounted directory's path inside its filesystem
    std::string mountPoint;  // unescaped ("\040" is a space)
    std::string options;     // per-mount options (rw,nosuid,...)
    std::string fsType;      // "cgroup", "cgroup2", "9p", ...
    std::string source;
    std::string superOptions;  // per-superblock options (for cgroup v1: the controllers)
};

// Every well-formed line, in the kernel's (mount) order; malformed lines are skipped.
std::vector<MountInfo> parseMountinfo(const std::string& text);
// parseMountinfo of the file; throws SystemError naming it when it cannot be read.
std::vector<MountInfo> readMountinfo(const std::string& path = "/proc/self/mountinfo");
// Decodes mountinfo's octal escapes ("\040" -> ' ').
std::string unescapeMountinfo(const std::string& field);

}  // namespace kata
