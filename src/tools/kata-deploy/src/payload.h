// The payload: a directory in the /opt/kata layout (bin/, share/kata-containers/,
// share/defaults/kata-containers/), either the installer image's own or one pulled from a
// registry (skopeo copy + umoci raw unpack) when PAYLOAD_IMAGE overrides it.
#pragma once

#include <string>
#include <vector>

#include "runtimes.h"

namespace kata::deploy {

// The prefix the payload's configuration files were written for; rewritten to the
// installation prefix when that differs.
inline constexpr const char* kPayloadBuildPrefix = "/opt/kata";
inline constexpr const char* kMainShimBinary = "containerd-shim-kata-v2";

// Throws naming dir and the missing piece unless dir holds bin/containerd-shim-kata-v2
// (executable) and the configuration file of every class.
void checkPayload(const std::string& dir, const std::vector<RuntimeClassSpec>& classes);

struct PullOptions {
    std::string image;  // docker reference, e.g. registry.example.com/kata/payload:tag
    std::string username, password;
    bool tlsVerify = true;
    std::string certDir;      // CA certificates for the registry (skopeo --src-cert-dir)
    std::string pathInImage;  // where the payload sits inside the image's rootfs
};

// A payload pulled into a temp dir, removed again when this goes.
class PulledPayload {
  public:
    explicit PulledPayload(const PullOptions& opts);
    ~PulledPayload();
    PulledPayload(const PulledPayload&) = delete;
    PulledPayload& operator=(const PulledPayload&) = delete;
    const std::string& dir() const { return dir_; }

  private:
    std::string tmp_;
    std::string dir_;
};

// The registry host of a docker reference ("docker.io" when it names none).
std::string registryHost(const std::string& image);
std::string base64(const std::string& in);

}  // namespace kata::deploy
