// SHA-256 (FIPS 180-4) of a string, as lower-case hex. The shim needs it only to name its
// socket like containerd does; a few lines here spare the process libcrypto (~1.4 MiB RSS).
#pragma once

#include <string>

namespace kata::shim {

std::string sha256Hex(const std::string& data);

}  // namespace kata::shim
