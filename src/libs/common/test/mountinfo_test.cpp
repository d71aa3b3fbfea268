#include "kata/common/mountinfo.h"

#include <gtest/gtest.h>

#include "kata/common/error.h"

TEST(Mountinfo, ParsesFieldsOptionalTagsAndEscapes) {
    auto ms = kata::parseMountinfo(
        "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:2 - ext3 /dev/root "
        "rw,errors=continue\n"
        "garbage line\n"
        "40 1 0:5 / /run rw - tmpfs tmpfs rw,size=10k\n");
    ASSERT_EQ(ms.size(), 2u);
    EXPECT_EQ(ms[0].id, 36);
    EXPECT_EQ(ms[0].parentId, 35);
    EXPECT_EQ(ms[0].root, "/mnt1");
    EXPECT_EQ(ms[0].mountPoint, "/mnt/with space");
    EXPECT_EQ(ms[0].options, "rw,noatime");
    EXPECT_EQ(ms[0].fsType, "ext3");
    EXPECT_EQ(ms[0].source, "/dev/root");
    EXPECT_EQ(ms[0].superOptions, "rw,errors=continue");
    EXPECT_EQ(ms[1].mountPoint, "/run");
}

TEST(Mountinfo, EscapesOnlyWhenOctal) {
    EXPECT_EQ(kata::unescapeMountinfo("a\\011b"), "a\tb");
    EXPECT_EQ(kata::unescapeMountinfo("a\\9xy"), "a\\9xy");
    EXPECT_EQ(kata::unescapeMountinfo("end\\04"), "end\\04");
}

TEST(Mountinfo, ReadsOurOwnAndNamesAMissingFile) {
    EXPECT_FALSE(kata::readMountinfo().empty());
    EXPECT_THROW(kata::readMountinfo("/nonexistent/mountinfo"), kata::Error);
}
