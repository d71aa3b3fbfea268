// Unit tests of path resolution inside a rootfs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "rootfs.h"

namespace kata::jail {
namespace {

class ResolveInRootTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/jail-resolve-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        root_ = tmpl;
        std::filesystem::create_directories(root_ + "/usr/lib");
    }
    void TearDown() override { std::filesystem::remove_all(root_); }
    std::string resolve(const std::string& p) {
        int err = 0;
        std::string r = resolveInRoot(root_, p, &err);
        EXPECT_EQ(err, 0);
        return r;
    }
    std::string root_;
};

TEST_F(ResolveInRootTest, PlainAndDotDot) {
    EXPECT_EQ(resolve("/usr/lib"), root_ + "/usr/lib");
    EXPECT_EQ(resolve("/../../usr/./lib/../lib"), root_ + "/usr/lib");
    EXPECT_EQ(resolve("/not/yet/there"), root_ + "/not/yet/there");
}

TEST_F(ResolveInRootTest, AbsoluteSymlinkStaysInside) {
    std::filesystem::create_directory_symlink("/etc", root_ + "/link");
    EXPECT_EQ(resolve("/link/passwd"), root_ + "/etc/passwd");
}

TEST_F(ResolveInRootTest, RelativeSymlinkCannotClimbOut) {
    std::filesystem::create_directory_symlink("../../../../etc", root_ + "/usr/up");
    EXPECT_EQ(resolve("/usr/up/shadow"), root_ + "/etc/shadow");
}

TEST_F(ResolveInRootTest, SymlinkLoopIsELOOP) {
    std::filesystem::create_symlink("/b", root_ + "/a");
    std::filesystem::create_symlink("/a", root_ + "/b");
    int err = 0;
    resolveInRoot(root_, "/a/x", &err);
    EXPECT_EQ(err, ELOOP);
}

}  // namespace
}  // namespace kata::jail
