#include "runtimes.h"

#include <gtest/gtest.h>

#include "kata/common/error.h"

using namespace kata::deploy;

TEST(Runtimes, DefaultShimGivesKataAndKataQemu) {
    auto c = runtimeClasses(parseShimList("qemu"), "");
    ASSERT_EQ(c.size(), 2u);
    EXPECT_EQ(c[0].handler, "kata");
    EXPECT_EQ(c[0].runtimeType, "io.containerd.kata.v2");
    EXPECT_EQ(c[0].shimBinary, "containerd-shim-kata-v2");
    EXPECT_EQ(c[0].configFile, "configuration-qemu.toml");
    EXPECT_EQ(c[1].handler, "kata-qemu");
    EXPECT_EQ(c[1].runtimeType, "io.containerd.kata-qemu.v2");
    EXPECT_EQ(c[1].shimBinary, "containerd-shim-kata-qemu-v2");
}

TEST(Runtimes, SeveralShimsSpacesOrCommas) {
    EXPECT_EQ(parseShimList("qemu qemu-sev"), (std::vector<std::string>{"qemu", "qemu-sev"}));
    EXPECT_EQ(parseShimList(" qemu,qemu-sev ,qemu"),
              (std::vector<std::string>{"qemu", "qemu-sev"}));
    auto c = runtimeClasses({"qemu", "qemu-sev"}, "qemu-sev");
    ASSERT_EQ(c.size(), 3u);
    EXPECT_EQ(c[0].configFile, "configuration-qemu-sev.toml");
    EXPECT_EQ(c[2].handler, "kata-qemu-sev");
    EXPECT_EQ(c[2].shimBinary, "containerd-shim-kata-qemu-sev-v2");
}

TEST(Runtimes, BadNamesAreRefusedNamingThem) {
    try {
        parseShimList("qemu Qemu/../x");
        FAIL();
    } catch (const kata::Error& e) {
        EXPECT_NE(std::string(e.what()).find("\"Qemu/../x\""), std::string::npos) << e.what();
    }
    EXPECT_THROW(parseShimList("  "), kata::Error);
    try {
        runtimeClasses({"qemu"}, "clh");
        FAIL();
    } catch (const kata::Error& e) {
        EXPECT_STREQ(e.what(), "default shim \"clh\" is not one of the shims being installed");
    }
}
