// Applies image layers (tar, streamed through libarchive: gzip, zstd or uncompressed) to a
// rootfs directory with OCI whiteouts (.wh.<name>) and opaque directories (.wh..wh..opq),
// keeping ownership, modes, xattrs, times and hard links.
//
// Nothing is ever written outside the rootfs: every path is resolved inside it (openat2 with
// RESOLVE_IN_ROOT, so a symlink never leads out), the last component is never followed, and
// hostile entries are refused with kata::Error(kInvalidArgument) "<what>: entry "<path>":
// <reason>": ".." components, absolute paths, hard links whose target leaves the root,
// symlinks whose relative target climbs above it, device nodes, sockets.
#pragma once

#include <cstdint>
#include <string>

#include "kata/agent/image/manifest.h"
#include "kata/common/fd.h"

namespace kata::agent::image {

struct UnpackOptions {
    // chown entries to their uid/gid from the tar (needs root; default: when running as root).
    bool preserveOwnership;
    UnpackOptions();
};

struct LayerStats {
    int64_t entries = 0;
    int64_t bytes = 0;  // file data written
};

// Applies one layer (the blob file at layerPath) onto the directory rootFd. `what` names the
// image and layer in errors. Running out of space is a SystemError with err() ENOSPC or EDQUOT
// naming the entry. A corrupt stream is kata::Error(kDataLoss).
LayerStats applyLayer(int rootFd, const std::string& layerPath, Compression compression,
                      const std::string& what, const UnpackOptions& options = {});

// Bytes the layer needs on disk once unpacked (file data rounded up to 4 KiB blocks plus a
// block per entry): read from the tar headers, no data written.
int64_t unpackedSizeEstimate(const std::string& layerPath, Compression compression,
                             const std::string& what);

// Opens a path inside the directory rootFd, resolving every component (symlinks included) as
// if rootFd were "/". flags as for openat (O_PATH, O_DIRECTORY, O_NOFOLLOW ...). Returns an
// invalid fd with errno set on failure.
UniqueFd openInRoot(int rootFd, const std::string& relPath, int flags);

// Removes a directory tree without following symlinks; a missing path is not an error.
void removeTree(const std::string& path);

}  // namespace kata::agent::image
