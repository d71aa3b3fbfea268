#include "kata/common/mount_options.h"

#include <sys/mount.h>

#include <utility>

namespace kata {

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
    {"atime", true, MS_NOATIME},
    {"noatime", false, MS_NOATIME},
    {"diratime", true, MS_NODIRATIME},
    {"nodiratime", false, MS_NODIRATIME},
    {"relatime", false, MS_RELATIME},
    {"norelatime", true, MS_RELATIME},
    {"strictatime", false, MS_STRICTATIME},
    {"nostrictatime", true, MS_STRICTATIME},
    {"silent", false, MS_SILENT},
    {"loud", true, MS_SILENT},
};

constexpr std::pair<const char*, unsigned long> kPropagation[] = {
    {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
    {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
    {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
    {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
};

bool applyFlagOption(const std::string& opt, unsigned long* flags) {
    for (const auto& f : kFlagOptions) {
        if (opt != f.name) continue;
        if (f.clear) {
            *flags &= ~f.flag;
        } else {
            *flags |= f.flag;
        }
        return true;
    }
    return false;
}

}  // namespace

unsigned long MountOptions::mountFlags() const {
    unsigned long f = flags | propagation;
    if (bind) f |= MS_BIND;
    if (recursive) f |= MS_REC;
    return f;
}

bool parsePropagation(const std::string& name, unsigned long* flags) {
    for (const auto& [n, f] : kPropagation) {
        if (name == n) {
            *flags = f;
            return true;
        }
    }
    return false;
}

MountOptions parseMountOptions(const std::vector<std::string>& options) {
    MountOptions out;
    for (const auto& opt : options) {
        if (opt.empty() || opt == "tmpcopyup") continue;
        if (opt == "bind" || opt == "rbind") {
            out.bind = true;
            out.recursive = out.recursive || opt == "rbind";
            continue;
        }
        if (parsePropagation(opt, &out.propagation)) continue;
        if (applyFlagOption(opt, &out.flags)) continue;
        if (!out.data.empty()) out.data += ',';
        out.data += opt;
    }
    return out;
}

}  // namespace kata
