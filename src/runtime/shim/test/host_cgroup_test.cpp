#include "host_cgroup.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "kata/common/error.h"
#include "kata/common/file.h"

namespace fs = std::filesystem;
using kata::shim::cgroupDirOfPath;
using kata::shim::cgroupHierarchies;
using kata::shim::SandboxCgroup;

TEST(HostCgroup, CgroupfsPathsAreTakenAsTheyAre) {
    EXPECT_EQ(cgroupDirOfPath("/kubepods/besteffort/pod1/abc"), "/kubepods/besteffort/pod1/abc");
    EXPECT_EQ(cgroupDirOfPath("kubepods/abc/"), "/kubepods/abc");
}

TEST(HostCgroup, SystemdPathsExpandTheSliceHierarchy) {
    EXPECT_EQ(cgroupDirOfPath("kubepods-burstable-pod12.slice:cri-containerd:abc"),
              "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice/"
              "cri-containerd-abc.scope");
    EXPECT_EQ(cgroupDirOfPath("system.slice:kata:x"), "/system.slice/kata-x.scope");
    EXPECT_EQ(cgroupDirOfPath(":cri:x"), "/system.slice/cri-x.scope");
    EXPECT_EQ(cgroupDirOfPath("-.slice::x"), "/x.scope");
}

TEST(HostCgroup, BadPathsAreRefusedNamingThem) {
    for (const char* bad : {"", "/", "/a/../b", "notaslice:p:n", "a.slice:p:"}) {
        try {
            cgroupDirOfPath(bad);
            ADD_FAILURE() << "accepted \"" << bad << "\"";
        } catch (const kata::Error& e) {
            EXPECT_EQ(e.code(), kata::StatusCode::kInvalidArgument);
            EXPECT_NE(std::string(e.what()).find("cgroupsPath \"" + std::string(bad) + "\""),
                      std::string::npos)
                << e.what();
        }
    }
}

TEST(HostCgroup, HierarchiesFromMountinfo) {
    const std::string text =
        "30 24 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
        "31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw\n"
        "32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        "35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:12 - cgroup cgroup rw,cpu,cpuacct\n"
        "36 30 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "37 30 0:33 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset,clone_children\n"
        "99 36 0:32 /sub /mnt/memory\\040again rw - cgroup cgroup rw,memory\n";
    auto hs = cgroupHierarchies(kata::parseMountinfo(text));
    ASSERT_EQ(hs.size(), 4u);
    EXPECT_TRUE(hs[0].unified);
    EXPECT_EQ(hs[0].mountPoint, "/sys/fs/cgroup/unified");
    EXPECT_EQ(hs[1].controllers, "cpu,cpuacct");
    EXPECT_EQ(hs[2].controllers, "memory");
    EXPECT_EQ(hs[2].mountPoint, "/sys/fs/cgroup/memory");  // the first mount of it
    EXPECT_EQ(hs[3].controllers, "cpuset");
}

namespace {
std::string cgroupLineOfSelf() { return kata::readFile("/proc/self/cgroup"); }
}  // namespace

// Real cgroups of this host: the test process goes in and comes back out.
TEST(HostCgroup, EnterMovesTheProcessInAndLeaveMovesItBackAndRemovesTheDirs) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
    auto hs = cgroupHierarchies(kata::readMountinfo());
    if (hs.empty()) GTEST_SKIP() << "no cgroup filesystem mounted";
    const std::string before = cgroupLineOfSelf();
    const std::string path = "/kata-cpp-test-" + std::to_string(::getpid()) + "/sandbox";
    std::vector<std::string> dirs;
    {
        auto cg = SandboxCgroup::enter(path, hs);
        dirs = cg->dirs();
        ASSERT_EQ(dirs.size(), hs.size());
        for (const auto& d : dirs) {
            EXPECT_TRUE(fs::is_directory(d)) << d;
            std::string procs = kata::readFile(d + "/cgroup.procs");
            EXPECT_NE(procs.find(std::to_string(::getpid())), std::string::npos) << d;
        }
        EXPECT_NE(cgroupLineOfSelf().find(path), std::string::npos) << cgroupLineOfSelf();
    }
    EXPECT_EQ(cgroupLineOfSelf(), before);
    for (const auto& d : dirs) {
        EXPECT_FALSE(fs::exists(d)) << d;
        EXPECT_FALSE(fs::exists(fs::path(d).parent_path())) << "the parent it made is left";
    }
}

TEST(HostCgroup, RemoveSandboxCgroupTakesOnlyTheSandboxDir) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
    auto hs = cgroupHierarchies(kata::readMountinfo());
    if (hs.empty()) GTEST_SKIP() << "no cgroup filesystem mounted";
    const std::string parent = "/kata-cpp-test-rm-" + std::to_string(::getpid());
    for (const auto& h : hs) fs::create_directories(h.mountPoint + parent + "/sb");
    EXPECT_EQ(kata::shim::removeSandboxCgroup(parent + "/sb", hs), "");
    for (const auto& h : hs) {
        EXPECT_FALSE(fs::exists(h.mountPoint + parent + "/sb"));
        EXPECT_TRUE(fs::exists(h.mountPoint + parent));
        fs::remove(h.mountPoint + parent);
    }
    EXPECT_EQ(kata::shim::removeSandboxCgroup(parent + "/sb", hs), "") << "idempotent";
}
