#include "kata/agent/image/bundle.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "kata/agent/image/unpack.h"
#include "kata/oci/spec.h"
#include "test_util.h"

namespace kata::agent::image {
namespace {

namespace fs = std::filesystem;
using test::expectError;

class BundleTest : public ::testing::Test {
  protected:
    void SetUp() override {
        rootfs = tmp.path() + "/rootfs";
        fs::create_directories(rootfs + "/etc");
        test::spit(rootfs + "/etc/passwd",
                   "root:x:0:0:root:/root:/bin/sh\n"
                   "# comment\n"
                   "app:x:1000:1001:app:/home/app:/bin/sh\n"
                   "nobody:x:65534:65534:nobody:/:/bin/false\n");
        test::spit(rootfs + "/etc/group",
                   "root:x:0:\napp:x:1001:\nwheel:x:10:app,other\naudio:x:29:other\n"
                   "staff:x:50:app\n");
        rootFd.reset(::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    }
    test::TempDir tmp;
    std::string rootfs;
    UniqueFd rootFd;
};

TEST_F(BundleTest, ResolvesUsers) {
    ResolvedUser u = resolveUser("", rootFd.get(), "img");
    EXPECT_EQ(u.uid, 0u);
    EXPECT_EQ(u.gid, 0u);
    u = resolveUser("app", rootFd.get(), "img");
    EXPECT_EQ(u.uid, 1000u);
    EXPECT_EQ(u.gid, 1001u);
    EXPECT_EQ(u.additionalGids, (std::vector<uint32_t>{10, 50}));
    u = resolveUser("1000", rootFd.get(), "img");  // a uid in /etc/passwd takes its group
    EXPECT_EQ(u.gid, 1001u);
    u = resolveUser("4242", rootFd.get(), "img");
    EXPECT_EQ(u.uid, 4242u);
    EXPECT_EQ(u.gid, 0u);
    u = resolveUser("4242:4343", rootFd.get(), "img");
    EXPECT_EQ(u.gid, 4343u);
    EXPECT_TRUE(u.additionalGids.empty());
    u = resolveUser("app:audio", rootFd.get(), "img");
    EXPECT_EQ(u.uid, 1000u);
    EXPECT_EQ(u.gid, 29u);
    u = resolveUser("nobody:wheel", rootFd.get(), "img");
    EXPECT_EQ(u.uid, 65534u);
    EXPECT_EQ(u.gid, 10u);
    expectError(StatusCode::kNotFound, [&] { resolveUser("ghost", rootFd.get(), "img"); },
                {"img: user \"ghost\": no such user in the image's /etc/passwd"});
    expectError(StatusCode::kNotFound, [&] { resolveUser("app:ghosts", rootFd.get(), "img"); },
                {"img: user \"app:ghosts\": no such group in the image's /etc/group"});
    expectError(StatusCode::kInvalidArgument, [&] { resolveUser("app:", rootFd.get(), "img"); },
                {"expected user[:group]"});
}

TEST_F(BundleTest, PasswdIsReadInsideTheRoot) {
    // /etc/passwd as a symlink to the host's file must resolve inside the rootfs.
    std::string hostPasswd = tmp.path() + "/host-passwd";
    test::spit(hostPasswd, "hostonly:x:777:777::/:/bin/sh\n");
    fs::remove(rootfs + "/etc/passwd");
    fs::create_symlink(hostPasswd, rootfs + "/etc/passwd");
    expectError(StatusCode::kNotFound, [&] { resolveUser("hostonly", rootFd.get(), "img"); },
                {"(the image has no /etc/passwd)"});
}

TEST_F(BundleTest, SpecFromImageConfig) {
    ImageConfig c;
    c.entrypoint = {"/bin/sh", "-c"};
    c.cmd = {"echo hello"};
    c.env = {"A=1", "B=two"};
    c.workingDir = "/srv";
    c.user = "app";
    grpc::Spec spec = specFromImageConfig(c, rootFd.get(), "img");
    EXPECT_EQ(spec.process().args_size(), 3);
    EXPECT_EQ(spec.process().args(2), "echo hello");
    ASSERT_EQ(spec.process().env_size(), 3);
    EXPECT_EQ(spec.process().env(0),
              "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    EXPECT_EQ(spec.process().env(2), "B=two");
    EXPECT_EQ(spec.process().cwd(), "/srv");
    EXPECT_EQ(spec.process().user().uid(), 1000u);
    EXPECT_EQ(spec.process().user().gid(), 1001u);
    EXPECT_EQ(spec.root().path(), "rootfs");
    EXPECT_GE(spec.mounts_size(), 5);
    EXPECT_EQ(spec.linux().namespaces_size(), 4);

    // Through config.json and back, as CreateContainer will read it.
    std::string path = tmp.path() + "/config.json";
    oci::saveSpecFile(spec, path);
    grpc::Spec back = oci::loadSpecFile(path);
    EXPECT_EQ(back.process().args(0), "/bin/sh");
    EXPECT_EQ(back.process().user().uid(), 1000u);
    EXPECT_EQ(back.version(), "1.0.2");
    EXPECT_NE(test::slurp(path).find("\"ociVersion\""), std::string::npos);

    ImageConfig withPath;
    withPath.cmd = {"sh"};
    withPath.env = {"PATH=/opt/bin"};
    spec = specFromImageConfig(withPath, rootFd.get(), "img");
    ASSERT_EQ(spec.process().env_size(), 1);
    EXPECT_EQ(spec.process().cwd(), "/");

    ImageConfig empty;
    expectError(StatusCode::kInvalidArgument,
                [&] { specFromImageConfig(empty, rootFd.get(), "img"); },
                {"img: the image config has neither Entrypoint nor Cmd"});
}

}  // namespace
}  // namespace kata::agent::image
