// Pulls an image from its registry into the guest's content store and unpacks it into an OCI
// bundle: <bundle>/rootfs and <bundle>/config.json. The layer of every step is verified before
// it is unpacked; on any failure the bundle is removed again.
#pragma once

#include <cstdint>
#include <string>

#include "kata/agent/image/content_store.h"
#include "kata/agent/image/manifest.h"
#include "kata/agent/image/registry.h"
#include "kata/agent/image/unpack.h"

namespace kata::agent::image {

// Where the guest keeps fetched blobs unless configured otherwise.
inline constexpr const char* kDefaultContentStoreDir = "/run/kata-containers/.image-store";

struct PullOptions {
    RegistryOptions registry;
    std::string contentStoreDir = kDefaultContentStoreDir;
    Platform platform = currentPlatform();
    UnpackOptions unpack;
};

struct PullResult {
    std::string reference;       // normalised: docker.io/library/busybox:latest
    std::string manifestDigest;  // the platform manifest's digest (the image's identity)
    std::string bundle;
    int layers = 0;
    int layersFetched = 0;  // downloaded by this pull
    int layersReused = 0;   // already in the content store
    int64_t bytesFetched = 0;
    int64_t bytesUnpacked = 0;
};

class ImagePuller {
  public:
    explicit ImagePuller(PullOptions options);

    // Errors start with "pull <reference>: " and keep the underlying status code; running out of
    // space while unpacking is kResourceExhausted naming the image and the space it needs.
    // The bundle directory must not hold a rootfs or config.json yet (kAlreadyExists).
    PullResult pull(const std::string& image, const std::string& bundleDir,
                    const std::string& credentials = "");

    ContentStore& contentStore() { return store_; }

  private:
    PullOptions options_;
    ContentStore store_;
};

}  // namespace kata::agent::image
