#include "kata/agent/image/manifest.h"

#include <nlohmann/json.hpp>

#include "kata/agent/image/digest.h"
#include "kata/common/error.h"

namespace kata::agent::image {

namespace {

using json = nlohmann::json;

[[noreturn]] void invalid(const std::string& what, const std::string& why) {
    throw Error(StatusCode::kInvalidArgument, what + ": " + why);
}

json parseJson(const std::string& body, const std::string& what) {
    try {
        json j = json::parse(body);
        if (!j.is_object()) invalid(what, "not a JSON object");
        return j;
    } catch (const json::exception& e) {
        invalid(what, std::string("invalid JSON: ") + e.what());
    }
}

std::string stringField(const json& j, const char* key, const std::string& what,
                        bool required = false) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (required) invalid(what, std::string("missing \"") + key + "\"");
        return {};
    }
    if (!it->is_string()) invalid(what, std::string("\"") + key + "\" is not a string");
    return it->get<std::string>();
}

std::vector<std::string> stringList(const json& j, const char* key, const std::string& what) {
    std::vector<std::string> out;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return out;
    if (!it->is_array()) invalid(what, std::string("\"") + key + "\" is not an array");
    for (const auto& v : *it) {
        if (!v.is_string()) invalid(what, std::string("\"") + key + "\" holds a non-string");
        out.push_back(v.get<std::string>());
    }
    return out;
}

Descriptor descriptor(const json& j, const std::string& what) {
    if (!j.is_object()) invalid(what, "descriptor is not an object");
    Descriptor d;
    d.mediaType = stringField(j, "mediaType", what);
    d.digest = stringField(j, "digest", what, true);
    checkDigest(d.digest, what);
    auto size = j.find("size");
    if (size == j.end() || !size->is_number_integer() || size->get<int64_t>() < 0)
        invalid(what, "descriptor " + d.digest + " has no valid size");
    d.size = size->get<int64_t>();
    auto p = j.find("platform");
    if (p != j.end() && p->is_object()) {
        d.hasPlatform = true;
        d.platform.os = stringField(*p, "os", what);
        d.platform.architecture = stringField(*p, "architecture", what);
        d.platform.variant = stringField(*p, "variant", what);
    }
    return d;
}

bool isIndexType(const std::string& t) {
    return t == media::kDockerManifestList || t == media::kOciIndex;
}
bool isManifestType(const std::string& t) {
    return t == media::kDockerManifest || t == media::kOciManifest;
}
bool isSchema1(const std::string& t) {
    return t == media::kDockerManifestV1 || t == media::kDockerManifestV1Signed;
}

// "application/json; charset=utf-8" -> "application/json"
std::string bareType(const std::string& contentType) {
    std::string t = contentType.substr(0, contentType.find(';'));
    while (!t.empty() && t.back() == ' ') t.pop_back();
    return t;
}

}  // namespace

std::string manifestAcceptHeader() {
    return std::string(media::kOciIndex) + ", " + media::kDockerManifestList + ", " +
           media::kOciManifest + ", " + media::kDockerManifest;
}

std::string Platform::str() const {
    std::string s = os + "/" + architecture;
    if (!variant.empty()) s += "/" + variant;
    return s;
}

Platform currentPlatform() {
#if defined(__x86_64__)
    return {"linux", "amd64", ""};
#elif defined(__aarch64__)
    return {"linux", "arm64", "v8"};
#elif defined(__s390x__)
    return {"linux", "s390x", ""};
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return {"linux", "ppc64le", ""};
#else
#error "unknown guest architecture"
#endif
}

ManifestDocument parseManifestDocument(const std::string& body, const std::string& contentType,
                                       const std::string& what) {
    if (static_cast<int64_t>(body.size()) > kMaxManifestBytes)
        invalid(what, "manifest of " + std::to_string(body.size()) +
                          " bytes is over the limit of " + std::to_string(kMaxManifestBytes));
    json j = parseJson(body, what);
    std::string type = stringField(j, "mediaType", what);
    std::string header = bareType(contentType);
    if (type.empty() && (isIndexType(header) || isManifestType(header) || isSchema1(header)))
        type = header;
    if (type.empty()) {
        // OCI allows documents without mediaType: tell them apart by shape.
        if (j.contains("manifests"))
            type = media::kOciIndex;
        else if (j.contains("layers") && j.contains("config"))
            type = media::kOciManifest;
        else if (j.value("schemaVersion", 0) == 1)
            type = media::kDockerManifestV1;
    }
    if (isSchema1(type) || j.value("schemaVersion", 0) == 1)
        invalid(what,
                "Docker schema1 manifests are not supported (push the image again with a "
                "current client)");
    ManifestDocument doc;
    if (isIndexType(type)) {
        doc.isIndex = true;
        doc.index.mediaType = type;
        auto m = j.find("manifests");
        if (m == j.end() || !m->is_array()) invalid(what, "index has no \"manifests\" array");
        for (const auto& e : *m) doc.index.manifests.push_back(descriptor(e, what));
        return doc;
    }
    if (!isManifestType(type)) invalid(what, "unsupported manifest media type \"" + type + "\"");
    doc.manifest.mediaType = type;
    auto c = j.find("config");
    if (c == j.end()) invalid(what, "manifest has no \"config\"");
    doc.manifest.config = descriptor(*c, what + " config");
    auto l = j.find("layers");
    if (l == j.end() || !l->is_array()) invalid(what, "manifest has no \"layers\" array");
    for (const auto& e : *l) doc.manifest.layers.push_back(descriptor(e, what + " layer"));
    if (doc.manifest.config.size > kMaxConfigBytes)
        invalid(what, "config of " + std::to_string(doc.manifest.config.size) +
                          " bytes is over the limit of " + std::to_string(kMaxConfigBytes));
    return doc;
}

Descriptor selectPlatform(const Index& index, const Platform& want, const std::string& what) {
    auto variantOf = [](const Platform& p) {
        if (p.variant.empty() && p.architecture == "arm64") return std::string("v8");
        return p.variant;
    };
    std::string available;
    const Descriptor* fallback = nullptr;
    for (const auto& d : index.manifests) {
        if (!d.hasPlatform) continue;
        if (!available.empty()) available += ", ";
        available += d.platform.str();
        if (d.platform.os != want.os || d.platform.architecture != want.architecture) continue;
        if (!isManifestType(d.mediaType) && !d.mediaType.empty()) continue;
        std::string have = variantOf(d.platform);
        std::string need = variantOf(want);
        if (have == need) return d;
        if (have.empty() || need.empty()) fallback = fallback ? fallback : &d;
    }
    if (fallback) return *fallback;
    throw Error(StatusCode::kNotFound, what + ": no manifest for " + want.str() + " (available: " +
                                           (available.empty() ? "none" : available) + ")");
}

Compression layerCompression(const std::string& mediaType, const std::string& what) {
    if (mediaType == media::kOciLayer ||
        mediaType == "application/vnd.oci.image.layer.nondistributable.v1.tar")
        return Compression::kNone;
    if (mediaType == media::kOciLayerGzip || mediaType == media::kDockerLayerGzip ||
        mediaType == media::kDockerForeignLayerGzip ||
        mediaType == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
        return Compression::kGzip;
    if (mediaType == media::kOciLayerZstd ||
        mediaType == "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")
        return Compression::kZstd;
    if (mediaType.find("+encrypted") != std::string::npos)
        invalid(what, "encrypted layers (" + mediaType + ") are not supported");
    invalid(what, "unsupported layer media type \"" + mediaType + "\"");
}

ImageConfig parseImageConfig(const std::string& body, const std::string& what) {
    if (static_cast<int64_t>(body.size()) > kMaxConfigBytes)
        invalid(what, "config of " + std::to_string(body.size()) + " bytes is over the limit of " +
                          std::to_string(kMaxConfigBytes));
    json j = parseJson(body, what);
    ImageConfig c;
    c.os = stringField(j, "os", what);
    c.architecture = stringField(j, "architecture", what);
    auto cfg = j.find("config");
    if (cfg != j.end() && cfg->is_object()) {
        c.user = stringField(*cfg, "User", what);
        c.env = stringList(*cfg, "Env", what);
        c.entrypoint = stringList(*cfg, "Entrypoint", what);
        c.cmd = stringList(*cfg, "Cmd", what);
        c.workingDir = stringField(*cfg, "WorkingDir", what);
        c.stopSignal = stringField(*cfg, "StopSignal", what);
    } else if (cfg != j.end() && !cfg->is_null()) {
        invalid(what, "\"config\" is not an object");
    }
    auto rootfs = j.find("rootfs");
    if (rootfs != j.end() && rootfs->is_object()) c.diffIds = stringList(*rootfs, "diff_ids", what);
    return c;
}

}  // namespace kata::agent::image
