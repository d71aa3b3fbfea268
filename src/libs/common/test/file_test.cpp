#include "kata/common/file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "kata/common/error.h"

TEST(File, ReadsWholeFileIncludingNulBytes) {
    char path[] = "/tmp/kata-file-test-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    std::string data(20000, 'x');
    data[10] = '\0';
    std::ofstream(path, std::ios::binary) << data;
    EXPECT_EQ(kata::readFile(path), data);
    unlink(path);
}

TEST(File, MissingFileNamesThePath) {
    try {
        kata::readFile("/nonexistent/kata-file");
        FAIL() << "no error";
    } catch (const kata::SystemError& e) {
        EXPECT_EQ(e.err(), ENOENT);
        EXPECT_NE(std::string(e.what()).find("open /nonexistent/kata-file"), std::string::npos);
    }
}
