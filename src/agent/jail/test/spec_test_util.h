// Building blocks of a test container's spec, shared by the jail's and the agent's tests: the
// mounts containerd's default spec gives every container.
#pragma once

#include <string>
#include <vector>

#include "agent/oci.pb.h"

namespace kata::jail::test {

inline void addMount(grpc::Spec* spec, const char* destination, const char* type,
                     const char* source, const std::vector<std::string>& options) {
    auto* m = spec->add_mounts();
    m->set_destination(destination);
    m->set_type(type);
    m->set_source(source);
    for (const auto& o : options) m->add_options(o);
}

// /dev, /dev/pts, /dev/shm and a read-only /sys, with containerd's options.
inline void addDefaultDevAndSysMounts(grpc::Spec* spec) {
    addMount(spec, "/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"});
    addMount(spec, "/dev/pts", "devpts", "devpts",
             {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"});
    addMount(spec, "/dev/shm", "tmpfs", "shm",
             {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"});
    addMount(spec, "/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"});
}

}  // namespace kata::jail::test
