#include "kata/agent/image/reference.h"

#include <cctype>
#include <vector>

#include "kata/agent/image/digest.h"
#include "kata/common/error.h"

namespace kata::agent::image {

namespace {

constexpr size_t kMaxNameLength = 255;
constexpr size_t kMaxTagLength = 128;

[[noreturn]] void invalid(const std::string& text, const std::string& why) {
    throw Error(StatusCode::kInvalidArgument, "invalid image reference \"" + text + "\": " + why);
}

bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool isAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
bool isPathComponent(const std::string& c) {
    if (c.empty() || !isLowerAlnum(c.front()) || !isLowerAlnum(c.back())) return false;
    for (size_t i = 0; i < c.size();) {
        if (isLowerAlnum(c[i])) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < c.size() && !isLowerAlnum(c[j])) ++j;
        std::string sep = c.substr(i, j - i);
        bool dashes = sep.find_first_not_of('-') == std::string::npos;
        if (sep != "." && sep != "_" && sep != "__" && !dashes) return false;
        i = j;
    }
    return true;
}

// host name, IPv4 or [IPv6], with an optional :port.
bool isDomain(const std::string& d) {
    std::string host = d;
    std::string port;
    if (!d.empty() && d.front() == '[') {
        size_t close = d.find(']');
        if (close == std::string::npos) return false;
        std::string inner = d.substr(1, close - 1);
        if (inner.empty() ||
            inner.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos)
            return false;
        std::string rest = d.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return false;
            port = rest.substr(1);
            if (port.empty()) return false;
        }
        host.clear();
    } else {
        size_t colon = d.rfind(':');
        if (colon != std::string::npos) {
            host = d.substr(0, colon);
            port = d.substr(colon + 1);
            if (port.empty()) return false;
        }
        if (host.empty()) return false;
        size_t i = 0;
        while (i <= host.size()) {
            size_t j = host.find('.', i);
            if (j == std::string::npos) j = host.size();
            std::string label = host.substr(i, j - i);
            if (label.empty() || !isAlnum(label.front()) || !isAlnum(label.back())) return false;
            for (char c : label) {
                if (!isAlnum(c) && c != '-') return false;
            }
            i = j + 1;
        }
    }
    if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5) return false;
    return true;
}

bool isTag(const std::string& t) {
    if (t.empty() || t.size() > kMaxTagLength) return false;
    auto word = [](char c) { return isAlnum(c) || c == '_'; };
    if (!word(t.front())) return false;
    for (char c : t) {
        if (!word(c) && c != '.' && c != '-') return false;
    }
    return true;
}

}  // namespace

std::string ImageReference::apiHost() const {
    return registry == kDockerHubDomain ? kDockerHubApiHost : registry;
}

std::string ImageReference::str() const {
    std::string s = registry + "/" + repository;
    if (!tag.empty()) s += ":" + tag;
    if (!digest.empty()) s += "@" + digest;
    return s;
}

ImageReference parseImageReference(const std::string& text) {
    if (text.empty()) invalid(text, "empty");
    for (char c : text) {
        if (std::isspace(static_cast<unsigned char>(c)) ||
            std::iscntrl(static_cast<unsigned char>(c)))
            invalid(text, "contains whitespace or control characters");
    }
    ImageReference ref;
    std::string rest = text;
    size_t at = rest.find('@');
    if (at != std::string::npos) {
        ref.digest = rest.substr(at + 1);
        rest = rest.substr(0, at);
        if (!isValidDigest(ref.digest))
            invalid(text, "digest \"" + ref.digest + "\" is not sha256:<64 lowercase hex digits>");
    }
    size_t lastSlash = rest.rfind('/');
    size_t colon = rest.rfind(':');
    if (colon != std::string::npos && (lastSlash == std::string::npos || colon > lastSlash)) {
        ref.tag = rest.substr(colon + 1);
        rest = rest.substr(0, colon);
        if (!isTag(ref.tag)) invalid(text, "tag \"" + ref.tag + "\" is not valid");
    }
    if (rest.empty()) invalid(text, "no repository name");

    size_t slash = rest.find('/');
    std::string first = rest.substr(0, slash);
    bool hasDomain = slash != std::string::npos &&
                     (first.find_first_of(".:") != std::string::npos || first == "localhost" ||
                      first.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos ||
                      first.front() == '[');
    std::string path;
    if (hasDomain) {
        if (!isDomain(first))
            invalid(text, "registry \"" + first + "\" is not a valid host[:port]");
        ref.registry = first == "index.docker.io" ? kDockerHubDomain : first;
        path = rest.substr(slash + 1);
    } else {
        ref.registry = kDockerHubDomain;
        path = rest;
    }
    if (ref.registry == kDockerHubDomain && path.find('/') == std::string::npos)
        path = "library/" + path;

    size_t i = 0;
    while (i <= path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string::npos) j = path.size();
        std::string comp = path.substr(i, j - i);
        if (!isPathComponent(comp)) {
            bool upper = comp.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos;
            invalid(text, upper ? "repository name must be lowercase"
                                : "repository component \"" + comp + "\" is not valid");
        }
        i = j + 1;
    }
    ref.repository = path;
    if (ref.registry.size() + 1 + ref.repository.size() > kMaxNameLength)
        invalid(text, "name longer than 255 characters");
    if (ref.tag.empty() && ref.digest.empty()) ref.tag = kDefaultTag;
    return ref;
}

}  // namespace kata::agent::image
