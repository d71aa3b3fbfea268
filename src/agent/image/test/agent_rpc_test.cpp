// grpc.Image/PullImage through the real kata-agent (an ordinary process on a unix socket),
// driven with kata-agent-ctl as users do: pull from a registry with basic auth, then
// CreateContainer runs the pulled bundle; running out of space leaves the agent serving.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>

#include "registry_fixture.h"
#include "test_util.h"

namespace kata::agent::image {
namespace {

namespace fs = std::filesystem;
using test::LocalRegistry;
using test::runScript;
using test::sh;

class AgentProcess {
  public:
    AgentProcess(const std::string& socket, const std::string& runDir, const std::string& log)
        : socket_(socket) {
        pid_ = ::fork();
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            ::dup2(fd, 2);
            std::string addr = "unix://" + socket;
            ::execl(KATA_AGENT_BINARY, KATA_AGENT_BINARY, "--server-addr", addr.c_str(),
                    "--run-dir", runDir.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        for (int i = 0; i < 200 && !fs::exists(socket_); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ~AgentProcess() {
        ::kill(pid_, SIGTERM);
        for (int i = 0; i < 100; ++i) {
            if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    bool alive() const { return ::kill(pid_, 0) == 0; }
    test::ScriptResult ctl(const std::string& commands, const std::string& extra = "") const {
        return runScript(std::string(KATA_AGENT_CTL_BINARY) + " connect --server-address unix://" +
                         socket_ + " " + extra + " " + commands);
    }

  private:
    std::string socket_;
    pid_t pid_ = -1;
};

class AgentPullTest : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string missing = test::missingImageTools();
        if (!missing.empty())
            GTEST_SKIP() << "image tools missing (apt-get install docker-registry umoci skopeo "
                            "apache2-utils busybox-static openssl curl): "
                         << missing;
        if (::geteuid() != 0) GTEST_SKIP() << "containers need root";
        // Before any thread exists: the tmpfs of the out-of-space case stays in this process.
        ASSERT_EQ(::unshare(CLONE_NEWNS), 0) << std::strerror(errno);
        ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0);
        const std::string w = tmp.path();
        sh("set -euo pipefail\ncd " + w + "\n" + KATA_BUSYBOX_ROOTFS_SCRIPT + " rootfs-src\n" +
           "printf 'pulled in the guest\\n' > rootfs-src/etc/motd\n"
           "umoci init --layout oci\numoci new --image oci:bb\n"
           "umoci insert --image oci:bb rootfs-src /\n"
           "umoci config --image oci:bb --config.cmd /bin/sh --config.env PATH=/bin:/usr/bin\n");
        LocalRegistry::Options o;
        o.htpasswdUser = "kata";
        o.htpasswdPassword = "pa55";
        registry = std::make_unique<LocalRegistry>(w + "/registry", o);
        ref = registry->host() + "/demo/busybox:latest";
        sh("skopeo copy --quiet --dest-tls-verify=false --dest-creds kata:pa55 oci:" + w +
           "/oci:bb docker://" + ref);
    }
    void TearDown() override {
        if (fs::exists(tmp.path() + "/small"))
            ::umount2((tmp.path() + "/small").c_str(), MNT_DETACH);
    }

    test::TempDir tmp{"kata-image-agent"};
    std::unique_ptr<LocalRegistry> registry;
    std::string ref;
};

TEST_F(AgentPullTest, PullImageThenCreateContainerFromTheBundle) {
    const std::string run = tmp.path() + "/run";
    fs::create_directories(run);
    AgentProcess agent(tmp.path() + "/agent.sock", run, tmp.path() + "/agent.log");
    auto anon = agent.ctl("-c \"PullImage image=" + ref + " cid=c1\"");
    if (anon.output.find("built without image pull") != std::string::npos)
        GTEST_SKIP() << "this kata-agent is linked static, without image pull: " << anon.output;
    EXPECT_EQ(anon.exitCode, 1) << anon.output;
    EXPECT_NE(anon.output.find("UNAUTHENTICATED: pull " + ref + ": manifest: registry " +
                               registry->host() + " requires credentials"),
              std::string::npos)
        << anon.output;
    EXPECT_FALSE(fs::exists(run + "/c1"));

    auto pulled = agent.ctl("-c \"PullImage image=" + ref + " cid=c1 source_creds=kata:pa55\"");
    ASSERT_EQ(pulled.exitCode, 0) << pulled.output;
    EXPECT_NE(pulled.output.find("{\"image_ref\":\"sha256:"), std::string::npos) << pulled.output;
    std::cout << "PullImage: " << pulled.output;
    EXPECT_TRUE(fs::exists(run + "/c1/config.json"));
    EXPECT_TRUE(fs::exists(run + "/c1/rootfs/bin/busybox"));

    auto container = agent.ctl(
        "-c 'CreateSandbox hostname=pod sandbox_id=s1' -c 'CreateContainer cid=c1 rootfs=" + run +
            "/c1/rootfs' -c 'StartContainer cid=c1' "
            "-c \"ExecProcess cid=c1 exec_id=e1 cmd='cat /etc/motd'\" "
            "-c 'ReadStdout cid=c1 exec_id=e1 all=true raw=true' -c 'WaitProcess cid=c1 "
            "exec_id=e1' "
            "-c 'SignalProcess cid=c1 exec_id=c1 signal=9' -c 'WaitProcess cid=c1' "
            "-c 'RemoveContainer cid=c1' -c DestroySandbox",
        "--bundle-dir " + run + "/c1");
    EXPECT_EQ(container.exitCode, 0) << container.output << "\n--- agent log\n"
                                     << test::slurp(tmp.path() + "/agent.log");
    EXPECT_NE(container.output.find("pulled in the guest\n"), std::string::npos)
        << container.output;
}

TEST_F(AgentPullTest, OutOfSpaceKeepsTheAgentServing) {
    const std::string small = tmp.path() + "/small";
    fs::create_directories(small);
    ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=2m"), 0) << std::strerror(errno);
    AgentProcess agent(tmp.path() + "/agent.sock", small, tmp.path() + "/agent.log");
    auto r = agent.ctl("-c \"PullImage image=" + ref + " cid=c1 source_creds=kata:pa55\"");
    if (r.output.find("built without image pull") != std::string::npos)
        GTEST_SKIP() << "this kata-agent is linked static, without image pull: " << r.output;
    EXPECT_EQ(r.exitCode, 1) << r.output;
    // The layer (1 MiB) fits in the content store, its unpacked 3 MiB do not.
    EXPECT_NE(
        r.output.find("RESOURCE_EXHAUSTED: pull " + ref + ": out of space unpacking layer 1/1"),
        std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("the image needs about 3.0 MiB"), std::string::npos) << r.output;
    std::cout << "PullImage on a full run dir: " << r.output;
    EXPECT_FALSE(fs::exists(small + "/c1"));
    EXPECT_TRUE(agent.alive());
    auto check = agent.ctl("-c Check");
    EXPECT_EQ(check.exitCode, 0) << check.output;
}

}  // namespace
}  // namespace kata::agent::image
