#include "kata/agent/image/unpack.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "layer_builder.h"
#include "test_util.h"

namespace kata::agent::image {
namespace {

namespace fs = std::filesystem;
using test::expectError;
using test::LayerBuilder;

class UnpackTest : public ::testing::Test {
  protected:
    void SetUp() override {
        rootfs = tmp.path() + "/rootfs";
        outside = tmp.path() + "/outside";
        fs::create_directories(rootfs);
        fs::create_directories(outside);
        test::spit(outside + "/secret", "host secret\n");
        rootFd.reset(::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        ASSERT_TRUE(rootFd.valid());
    }

    LayerStats apply(const LayerBuilder& b, Compression c = Compression::kNone,
                     const std::string& what = "image test:1: layer 1/1") {
        std::string path = tmp.path() + "/layer-" + std::to_string(++layers);
        b.write(path, c);
        return applyLayer(rootFd.get(), path, c, what);
    }

    // Refused with the layer and the entry named, and nothing appeared outside the rootfs.
    void expectRefused(const LayerBuilder& b, const std::string& entry, const std::string& reason) {
        std::string msg =
            expectError(StatusCode::kInvalidArgument, [&] { apply(b); },
                        {"image test:1: layer 1/1: entry \"" + entry + "\": " + reason});
        expectOutsideUntouched();
    }

    void expectOutsideUntouched() {
        std::vector<std::string> top;
        for (const auto& e : fs::directory_iterator(tmp.path())) {
            std::string n = e.path().filename();
            if (n.rfind("layer-", 0) != 0) top.push_back(n);
        }
        std::sort(top.begin(), top.end());
        EXPECT_EQ(top, (std::vector<std::string>{"outside", "rootfs"}));
        std::vector<std::string> out;
        for (const auto& e : fs::directory_iterator(outside)) out.push_back(e.path().filename());
        EXPECT_EQ(out, (std::vector<std::string>{"secret"}));
        EXPECT_EQ(test::slurp(outside + "/secret"), "host secret\n");
        struct stat st {};
        ASSERT_EQ(::stat((outside + "/secret").c_str(), &st), 0);
        EXPECT_EQ(st.st_nlink, 1u);
        EXPECT_FALSE(fs::exists("/escape-kata-test"));
    }

    std::string at(const std::string& rel) const { return rootfs + "/" + rel; }

    test::TempDir tmp;
    std::string rootfs;
    std::string outside;
    UniqueFd rootFd;
    int layers = 0;
};

TEST_F(UnpackTest, KeepsModesOwnersXattrsLinksAndTimes) {
    LayerBuilder b;
    b.dir("bin", 0755)
        .file("bin/tool", "#!/bin/sh\necho hi\n", 04755, 0, 0)
        .dir("home/user", 0700, 1000, 1000)
        .file("home/user/.profile", "export A=1\n", 0600, 1000, 1000, {{"user.kata", "yes"}})
        .symlink("bin/sh", "/bin/tool")
        .symlink("home/user/rel", "../user/.profile")
        .hardlink("bin/tool2", "bin/tool")
        .special("run/fifo", AE_IFIFO);
    LayerStats st = apply(b);
    EXPECT_EQ(st.entries, 8);

    struct stat s {};
    ASSERT_EQ(::lstat(at("bin/tool").c_str(), &s), 0);
    EXPECT_EQ(s.st_mode & 07777, 04755u);
    EXPECT_EQ(s.st_nlink, 2u);
    EXPECT_EQ(s.st_mtime, 1700000000);
    struct stat s2 {};
    ASSERT_EQ(::lstat(at("bin/tool2").c_str(), &s2), 0);
    EXPECT_EQ(s.st_ino, s2.st_ino);
    ASSERT_EQ(::lstat(at("home/user").c_str(), &s), 0);
    EXPECT_TRUE(S_ISDIR(s.st_mode));
    EXPECT_EQ(s.st_mode & 07777, 0700u);
    EXPECT_EQ(s.st_mtime, 1700000000);  // set after its children were written
    if (::geteuid() == 0) {
        EXPECT_EQ(s.st_uid, 1000u);
        EXPECT_EQ(s.st_gid, 1000u);
    }
    ASSERT_EQ(::lstat(at("home/user/.profile").c_str(), &s), 0);
    EXPECT_EQ(s.st_mode & 07777, 0600u);
    char value[16] = {0};
    ssize_t n = ::getxattr(at("home/user/.profile").c_str(), "user.kata", value, sizeof value);
    ASSERT_EQ(n, 3) << "user.kata xattr: " << std::strerror(errno);
    EXPECT_EQ(std::string(value, 3), "yes");
    EXPECT_EQ(fs::read_symlink(at("bin/sh")), "/bin/tool");
    EXPECT_EQ(fs::read_symlink(at("home/user/rel")), "../user/.profile");
    ASSERT_EQ(::lstat(at("run/fifo").c_str(), &s), 0);
    EXPECT_TRUE(S_ISFIFO(s.st_mode));
    ASSERT_EQ(::lstat(at("run").c_str(), &s), 0);  // implicit parent
    EXPECT_EQ(s.st_mode & 07777, 0755u);
    EXPECT_EQ(test::slurp(at("bin/tool2")), "#!/bin/sh\necho hi\n");
}

TEST_F(UnpackTest, GzipZstdAndPlainLayersGiveTheSameTree) {
    std::string big(3 << 20, 'x');
    for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + (i / 4096) % 26);
    int i = 0;
    for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
        std::string d = "d" + std::to_string(i++);
        LayerBuilder b;
        b.file(d + "/big", big).file(d + "/small", "s");
        LayerStats st = apply(b, c);
        EXPECT_EQ(st.bytes, static_cast<int64_t>(big.size() + 1));
        EXPECT_EQ(test::slurp(at(d + "/big")), big);
    }
}

TEST_F(UnpackTest, WhiteoutsRemoveLowerEntries) {
    apply(LayerBuilder()
              .file("a/x", "x")
              .file("a/y", "y")
              .dir("b")
              .file("b/deep/z", "z")
              .file("c", "c"));
    apply(LayerBuilder()
              .whiteout("a", "x")
              .whiteout("", "b")
              .whiteout("", "missing")
              .file("a/new", "n"));
    EXPECT_FALSE(fs::exists(at("a/x")));
    EXPECT_TRUE(fs::exists(at("a/y")));
    EXPECT_TRUE(fs::exists(at("a/new")));
    EXPECT_FALSE(fs::exists(at("b")));
    EXPECT_TRUE(fs::exists(at("c")));
    EXPECT_FALSE(fs::exists(at("a/.wh.x")));
}

TEST_F(UnpackTest, OpaqueDirectoryHidesOnlyLowerContent) {
    apply(LayerBuilder().file("d/old", "o").file("d/sub/old2", "o").file("keep/k", "k"));
    // This layer writes d/new before the marker and d/sub/ok after it.
    apply(LayerBuilder().dir("d").file("d/new", "n").opaque("d").file("d/sub/ok", "ok"));
    EXPECT_FALSE(fs::exists(at("d/old")));
    EXPECT_FALSE(fs::exists(at("d/sub/old2")));
    EXPECT_TRUE(fs::exists(at("d/new")));
    EXPECT_TRUE(fs::exists(at("d/sub/ok")));
    EXPECT_TRUE(fs::exists(at("keep/k")));
    EXPECT_FALSE(fs::exists(at("d/.wh..wh..opq")));
}

TEST_F(UnpackTest, EntriesReplaceWhatLowerLayersHad) {
    apply(LayerBuilder()
              .dir("x")
              .file("x/in", "1")
              .file("f", "file")
              .symlink("l", outside + "/secret"));
    apply(LayerBuilder().file("x", "now a file").dir("f").file("l", "plain"));
    EXPECT_EQ(test::slurp(at("x")), "now a file");
    EXPECT_TRUE(fs::is_directory(at("f")));
    // A file entry replaces the symlink; it is never written through.
    EXPECT_FALSE(fs::is_symlink(at("l")));
    EXPECT_EQ(test::slurp(at("l")), "plain");
    expectOutsideUntouched();
}

TEST_F(UnpackTest, RefusesDotDotAndAbsolutePaths) {
    expectRefused(LayerBuilder().file("../escape", "x"), "../escape",
                  "\"..\" in a path is not allowed");
    expectRefused(LayerBuilder().file("a/../../escape", "x"), "a/../../escape",
                  "\"..\" in a path is not allowed");
    expectRefused(LayerBuilder().file("/escape-kata-test", "x"), "/escape-kata-test",
                  "absolute paths are not allowed");
    expectRefused(LayerBuilder().hardlink("h", "../outside/secret"), "h",
                  "hard link to \"../outside/secret\" points outside the root");
    expectRefused(LayerBuilder().hardlink("h", outside + "/secret"), "h",
                  "hard link to \"" + outside + "/secret\" points outside the root");
}

TEST_F(UnpackTest, RefusesSymlinksClimbingOutOfTheRoot) {
    expectRefused(LayerBuilder().symlink("evil", "../outside"), "evil",
                  "symlink to \"../outside\" leads out of the root");
    expectRefused(LayerBuilder().symlink("a/b/evil", "../../../x"), "a/b/evil",
                  "symlink to \"../../../x\" leads out of the root");
    // Climbing inside the root is fine.
    apply(LayerBuilder().symlink("a/b/ok", "../../etc/passwd"));
    EXPECT_EQ(fs::read_symlink(at("a/b/ok")), "../../etc/passwd");
}

TEST_F(UnpackTest, PathsThroughSymlinksStayInsideTheRoot) {
    // An absolute symlink to the host's outside dir means <rootfs><outside> here: writing through
    // it cannot reach the host, and a missing target inside the root is refused.
    expectRefused(LayerBuilder().symlink("lnk", outside).file("lnk/pwned", "x"), "lnk/pwned",
                  "parent \"lnk\" is a symlink that leads nowhere inside the root");
    // "/" resolves to the rootfs itself.
    apply(LayerBuilder().symlink("up", "/").file("up/etc/owned", "inside"));
    EXPECT_EQ(test::slurp(at("etc/owned")), "inside");
    // A hard link through a symlinked directory resolves inside the root, where the host's
    // secret does not exist.
    expectRefused(LayerBuilder().symlink("s", outside).hardlink("h", "s/secret"), "h",
                  "hard link target \"s/secret\" does not exist in the image");
    expectOutsideUntouched();
}

TEST_F(UnpackTest, RefusesDeviceNodes) {
    expectRefused(LayerBuilder().special("dev/null", AE_IFCHR), "dev/null",
                  "device nodes are not allowed in image layers");
    expectRefused(LayerBuilder().special("dev/sda", AE_IFBLK), "dev/sda",
                  "device nodes are not allowed in image layers");
    EXPECT_FALSE(fs::exists(at("dev/null")));
}

TEST_F(UnpackTest, RefusesHardLinksToDirectoriesAndMissingTargets) {
    apply(LayerBuilder().dir("d"));
    expectRefused(LayerBuilder().hardlink("h", "d"), "h", "hard link to a directory \"d\"");
    expectRefused(LayerBuilder().hardlink("h", "nope"), "h",
                  "hard link target \"nope\" does not exist in the image");
}

TEST_F(UnpackTest, CorruptLayerIsDataLoss) {
    std::string path = tmp.path() + "/layer-corrupt";
    LayerBuilder().file("f", std::string(100000, 'z')).write(path, Compression::kGzip);
    std::string data = test::slurp(path);
    test::spit(path, data.substr(0, data.size() / 2));
    expectError(StatusCode::kDataLoss,
                [&] { applyLayer(rootFd.get(), path, Compression::kGzip, "img: layer 1/1"); },
                {"img: layer 1/1: corrupt layer"});
    test::spit(path, "this is not a tar file at all");
    expectError(StatusCode::kDataLoss,
                [&] { applyLayer(rootFd.get(), path, Compression::kNone, "img: layer 1/1"); },
                {"img: layer 1/1"});
}

TEST_F(UnpackTest, LayerEndingRightAfterItsLastFileIsAccepted) {
    // As umoci 0.4's "insert" writes them: no tar padding or end blocks after the last data.
    std::string path = tmp.path() + "/layer-tail";
    LayerBuilder().file("a", "first").file("d/last", "TAILDATA").write(path);
    std::string data = test::slurp(path);
    size_t cut = data.find("TAILDATA");
    ASSERT_NE(cut, std::string::npos);
    test::spit(path, data.substr(0, cut + 8));
    applyLayer(rootFd.get(), path, Compression::kNone, "img: layer 1/1");
    EXPECT_EQ(test::slurp(at("d/last")), "TAILDATA");
    // Cut inside the data, it is a corrupt layer.
    test::spit(path, data.substr(0, cut + 3));
    expectError(StatusCode::kDataLoss,
                [&] { applyLayer(rootFd.get(), path, Compression::kNone, "img: layer 1/1"); },
                {"img: layer 1/1: corrupt layer at entry \"d/last\""});
}

TEST_F(UnpackTest, EstimatesUnpackedSize) {
    std::string path = tmp.path() + "/layer-est";
    LayerBuilder()
        .dir("d")
        .file("d/a", std::string(5000, 'a'))
        .file("d/b", "b")
        .write(path, Compression::kGzip);
    // 3 entries + 8 KiB + 4 KiB of data blocks
    EXPECT_EQ(unpackedSizeEstimate(path, Compression::kGzip, "x"), 3 * 4096 + 8192 + 4096);
}

TEST_F(UnpackTest, RemoveTreeDoesNotFollowSymlinks) {
    apply(LayerBuilder().file("a/b/c", "c").symlink("a/out", outside));
    removeTree(rootfs);
    EXPECT_FALSE(fs::exists(rootfs));
    EXPECT_EQ(test::slurp(outside + "/secret"), "host secret\n");
}

}  // namespace
}  // namespace kata::agent::image
