// Real mounts: needs root (CI runs as root).
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "fs_share.h"
#include "kata/common/error.h"

using namespace kata::shim;
namespace fs = std::filesystem;

namespace {
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/shim-fsshare-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() {
        cleanupTree(path);
        fs::remove_all(path);
    }
};

bool isMounted(const std::string& p) {
    auto m = mountsUnder(p);
    return std::find(m.begin(), m.end(), p) != m.end();
}

std::string readFile(const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void requireRoot() {
    if (::geteuid() != 0) GTEST_SKIP() << "mount tests need root";
}
}  // namespace

TEST(MountOptions, FlagsAndData) {
    auto o = kata::parseMountOptions(
        {"ro", "nosuid", "rbind", "rprivate", "lowerdir=/a:/b", "index=off"});
    EXPECT_EQ(o.flags, MS_RDONLY | MS_NOSUID);
    EXPECT_TRUE(o.bind);
    EXPECT_TRUE(o.recursive);
    EXPECT_EQ(o.propagation, static_cast<unsigned long>(MS_PRIVATE | MS_REC));
    EXPECT_EQ(o.data, "lowerdir=/a:/b,index=off");
    auto rw = kata::parseMountOptions({"ro", "rw"});
    EXPECT_EQ(rw.flags, 0u);
}

TEST(FsShare, OverlayRootfsFromContainerdMounts) {
    requireRoot();
    TempDir t;
    for (auto d : {"lower", "upper", "work"}) fs::create_directories(t.path + "/" + d);
    std::ofstream(t.path + "/lower/etc-file") << "from lower";
    containerd::types::Mount m;
    m.set_type("overlay");
    m.set_source("overlay");
    m.add_options("index=off");
    m.add_options("workdir=" + t.path + "/work");
    m.add_options("upperdir=" + t.path + "/upper");
    m.add_options("lowerdir=" + t.path + "/lower");
    const std::string target = t.path + "/shared/c1/rootfs";
    {
        MountSet set = mountRootfs({m}, t.path, "rootfs", target);
        EXPECT_TRUE(isMounted(target));
        EXPECT_EQ(readFile(target + "/etc-file"), "from lower");
        std::ofstream(target + "/new") << "x";
        EXPECT_TRUE(fs::exists(t.path + "/upper/new"));
    }
    EXPECT_FALSE(isMounted(target)) << "MountSet must unmount when it goes away";
}

TEST(FsShare, BundleRootfsIsBoundWhenNoMountsAreGiven) {
    requireRoot();
    TempDir t;
    fs::create_directories(t.path + "/bundle/rootfs/bin");
    const std::string target = t.path + "/shared/c1/rootfs";
    MountSet set = mountRootfs({}, t.path + "/bundle", "rootfs", target);
    EXPECT_TRUE(fs::is_directory(target + "/bin"));
    auto points = set.release();
    ASSERT_EQ(points.size(), 1u);
    EXPECT_TRUE(isMounted(target));
    EXPECT_EQ(cleanupTree(t.path + "/shared"), "");
    EXPECT_FALSE(isMounted(target));
    EXPECT_FALSE(fs::exists(t.path + "/shared"));
}

TEST(FsShare, ReadonlyFileBindMount) {
    requireRoot();
    TempDir t;
    std::ofstream(t.path + "/hosts") << "127.0.0.1 localhost\n";
    MountSet set;
    bindMount(t.path + "/hosts", t.path + "/shared/c1-3-hosts", true, set);
    EXPECT_EQ(readFile(t.path + "/shared/c1-3-hosts"), "127.0.0.1 localhost\n");
    std::ofstream w(t.path + "/shared/c1-3-hosts");
    EXPECT_FALSE(w.is_open()) << "read-only bind mount is writable";
}

TEST(FsShare, MountErrorNamesTypeSourceAndTarget) {
    requireRoot();
    TempDir t;
    containerd::types::Mount m;
    m.set_type("overlay");
    m.set_source("overlay");
    m.add_options("lowerdir=" + t.path + "/missing");
    try {
        mountRootfs({m}, t.path, "rootfs", t.path + "/target");
        FAIL() << "mount of a missing lowerdir succeeded";
    } catch (const kata::SystemError& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("mount overlay"), std::string::npos) << msg;
        EXPECT_NE(msg.find(t.path + "/target"), std::string::npos) << msg;
    }
    EXPECT_FALSE(isMounted(t.path + "/target"));
}
