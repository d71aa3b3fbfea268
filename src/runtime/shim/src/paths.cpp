#include "paths.h"

#include <cstdio>

#include "kata/common/error.h"
#include "sha256.h"

namespace kata::shim {

namespace {
// filepath.Join semantics for the key: no doubled or trailing slashes.
std::string joinClean(const std::string& a, const std::string& b, const std::string& c) {
    std::string out = a;
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    for (const std::string* part : {&b, &c}) {
        if (part->empty()) continue;
        if (!out.empty() && out.back() != '/') out += '/';
        out += *part;
    }
    return out;
}
}  // namespace

std::string shimSocketAddress(const std::string& containerdAddress, const std::string& ns,
                              const std::string& id) {
    return std::string("unix://") + kShimSocketRoot + "/" +
           sha256Hex(joinClean(containerdAddress, ns, id));
}

std::string socketPathOf(const std::string& address) {
    if (address.rfind("unix://", 0) == 0) return address.substr(7);
    if (address.rfind("unix:", 0) == 0) return address.substr(5);
    return address;
}

}  // namespace kata::shim
