#include "paths.h"

#include <openssl/evp.h>

#include <cstdio>

#include "kata/common/error.h"

namespace kata::shim {

namespace {
std::string sha256Hex(const std::string& data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
        throw Error(StatusCode::kInternal, "sha256 of shim socket key: EVP_Digest failed");
    }
    std::string out;
    char buf[3];
    for (unsigned i = 0; i < len; ++i) {
        std::snprintf(buf, sizeof buf, "%02x", digest[i]);
        out += buf;
    }
    return out;
}

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
