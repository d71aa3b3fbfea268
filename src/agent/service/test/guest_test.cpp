#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kata/agent/service/guest.h"
#include "kata/common/error.h"

namespace fs = std::filesystem;
using namespace kata;
using namespace kata::agent;

namespace {

std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    std::string s;
    std::getline(in, s);
    return s;
}

void put(const fs::path& p, const std::string& v) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << v << "\n";
}

class FakeSysfs : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/kata-agent-sysfs-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        root_ = tmpl;
        put(root_ / "devices/system/cpu/cpu1/online", "0");
        put(root_ / "devices/system/cpu/cpu2/online", "0");
        put(root_ / "devices/system/cpu/cpu3/online", "1");
        fs::create_directories(root_ / "devices/system/cpu/cpufreq");
        put(root_ / "devices/system/memory/memory8/state", "offline");
        put(root_ / "devices/system/memory/memory9/state", "online");
    }
    void TearDown() override { fs::remove_all(root_); }
    fs::path root_;
};

TEST_F(FakeSysfs, OnlinesRequestedCpusAndMemory) {
    onlineCpuMem(1, /*cpuOnly=*/true, root_);
    EXPECT_EQ(slurp(root_ / "devices/system/cpu/cpu1/online"), "1");
    EXPECT_EQ(slurp(root_ / "devices/system/cpu/cpu2/online"), "0");
    EXPECT_EQ(slurp(root_ / "devices/system/memory/memory8/state"), "offline");

    onlineCpuMem(0, /*cpuOnly=*/false, root_);
    EXPECT_EQ(slurp(root_ / "devices/system/cpu/cpu2/online"), "1");
    EXPECT_EQ(slurp(root_ / "devices/system/memory/memory8/state"), "online");
}

TEST(GuestOps, RejectBadInputWithoutTouchingTheSystem) {
    EXPECT_THROW(setGuestDateTime(1, 2000000), Error);
    EXPECT_THROW(setGuestDateTime(-1, 0), Error);
    try {
        reseedRandomDev("");
        FAIL() << "empty reseed accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), StatusCode::kInvalidArgument);
    }
}

}  // namespace
