#pragma once

namespace kata {
// The version string baked in at build time ("0.1.0-<git describe>").
const char* versionString();
}  // namespace kata
