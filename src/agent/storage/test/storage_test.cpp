#include "kata/agent/storage.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "kata/common/error.h"
#include "test_util.h"

namespace kata::agent {
namespace {

namespace fs = std::filesystem;
using test::isMounted;
using test::mountFsType;

grpc::Storage storage(const std::string& driver, const std::string& source,
                      const std::string& mountPoint, std::vector<std::string> options = {},
                      const std::string& fstype = "") {
    grpc::Storage s;
    s.set_driver(driver);
    s.set_source(source);
    s.set_mount_point(mountPoint);
    s.set_fstype(fstype);
    for (auto& o : options) s.add_options(o);
    return s;
}

google::protobuf::RepeatedPtrField<grpc::Storage> list(std::initializer_list<grpc::Storage> l) {
    google::protobuf::RepeatedPtrField<grpc::Storage> r;
    for (const auto& s : l) *r.Add() = s;
    return r;
}

class StorageTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "storage tests mount filesystems and need root";
        test::privateMountNamespace();
        root = tmp.path() + "/run";
        fs::create_directories(root);
    }
    void expectError(StatusCode code, const std::function<void()>& fn,
                     std::vector<std::string> fragments) {
        try {
            fn();
            ADD_FAILURE() << "expected an error";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), code) << e.what();
            for (const auto& f : fragments) {
                EXPECT_NE(std::string(e.what()).find(f), std::string::npos)
                    << "\"" << e.what() << "\" lacks \"" << f << "\"";
            }
        }
    }
    test::TempDir tmp;
    std::string root;
};

TEST_F(StorageTest, EphemeralIsTmpfsAndGoesAwayOnRemove) {
    StorageManager mgr(root);
    auto points =
        mgr.add("c1", list({storage("ephemeral", "tmpfs", root + "/sandbox/ephemeral/cache",
                                    {"size=1m", "nodev"}, "tmpfs")}));
    ASSERT_EQ(points.size(), 1u);
    EXPECT_EQ(points[0], root + "/sandbox/ephemeral/cache");
    EXPECT_TRUE(isMounted(points[0]));
    EXPECT_EQ(mountFsType(points[0]), "tmpfs");
    std::ofstream(points[0] + "/f") << "x";
    EXPECT_TRUE(fs::exists(points[0] + "/f"));

    mgr.remove("c1");
    EXPECT_FALSE(isMounted(points[0]));
    EXPECT_FALSE(fs::exists(points[0]));
    EXPECT_FALSE(fs::exists(root + "/sandbox"));  // the dirs it created are gone too
}

TEST_F(StorageTest, RelativeMountPointIsUnderRoot) {
    StorageManager mgr(root);
    auto points = mgr.add("c1", list({storage("ephemeral", "", "sandbox/e1")}));
    EXPECT_EQ(points[0], root + "/sandbox/e1");
    EXPECT_TRUE(isMounted(points[0]));
    mgr.remove("c1");
}

TEST_F(StorageTest, BindReadOnlyDirectoryAndFile) {
    fs::create_directories(root + "/shared/vol");
    std::ofstream(root + "/shared/vol/data") << "hello";
    std::ofstream(root + "/shared/config") << "cfg";
    StorageManager mgr(root);
    auto points =
        mgr.add("c1", list({storage("bind", root + "/shared/vol", root + "/c1/vol", {"ro"}),
                            storage("bind", root + "/shared/config", root + "/c1/etc/config")}));
    ASSERT_EQ(points.size(), 2u);
    EXPECT_TRUE(isMounted(root + "/c1/vol"));
    std::string content;
    std::ifstream(root + "/c1/vol/data") >> content;
    EXPECT_EQ(content, "hello");
    int fd = ::open((root + "/c1/vol/new").c_str(), O_CREAT | O_WRONLY, 0644);
    EXPECT_EQ(fd, -1);
    EXPECT_EQ(errno, EROFS);
    if (fd >= 0) ::close(fd);

    EXPECT_TRUE(fs::is_regular_file(root + "/c1/etc/config"));
    std::ifstream(root + "/c1/etc/config") >> content;
    EXPECT_EQ(content, "cfg");

    mgr.remove("c1");
    EXPECT_FALSE(isMounted(root + "/c1/vol"));
    EXPECT_FALSE(isMounted(root + "/c1/etc/config"));
    EXPECT_FALSE(fs::exists(root + "/c1"));
    EXPECT_TRUE(fs::exists(root + "/shared/vol/data"));  // the source is untouched
}

TEST_F(StorageTest, LocalDirectoryWithMode) {
    StorageManager mgr(root);
    grpc::Storage s = storage("local", "local", root + "/sandbox/local/scratch", {"mode=0750"});
    mgr.add("c1", list({s}));
    struct stat st {};
    ASSERT_EQ(::stat((root + "/sandbox/local/scratch").c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0750u);
    EXPECT_FALSE(isMounted(root + "/sandbox/local/scratch"));
    std::ofstream(root + "/sandbox/local/scratch/file") << "data";

    mgr.remove("c1");
    EXPECT_FALSE(fs::exists(root + "/sandbox/local/scratch"));
}

TEST_F(StorageTest, LocalRejectsBadMode) {
    StorageManager mgr(root);
    expectError(StatusCode::kInvalidArgument,
                [&] { mgr.add("c1", list({storage("local", "", root + "/l", {"mode=99x"})})); },
                {"local", root + "/l", "mode"});
    EXPECT_FALSE(fs::exists(root + "/l"));
}

TEST_F(StorageTest, SharedMountIsRefcountedAcrossContainers) {
    StorageManager mgr(root);
    grpc::Storage s = storage("ephemeral", "tmpfs", root + "/sandbox/shm", {"size=1m"});
    mgr.add("c1", list({s}));
    mgr.add("c2", list({s}));
    EXPECT_EQ(mgr.refCount(root + "/sandbox/shm"), 2);
    std::ofstream(root + "/sandbox/shm/marker") << "1";

    mgr.remove("c1");
    EXPECT_EQ(mgr.refCount(root + "/sandbox/shm"), 1);
    EXPECT_TRUE(isMounted(root + "/sandbox/shm"));
    EXPECT_TRUE(fs::exists(root + "/sandbox/shm/marker"));  // same mount, not a new one

    mgr.remove("c1");  // a second remove of the same id changes nothing
    EXPECT_TRUE(isMounted(root + "/sandbox/shm"));

    mgr.remove("c2");
    EXPECT_EQ(mgr.refCount(root + "/sandbox/shm"), 0);
    EXPECT_FALSE(isMounted(root + "/sandbox/shm"));
}

TEST_F(StorageTest, DifferentStorageOnMountedPointIsRejected) {
    StorageManager mgr(root);
    mgr.add("c1", list({storage("ephemeral", "tmpfs", root + "/m")}));
    fs::create_directories(root + "/src");
    expectError(StatusCode::kAlreadyExists,
                [&] { mgr.add("c2", list({storage("bind", root + "/src", root + "/m")})); },
                {"bind", root + "/m", "already holds storage ephemeral"});
    EXPECT_EQ(mgr.refCount(root + "/m"), 1);
    mgr.remove("c1");
}

TEST_F(StorageTest, DotDotAndEscapingPathsAreRejected) {
    StorageManager mgr(root);
    expectError(
        StatusCode::kInvalidArgument,
        [&] { mgr.add("c1", list({storage("ephemeral", "tmpfs", root + "/a/../../escape")})); },
        {"ephemeral", root + "/a/../../escape", "\"..\""});
    expectError(StatusCode::kInvalidArgument,
                [&] { mgr.add("c1", list({storage("ephemeral", "tmpfs", "../outside")})); },
                {"../outside"});
    expectError(
        StatusCode::kInvalidArgument,
        [&] { mgr.add("c1", list({storage("ephemeral", "tmpfs", tmp.path() + "/elsewhere")})); },
        {tmp.path() + "/elsewhere", "outside " + root});
    expectError(StatusCode::kInvalidArgument,
                [&] { mgr.add("c1", list({storage("bind", root + "/x/../../..", root + "/b")})); },
                {"bind", root + "/b", "source contains \"..\""});
    expectError(StatusCode::kInvalidArgument,
                [&] { mgr.add("c1", list({storage("bind", "/etc", root + "/b")})); },
                {"bind", "\"/etc\"", "outside"});
    EXPECT_FALSE(fs::exists(tmp.path() + "/escape"));
    EXPECT_FALSE(fs::exists(tmp.path() + "/elsewhere"));
    EXPECT_FALSE(fs::exists(root + "/b"));
}

TEST_F(StorageTest, SymlinkOutOfRootIsRejected) {
    fs::create_directories(tmp.path() + "/outside");
    fs::create_symlink(tmp.path() + "/outside", root + "/link");
    StorageManager mgr(root);
    expectError(StatusCode::kInvalidArgument,
                [&] { mgr.add("c1", list({storage("ephemeral", "tmpfs", root + "/link/m")})); },
                {root + "/link/m", "outside"});
    EXPECT_FALSE(isMounted(tmp.path() + "/outside/m"));
    EXPECT_FALSE(fs::exists(tmp.path() + "/outside/m"));
}

TEST_F(StorageTest, UnknownDriverIsNamed) {
    StorageManager mgr(root);
    expectError(StatusCode::kInvalidArgument,
                [&] { mgr.add("c1", list({storage("nfs-magic", "server:/x", root + "/n")})); },
                {"nfs-magic", "\"server:/x\"", root + "/n", "unknown storage driver"});
}

TEST_F(StorageTest, NinePWithoutDeviceFailsClearly) {
    StorageManager mgr(root);
    std::string mp = root + "/shared/containers";
    try {
        mgr.add("sandbox", list({storage("9p", "kataShared", mp, {"nodev", "msize=8192"})}));
        ADD_FAILURE() << "9p mount of a missing virtio device succeeded";
    } catch (const SystemError& e) {
        std::string msg = e.what();
        EXPECT_EQ(msg.rfind("mount 9p \"kataShared\" on " + mp + ": ", 0), 0u) << msg;
        // ENODEV without 9p in the kernel, ENOENT when no virtio channel has the tag.
        EXPECT_TRUE(e.err() == ENODEV || e.err() == ENOENT) << msg;
    }
    EXPECT_FALSE(isMounted(mp));
    EXPECT_FALSE(fs::exists(root + "/shared"));
    EXPECT_EQ(mgr.refCount(mp), 0);
}

TEST_F(StorageTest, FailureRollsBackWhatTheCallMounted) {
    StorageManager mgr(root);
    mgr.add("c0", list({storage("ephemeral", "tmpfs", root + "/shared-eph")}));
    expectError(StatusCode::kInvalidArgument,
                [&] {
                    mgr.add("c1", list({storage("ephemeral", "tmpfs", root + "/shared-eph"),
                                        storage("ephemeral", "tmpfs", root + "/own"),
                                        storage("bogus", "", root + "/bad")}));
                },
                {"bogus"});
    EXPECT_FALSE(isMounted(root + "/own"));
    EXPECT_FALSE(fs::exists(root + "/own"));
    EXPECT_TRUE(isMounted(root + "/shared-eph"));  // held by c0, untouched
    EXPECT_EQ(mgr.refCount(root + "/shared-eph"), 1);
    mgr.remove("c1");  // c1 holds nothing
    EXPECT_TRUE(isMounted(root + "/shared-eph"));
    mgr.remove("c0");
    EXPECT_FALSE(isMounted(root + "/shared-eph"));
}

TEST_F(StorageTest, BlockDeviceMissingTimesOutNamingPciPath) {
    StorageManager mgr(root);
    DeviceEnvironment env;
    env.sysRoot = tmp.path() + "/sys";
    env.devRoot = tmp.path() + "/dev";
    env.timeout = std::chrono::milliseconds(100);
    fs::create_directories(env.sysRoot + "/devices/pci0000:00");
    mgr.setDeviceEnvironment(env);
    expectError(StatusCode::kDeadlineExceeded,
                [&] { mgr.add("c1", list({storage("blk", "02/00", root + "/vol", {}, "ext4")})); },
                {"blk", "\"02/00\"", root + "/vol", "PCI path \"02/00\"", "timed out"});
    EXPECT_FALSE(fs::exists(root + "/vol"));
}

// A real ext4 filesystem on a loop device, found through a PCI path in a fake sysfs tree whose
// block entry names the loop device, the way virtio-blk devices appear in the guest.
TEST_F(StorageTest, BlockDeviceByPciPathMountsRealExt4) {
    std::string image = tmp.path() + "/disk.img";
    {
        std::ofstream(image).close();
        fs::resize_file(image, 8 << 20);
    }
    if (std::system(("mkfs.ext4 -q -F " + image + " >/dev/null 2>&1").c_str()) != 0) {
        GTEST_SKIP() << "mkfs.ext4 unavailable";
    }
    FILE* p = ::popen(("losetup -f --show " + image + " 2>/dev/null").c_str(), "r");
    ASSERT_NE(p, nullptr);
    char buf[128] = {};
    std::string loop = fgets(buf, sizeof buf, p) ? buf : "";
    ::pclose(p);
    if (loop.empty()) GTEST_SKIP() << "no loop device available (losetup -f failed)";
    loop.erase(loop.find_last_not_of("\n") + 1);
    struct LoopGuard {
        std::string dev;
        ~LoopGuard() { std::system(("losetup -d " + dev + " 2>/dev/null").c_str()); }
    } guard{loop};
    std::string name = fs::path(loop).filename();

    DeviceEnvironment env;
    env.sysRoot = tmp.path() + "/sys";
    env.devRoot = "/dev";
    env.timeout = std::chrono::seconds(2);
    // 02/01: a bridge at slot 2 on the root bus, the disk at slot 1 behind it.
    std::string bridge = env.sysRoot + "/devices/pci0000:00/0000:00:02.0";
    fs::create_directories(bridge + "/pci_bus/0000:01");
    fs::create_directories(bridge + "/0000:01:01.0/virtio3/block/" + name);

    StorageManager mgr(root);
    mgr.setDeviceEnvironment(env);
    // A filesystem type the kernel lacks: the error names the PCI path, the node and the type.
    try {
        mgr.add("c1", list({storage("blk", "02/01", root + "/bad", {}, "bogusfs")}));
        ADD_FAILURE() << "mount with an unknown fstype succeeded";
    } catch (const SystemError& e) {
        EXPECT_EQ(std::string(e.what()), "mount blk \"02/01\" (" + loop + ", bogusfs) on " + root +
                                             "/bad: No such device (ENODEV)");
    }
    EXPECT_FALSE(fs::exists(root + "/bad"));

    auto points = mgr.add(
        "c1", list({storage("blk", "02/01", root + "/sandbox/storage/vol", {"nodev"}, "ext4")}));
    EXPECT_TRUE(isMounted(points[0]));
    EXPECT_EQ(mountFsType(points[0]), "ext4");
    EXPECT_TRUE(fs::exists(points[0] + "/lost+found"));
    mgr.remove("c1");
    EXPECT_FALSE(isMounted(points[0]));
}

TEST_F(StorageTest, OverlayLayersFromTheSandboxTree) {
    fs::create_directories(root + "/layers/lower");
    std::ofstream(root + "/layers/lower/base") << "base";
    StorageManager mgr(root);
    std::string ov = root + "/ov";
    auto points =
        mgr.add("c1", list({storage("overlayfs", "overlay", ov + "/merged",
                                    {"lowerdir=" + root + "/layers/lower",
                                     "upperdir=" + ov + "/upper", "workdir=" + ov + "/work"})}));
    EXPECT_EQ(mountFsType(points[0]), "overlay");
    EXPECT_TRUE(fs::exists(points[0] + "/base"));
    std::ofstream(points[0] + "/new") << "n";
    EXPECT_TRUE(fs::exists(ov + "/upper/new"));  // writes land in the upper layer
    EXPECT_FALSE(fs::exists(root + "/layers/lower/new"));
    mgr.remove("c1");
    EXPECT_FALSE(isMounted(points[0]));

    expectError(StatusCode::kInvalidArgument,
                [&] {
                    mgr.add("c2",
                            list({storage("overlayfs", "overlay", ov + "/m2",
                                          {"lowerdir=/usr:" + root + "/layers/lower",
                                           "upperdir=" + ov + "/u2", "workdir=" + ov + "/w2"})}));
                },
                {"overlayfs", ov + "/m2", "lowerdir \"/usr\" is outside"});
}

}  // namespace
}  // namespace kata::agent
