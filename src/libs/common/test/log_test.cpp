#include "kata/common/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace {

std::string readAll(int fd) {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
}

TEST(Log, WritesOneJsonObjectPerLineWithKataFields) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    kata::log::init("kata-agent", "agent", kata::log::Level::kDebug, p[1]);
    kata::log::Logger("rpc").with("container", "c1").info("created \"x\"\n", {{"pid", "42"}});
    close(p[1]);
    std::string out = readAll(p[0]);
    close(p[0]);
    ASSERT_FALSE(out.empty());
    EXPECT_EQ(out.back(), '\n');
    auto j = nlohmann::json::parse(out);
    EXPECT_EQ(j["msg"], "created \"x\"\n");
    EXPECT_EQ(j["level"], "info");
    EXPECT_EQ(j["name"], "kata-agent");
    EXPECT_EQ(j["source"], "agent");
    EXPECT_EQ(j["subsystem"], "rpc");
    EXPECT_EQ(j["container"], "c1");
    EXPECT_TRUE(j.contains("ts"));
    EXPECT_TRUE(j.contains("pid"));
}

TEST(Log, DropsLinesBelowLevel) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    kata::log::init("t", "t", kata::log::Level::kWarn, p[1]);
    kata::log::Logger("x").info("hidden");
    kata::log::Logger("x").error("shown");
    close(p[1]);
    std::string out = readAll(p[0]);
    close(p[0]);
    EXPECT_EQ(out.find("hidden"), std::string::npos);
    EXPECT_NE(out.find("shown"), std::string::npos);
    kata::log::init("t", "t", kata::log::Level::kInfo, 2);
}

TEST(Log, ParsesLevels) {
    kata::log::Level l;
    EXPECT_TRUE(kata::log::parseLevel("debug", &l));
    EXPECT_EQ(l, kata::log::Level::kDebug);
    EXPECT_TRUE(kata::log::parseLevel("warning", &l));
    EXPECT_EQ(l, kata::log::Level::kWarn);
    EXPECT_FALSE(kata::log::parseLevel("loud", &l));
}

}  // namespace
