// The documents of an image in a registry: manifest lists / OCI indexes, Docker schema2 and OCI
// manifests, and the image config. Parsing only; fetching is the registry client's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kata::agent::image {

namespace media {
inline constexpr const char* kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr const char* kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr const char* kDockerManifestV1 =
    "application/vnd.docker.distribution.manifest.v1+json";
inline constexpr const char* kDockerManifestV1Signed =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
inline constexpr const char* kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr const char* kDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr const char* kDockerForeignLayerGzip =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
inline constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr const char* kOciLayer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr const char* kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr const char* kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
}  // namespace media

// What a registry is asked for when fetching a manifest by tag or digest.
std::string manifestAcceptHeader();

// Limits on documents read into memory (blobs are streamed, never held whole).
inline constexpr int64_t kMaxManifestBytes = 4 << 20;
inline constexpr int64_t kMaxConfigBytes = 4 << 20;  // as containers/image (skopeo)

struct Platform {
    std::string os;
    std::string architecture;
    std::string variant;
    std::string str() const;  // "linux/arm64/v8"
};

// The platform this agent runs on (linux/amd64 on x86-64).
Platform currentPlatform();

struct Descriptor {
    std::string mediaType;
    std::string digest;
    int64_t size = 0;
    Platform platform;  // index entries only
    bool hasPlatform = false;
};

struct Index {
    std::string mediaType;
    std::vector<Descriptor> manifests;
};

struct Manifest {
    std::string mediaType;
    Descriptor config;
    std::vector<Descriptor> layers;
};

// A fetched manifest document: either an index or an image manifest.
struct ManifestDocument {
    bool isIndex = false;
    Index index;
    Manifest manifest;
};

// Parses a manifest or index. contentType is the registry's Content-Type (may be empty or
// generic); the document's own mediaType, then its shape, decide when the header does not.
// Schema1 manifests and malformed documents are kata::Error(kInvalidArgument) naming `what`.
ManifestDocument parseManifestDocument(const std::string& body, const std::string& contentType,
                                       const std::string& what);

// The index entry for `want` (os and architecture must match; a variant only when both give
// one, with arm64 defaulting to v8). Throws kNotFound "<what>: no manifest for linux/amd64
// (available: ...)".
Descriptor selectPlatform(const Index& index, const Platform& want, const std::string& what);

enum class Compression { kNone, kGzip, kZstd };
// From a layer's media type; unknown or encrypted layers are kInvalidArgument naming `what`.
Compression layerCompression(const std::string& mediaType, const std::string& what);

struct ImageConfig {
    std::string os;
    std::string architecture;
    std::string user;
    std::vector<std::string> env;
    std::vector<std::string> entrypoint;
    std::vector<std::string> cmd;
    std::string workingDir;
    std::string stopSignal;
    std::vector<std::string> diffIds;
};

ImageConfig parseImageConfig(const std::string& body, const std::string& what);

}  // namespace kata::agent::image
