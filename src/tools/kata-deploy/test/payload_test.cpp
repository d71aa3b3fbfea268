#include "payload.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kata/common/error.h"

using namespace kata::deploy;

TEST(Payload, RegistryHostOfAReference) {
    EXPECT_EQ(registryHost("127.0.0.1:5000/kata/payload:1"), "127.0.0.1:5000");
    EXPECT_EQ(registryHost("docker://quay.io/kata/payload:1"), "quay.io");
    EXPECT_EQ(registryHost("localhost/payload"), "localhost");
    EXPECT_EQ(registryHost("kata/payload:1"), "docker.io");
    EXPECT_EQ(registryHost("busybox"), "docker.io");
}

TEST(Payload, Base64ForBasicAuth) {
    EXPECT_EQ(base64(""), "");
    EXPECT_EQ(base64("a"), "YQ==");
    EXPECT_EQ(base64("ab"), "YWI=");
    EXPECT_EQ(base64("user:pass"), "dXNlcjpwYXNz");
}

TEST(Payload, CheckNamesTheMissingPiece) {
    namespace fs = std::filesystem;
    fs::path dir = fs::temp_directory_path() / ("kd-payload-test-" + std::to_string(::getpid()));
    fs::create_directories(dir / "bin");
    auto classes = runtimeClasses({"qemu"}, "");
    auto errorOf = [&] {
        try {
            checkPayload(dir.string(), classes);
        } catch (const kata::Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_EQ(errorOf(), "payload " + dir.string() +
                             ": bin/containerd-shim-kata-v2 is missing or not executable");
    { std::ofstream(dir / "bin/containerd-shim-kata-v2") << "#!/bin/sh\n"; }
    fs::permissions(dir / "bin/containerd-shim-kata-v2", fs::perms::owner_all);
    EXPECT_EQ(errorOf(), "payload " + dir.string() +
                             ": share/defaults/kata-containers/configuration-qemu.toml (for "
                             "runtime class kata) is missing");
    fs::create_directories(dir / "share/defaults/kata-containers");
    { std::ofstream(dir / "share/defaults/kata-containers/configuration-qemu.toml") << "\n"; }
    EXPECT_EQ(errorOf(), "");
    fs::remove_all(dir);
}
