#include "payload.h"

#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "files.h"
#include "kata/common/error.h"
#include "process.h"

namespace kata::deploy {

void checkPayload(const std::string& dir, const std::vector<RuntimeClassSpec>& classes) {
    if (auto why = directoryProblem(dir); !why.empty())
        throw Error(StatusCode::kInvalidArgument, "payload " + dir + ": " + why);
    const std::string shim = dir + "/bin/" + kMainShimBinary;
    if (::access(shim.c_str(), X_OK) != 0)
        throw Error(StatusCode::kInvalidArgument, "payload " + dir + ": bin/" + kMainShimBinary +
                                                      " is missing or not executable");
    for (const auto& c : classes) {
        const std::string cfg = defaultsDir(dir) + "/" + c.configFile;
        if (::access(cfg.c_str(), R_OK) != 0)
            throw Error(StatusCode::kInvalidArgument,
                        "payload " + dir + ": share/defaults/kata-containers/" + c.configFile +
                            " (for runtime class " + c.handler + ") is missing");
    }
}

std::string registryHost(const std::string& image) {
    std::string ref = image;
    if (ref.rfind("docker://", 0) == 0) ref = ref.substr(9);
    size_t slash = ref.find('/');
    if (slash == std::string::npos) return "docker.io";
    std::string first = ref.substr(0, slash);
    if (first.find('.') != std::string::npos || first.find(':') != std::string::npos ||
        first == "localhost")
        return first;
    return "docker.io";
}

std::string base64(const std::string& in) {
    static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                     (static_cast<unsigned char>(in[i + 1]) << 8) |
                     static_cast<unsigned char>(in[i + 2]);
        out += {tbl[v >> 18], tbl[(v >> 12) & 63], tbl[(v >> 6) & 63], tbl[v & 63]};
    }
    if (i + 1 == in.size()) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16;
        out += {tbl[v >> 18], tbl[(v >> 12) & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                     (static_cast<unsigned char>(in[i + 1]) << 8);
        out += {tbl[v >> 18], tbl[(v >> 12) & 63], tbl[(v >> 6) & 63], '='};
    }
    return out;
}

PulledPayload::PulledPayload(const PullOptions& o) {
    for (const char* tool : {"skopeo", "umoci"})
        if (findExecutable(tool).empty())
            throw Error(StatusCode::kFailedPrecondition, std::string("pulling payload image ") +
                                                             o.image + ": " + tool +
                                                             " not found on PATH");
    const char* tmpRoot = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(tmpRoot && *tmpRoot ? tmpRoot : "/tmp") + "/kata-deploy-payload.XXXXXX";
    if (!::mkdtemp(tmpl.data())) throwErrno("mkdtemp", tmpl);
    tmp_ = tmpl;
    try {
        // A bare reference is a registry's; skopeo's other transports (an oci-archive on the
        // node, for one) are taken as they are.
        std::string ref = "docker://" + o.image;
        for (const char* t : {"docker://", "oci:", "oci-archive:", "docker-archive:", "dir:"})
            if (o.image.rfind(t, 0) == 0) ref = o.image;
        std::vector<std::string> copy{"skopeo", "copy", "--quiet"};
        if (!o.username.empty() || !o.password.empty()) {
            // The credentials go in a 0600 file, never on a command line other users can read.
            nlohmann::json auth;
            auth["auths"][registryHost(o.image)]["auth"] = base64(o.username + ":" + o.password);
            writeFileAtomic(tmp_ + "/auth.json", auth.dump(), 0600);
            copy.push_back("--src-authfile=" + tmp_ + "/auth.json");
        } else {
            // Without this skopeo would fall back to the host's own login files.
            writeFileAtomic(tmp_ + "/auth.json", "{\"auths\":{}}", 0600);
            copy.push_back("--src-authfile=" + tmp_ + "/auth.json");
        }
        if (!o.tlsVerify) copy.push_back("--src-tls-verify=false");
        if (!o.certDir.empty()) copy.push_back("--src-cert-dir=" + o.certDir);
        copy.push_back(ref);
        copy.push_back("oci:" + tmp_ + "/oci:payload");
        auto r = run(copy, 600);
        if (!r.ok()) {
            std::string hint;
            std::string text = r.err + r.out;
            if (text.find("unauthorized") != std::string::npos ||
                text.find("authentication required") != std::string::npos)
                hint = o.username.empty()
                           ? " (the registry wants credentials: create the Secret payload-secret "
                             "with username and password, which reach the installer as "
                             "PAYLOAD_USERNAME and PAYLOAD_PASSWORD)"
                           : " (the registry refused the credentials of user " + o.username + ")";
            throw Error(StatusCode::kUnavailable, "pulling payload image " + o.image +
                                                      ": skopeo copy failed" + hint + ": " +
                                                      r.summary());
        }
        std::vector<std::string> unpack{"umoci", "raw", "unpack"};
        if (::geteuid() != 0) unpack.push_back("--rootless");
        unpack.insert(unpack.end(), {"--image", tmp_ + "/oci:payload", tmp_ + "/rootfs"});
        r = run(unpack, 600);
        if (!r.ok())
            throw Error(StatusCode::kInternal, "unpacking payload image " + o.image +
                                                   ": umoci raw unpack failed: " + r.summary());
        dir_ = tmp_ + "/rootfs" + o.pathInImage;
        if (auto why = directoryProblem(dir_); !why.empty())
            throw Error(StatusCode::kInvalidArgument,
                        "payload image " + o.image + " has no " + o.pathInImage + ": " + why);
    } catch (...) {
        removeTree(tmp_);
        throw;
    }
}

PulledPayload::~PulledPayload() {
    try {
        removeTree(tmp_);
    } catch (...) {
    }
}

}  // namespace kata::deploy
