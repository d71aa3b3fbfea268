// The cgroup backends against the host's real hierarchies: v1 controllers and the v2 unified
// hierarchy (which a hybrid host also has, without controllers).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "cgroup.h"
#include "jail_test_util.h"
#include "kata/jail/reaper.h"

namespace kata::jail {
namespace {

using test::removeTestCgroupParents;
using test::slurp;

pid_t spawnSleeper() {
    Reaper::instance().start();
    pid_t pid = ::fork();
    if (pid == 0) {
        ::execl("/bin/sleep", "sleep", "100", nullptr);
        ::_exit(127);
    }
    return pid;
}

// Kills and reaps the helper process however the test ends.
struct Sleeper {
    pid_t pid = spawnSleeper();
    ~Sleeper() {
        if (pid > 0 && ::kill(pid, SIGKILL) == 0) Reaper::instance().waitFor(pid);
    }
};

void join(const Cgroup& cg, pid_t pid) {
    for (const auto& f : cg.procsFiles()) {
        std::ofstream out(f);
        out << pid;
        out.close();
        ASSERT_TRUE(out.good()) << f;
    }
}

std::string mountPointOfType(const std::string& fstype) {
    std::ifstream f("/proc/self/mountinfo");
    std::string line;
    while (std::getline(f, line)) {
        auto dash = line.find(" - ");
        if (dash == std::string::npos) continue;
        std::istringstream pre(line.substr(0, dash)), post(line.substr(dash + 3));
        std::string a, b, c, d, mp, type;
        pre >> a >> b >> c >> d >> mp;
        post >> type;
        if (type == fstype) return mp;
    }
    return "";
}

class CgroupBackendTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "cgroup tests need root";
        path_ = "kata_jail_test/cg-" + std::to_string(::getpid());
    }
    void TearDown() override { removeTestCgroupParents(); }
    std::string path_;
};

TEST_F(CgroupBackendTest, V1LimitsFreezerPidsAndRemoval) {
    if (mountPointOfType("cgroup").empty()) GTEST_SKIP() << "no cgroup v1 hierarchy on this host";
    auto cg = makeCgroupV1(path_);
    EXPECT_FALSE(cg->isV2());
    grpc::LinuxResources r;
    r.mutable_memory()->set_limit(64 << 20);
    r.mutable_pids()->set_limit(10);
    cg->apply(r, true);
    std::string memDir, freezerDir;
    for (const auto& [name, dir] : cg->mountDirs()) {
        EXPECT_TRUE(std::filesystem::is_directory(dir)) << dir;
        if (name == "memory") memDir = dir;
        if (name == "freezer") freezerDir = dir;
    }
    if (!memDir.empty()) {
        EXPECT_EQ(slurp(memDir + "/memory.limit_in_bytes"), std::to_string(64 << 20) + "\n");
    }
    struct Cleanup {
        Cgroup* cg;
        ~Cleanup() { cg->destroy(); }
    } cleanup{cg.get()};
    Sleeper sleeper;
    pid_t pid = sleeper.pid;
    join(*cg, pid);
    EXPECT_EQ(cg->pids(), std::vector<pid_t>{pid});
    if (!freezerDir.empty()) {
        cg->freeze();
        EXPECT_EQ(slurp(freezerDir + "/freezer.state"), "FROZEN\n");
        cg->thaw();
        EXPECT_EQ(slurp(freezerDir + "/freezer.state"), "THAWED\n");
    }
    grpc::CgroupStats stats;
    cg->stats(&stats);
    EXPECT_EQ(stats.pids_stats().current(), 1u);
    EXPECT_EQ(stats.pids_stats().limit(), 10u);
    cg->destroy();  // kills what is left
    int status = Reaper::instance().waitFor(pid);
    sleeper.pid = -1;
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    for (const auto& [name, dir] : cg->mountDirs())
        EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
}

TEST_F(CgroupBackendTest, V2FreezeKillAndRemoval) {
    std::string mp = mountPointOfType("cgroup2");
    if (mp.empty()) GTEST_SKIP() << "no cgroup2 hierarchy on this host";
    auto cg = makeCgroupV2(mp, path_);
    EXPECT_TRUE(cg->isV2());
    std::string dir = cg->mountDirs().at(0).second;
    EXPECT_TRUE(std::filesystem::is_directory(dir));
    struct Cleanup {
        Cgroup* cg;
        ~Cleanup() { cg->destroy(); }
    } cleanup{cg.get()};
    Sleeper sleeper;
    pid_t pid = sleeper.pid;
    join(*cg, pid);
    EXPECT_EQ(cg->pids(), std::vector<pid_t>{pid});
    cg->freeze();
    EXPECT_NE(slurp(dir + "/cgroup.events").find("frozen 1"), std::string::npos);
    cg->thaw();
    EXPECT_NE(slurp(dir + "/cgroup.events").find("frozen 0"), std::string::npos);
    grpc::CgroupStats stats;
    cg->stats(&stats);  // whatever controllers are there; must not throw
    cg->destroy();
    int status = Reaper::instance().waitFor(pid);
    sleeper.pid = -1;
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(ReaperTest, DeliversExitsWatchedBeforeAndAfter) {
    Reaper::instance().start();
    pid_t a = ::fork();
    if (a == 0) ::_exit(3);
    EXPECT_EQ(WEXITSTATUS(Reaper::instance().waitFor(a)), 3);
    pid_t b = ::fork();
    if (b == 0) ::_exit(4);
    // Let it exit and be reaped before anyone asks: the status is kept.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(WEXITSTATUS(Reaper::instance().waitFor(b)), 4);
}

}  // namespace
}  // namespace kata::jail
