#include "kata/common/mountinfo.h"

#include <sstream>

#include "kata/common/file.h"

namespace kata {

std::string unescapeMountinfo(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size()) {
            int v = 0;
            bool octal = true;
            for (size_t k = 1; k <= 3; ++k) {
                char c = s[i + k];
                octal = octal && c >= '0' && c <= '7';
                v = v * 8 + (c - '0');
            }
            if (octal) {
                out.push_back(static_cast<char>(v));
                i += 3;
                continue;
            }
        }
        out.push_back(s[i]);
    }
    return out;
}

std::vector<MountInfo> parseMountinfo(const std::string& text) {
    std::vector<MountInfo> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        // id parent major:minor root mountpoint options [optional fields...] - type source super
        auto dash = line.find(" - ");
        if (dash == std::string::npos) continue;
        std::istringstream head(line.substr(0, dash));
        std::istringstream tail(line.substr(dash + 3));
        MountInfo m;
        std::string devno, root, mp;
        if (!(head >> m.id >> m.parentId >> devno >> root >> mp >> m.options)) continue;
        std::string source, super;
        if (!(tail >> m.fsType)) continue;
        tail >> source >> super;
        m.root = unescapeMountinfo(root);
        m.mountPoint = unescapeMountinfo(mp);
        m.source = unescapeMountinfo(source);
        m.superOptions = super;
        out.push_back(std::move(m));
    }
    return out;
}

std::vector<MountInfo> readMountinfo(const std::string& path) {
    return parseMountinfo(readFile(path));
}

}  // namespace kata
