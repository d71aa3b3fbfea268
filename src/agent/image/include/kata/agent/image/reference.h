// Image references as users write them ("busybox", "127.0.0.1:5000/app:v1",
// "ghcr.io/org/app@sha256:..."), normalised the way docker and containerd do it.
#pragma once

#include <string>

namespace kata::agent::image {

inline constexpr const char* kDockerHubDomain = "docker.io";
// The host that actually serves docker.io's distribution API.
inline constexpr const char* kDockerHubApiHost = "registry-1.docker.io";
inline constexpr const char* kDefaultTag = "latest";

struct ImageReference {
    std::string registry;    // "docker.io", "127.0.0.1:5000", "[::1]:5000"
    std::string repository;  // "library/busybox", "org/app"
    std::string tag;         // empty when only a digest was given
    std::string digest;      // "sha256:<64 hex>", or empty

    // The host[:port] the distribution API is reached at (docker.io -> registry-1.docker.io).
    std::string apiHost() const;
    // What the manifest is fetched by: the digest when there is one, else the tag.
    std::string manifestReference() const { return digest.empty() ? tag : digest; }
    // "docker.io/library/busybox:latest", "host/repo@sha256:...", "host/repo:tag@sha256:...".
    std::string str() const;
};

// Parses a reference: a registry part is the first component when it holds a '.' or ':' or is
// "localhost" (else docker.io, where one-component names get "library/"); the tag defaults to
// "latest" unless a digest is given. Throws kata::Error(kInvalidArgument) "invalid image
// reference \"<text>\": <reason>".
ImageReference parseImageReference(const std::string& text);

}  // namespace kata::agent::image
