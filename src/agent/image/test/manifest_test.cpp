#include "kata/agent/image/manifest.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace kata::agent::image {
namespace {

using json = nlohmann::json;
using test::expectError;

std::string digestOf(char c) { return "sha256:" + std::string(64, c); }

json platformEntry(const char* arch, const char* variant, char digestChar,
                   const char* mediaType = media::kOciManifest) {
    json p = {{"os", "linux"}, {"architecture", arch}};
    if (variant) p["variant"] = variant;
    return {
        {"mediaType", mediaType}, {"digest", digestOf(digestChar)}, {"size", 100}, {"platform", p}};
}

TEST(ManifestTest, ParsesOciManifest) {
    json m = {
        {"schemaVersion", 2},
        {"mediaType", media::kOciManifest},
        {"config", {{"mediaType", media::kOciConfig}, {"digest", digestOf('c')}, {"size", 10}}},
        {"layers",
         {{{"mediaType", media::kOciLayerGzip}, {"digest", digestOf('1')}, {"size", 11}},
          {{"mediaType", media::kOciLayerZstd}, {"digest", digestOf('2')}, {"size", 12}}}}};
    ManifestDocument doc = parseManifestDocument(m.dump(), "", "m");
    ASSERT_FALSE(doc.isIndex);
    EXPECT_EQ(doc.manifest.config.digest, digestOf('c'));
    ASSERT_EQ(doc.manifest.layers.size(), 2u);
    EXPECT_EQ(doc.manifest.layers[1].size, 12);
    EXPECT_EQ(layerCompression(doc.manifest.layers[0].mediaType, "l"), Compression::kGzip);
    EXPECT_EQ(layerCompression(doc.manifest.layers[1].mediaType, "l"), Compression::kZstd);
    EXPECT_EQ(layerCompression(media::kOciLayer, "l"), Compression::kNone);
    EXPECT_EQ(layerCompression(media::kDockerLayerGzip, "l"), Compression::kGzip);
}

TEST(ManifestTest, MediaTypeFromHeaderOrShape) {
    json m = {
        {"schemaVersion", 2},
        {"config", {{"mediaType", media::kDockerConfig}, {"digest", digestOf('c')}, {"size", 1}}},
        {"layers", json::array()}};
    auto doc = parseManifestDocument(m.dump(),
                                     std::string(media::kDockerManifest) + "; charset=utf-8", "m");
    EXPECT_EQ(doc.manifest.mediaType, media::kDockerManifest);
    doc = parseManifestDocument(m.dump(), "application/json", "m");
    EXPECT_EQ(doc.manifest.mediaType, media::kOciManifest);

    json idx = {{"schemaVersion", 2}, {"manifests", {platformEntry("amd64", nullptr, 'a')}}};
    doc = parseManifestDocument(idx.dump(), "", "m");
    EXPECT_TRUE(doc.isIndex);
}

TEST(ManifestTest, ResolvesIndexToPlatform) {
    json idx = {{"schemaVersion", 2},
                {"mediaType", media::kDockerManifestList},
                {"manifests",
                 {platformEntry("arm", "v7", '1', media::kDockerManifest),
                  platformEntry("arm64", "v8", '2', media::kDockerManifest),
                  platformEntry("amd64", nullptr, '3', media::kDockerManifest),
                  platformEntry("s390x", nullptr, '4', media::kDockerManifest)}}};
    auto doc = parseManifestDocument(idx.dump(), "", "index");
    ASSERT_TRUE(doc.isIndex);
    EXPECT_EQ(selectPlatform(doc.index, {"linux", "amd64", ""}, "i").digest, digestOf('3'));
    EXPECT_EQ(selectPlatform(doc.index, {"linux", "arm64", ""}, "i").digest, digestOf('2'));
    EXPECT_EQ(selectPlatform(doc.index, {"linux", "arm", "v7"}, "i").digest, digestOf('1'));
    expectError(StatusCode::kNotFound,
                [&] {
                    selectPlatform(doc.index, {"linux", "riscv64", ""}, "i");
                },
                {"i: no manifest for linux/riscv64 (available: linux/arm/v7, linux/arm64/v8, "
                 "linux/amd64, linux/s390x)"});
    EXPECT_EQ(currentPlatform().str(), "linux/amd64");
}

TEST(ManifestTest, SkipsAttestationsAndOtherOs) {
    json att = {{"mediaType", media::kOciManifest},
                {"digest", digestOf('9')},
                {"size", 5},
                {"platform", {{"os", "unknown"}, {"architecture", "unknown"}}}};
    json win = {{"mediaType", media::kOciManifest},
                {"digest", digestOf('8')},
                {"size", 5},
                {"platform", {{"os", "windows"}, {"architecture", "amd64"}}}};
    json idx = {{"schemaVersion", 2},
                {"mediaType", media::kOciIndex},
                {"manifests", {att, win, platformEntry("amd64", nullptr, '7')}}};
    auto doc = parseManifestDocument(idx.dump(), "", "i");
    EXPECT_EQ(selectPlatform(doc.index, currentPlatform(), "i").digest, digestOf('7'));
}

TEST(ManifestTest, RefusesBadDocuments) {
    expectError(StatusCode::kInvalidArgument, [] { parseManifestDocument("{", "", "m"); },
                {"m: invalid JSON"});
    expectError(StatusCode::kInvalidArgument,
                [] { parseManifestDocument(R"({"schemaVersion":1,"fsLayers":[]})", "", "m"); },
                {"m: Docker schema1 manifests are not supported"});
    expectError(StatusCode::kInvalidArgument,
                [] { parseManifestDocument(R"({"mediaType":"text/plain"})", "", "m"); },
                {"unsupported manifest media type \"text/plain\""});
    json badDigest = {{"mediaType", media::kOciManifest},
                      {"config", {{"digest", "sha256:xyz"}, {"size", 1}}},
                      {"layers", json::array()}};
    expectError(StatusCode::kInvalidArgument,
                [&] { parseManifestDocument(badDigest.dump(), "", "m"); },
                {"malformed digest \"sha256:xyz\""});
    json noSize = {{"mediaType", media::kOciManifest},
                   {"config", {{"digest", digestOf('c')}}},
                   {"layers", json::array()}};
    expectError(StatusCode::kInvalidArgument,
                [&] { parseManifestDocument(noSize.dump(), "", "m"); }, {"has no valid size"});
    json hugeConfig = {{"mediaType", media::kOciManifest},
                       {"config", {{"digest", digestOf('c')}, {"size", kMaxConfigBytes + 1}}},
                       {"layers", json::array()}};
    expectError(StatusCode::kInvalidArgument,
                [&] { parseManifestDocument(hugeConfig.dump(), "", "m"); },
                {"config of 4194305 bytes is over the limit of 4194304"});
    std::string big(kMaxManifestBytes + 1, ' ');
    expectError(StatusCode::kInvalidArgument, [&] { parseManifestDocument(big, "", "m"); },
                {"over the limit of 4194304"});
    expectError(
        StatusCode::kInvalidArgument,
        [] { layerCompression("application/vnd.oci.image.layer.v1.tar+gzip+encrypted", "l"); },
        {"l: encrypted layers"});
    expectError(StatusCode::kInvalidArgument, [] { layerCompression("text/html", "l"); },
                {"unsupported layer media type \"text/html\""});
}

TEST(ManifestTest, ParsesImageConfig) {
    json c = {{"os", "linux"},
              {"architecture", "amd64"},
              {"config",
               {{"User", "1000:1000"},
                {"Env", {"PATH=/bin", "A=b"}},
                {"Entrypoint", {"/bin/sh", "-c"}},
                {"Cmd", {"echo hi"}},
                {"WorkingDir", "/work"},
                {"StopSignal", "SIGINT"}}},
              {"rootfs", {{"type", "layers"}, {"diff_ids", {digestOf('d')}}}}};
    ImageConfig cfg = parseImageConfig(c.dump(), "cfg");
    EXPECT_EQ(cfg.user, "1000:1000");
    EXPECT_EQ(cfg.env, (std::vector<std::string>{"PATH=/bin", "A=b"}));
    EXPECT_EQ(cfg.entrypoint, (std::vector<std::string>{"/bin/sh", "-c"}));
    EXPECT_EQ(cfg.cmd, (std::vector<std::string>{"echo hi"}));
    EXPECT_EQ(cfg.workingDir, "/work");
    EXPECT_EQ(cfg.diffIds.size(), 1u);
    // "config": null and missing fields are fine.
    cfg = parseImageConfig(R"({"architecture":"amd64","config":null})", "cfg");
    EXPECT_TRUE(cfg.cmd.empty());
    expectError(StatusCode::kInvalidArgument,
                [] { parseImageConfig(R"({"config":{"Cmd":"not-a-list"}})", "cfg"); },
                {"cfg: \"Cmd\" is not an array"});
}

}  // namespace
}  // namespace kata::agent::image
