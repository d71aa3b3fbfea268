// Pulls from a real registry (docker-registry on 127.0.0.1) of images built by the test from
// busybox-static with umoci and pushed with skopeo.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "kata/agent/image/digest.h"
#include "kata/agent/image/puller.h"
#include "kata/oci/spec.h"
#include "registry_fixture.h"
#include "test_util.h"
#include "token_server.h"

namespace kata::agent::image {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::expectError;
using test::LocalRegistry;
using test::sh;

struct BuiltImages {
    std::unique_ptr<test::TempDir> work;
    std::string layout;                       // OCI layout dir
    std::map<std::string, json> descriptors;  // tag -> manifest descriptor in the layout
    std::unique_ptr<LocalRegistry> registry;
    std::string bigConfigDigest;
    std::string bigConfigLayer;
};

std::string pushCommand(const std::string& layout, const std::string& tag, const std::string& dest,
                        const std::string& extra = "") {
    return "skopeo copy --quiet --dest-tls-verify=false " + extra + " oci:" + layout + ":" + tag +
           " docker://" + dest + "\n";
}

class RegistryPullTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        skipReason_ = test::missingImageTools();
        if (!skipReason_.empty()) {
            skipReason_ =
                "image tools missing (apt-get install docker-registry umoci skopeo "
                "apache2-utils busybox-static openssl curl): " +
                skipReason_;
            return;
        }
        images_ = new BuiltImages;
        images_->work = std::make_unique<test::TempDir>("kata-image-it");
        const std::string w = images_->work->path();
        images_->layout = w + "/oci";
        sh("set -euo pipefail\ncd " + w + "\n" + KATA_BUSYBOX_ROOTFS_SCRIPT + " rootfs-src\n" +
           "printf 'welcome\\n' > rootfs-src/etc/motd\n"
           "mkdir -p rootfs-src/data newdata && printf 'old\\n' > rootfs-src/data/old\n"
           "printf 'new\\n' > newdata/new\n"
           "head -c 65536 /dev/urandom > unique.bin && chmod 755 unique.bin\n"
           "umoci init --layout oci\n"
           "umoci new --image oci:base\n"
           "umoci insert --image oci:base rootfs-src /\n"
           "umoci config --image oci:base --config.cmd /bin/sh "
           "  --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
           "umoci config --image oci:base --tag two --config.user tester --config.workingdir /tmp "
           "  --config.entrypoint /bin/echo --config.cmd hello\n"
           "umoci insert --image oci:two --whiteout /etc/motd\n"
           "umoci insert --image oci:two --opaque newdata /data\n"
           "umoci new --image oci:unique\n"
           "umoci insert --image oci:unique unique.bin /unique.bin\n"
           "umoci config --image oci:unique --config.cmd /unique.bin\n");
        json index = json::parse(test::slurp(images_->layout + "/index.json"));
        for (const auto& d : index["manifests"])
            images_->descriptors[d["annotations"]["org.opencontainers.image.ref.name"]] = d;
        addMultiArchIndex();
        addOversizedConfigImage();
        images_->registry =
            std::make_unique<LocalRegistry>(w + "/registry", LocalRegistry::Options{});
        const std::string host = images_->registry->host();
        sh("set -euo pipefail\n" + pushCommand(images_->layout, "base", host + "/busybox:base") +
           pushCommand(images_->layout, "two", host + "/busybox:two") +
           pushCommand(images_->layout, "base", host + "/busybox-docker:base", "--format v2s2") +
           pushCommand(images_->layout, "unique", host + "/tamper:latest") +
           pushCommand(images_->layout, "multi", host + "/multi:latest", "--all"));
        pushOversizedConfigImage();
    }

    // An index by hand: "base" as linux/amd64, "two" labelled linux/arm64.
    static void addMultiArchIndex() {
        json base = images_->descriptors["base"];
        json two = images_->descriptors["two"];
        base.erase("annotations");
        two.erase("annotations");
        base["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
        two["platform"] = {{"os", "linux"}, {"architecture", "arm64"}};
        json idx = {
            {"schemaVersion", 2}, {"mediaType", media::kOciIndex}, {"manifests", {two, base}}};
        std::string body = idx.dump();
        std::string digest = sha256Digest(body);
        test::spit(images_->layout + "/blobs/sha256/" + digestHex(digest), body);
        json layoutIndex = json::parse(test::slurp(images_->layout + "/index.json"));
        layoutIndex["manifests"].push_back(
            {{"mediaType", media::kOciIndex},
             {"digest", digest},
             {"size", body.size()},
             {"annotations", {{"org.opencontainers.image.ref.name", "multi"}}}});
        test::spit(images_->layout + "/index.json", layoutIndex.dump());
    }

    static void addBlob(const std::string& body, const std::string& mediaType,
                        const std::string& refName = "") {
        std::string digest = sha256Digest(body);
        test::spit(images_->layout + "/blobs/sha256/" + digestHex(digest), body);
        if (refName.empty()) return;
        json layoutIndex = json::parse(test::slurp(images_->layout + "/index.json"));
        layoutIndex["manifests"].push_back(
            {{"mediaType", mediaType},
             {"digest", digest},
             {"size", body.size()},
             {"annotations", {{"org.opencontainers.image.ref.name", refName}}}});
        test::spit(images_->layout + "/index.json", layoutIndex.dump());
    }

    // "bigconfig": the base image with a 5 MiB config (a huge label), over kMaxConfigBytes.
    // skopeo refuses to copy such an image, so it goes up through the distribution API.
    static void addOversizedConfigImage() {
        json manifest = json::parse(
            test::slurp(images_->layout + "/blobs/sha256/" +
                        digestHex(images_->descriptors["base"]["digest"].get<std::string>())));
        json config =
            json::parse(test::slurp(images_->layout + "/blobs/sha256/" +
                                    digestHex(manifest["config"]["digest"].get<std::string>())));
        config["config"]["Labels"]["padding"] = std::string(5 << 20, 'x');
        std::string configBody = config.dump();
        addBlob(configBody, media::kOciConfig);
        manifest["config"]["digest"] = sha256Digest(configBody);
        manifest["config"]["size"] = configBody.size();
        test::spit(images_->work->path() + "/bigconfig-manifest.json", manifest.dump());
        images_->bigConfigDigest = sha256Digest(configBody);
        images_->bigConfigLayer = manifest["layers"][0]["digest"];
    }

    static void pushOversizedConfigImage() {
        const std::string api = "http://" + images_->registry->host() + "/v2/bigconfig";
        const std::string& d = images_->bigConfigDigest;
        sh("set -euo pipefail\n"
           "curl -sSf -o /dev/null -X POST '" +
           api + "/blobs/uploads/?mount=" + images_->bigConfigLayer +
           "&from=busybox'\n"
           "loc=$(curl -sSf -o /dev/null -D - -X POST '" +
           api +
           "/blobs/uploads/' | tr -d '\\r' | sed -n 's/^[Ll]ocation: //p')\n"
           "curl -sSf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' "
           "--data-binary @" +
           images_->layout + "/blobs/sha256/" + digestHex(d) + " \"$loc&digest=" + d +
           "\"\n"
           "curl -sSf -o /dev/null -X PUT -H 'Content-Type: " +
           media::kOciManifest + "' --data-binary @" + images_->work->path() +
           "/bigconfig-manifest.json '" + api + "/manifests/latest'\n");
    }

    static void TearDownTestSuite() {
        delete images_;  // stops the registry, removes every temp dir
        images_ = nullptr;
    }

    void SetUp() override {
        if (!skipReason_.empty()) GTEST_SKIP() << skipReason_;
        if (::geteuid() != 0) GTEST_SKIP() << "pull tests keep image ownership and need root";
        store = tmp.path() + "/content";
    }

    std::string host() const { return images_->registry->host(); }
    std::string digestOf(const std::string& tag) const {
        return images_->descriptors.at(tag)["digest"];
    }
    json layoutManifest(const std::string& tag) const {
        return json::parse(
            test::slurp(images_->layout + "/blobs/sha256/" + digestHex(digestOf(tag))));
    }
    PullOptions options() const {
        PullOptions o;
        o.contentStoreDir = store;
        return o;
    }
    static void expectNoBundle(const std::string& bundle) {
        EXPECT_FALSE(fs::exists(bundle)) << bundle << " was left behind";
    }
    void expectStoreClean() const {
        if (fs::exists(store + "/ingest")) {
            EXPECT_TRUE(fs::is_empty(store + "/ingest"));
        }
    }

    static std::string skipReason_;
    static BuiltImages* images_;
    test::TempDir tmp;
    std::string store;
};

std::string RegistryPullTest::skipReason_;
BuiltImages* RegistryPullTest::images_ = nullptr;

TEST_F(RegistryPullTest, PullsAnImageIntoABundle) {
    ImagePuller puller(options());
    std::string bundle = tmp.path() + "/run/c1";
    PullResult r = puller.pull(host() + "/busybox:base", bundle);
    EXPECT_EQ(r.reference, host() + "/busybox:base");
    EXPECT_EQ(r.manifestDigest, digestOf("base"));
    EXPECT_EQ(r.layers, 1);
    EXPECT_EQ(r.layersFetched, 1);
    std::cout << "pulled " << r.reference << " " << r.manifestDigest << ": " << r.bytesFetched
              << " bytes fetched, " << r.bytesUnpacked << " unpacked\n";

    struct stat st {};
    ASSERT_EQ(::stat((bundle + "/rootfs/bin/busybox").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0755u);
    EXPECT_EQ(test::slurp(bundle + "/rootfs/etc/motd"), "welcome\n");
    EXPECT_EQ(fs::read_symlink(bundle + "/rootfs/bin/sh"), "/bin/busybox");
    ASSERT_EQ(::stat((bundle + "/rootfs/tmp").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 01777u);

    grpc::Spec spec = oci::loadSpecFile(bundle + "/config.json");
    ASSERT_EQ(spec.process().args_size(), 1);
    EXPECT_EQ(spec.process().args(0), "/bin/sh");
    ASSERT_GE(spec.process().env_size(), 1);
    EXPECT_EQ(spec.process().env(0), "PATH=/usr/sbin:/usr/bin:/sbin:/bin");
    EXPECT_EQ(spec.root().path(), "rootfs");
    // The unpacked busybox really runs.
    EXPECT_EQ(sh("chroot " + bundle + "/rootfs /bin/sh -c 'cat /etc/motd; echo ok'"),
              "welcome\nok\n");
}

TEST_F(RegistryPullTest, WhiteoutOpaqueDirectoryAndUserAcrossLayers) {
    ImagePuller puller(options());
    std::string bundle = tmp.path() + "/c2";
    PullResult r = puller.pull(host() + "/busybox:two", bundle);
    EXPECT_EQ(r.layers, 3);
    const std::string rootfs = bundle + "/rootfs";
    EXPECT_FALSE(fs::exists(rootfs + "/etc/motd"));  // .wh.motd
    EXPECT_FALSE(fs::exists(rootfs + "/data/old"));  // .wh..wh..opq in /data
    EXPECT_EQ(test::slurp(rootfs + "/data/new"), "new\n");
    EXPECT_TRUE(fs::exists(rootfs + "/etc/passwd"));
    grpc::Spec spec = oci::loadSpecFile(bundle + "/config.json");
    ASSERT_EQ(spec.process().args_size(), 2);
    EXPECT_EQ(spec.process().args(0), "/bin/echo");
    EXPECT_EQ(spec.process().args(1), "hello");
    EXPECT_EQ(spec.process().cwd(), "/tmp");
    // "tester" from the image's /etc/passwd, and its group "extra" from /etc/group.
    EXPECT_EQ(spec.process().user().uid(), 1000u);
    EXPECT_EQ(spec.process().user().gid(), 1000u);
    ASSERT_EQ(spec.process().user().additionalgids_size(), 1);
    EXPECT_EQ(spec.process().user().additionalgids(0), 2000u);
}

TEST_F(RegistryPullTest, SharedLayerIsFetchedOnce) {
    ImagePuller puller(options());
    std::string baseLayer = layoutManifest("base")["layers"][0]["digest"];
    ASSERT_EQ(layoutManifest("two")["layers"][0]["digest"], baseLayer);
    int before = images_->registry->blobGets("busybox", baseLayer);

    PullResult a = puller.pull(host() + "/busybox:base", tmp.path() + "/a");
    PullResult b = puller.pull(host() + "/busybox:two", tmp.path() + "/b");
    PullResult c = puller.pull(host() + "/busybox:base", tmp.path() + "/c");
    EXPECT_EQ(a.layersFetched, 1);
    EXPECT_EQ(b.layersFetched, 2);
    EXPECT_EQ(b.layersReused, 1);
    EXPECT_EQ(c.layersFetched, 0);
    EXPECT_EQ(c.layersReused, 1);
    EXPECT_EQ(c.bytesFetched, 0);
    EXPECT_EQ(images_->registry->blobGets("busybox", baseLayer) - before, 1)
        << "the registry saw the shared layer requested more than once";
    std::cout << "shared layer " << baseLayer << ": fetched once for 3 pulls; second image fetched "
              << b.layersFetched << " of " << b.layers << " layers\n";
    EXPECT_TRUE(fs::exists(tmp.path() + "/c/rootfs/etc/motd"));
    EXPECT_FALSE(fs::exists(tmp.path() + "/b/rootfs/etc/motd"));
}

TEST_F(RegistryPullTest, DockerSchema2Manifest) {
    ImagePuller puller(options());
    PullResult r = puller.pull(host() + "/busybox-docker:base", tmp.path() + "/d");
    EXPECT_EQ(r.layers, 1);
    EXPECT_NE(r.manifestDigest, digestOf("base"));  // converted by skopeo, so a new document
    EXPECT_TRUE(fs::exists(tmp.path() + "/d/rootfs/bin/busybox"));
    EXPECT_EQ(oci::loadSpecFile(tmp.path() + "/d/config.json").process().args(0), "/bin/sh");
}

TEST_F(RegistryPullTest, MultiArchIndexResolvesToThePlatform) {
    ImagePuller puller(options());
    PullResult r = puller.pull(host() + "/multi:latest", tmp.path() + "/amd64");
    EXPECT_EQ(r.manifestDigest, digestOf("base"));
    EXPECT_TRUE(fs::exists(tmp.path() + "/amd64/rootfs/etc/motd"));

    PullOptions arm = options();
    arm.platform = {"linux", "arm64", ""};
    ImagePuller armPuller(arm);
    // The "arm64" entry is our amd64 "two" image: its config says amd64, which is refused.
    expectError(StatusCode::kFailedPrecondition,
                [&] { armPuller.pull(host() + "/multi:latest", tmp.path() + "/arm64"); },
                {"pull " + host() +
                 "/multi:latest: the image is for linux/amd64, this guest is linux/arm64"});
    expectNoBundle(tmp.path() + "/arm64");

    PullOptions riscv = options();
    riscv.platform = {"linux", "riscv64", ""};
    ImagePuller riscvPuller(riscv);
    expectError(StatusCode::kNotFound,
                [&] { riscvPuller.pull(host() + "/multi:latest", tmp.path() + "/riscv"); },
                {"pull " + host() +
                 "/multi:latest: index: no manifest for linux/riscv64 "
                 "(available: linux/arm64, linux/amd64)"});
    expectNoBundle(tmp.path() + "/riscv");
}

TEST_F(RegistryPullTest, ByDigestAndUnknownImages) {
    ImagePuller puller(options());
    PullResult r = puller.pull(host() + "/busybox@" + digestOf("two"), tmp.path() + "/bydigest");
    EXPECT_EQ(r.manifestDigest, digestOf("two"));
    EXPECT_TRUE(fs::exists(tmp.path() + "/bydigest/rootfs/data/new"));

    expectError(StatusCode::kNotFound,
                [&] { puller.pull(host() + "/busybox:nope", tmp.path() + "/x"); },
                {"pull " + host() + "/busybox:nope: manifest: registry " + host() + " answered 404",
                 "MANIFEST_UNKNOWN"});
    expectError(StatusCode::kNotFound,
                [&] { puller.pull(host() + "/nothing/here:latest", tmp.path() + "/x"); },
                {"answered 404"});
    expectNoBundle(tmp.path() + "/x");
    expectError(StatusCode::kAlreadyExists,
                [&] { puller.pull(host() + "/busybox:base", tmp.path() + "/bydigest"); },
                {"bundle " + tmp.path() + "/bydigest already holds a rootfs or config.json"});
    EXPECT_TRUE(fs::exists(tmp.path() + "/bydigest/rootfs/data/new"));  // left alone
}

TEST_F(RegistryPullTest, OversizedConfigIsRefusedBeforeItIsFetched) {
    ImagePuller puller(options());
    const std::string ref = host() + "/bigconfig:latest";
    expectError(StatusCode::kInvalidArgument, [&] { puller.pull(ref, tmp.path() + "/big"); },
                {"pull " + ref + ": manifest: config of ", " bytes is over the limit of 4194304"});
    expectNoBundle(tmp.path() + "/big");
    EXPECT_EQ(images_->registry->blobGets("bigconfig", images_->bigConfigDigest), 0);
}

TEST_F(RegistryPullTest, BasicAuthRegistryNeedsCredentials) {
    LocalRegistry::Options basic;
    basic.htpasswdUser = "kata";
    basic.htpasswdPassword = "s3cret:with-colon";
    LocalRegistry authRegistry(tmp.path() + "/auth-registry", basic);
    const std::string ref = authRegistry.host() + "/private/busybox:base";
    sh("set -euo pipefail\n" +
       pushCommand(images_->layout, "base", ref, "--dest-creds 'kata:s3cret:with-colon'"));
    ImagePuller puller(options());
    expectError(
        StatusCode::kUnauthenticated, [&] { puller.pull(ref, tmp.path() + "/anon"); },
        {"pull " + ref + ": manifest: registry " + authRegistry.host() +
         " requires credentials (401 Unauthorized, WWW-Authenticate: Basic realm=\"kata-test\")"});
    expectError(StatusCode::kUnauthenticated,
                [&] { puller.pull(ref, tmp.path() + "/wrong", "kata:wrong"); },
                {"registry " + authRegistry.host() + " refused the credentials of user \"kata\""});
    expectNoBundle(tmp.path() + "/anon");
    expectNoBundle(tmp.path() + "/wrong");
    PullResult r = puller.pull(ref, tmp.path() + "/ok", "kata:s3cret:with-colon");
    EXPECT_EQ(r.manifestDigest, digestOf("base"));
    EXPECT_TRUE(fs::exists(tmp.path() + "/ok/rootfs/bin/busybox"));
}

TEST_F(RegistryPullTest, BearerTokenFlow) {
    fs::create_directories(tmp.path() + "/token");
    test::TokenServer tokens(tmp.path() + "/token", "kata", "t0ken-pass");
    LocalRegistry::Options o;
    o.tokenRealm = tokens.realm();
    o.tokenCertFile = tokens.certFile();
    o.tokenService = test::TokenServer::kService;
    o.tokenIssuer = test::TokenServer::kIssuer;
    LocalRegistry tokenRegistry(tmp.path() + "/token-registry", o);
    const std::string ref = tokenRegistry.host() + "/bearer/busybox:base";
    sh("set -euo pipefail\n" +
       pushCommand(images_->layout, "base", ref, "--dest-creds kata:t0ken-pass"));

    ImagePuller puller(options());
    expectError(
        StatusCode::kUnauthenticated, [&] { puller.pull(ref, tmp.path() + "/anon"); },
        {"pull " + ref + ": manifest: token server 127.0.0.1:", "refused anonymous access (401)"});
    expectError(StatusCode::kUnauthenticated,
                [&] { puller.pull(ref, tmp.path() + "/wrong", "kata:nope"); },
                {"refused the credentials of user \"kata\" (401)"});
    expectNoBundle(tmp.path() + "/anon");
    int before = tokens.tokensIssued();
    PullResult r = puller.pull(ref, tmp.path() + "/ok", "kata:t0ken-pass");
    EXPECT_EQ(r.manifestDigest, digestOf("base"));
    EXPECT_TRUE(fs::exists(tmp.path() + "/ok/rootfs/bin/busybox"));
    // One token for the repository serves the manifest and every blob.
    EXPECT_EQ(tokens.tokensIssued() - before, 1);
    EXPECT_GE(tokens.refused(), 2);  // the anonymous and the wrong-password attempts
}

TEST_F(RegistryPullTest, TlsRegistryWithTheTestsCa) {
    LocalRegistry::Options tls;
    tls.tls = true;
    LocalRegistry tlsRegistry(tmp.path() + "/tls-registry", tls);
    const std::string ref = tlsRegistry.host() + "/secure/busybox:base";
    sh("set -euo pipefail\n" + pushCommand(images_->layout, "base", ref));
    ImagePuller noCa(options());
    expectError(
        StatusCode::kUnavailable, [&] { noCa.pull(ref, tmp.path() + "/noca"); },
        {"pull " + ref + ": manifest: request to https://" + tlsRegistry.host(), "certificate"});
    expectNoBundle(tmp.path() + "/noca");

    PullOptions o = options();
    o.registry.caFile = tlsRegistry.caFile();
    ImagePuller puller(o);
    PullResult r = puller.pull(ref, tmp.path() + "/tls");
    EXPECT_EQ(r.manifestDigest, digestOf("base"));
    EXPECT_TRUE(fs::exists(tmp.path() + "/tls/rootfs/bin/busybox"));

    // A registry named insecure is reached without verifying its certificate.
    PullOptions insecure = options();
    insecure.registry.insecureRegistries = {tlsRegistry.host()};
    ImagePuller insecurePuller(insecure);
    insecurePuller.pull(ref, tmp.path() + "/insecure");
    EXPECT_TRUE(fs::exists(tmp.path() + "/insecure/rootfs/bin/busybox"));
}

TEST_F(RegistryPullTest, TamperedLayerIsRefusedWhileStreaming) {
    std::string layer = layoutManifest("unique")["layers"][0]["digest"];
    int64_t size = layoutManifest("unique")["layers"][0]["size"];
    std::string data = images_->registry->blobDataPath(layer);
    std::string original = test::slurp(data);
    ASSERT_EQ(static_cast<int64_t>(original.size()), size);
    const std::string ref = host() + "/tamper:latest";
    const std::string what = "pull " + ref + ": layer 1/1 " + layer;
    ImagePuller puller(options());

    std::string flipped = original;
    flipped[flipped.size() / 2] ^= 0x55;
    test::spit(data, flipped);
    expectError(StatusCode::kDataLoss, [&] { puller.pull(ref, tmp.path() + "/t1"); },
                {what + ": digest mismatch: got sha256:", "declared " + layer});
    expectNoBundle(tmp.path() + "/t1");
    EXPECT_FALSE(puller.contentStore().has(layer, size));
    expectStoreClean();

    test::spit(data, original + std::string(100000, 'x'));
    expectError(StatusCode::kDataLoss, [&] { puller.pull(ref, tmp.path() + "/t2"); },
                {what + ": larger than its declared size of " + std::to_string(size) + " bytes"});
    expectNoBundle(tmp.path() + "/t2");
    expectStoreClean();

    test::spit(data, original);
    puller.pull(ref, tmp.path() + "/t3");
    EXPECT_EQ(test::slurp(tmp.path() + "/t3/rootfs/unique.bin").size(), 65536u);
}

TEST_F(RegistryPullTest, OutOfSpaceIsACleanErrorNamingImageAndSize) {
    if (::unshare(CLONE_NEWNS) != 0)
        GTEST_SKIP() << "no private mount namespace: " << std::strerror(errno);
    ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0);
    std::string small = tmp.path() + "/small";
    fs::create_directories(small);
    ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=512k"), 0) << std::strerror(errno);
    struct Unmount {
        std::string p;
        ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
    } unmount{small};

    ImagePuller puller(options());
    const std::string ref = host() + "/busybox:base";
    std::string msg =
        expectError(StatusCode::kResourceExhausted, [&] { puller.pull(ref, small + "/run/c1"); },
                    {"pull " + ref + ": out of space unpacking layer 1/1 ",
                     "into " + small + "/run/c1", ": the image needs about ", "MiB free there"});
    std::cout << "out of space: " << msg << "\n";
    expectNoBundle(small + "/run/c1");
    // The parent this pull created stays (it is not the bundle); nothing else is there.
    for (const auto& e : fs::recursive_directory_iterator(small))
        EXPECT_TRUE(e.is_directory()) << e.path() << " left behind";

    // Content store on the full filesystem: the blob never lands, and the error says so.
    PullOptions o = options();
    o.contentStoreDir = small + "/content";
    ImagePuller tiny(o);
    expectError(StatusCode::kResourceExhausted, [&] { tiny.pull(ref, tmp.path() + "/c2"); },
                {"pull " + ref + ": layer 1/1 sha256:",
                 ": no space left in content store " + small + "/content for a blob of "});
    expectNoBundle(tmp.path() + "/c2");
    EXPECT_TRUE(fs::is_empty(small + "/content/ingest"));
}

}  // namespace
}  // namespace kata::agent::image
