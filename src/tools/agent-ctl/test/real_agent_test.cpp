// kata-agent-ctl against the real kata-agent (run as an ordinary process on a unix socket):
// a config.json from disk goes through kata_oci, the agent runs the container, and its output,
// exit status and errors come back through the command line tool.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

struct Result {
    int exitCode = -1;
    std::string out;
};

Result run(const std::string& cmd) {
    Result r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return r;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    int st = ::pclose(p);
    r.exitCode = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

std::vector<std::string> mountsUnder(const std::string& dir) {
    std::vector<std::string> out;
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ss(line);
        std::string f[5];
        for (auto& x : f) ss >> x;
        if (f[4].rfind(dir, 0) == 0) out.push_back(f[4]);
    }
    return out;
}

class RealAgent : public ::testing::Test {
  protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "containers need root";
        if (::access("/bin/busybox", X_OK) != 0) GTEST_SKIP() << "busybox-static is not installed";
        std::string tmpl = "/tmp/agent-ctl-real.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        dir_ = tmpl;
        cgroup_ = "agent-ctl-test-" + std::to_string(::getpid());
        fs::path rootfs = dir_ / "bundle" / "rootfs";
        for (const char* d : {"bin", "proc", "dev", "sys", "tmp"})
            fs::create_directories(rootfs / d);
        fs::copy_file("/bin/busybox", rootfs / "bin" / "busybox");
        for (const char* l : {"sh", "echo", "cat", "sleep"})
            fs::create_symlink("busybox", rootfs / "bin" / l);
        fs::create_directories(dir_ / "run");

        pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            int fd = ::open((dir_ / "agent.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            std::string addr = "unix://" + (dir_ / "agent.sock").string();
            ::execl(KATA_AGENT_BIN, "kata-agent", "--server-addr", addr.c_str(), "--run-dir",
                    (dir_ / "run").c_str(), nullptr);
            _exit(127);
        }
        agent_ = pid;
    }

    void TearDown() override {
        if (agent_ > 0) {
            ::kill(agent_, SIGTERM);
            for (int i = 0; i < 100 && ::waitpid(agent_, nullptr, WNOHANG) != agent_; ++i) {
                std::this_thread::sleep_for(50ms);
                if (i == 99) {
                    ::kill(agent_, SIGKILL);
                    ::waitpid(agent_, nullptr, 0);
                }
            }
        }
        if (dir_.empty()) return;
        auto left = mountsUnder(dir_.string());
        for (auto it = left.rbegin(); it != left.rend(); ++it) ::umount2(it->c_str(), MNT_DETACH);
        std::error_code ec;
        fs::remove(fs::path("/sys/fs/cgroup") / cgroup_, ec);  // cgroup v2 only hosts
        for (const auto& ctrl : fs::directory_iterator("/sys/fs/cgroup", ec)) {
            fs::remove(ctrl.path() / cgroup_, ec);  // rmdir of an empty cgroup
        }
        if (HasFailure()) std::cerr << "agent log:\n" << std::ifstream(dir_ / "agent.log").rdbuf();
        if (mountsUnder(dir_.string()).empty()) fs::remove_all(dir_, ec);
    }

    void writeConfig(const std::string& argsJson) {
        std::ofstream(dir_ / "bundle" / "config.json") << R"({
          "ociVersion": "1.0.2",
          "process": {"user": {"uid": 0, "gid": 0}, "args": )" +
                                                              argsJson + R"(,
                      "env": ["PATH=/bin"], "cwd": "/",
                      "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                                       "permitted": ["CAP_KILL"]}},
          "root": {"path": "rootfs"},
          "hostname": "c1",
          "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                     {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                      "options": ["nosuid", "mode=755"]}],
          "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                                   {"type": "mount"}],
                    "cgroupsPath": "/)" + cgroup_ + R"("}
        })";
    }

    Result ctl(const std::string& cmds) {
        return run(std::string(KATA_AGENT_CTL_BIN) +
                   " connect --timeout 10 --server-address unix://" +
                   (dir_ / "agent.sock").string() + " --bundle-dir " + (dir_ / "bundle").string() +
                   " " + cmds + " 2>&1");
    }

    fs::path dir_;
    std::string cgroup_;
    pid_t agent_ = -1;
};

TEST_F(RealAgent, RunsAContainerFromABundleAndExecsInIt) {
    writeConfig(R"(["/bin/sh", "-c", "read x; echo got $x; exec sleep 1000"])");
    Result r = ctl(
        "-c Check -c 'CreateSandbox hostname=pod sandbox_id=s1' -c 'CreateContainer cid=c1' "
        "-c 'StartContainer cid=c1' -c \"WriteStdin cid=c1 data='abc\\n'\" "
        "-c 'ReadStdout cid=c1 raw=true' "
        "-c \"ExecProcess cid=c1 exec_id=e1 cmd='sh -c \\\"echo exec \\$((6*7)); exit 3\\\"'\" "
        "-c 'ReadStdout cid=c1 exec_id=e1 all=true raw=true' -c 'WaitProcess cid=c1 exec_id=e1' "
        "-c 'SignalProcess cid=c1 signal=KILL' -c 'WaitProcess cid=c1' "
        "-c 'RemoveContainer cid=c1' -c DestroySandbox");
    EXPECT_EQ(r.exitCode, 0) << r.out;
    EXPECT_EQ(r.out,
              "{\"status\":\"SERVING\"}\n{}\n{}\n{}\n{\"len\":4}\ngot abc\n{}\nexec 42\n"
              "{\"status\":3}\n{}\n{\"status\":137}\n{}\n{}\n");
}

TEST_F(RealAgent, AgentErrorsComeBackWithTheirStatus) {
    Result r = ctl("-c 'StartContainer cid=nope'");
    EXPECT_EQ(r.exitCode, 1);
    EXPECT_NE(r.out.find("command StartContainer failed: NOT_FOUND:"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("nope"), std::string::npos) << r.out;
}

}  // namespace
