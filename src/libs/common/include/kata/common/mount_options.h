// mount(8)-style option lists ("ro", "nosuid", "rbind", "rslave", "size=64m", ...) split into
// what mount(2) takes: MS_* flags, bind/propagation requests and the filesystem's data string.
// One parser for the agent's storages and the container library's spec mounts.
#pragma once

#include <string>
#include <vector>

namespace kata {

struct MountOptions {
    unsigned long flags = 0;        // MS_RDONLY, MS_NOSUID, ... (a later "rw" clears "ro")
    unsigned long propagation = 0;  // MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE (+MS_REC)
    bool bind = false;              // "bind" or "rbind"
    bool recursive = false;         // "rbind"
    std::string data;               // everything else, comma-joined, for the filesystem

    // flags with MS_BIND/MS_REC and the propagation flags folded in, for a single mount(2).
    unsigned long mountFlags() const;
};

// Unknown options go to data; "defaults" and "tmpcopyup" (a runtime's option, not the
// kernel's) are dropped; the last propagation option wins.
MountOptions parseMountOptions(const std::vector<std::string>& options);

// "private", "rslave", ... -> MS_* flags; false for any other name.
bool parsePropagation(const std::string& name, unsigned long* flags);

}  // namespace kata
