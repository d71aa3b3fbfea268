#include "runtimes.h"

#include <algorithm>

#include "kata/common/error.h"

namespace kata::deploy {

namespace {

bool validShimName(const std::string& s) {
    if (s.empty() || s.front() == '-' || s.back() == '-') return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    });
}

RuntimeClassSpec classFor(const std::string& handler, const std::string& shim,
                          const std::string& typeName) {
    // containerd maps runtime_type io.containerd.<name>.v2 to the binary containerd-shim-<name>-v2,
    // and our shim picks configuration-<shim>.toml from its argv[0] when no ConfigPath is given.
    return RuntimeClassSpec{handler, shim, "io.containerd." + typeName + ".v2",
                            "containerd-shim-" + typeName + "-v2",
                            "configuration-" + shim + ".toml"};
}

}  // namespace

std::vector<std::string> parseShimList(const std::string& text) {
    std::vector<std::string> out;
    std::string cur;
    auto flush = [&] {
        if (cur.empty()) return;
        if (!validShimName(cur))
            throw Error(StatusCode::kInvalidArgument,
                        "shim \"" + cur + "\": expected lower-case letters, digits and '-'");
        if (std::find(out.begin(), out.end(), cur) == out.end()) out.push_back(cur);
        cur.clear();
    };
    for (char c : text) {
        if (c == ' ' || c == ',' || c == '\t' || c == '\n')
            flush();
        else
            cur.push_back(c);
    }
    flush();
    if (out.empty())
        throw Error(StatusCode::kInvalidArgument, "shims \"" + text + "\": no shim named");
    return out;
}

std::vector<RuntimeClassSpec> runtimeClasses(const std::vector<std::string>& shims,
                                             const std::string& defaultShim) {
    if (shims.empty()) throw Error(StatusCode::kInvalidArgument, "no shims given");
    const std::string def = defaultShim.empty() ? shims.front() : defaultShim;
    if (std::find(shims.begin(), shims.end(), def) == shims.end())
        throw Error(StatusCode::kInvalidArgument,
                    "default shim \"" + def + "\" is not one of the shims being installed");
    std::vector<RuntimeClassSpec> out;
    out.push_back(classFor("kata", def, "kata"));
    for (const auto& s : shims) out.push_back(classFor("kata-" + s, s, "kata-" + s));
    return out;
}

std::string defaultsDir(const std::string& prefix) {
    return prefix + "/share/defaults/kata-containers";
}

}  // namespace kata::deploy
