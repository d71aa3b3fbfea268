#include <sys/mount.h>

#include <cstring>
#include <string>
#include <vector>

#include "kata/agent/storage.h"

namespace kata::agent {

namespace {

struct FlagOption {
    const char* name;
    bool clear;
    unsigned long flag;
};

// The mount(8) option names that are flags rather than filesystem data.
constexpr FlagOption kFlagOptions[] = {
    {"defaults", false, 0},
    {"ro", false, MS_RDONLY},
    {"rw", true, MS_RDONLY},
    {"nosuid", false, MS_NOSUID},
    {"suid", true, MS_NOSUID},
    {"nodev", false, MS_NODEV},
    {"dev", true, MS_NODEV},
    {"noexec", false, MS_NOEXEC},
    {"exec", true, MS_NOEXEC},
    {"sync", false, MS_SYNCHRONOUS},
    {"async", true, MS_SYNCHRONOUS},
    {"dirsync", false, MS_DIRSYNC},
    {"remount", false, MS_REMOUNT},
    {"mand", false, MS_MANDLOCK},
    {"nomand", true, MS_MANDLOCK},
    {"noatime", false, MS_NOATIME},
    {"atime", true, MS_NOATIME},
    {"nodiratime", false, MS_NODIRATIME},
    {"diratime", true, MS_NODIRATIME},
    {"relatime", false, MS_RELATIME},
    {"norelatime", true, MS_RELATIME},
    {"strictatime", false, MS_STRICTATIME},
    {"bind", false, MS_BIND},
    {"rbind", false, MS_BIND | MS_REC},
    {"private", false, MS_PRIVATE},
    {"rprivate", false, MS_PRIVATE | MS_REC},
    {"shared", false, MS_SHARED},
    {"rshared", false, MS_SHARED | MS_REC},
    {"slave", false, MS_SLAVE},
    {"rslave", false, MS_SLAVE | MS_REC},
    {"unbindable", false, MS_UNBINDABLE},
    {"runbindable", false, MS_UNBINDABLE | MS_REC},
};

}  // namespace

MountOptions parseMountOptions(const std::vector<std::string>& options) {
    MountOptions out;
    for (const auto& opt : options) {
        if (opt.empty()) continue;
        bool matched = false;
        for (const auto& f : kFlagOptions) {
            if (opt == f.name) {
                if (f.clear) {
                    out.flags &= ~f.flag;
                } else {
                    out.flags |= f.flag;
                }
                matched = true;
                break;
            }
        }
        if (matched) continue;
        if (!out.data.empty()) out.data += ',';
        out.data += opt;
    }
    return out;
}

}  // namespace kata::agent
