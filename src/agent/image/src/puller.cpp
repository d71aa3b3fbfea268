#include "kata/agent/image/puller.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>

#include "kata/agent/image/bundle.h"
#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/oci/spec.h"

namespace kata::agent::image {

namespace {

namespace fs = std::filesystem;

const log::Logger& logger() {
    static const log::Logger l("image");
    return l;
}

// Error with the same code and "<prefix>: " in front, unless the message already has it.
[[noreturn]] void rethrowPrefixed(const std::string& prefix) {
    try {
        throw;
    } catch (const Error& e) {
        std::string msg = e.what();
        if (msg.rfind(prefix, 0) == 0) throw;
        throw Error(e.code(), prefix + ": " + msg);
    } catch (const std::exception& e) {
        throw Error(StatusCode::kInternal, prefix + ": " + e.what());
    }
}

std::string mib(int64_t bytes) {
    double m = static_cast<double>(bytes) / (1024.0 * 1024.0);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", m);
    return buf;
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

// Removes what a failed pull put into the bundle.
class BundleGuard {
  public:
    BundleGuard(std::string bundle, bool createdBundle)
        : bundle_(std::move(bundle)), created_(createdBundle) {}
    ~BundleGuard() { clean(); }
    // Removes what the pull wrote, now; later calls do nothing.
    void clean() {
        if (!armed_) return;
        armed_ = false;
        try {
            if (created_) {
                removeTree(bundle_);
            } else {
                removeTree(bundle_ + "/rootfs");
                ::unlink((bundle_ + "/config.json").c_str());
            }
        } catch (const std::exception& e) {
            logger().error("cannot remove a failed pull's bundle",
                           {{"bundle", bundle_}, {"error", e.what()}});
        }
    }
    void disarm() { armed_ = false; }

  private:
    std::string bundle_;
    bool created_;
    bool armed_ = true;
};

}  // namespace

ImagePuller::ImagePuller(PullOptions options)
    : options_(std::move(options)), store_(options_.contentStoreDir) {}

PullResult ImagePuller::pull(const std::string& image, const std::string& bundleDir,
                             const std::string& credentials) {
    auto started = std::chrono::steady_clock::now();
    ImageReference ref = parseImageReference(image);
    PullResult result;
    result.reference = ref.str();
    result.bundle = bundleDir;
    const std::string prefix = "pull " + ref.str();
    if (bundleDir.empty() || bundleDir.front() != '/')
        throw Error(StatusCode::kInvalidArgument,
                    prefix + ": bundle directory \"" + bundleDir + "\" is not an absolute path");
    if (exists(bundleDir + "/rootfs") || exists(bundleDir + "/config.json"))
        throw Error(StatusCode::kAlreadyExists,
                    prefix + ": bundle " + bundleDir + " already holds a rootfs or config.json");

    Manifest manifest;
    ImageConfig config;
    try {
        RegistryClient client(ref, parseCredentials(credentials), options_.registry);
        FetchedManifest top = client.fetchManifest(ref.manifestReference(), prefix + ": manifest");
        ManifestDocument doc =
            parseManifestDocument(top.body, top.contentType, prefix + ": manifest");
        result.manifestDigest = top.digest;
        if (doc.isIndex) {
            Descriptor chosen = selectPlatform(doc.index, options_.platform, prefix + ": index");
            if (chosen.size > kMaxManifestBytes)
                throw Error(StatusCode::kInvalidArgument, prefix + ": manifest " + chosen.digest +
                                                              " of " + std::to_string(chosen.size) +
                                                              " bytes is over the limit of " +
                                                              std::to_string(kMaxManifestBytes));
            std::string what = prefix + ": manifest " + chosen.digest;
            FetchedManifest m = client.fetchManifest(chosen.digest, what);
            if (static_cast<int64_t>(m.body.size()) != chosen.size)
                throw Error(StatusCode::kDataLoss, what + ": got " + std::to_string(m.body.size()) +
                                                       " bytes, the index declares " +
                                                       std::to_string(chosen.size));
            doc = parseManifestDocument(m.body, m.contentType, what);
            if (doc.isIndex)
                throw Error(StatusCode::kInvalidArgument,
                            what + ": an index inside an index is not supported");
            result.manifestDigest = m.digest;
        }
        manifest = doc.manifest;

        std::vector<Compression> compressions;
        for (size_t i = 0; i < manifest.layers.size(); ++i) {
            compressions.push_back(layerCompression(
                manifest.layers[i].mediaType,
                prefix + ": layer " + std::to_string(i + 1) + " " + manifest.layers[i].digest));
        }

        auto fetch = [&](const Descriptor& d, const std::string& what, bool isLayer) {
            auto lock = store_.lockDigest(d.digest);
            if (store_.has(d.digest, d.size)) {
                if (isLayer) ++result.layersReused;
                return;
            }
            client.fetchBlob(d, store_, what);
            if (isLayer) {
                ++result.layersFetched;
                result.bytesFetched += d.size;
            }
        };
        std::string configWhat = prefix + ": config " + manifest.config.digest;
        fetch(manifest.config, configWhat, false);
        config = parseImageConfig(store_.read(manifest.config.digest), configWhat);
        if (!config.architecture.empty() && config.architecture != options_.platform.architecture)
            throw Error(StatusCode::kFailedPrecondition,
                        prefix + ": the image is for " + config.os + "/" + config.architecture +
                            ", this guest is " + options_.platform.str());
        if (!config.diffIds.empty() && config.diffIds.size() != manifest.layers.size())
            throw Error(StatusCode::kInvalidArgument,
                        configWhat + ": lists " + std::to_string(config.diffIds.size()) +
                            " layers, the manifest " + std::to_string(manifest.layers.size()));
        result.layers = static_cast<int>(manifest.layers.size());
        for (size_t i = 0; i < manifest.layers.size(); ++i) {
            const auto& l = manifest.layers[i];
            fetch(l,
                  prefix + ": layer " + std::to_string(i + 1) + "/" +
                      std::to_string(manifest.layers.size()) + " " + l.digest,
                  true);
        }
    } catch (...) {
        rethrowPrefixed(prefix);
    }

    // Unpack into the bundle; from here on a failure removes what was written.
    bool createdBundle = !exists(bundleDir);
    {
        std::error_code ec;
        fs::create_directories(bundleDir, ec);
        if (ec) throw SystemError(prefix + ": create bundle directory", bundleDir, ec.value());
    }
    BundleGuard guard(bundleDir, createdBundle);
    const std::string rootfs = bundleDir + "/rootfs";
    if (::mkdir(rootfs.c_str(), 0755) != 0) throwErrno(prefix + ": create", rootfs);
    UniqueFd rootFd(::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!rootFd) throwErrno(prefix + ": open", rootfs);

    size_t current = 0;
    try {
        for (current = 0; current < manifest.layers.size(); ++current) {
            const auto& l = manifest.layers[current];
            std::string what = prefix + ": layer " + std::to_string(current + 1) + "/" +
                               std::to_string(manifest.layers.size()) + " " + l.digest;
            LayerStats st = applyLayer(rootFd.get(), store_.blobPath(l.digest),
                                       layerCompression(l.mediaType, what), what, options_.unpack);
            result.bytesUnpacked += st.bytes;
        }
        grpc::Spec spec = specFromImageConfig(config, rootFd.get(), prefix);
        oci::saveSpecFile(spec, bundleDir + "/config.json");
    } catch (const SystemError& e) {
        if (e.err() != ENOSPC && e.err() != EDQUOT) rethrowPrefixed(prefix);
        int64_t needed = 0;
        for (const auto& l : manifest.layers) {
            needed += unpackedSizeEstimate(store_.blobPath(l.digest),
                                           layerCompression(l.mediaType, prefix), prefix);
        }
        guard.clean();
        std::string detail = e.what();  // "write <image>: layer ...: entry "x": No space ..."
        if (size_t entry = detail.find("entry \""); entry != std::string::npos)
            detail = detail.substr(entry);
        struct statvfs vfs {};
        std::string freeText = "unknown";
        std::string probe =
            exists(bundleDir) ? bundleDir : fs::path(bundleDir).parent_path().string();
        if (::statvfs(probe.c_str(), &vfs) == 0)
            freeText = mib(static_cast<int64_t>(vfs.f_bavail) * static_cast<int64_t>(vfs.f_frsize));
        std::string layerText = current < manifest.layers.size()
                                    ? "layer " + std::to_string(current + 1) + "/" +
                                          std::to_string(manifest.layers.size()) + " " +
                                          manifest.layers[current].digest
                                    : "config.json";
        throw Error(StatusCode::kResourceExhausted,
                    prefix + ": out of space unpacking " + layerText + " into " + bundleDir +
                        ": the image needs about " + mib(needed) + " (" + std::to_string(needed) +
                        " bytes) unpacked, " + freeText + " free there (" + detail + ")");
    } catch (...) {
        rethrowPrefixed(prefix);
    }
    guard.disarm();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - started)
                  .count();
    logger().info("image pulled", {{"image", result.reference},
                                   {"digest", result.manifestDigest},
                                   {"bundle", bundleDir},
                                   {"layers", std::to_string(result.layers)},
                                   {"layers_fetched", std::to_string(result.layersFetched)},
                                   {"bytes_fetched", std::to_string(result.bytesFetched)},
                                   {"duration_ms", std::to_string(ms)}});
    return result;
}

}  // namespace kata::agent::image
