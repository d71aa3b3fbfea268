#include "containerd_config.h"

#include <gtest/gtest.h>

#include "kata/common/error.h"

#define TOML_HEADER_ONLY 1
#include <toml++/toml.h>

using namespace kata::deploy;

namespace {

std::string errorOf(const std::string& text) {
    try {
        parseContainerdConfig("/etc/containerd/config.toml", text);
    } catch (const kata::Error& e) {
        return e.what();
    }
    return "";
}

const char* kUserConfig =
    "# my containerd\n"
    "version = 2   # keep me\n"
    "root = \"/var/lib/containerd\"\n"
    "\n"
    "[plugins.\"io.containerd.grpc.v1.cri\"]\n"
    "  sandbox_image = \"registry.k8s.io/pause:3.9\"   # pinned\n"
    "  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n"
    "    runtime_type = \"io.containerd.runc.v2\"\n";

}  // namespace

TEST(ContainerdConfig, InvalidTomlNamesLineAndColumn) {
    std::string e = errorOf("version = 2\n[plugins\nx = 1\n");
    EXPECT_EQ(e.rfind("containerd config /etc/containerd/config.toml:2:", 0), 0u) << e;
}

TEST(ContainerdConfig, VersionOneIsRefused) {
    EXPECT_NE(errorOf("root = \"/x\"\n").find("config version 1 (no version key) is not supported"),
              std::string::npos);
    EXPECT_NE(errorOf("version = 1\n").find("config version 1 is not supported"),
              std::string::npos);
    EXPECT_NE(errorOf("version = \"2\"\n").find("version is not an integer"), std::string::npos);
    EXPECT_NE(errorOf("version = 2\nimports = \"/x.toml\"\n").find("imports is not an array"),
              std::string::npos);
}

TEST(ContainerdConfig, AddsImportsLineAfterVersionAndNothingElse) {
    auto cfg = parseContainerdConfig("c.toml", kUserConfig);
    std::string out = withImport(cfg, "/etc/containerd/conf.d/kata-deploy.toml");
    std::string want = kUserConfig;
    want.insert(want.find("root ="), "imports = [\"/etc/containerd/conf.d/kata-deploy.toml\"]\n");
    EXPECT_EQ(out, want);
    // and back, byte for byte
    auto edited = parseContainerdConfig("c.toml", out);
    EXPECT_EQ(withoutImport(edited, "/etc/containerd/conf.d/kata-deploy.toml", true), kUserConfig);
    // imported already: unchanged
    EXPECT_EQ(withImport(edited, "/etc/containerd/conf.d/kata-deploy.toml"), out);
}

TEST(ContainerdConfig, ExtendsAnExistingImportsArray) {
    std::string text =
        "version = 2\n"
        "imports = [\n  \"/etc/containerd/a.toml\", # mine\n]\n"
        "[grpc]\n  address = \"/run/x.sock\"\n";
    auto cfg = parseContainerdConfig("c.toml", text);
    ASSERT_TRUE(cfg.hasImports);
    std::string out = withImport(cfg, "/d/kata.toml");
    EXPECT_EQ(out,
              "version = 2\n"
              "imports = [\"/etc/containerd/a.toml\", \"/d/kata.toml\"]\n"
              "[grpc]\n  address = \"/run/x.sock\"\n");
    auto back = withoutImport(parseContainerdConfig("c.toml", out), "/d/kata.toml", false);
    EXPECT_EQ(back,
              "version = 2\nimports = [\"/etc/containerd/a.toml\"]\n"
              "[grpc]\n  address = \"/run/x.sock\"\n");
}

TEST(ContainerdConfig, VersionOnLastLineWithoutNewline) {
    auto cfg = parseContainerdConfig("c.toml", "version = 2");
    EXPECT_EQ(withImport(cfg, "/k.toml"), "version = 2\nimports = [\"/k.toml\"]\n");
}

TEST(ContainerdConfig, NonAsciiBeforeTheArrayKeepsBytes) {
    std::string text = "version = 2\nimports = [\"/é/a.toml\"]\n";
    auto cfg = parseContainerdConfig("c.toml", text);
    EXPECT_EQ(withImport(cfg, "/k.toml"), "version = 2\nimports = [\"/é/a.toml\", \"/k.toml\"]\n");
}

TEST(ContainerdConfig, DropInHasEveryClassWithItsKeys) {
    auto user = parseContainerdConfig("c.toml", "version = 2\n");
    auto text = renderDropIn(user, runtimeClasses({"qemu", "qemu-sev"}, ""), "/opt/kata");
    auto cfg = parseContainerdConfig("dropin", text);
    EXPECT_EQ(cfg.version, 2);
    auto rts = criRuntimes("dropin", text);
    EXPECT_EQ(rts, (std::map<std::string, std::string>{
                       {"kata", "io.containerd.kata.v2"},
                       {"kata-qemu", "io.containerd.kata-qemu.v2"},
                       {"kata-qemu-sev", "io.containerd.kata-qemu-sev.v2"}}));
    auto root = toml::parse(std::string_view(text));
    auto sev =
        root["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["kata-qemu-sev"];
    EXPECT_EQ(sev["privileged_without_host_devices"].value<bool>(), true);
    EXPECT_EQ(sev["pod_annotations"][0].value<std::string>(), "io.katacontainers.*");
    EXPECT_EQ(sev["options"]["ConfigPath"].value<std::string>(),
              "/opt/kata/share/defaults/kata-containers/configuration-qemu-sev.toml");
}

// containerd 1.x lets an imported plugin table replace the main file's: the drop-in must carry
// the user's cri settings along.
TEST(ContainerdConfig, DropInKeepsTheUsersCriTable) {
    auto user = parseContainerdConfig("c.toml", kUserConfig);
    auto text = renderDropIn(user, runtimeClasses({"qemu"}, ""), "/opt/kata");
    auto root = toml::parse(std::string_view(text));
    auto cri = root["plugins"]["io.containerd.grpc.v1.cri"];
    EXPECT_EQ(cri["sandbox_image"].value<std::string>(), "registry.k8s.io/pause:3.9");
    EXPECT_EQ(cri["containerd"]["runtimes"]["runc"]["runtime_type"].value<std::string>(),
              "io.containerd.runc.v2");
    EXPECT_EQ(criRuntimes("dropin", text).size(), 3u);
    EXPECT_FALSE(root.contains("root"));  // only the cri table is copied
}
