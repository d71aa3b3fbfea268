#include "kata/common/error.h"

#include <gtest/gtest.h>

TEST(Error, SystemErrorNamesOperationPathAndErrno) {
    kata::SystemError e("mount 9p", "/run/kata-containers/shared", ENODEV);
    std::string msg = e.what();
    EXPECT_NE(msg.find("mount 9p /run/kata-containers/shared"), std::string::npos);
    EXPECT_NE(msg.find("ENODEV"), std::string::npos);
}

TEST(Error, ErrnoMapsToStatusCode) {
    EXPECT_EQ(kata::SystemError("open", "x", ENOENT).code(), kata::StatusCode::kNotFound);
    EXPECT_EQ(kata::SystemError("open", "x", EEXIST).code(), kata::StatusCode::kAlreadyExists);
    EXPECT_EQ(kata::SystemError("open", "x", EIO).code(), kata::StatusCode::kInternal);
}
