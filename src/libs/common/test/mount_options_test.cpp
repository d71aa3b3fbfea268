#include "kata/common/mount_options.h"

#include <gtest/gtest.h>
#include <sys/mount.h>

namespace kata {
namespace {

TEST(MountOptionsTest, FlagsAndData) {
    auto mo = parseMountOptions({"ro", "nodev", "nosuid", "size=10m", "mode=0755", "rbind"});
    EXPECT_EQ(mo.mountFlags(),
              static_cast<unsigned long>(MS_RDONLY | MS_NODEV | MS_NOSUID | MS_BIND | MS_REC));
    EXPECT_EQ(mo.data, "size=10m,mode=0755");
    EXPECT_EQ(parseMountOptions({"ro", "rw"}).flags, 0u);
}

TEST(MountOptionsTest, BindAndPropagationAreKeptApart) {
    auto mo = parseMountOptions({"bind", "rslave", "noexec", "private"});
    EXPECT_TRUE(mo.bind);
    EXPECT_FALSE(mo.recursive);
    EXPECT_EQ(mo.flags, static_cast<unsigned long>(MS_NOEXEC));
    EXPECT_EQ(mo.propagation, static_cast<unsigned long>(MS_PRIVATE));  // the last one wins
    EXPECT_EQ(mo.mountFlags(), static_cast<unsigned long>(MS_NOEXEC | MS_BIND | MS_PRIVATE));
    EXPECT_TRUE(parseMountOptions({"rbind", "bind"}).recursive);
}

TEST(MountOptionsTest, RuntimeOnlyOptionsAreNotFilesystemData) {
    auto mo = parseMountOptions(
        {"defaults", "", "tmpcopyup", "mode=1777", "strictatime", "nostrictatime", "silent"});
    EXPECT_EQ(mo.data, "mode=1777");
    EXPECT_EQ(mo.flags, static_cast<unsigned long>(MS_SILENT));
}

TEST(MountOptionsTest, PropagationNames) {
    unsigned long f = 0;
    EXPECT_TRUE(parsePropagation("rshared", &f));
    EXPECT_EQ(f, static_cast<unsigned long>(MS_SHARED | MS_REC));
    EXPECT_TRUE(parsePropagation("unbindable", &f));
    EXPECT_EQ(f, static_cast<unsigned long>(MS_UNBINDABLE));
    f = 7;
    EXPECT_FALSE(parsePropagation("rw", &f));
    EXPECT_EQ(f, 7u);
}

}  // namespace
}  // namespace kata
