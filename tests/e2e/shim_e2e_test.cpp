// containerd-shim-kata-v2 end to end: ctr -> a private containerd 1.6 -> our shim -> QEMU ->
// kata-agent in our initrd. What a user sees: the guest's kernel, exit codes, env/cwd/user,
// stdin, exec, kill, pause/resume, an interactive terminal (typed into a pty, resized), clear
// errors for a bad kernel path, a guest whose agent never answers (dial timeout) and an invalid
// memory size, and nothing left over (QEMU, state and run dirs, share mounts, shim socket).
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace {

struct Result {
    int status = -1;  // exit code, or 128+signal
    std::string out;  // stdout and stderr
};

// Runs a shell command line; timeout(1) bounds it.
Result sh(const std::string& cmd, int timeoutSec = 180) {
    std::string full = "timeout -k 5 " + std::to_string(timeoutSec) + " bash -c '" + cmd + "' 2>&1";
    Result r;
    FILE* p = ::popen(full.c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
    return s;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// Everything the tests share: guest assets, a containerd, an image.
struct World {
    std::string skip;  // non-empty: why the tests cannot run here
    std::string tmp, bin, sock, ns = "kata-e2e", image = "docker.io/kata-e2e/busybox:latest";
    std::string userImage = "docker.io/kata-e2e/busybox:user";  // config.user 1000:1000
    std::string kernel, kernelDir, initrd, guestRelease, config, badConfig, agentDebugConfig;
    pid_t containerd = -1;

    std::string ctr(const std::string& args) const {
        return "ctr --address " + sock + " --namespace " + ns + " " + args;
    }
    std::string run(const std::string& args) const {
        return ctr("run --runtime io.containerd.kata.v2 --runtime-config-path " + config + " " +
                   args);
    }
};

World* gWorld = nullptr;

std::string findAgent() {
    if (const char* a = std::getenv("KATA_E2E_AGENT_BIN")) return a;
#ifdef KATA_E2E_AGENT
    return KATA_E2E_AGENT;
#else
    return "";
#endif
}

void writeKataConfig(const std::string& path, const std::string& kernel, const std::string& initrd,
                     const std::string& agentExtra = "", int dialTimeoutSec = 60,
                     const std::string& memoryMiB = "512") {
    std::ofstream(path) << "[hypervisor.qemu]\n"
                        << "path = \"/usr/bin/qemu-system-x86_64\"\n"
                        << "kernel = \"" << kernel << "\"\n"
                        << "initrd = \"" << initrd << "\"\n"
                        << "machine_type = \"q35\"\n"
                        << "accelerator = \"auto\"\n"
                        << "default_memory = " << memoryMiB << "\n"
                        << "shared_fs = \"virtio-9p\"\n"
                        << "msize_9p = 262144\n"
                        << "disable_nesting_checks = true\n"
                        << "[agent.kata]\n"
                        << "dial_timeout = " << dialTimeoutSec << "\n"
                        << agentExtra << "[runtime]\n"
                        << "enable_debug = true\n";
}

class E2eEnvironment : public ::testing::Environment {
  public:
    void SetUp() override {
        gWorld = new World();
        World& w = *gWorld;
        if (::geteuid() != 0) {
            w.skip = "needs root (containerd, mounts, QEMU)";
            return;
        }
        for (const char* tool : {"containerd", "ctr", "qemu-system-x86_64", "umoci", "skopeo"}) {
            if (sh(std::string("command -v ") + tool).status != 0) {
                w.skip = std::string(tool) + " is not installed";
                return;
            }
        }
        std::string agent = findAgent();
        if (agent.empty() || !fs::exists(agent)) {
            w.skip = "kata-agent binary not built (" + agent + ")";
            return;
        }
        char tmpl[] = "/tmp/kata-e2e-XXXXXX";
        w.tmp = ::mkdtemp(tmpl);
        w.bin = w.tmp + "/bin";
        w.sock = w.tmp + "/containerd.sock";
        fs::create_directories(w.bin);
        fs::create_symlink(KATA_E2E_SHIM, w.bin + "/containerd-shim-kata-v2");

        // Guest assets, cached (rebuilt only when the agent or the scripts change).
        std::string assets;
        if (const char* g = std::getenv("KATA_TEST_GUEST_DIR")) {
            assets = g;
        } else {
            const char* cache = std::getenv("KATA_CACHE_DIR");
            assets = std::string(cache ? cache : "/var/cache/kata-cpp") + "/e2e-assets";
        }
        Result a =
            sh(std::string(KATA_E2E_REPO) + "/tools/osbuilder/build-guest-assets.sh --agent " +
                   agent + " --out-dir " + assets + " --debug-console 2>/dev/null",
               900);
        if (a.status != 0) {
            w.skip = "build-guest-assets.sh failed (" + std::to_string(a.status) + "): " + a.out;
            return;
        }
        std::istringstream kv(a.out);
        for (std::string line; std::getline(kv, line);) {
            auto eq = line.find('=');
            if (eq == std::string::npos) continue;
            std::string k = line.substr(0, eq), v = line.substr(eq + 1);
            if (k == "kernel") w.kernel = v;
            if (k == "initrd") w.initrd = v;
            if (k == "release") w.guestRelease = v;
            if (k == "kernel_dir") w.kernelDir = v;
        }
        if (w.kernel.empty() || w.initrd.empty() || w.guestRelease.empty()) {
            w.skip = "build-guest-assets.sh printed no kernel/initrd/release: " + a.out;
            return;
        }
        w.config = w.tmp + "/configuration-qemu.toml";
        writeKataConfig(w.config, w.kernel, w.initrd);
        // Same VM, but [agent.kata] enable_debug: the guest command line gets agent.log=debug.
        w.agentDebugConfig = w.tmp + "/configuration-agent-debug.toml";
        writeKataConfig(w.agentDebugConfig, w.kernel, w.initrd, "enable_debug = true\n");
        w.badConfig = w.tmp + "/configuration-bad.toml";
        writeKataConfig(w.badConfig, w.tmp + "/no-such-dir/vmlinux", w.initrd);

        // A private containerd.
        std::ofstream(w.tmp + "/containerd.toml")
            << "version = 2\n"
            << "root = \"" << w.tmp << "/root\"\n"
            << "state = \"" << w.tmp << "/state\"\n"
            << "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
            << "[grpc]\n  address = \"" << w.sock << "\"\n"
            << "[ttrpc]\n  address = \"" << w.sock << ".ttrpc\"\n"
            << "[debug]\n  level = \"debug\"\n";
        w.containerd = ::fork();
        if (w.containerd == 0) {
            ::setpgid(0, 0);
            std::string path = w.bin + ":" + (std::getenv("PATH") ? std::getenv("PATH") : "");
            ::setenv("PATH", path.c_str(), 1);
            std::string log = w.tmp + "/containerd.log";
            FILE* f = std::freopen(log.c_str(), "w", stderr);
            (void)f;
            std::freopen("/dev/null", "w", stdout);
            std::string cfg = w.tmp + "/containerd.toml";
            ::execlp("containerd", "containerd", "--config", cfg.c_str(), nullptr);
            _exit(127);
        }
        bool up = false;
        for (int i = 0; i < 100 && !up; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
            up = sh(w.ctr("version") + " >/dev/null").status == 0;
        }
        if (!up) {
            w.skip = "containerd did not come up: " + slurp(w.tmp + "/containerd.log");
            return;
        }

        // A busybox-static image, built here and imported.
        std::string img = w.tmp + "/img";
        Result b = sh("set -e; cd " + w.tmp + "; " + KATA_E2E_REPO +
                          "/tests/fixtures/make-busybox-rootfs.sh rootfs-src >/dev/null 2>&1;"
                          " umoci init --layout oci; umoci new --image oci:bb;"
                          " umoci unpack --rootless --image oci:bb bundle >/dev/null;"
                          " cp -a rootfs-src/. bundle/rootfs/;"
                          " umoci repack --image oci:bb bundle;"
                          " umoci config --image oci:bb --config.cmd /bin/sh"
                          " --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin;"
                          " skopeo copy oci:oci:bb docker-archive:bb.tar:kata-e2e/busybox:latest"
                          " >/dev/null;"
                          // ctr run has no --user: the user comes from a second image's config.
                          " umoci config --image oci:bb --tag user --config.user 1000:1000;"
                          " skopeo copy oci:oci:user docker-archive:user.tar:kata-e2e/busybox:user"
                          " >/dev/null; " +
                          w.ctr("images import bb.tar") + "; " + w.ctr("images import user.tar"),
                      300);
        if (b.status != 0) {
            w.skip = "building the busybox image failed: " + b.out;
            return;
        }
    }

    void TearDown() override {
        World& w = *gWorld;
        if (w.containerd > 0) {
            ::kill(-w.containerd, SIGTERM);
            ::kill(w.containerd, SIGTERM);
            for (int i = 0; i < 50; ++i) {
                if (::waitpid(w.containerd, nullptr, WNOHANG) == w.containerd) {
                    w.containerd = -1;
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
            if (w.containerd > 0) {
                ::kill(-w.containerd, SIGKILL);
                ::waitpid(w.containerd, nullptr, 0);
            }
        }
        if (!w.tmp.empty()) {
            // containerd's snapshots and shm mounts live under the temp dir.
            sh("grep -o \" " + w.tmp +
               "[^ ]*\" /proc/self/mountinfo | sort -r | "
               "xargs -r -n1 umount -l");
            fs::remove_all(w.tmp);
        }
        delete gWorld;
        gWorld = nullptr;
    }
};

::testing::Environment* const gEnv = ::testing::AddGlobalTestEnvironment(new E2eEnvironment);

class ShimE2e : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!gWorld->skip.empty()) GTEST_SKIP() << gWorld->skip;
    }
    void TearDown() override {
        if (!gWorld->skip.empty()) return;
        for (const auto& id : ids_) {
            // Whatever a failed test left: the task, the container.
            sh(w().ctr("task kill -s SIGKILL " + id) + " >/dev/null 2>&1; sleep 0.5; " +
               w().ctr("task delete " + id) + " >/dev/null 2>&1; " +
               w().ctr("container delete " + id) + " >/dev/null 2>&1");
            expectNothingLeft(id);
        }
    }
    const World& w() const { return *gWorld; }
    std::string id(const std::string& base) {
        std::string i = base + "-" + std::to_string(::getpid());
        ids_.push_back(i);
        return i;
    }
    void expectNothingLeft(const std::string& id) {
        // The shim stops the VM and cleans up right after the last delete; give it a moment.
        std::string leftover;
        for (int i = 0; i < 50; ++i) {
            leftover.clear();
            if (sh("pgrep -f \"[q]emu-system.*" + id + "\"").status == 0) leftover += " qemu;";
            if (sh("grep -q /run/kata-containers/shared/sandboxes/" + id + " /proc/self/mountinfo")
                    .status == 0)
                leftover += " mounts;";
            if (fs::exists("/run/vc/sbs/" + id)) leftover += " /run/vc/sbs/" + id + ";";
            if (fs::exists("/run/vc/vm/" + id)) leftover += " /run/vc/vm/" + id + ";";
            if (fs::exists("/run/kata-containers/shared/sandboxes/" + id))
                leftover += " share dir;";
            if (fs::exists(shimSocket(id))) leftover += " shim socket " + shimSocket(id) + ";";
            if (leftover.empty()) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        ADD_FAILURE() << "left behind by " << id << ":" << leftover;
    }
    // containerd-shim-kata-v2 start listens at /run/containerd/s/<sha256 of address/ns/id>.
    std::string shimSocket(const std::string& id) const {
        return "/run/containerd/s/" + trim(sh("printf %s " + w().sock + "/" + w().ns + "/" + id +
                                              " | sha256sum | cut -d\" \" -f1")
                                               .out);
    }
    std::vector<std::string> ids_;
};

}  // namespace

TEST_F(ShimE2e, UnameShowsTheGuestKernel) {
    utsname host{};
    ::uname(&host);
    std::string c = id("uname");
    Result r = sh(w().run("--rm " + w().image + " " + c + " uname -r") + " </dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(trim(r.out), w().guestRelease);
    if (w().guestRelease != host.release) {
        EXPECT_NE(trim(r.out), std::string(host.release));
    }
}

TEST_F(ShimE2e, ExitCodeEnvCwdAndUserReachTheProcess) {
    std::string c = id("exit");
    Result r = sh(w().run("--rm --env FOO=bar --cwd /tmp " + w().userImage + " " + c +
                          " sh -c \"echo \\$FOO \\$(pwd) \\$(id -u):\\$(id -g); exit 3\"") +
                  " </dev/null");
    EXPECT_EQ(r.status, 3) << r.out;
    EXPECT_EQ(trim(r.out), "bar /tmp 1000:1000");
}

TEST_F(ShimE2e, StdinReachesTheProcess) {
    std::string c = id("stdin");
    Result r =
        sh("printf \"hi\\nthere\\n\" | " + w().run("--rm " + w().image + " " + c + " head -n1"));
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(trim(r.out), "hi");
}

TEST_F(ShimE2e, ExecPauseResumeKill) {
    std::string c = id("life");
    Result r = sh(w().run("-d " + w().image + " " + c + " sleep 1000") + " </dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    // The socket expectNothingLeft looks for is the one this shim serves.
    EXPECT_TRUE(fs::exists(shimSocket(c))) << shimSocket(c);

    r = sh(w().ctr("task exec --exec-id e1 " + c + " sh -c \"echo exec-ok; exit 5\"") +
           " </dev/null");
    EXPECT_EQ(r.status, 5) << r.out;
    EXPECT_EQ(trim(r.out), "exec-ok");

    r = sh(w().ctr("task pause " + c));
    EXPECT_EQ(r.status, 0) << r.out;
    r = sh(w().ctr("task ls"));
    EXPECT_NE(r.out.find("PAUSED"), std::string::npos) << r.out;
    r = sh(w().ctr("task resume " + c));
    EXPECT_EQ(r.status, 0) << r.out;
    r = sh(w().ctr("task ls"));
    EXPECT_NE(r.out.find("RUNNING"), std::string::npos) << r.out;

    r = sh(w().ctr("task kill -s SIGKILL " + c));
    EXPECT_EQ(r.status, 0) << r.out;
    bool stopped = false;
    for (int i = 0; i < 100 && !stopped; ++i) {
        stopped = sh(w().ctr("task ls") + " | grep " + c + " | grep -q STOPPED").status == 0;
        if (!stopped) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_TRUE(stopped) << sh(w().ctr("task ls")).out;
    r = sh(w().ctr("task delete " + c));
    EXPECT_EQ(r.status, 0) << r.out;
    r = sh(w().ctr("container delete " + c));
    EXPECT_EQ(r.status, 0) << r.out;
    expectNothingLeft(c);
}

TEST_F(ShimE2e, MissingKernelFailsNamingThePathAndLeavesNothing) {
    std::string c = id("badkernel");
    auto t0 = std::chrono::steady_clock::now();
    Result r = sh(w().ctr("run --runtime io.containerd.kata.v2 --runtime-config-path " +
                          w().badConfig + " --rm " + w().image + " " + c + " true") +
                  " </dev/null");
    auto secs =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0)
            .count();
    EXPECT_NE(r.status, 0) << r.out;
    EXPECT_NE(r.out.find(w().tmp + "/no-such-dir/vmlinux"), std::string::npos) << r.out;
    EXPECT_LT(secs, 60) << "failure took longer than the dial timeout";
    sh(w().ctr("container delete " + c) + " >/dev/null 2>&1");
    expectNothingLeft(c);
}

TEST_F(ShimE2e, VmDeathEndsTheTaskNonZeroAndCleansUp) {
    std::string c = id("vmdeath");
    // ctr run in the foreground returns the task's exit status (from Wait).
    Result run;
    std::thread fg(
        [&] { run = sh(w().run("--rm " + w().image + " " + c + " sleep 1000") + " </dev/null"); });
    std::string pid;
    for (int i = 0; i < 600 && pid.empty(); ++i) {
        // The task runs once containerd lists it as RUNNING; then the VM is up.
        if (sh(w().ctr("task ls") + " | grep " + c + " | grep -q RUNNING").status == 0) {
            pid = trim(slurp("/run/vc/vm/" + c + "/pid"));
        }
        if (pid.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (pid.empty()) {
        sh(w().ctr("task kill -s SIGKILL " + c));
        fg.join();
        FAIL() << "the task never ran: " << run.out;
    }
    ASSERT_EQ(::kill(std::stoi(pid), SIGKILL), 0) << pid;
    fg.join();
    EXPECT_NE(run.status, 0) << run.out;
    EXPECT_NE(run.status, 124) << "ctr run did not return after the VM died";
    expectNothingLeft(c);
}

TEST_F(ShimE2e, DeadShimIsCleanedUpByDelete) {
    std::string c = id("deadshim");
    Result r = sh(w().run("-d " + w().image + " " + c + " sleep 1000") + " </dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    // The server process of this shim: its command line names the container id.
    std::string shimPid =
        trim(sh("pgrep -f \"[c]ontainerd-shim-kata-v2 .*-id " + c + "\" | head -n1").out);
    ASSERT_FALSE(shimPid.empty());
    ASSERT_EQ(::kill(std::stoi(shimPid), SIGKILL), 0);
    // containerd notices the lost connection and runs `containerd-shim-kata-v2 delete`, which
    // kills the VM and removes mounts and state.
    bool stopped = false;
    for (int i = 0; i < 100 && !stopped; ++i) {
        Result ls = sh(w().ctr("task ls") + " | grep " + c);
        stopped = ls.status != 0 || ls.out.find("STOPPED") != std::string::npos;
        if (!stopped) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_TRUE(stopped) << sh(w().ctr("task ls")).out;
    sh(w().ctr("task delete " + c) + " >/dev/null 2>&1");
    r = sh(w().ctr("container delete " + c));
    EXPECT_EQ(r.status, 0) << r.out;
    expectNothingLeft(c);
}

TEST_F(ShimE2e, TerminalGivesThePtyAndItsSize) {
    std::string c = id("tty");
    // script(1) gives ctr the terminal that `ctr run -t` needs.
    Result r = sh("stty cols 77 rows 33 2>/dev/null; script -qec \"stty cols 77 rows 33; " +
                  w().run("-t --rm " + w().image + " " + c + " sh -c \\\"tty; stty size\\\"") +
                  "\" /dev/null </dev/null");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("/dev/pts/"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("33 77"), std::string::npos) << r.out;
}

namespace {
std::string qemuCmdline(const std::string& pid) {
    std::string c = slurp("/proc/" + pid + "/cmdline");
    for (auto& ch : c) {
        if (ch == '\0') ch = ' ';
    }
    return c;
}
}  // namespace

TEST_F(ShimE2e, TwoSandboxesRunInTwoVmsAndDoNotSeeEachOther) {
    std::string a = id("sba"), b = id("sbb");
    // Both started at once: two shims boot two VMs concurrently. a's config has the agent's
    // enable_debug, b's does not.
    Result ra, rb;
    std::thread ta([&] {
        ra = sh(w().ctr("run --runtime io.containerd.kata.v2 --runtime-config-path " +
                        w().agentDebugConfig + " -d " + w().image + " " + a + " sleep 1000") +
                " </dev/null");
    });
    std::thread tb(
        [&] { rb = sh(w().run("-d " + w().image + " " + b + " sleep 1000") + " </dev/null"); });
    ta.join();
    tb.join();
    ASSERT_EQ(ra.status, 0) << ra.out;
    ASSERT_EQ(rb.status, 0) << rb.out;

    Result ls = sh(w().ctr("task ls"));
    EXPECT_NE(ls.out.find(a), std::string::npos) << ls.out;
    EXPECT_NE(ls.out.find(b), std::string::npos) << ls.out;

    // Two QEMU processes, each with its own run dir.
    std::string pa = trim(slurp("/run/vc/vm/" + a + "/pid"));
    std::string pb = trim(slurp("/run/vc/vm/" + b + "/pid"));
    ASSERT_FALSE(pa.empty());
    ASSERT_FALSE(pb.empty());
    EXPECT_NE(pa, pb);
    std::string ca = qemuCmdline(pa), cb = qemuCmdline(pb);
    EXPECT_NE(ca.find("qemu-system"), std::string::npos) << ca;
    EXPECT_NE(cb.find("qemu-system"), std::string::npos) << cb;
    EXPECT_NE(ca.find("/run/vc/vm/" + a), std::string::npos) << ca;
    EXPECT_NE(cb.find("/run/vc/vm/" + b), std::string::npos) << cb;
    EXPECT_NE(ca.find("agent.log=debug"), std::string::npos) << ca;
    EXPECT_EQ(cb.find("agent.log=debug"), std::string::npos) << cb;

    // Two guest kernels: each boot has its own random boot id.
    Result ba =
        sh(w().ctr("task exec --exec-id boot " + a + " cat /proc/sys/kernel/random/boot_id") +
           " </dev/null");
    Result bb =
        sh(w().ctr("task exec --exec-id boot " + b + " cat /proc/sys/kernel/random/boot_id") +
           " </dev/null");
    ASSERT_EQ(ba.status, 0) << ba.out;
    ASSERT_EQ(bb.status, 0) << bb.out;
    EXPECT_EQ(trim(ba.out).size(), 36u) << ba.out;
    EXPECT_NE(trim(ba.out), trim(bb.out));

    // A file written in one is not visible in the other (neither in the guest nor through the
    // other sandbox's share on the host).
    Result wr = sh(w().ctr("task exec --exec-id w " + a +
                           " sh -c \"echo only-in-a > /tmp/marker && cat /tmp/marker\"") +
                   " </dev/null");
    ASSERT_EQ(wr.status, 0) << wr.out;
    EXPECT_EQ(trim(wr.out), "only-in-a");
    Result rd = sh(w().ctr("task exec --exec-id r " + b + " ls /tmp/marker") + " </dev/null");
    EXPECT_NE(rd.status, 0) << rd.out;
    EXPECT_TRUE(fs::exists("/run/kata-containers/shared/sandboxes/" + a + "/shared/" + a +
                           "/rootfs/tmp/marker"));
    EXPECT_FALSE(fs::exists("/run/kata-containers/shared/sandboxes/" + b + "/shared/" + b +
                            "/rootfs/tmp/marker"));

    for (const auto& c : {a, b}) {
        sh(w().ctr("task kill -s SIGKILL " + c));
        bool deleted = false;
        for (int i = 0; i < 100 && !deleted; ++i) {
            deleted = sh(w().ctr("task delete " + c) + " >/dev/null 2>&1").status == 0;
            if (!deleted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        EXPECT_TRUE(deleted) << c;
        Result d = sh(w().ctr("container delete " + c));
        EXPECT_EQ(d.status, 0) << d.out;
    }
    expectNothingLeft(a);
    expectNothingLeft(b);
    EXPECT_NE(sh("pgrep -f \"[q]emu-system.*(" + a + "|" + b + ")\"").status, 0);
}

TEST_F(ShimE2e, ShimLogsReachContainerdWithSandboxAndContainerIds) {
    std::string c = id("logs");
    Result r = sh(w().run("--rm " + w().image + " " + c + " true") + " </dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    // containerd 1.6 copies the bundle's `log` FIFO into its own log. [runtime] enable_debug
    // puts the shim at debug level.
    std::string log = w().tmp + "/containerd.log";
    std::string shimLine = "grep -F \"\\\"name\\\":\\\"containerd-shim-kata-v2\\\"\" " + log +
                           " | grep -F \"\\\"sandbox\\\":\\\"" + c + "\\\"\"";
    Result any = sh(shimLine + " | grep -F \"\\\"container\\\":\\\"" + c + "\\\"\"");
    EXPECT_EQ(any.status, 0) << "no shim line with sandbox and container " << c << " in " << log;
    Result debug = sh(shimLine + " | grep -F \"\\\"level\\\":\\\"debug\\\"\"");
    EXPECT_EQ(debug.status, 0) << "no debug-level shim line for " << c;
}

TEST_F(ShimE2e, TemplatedSandboxesRestoreFromTheFactoryTemplate) {
    const std::string tpl = w().tmp + "/factory-template";
    const std::string cfg = w().tmp + "/configuration-template.toml";
    writeKataConfig(cfg, w().kernel, w().initrd);
    std::ofstream(cfg, std::ios::app)
        << "[factory]\nenable_template = true\ntemplate_path = \"" << tpl << "\"\n";
    auto runWith = [&](const std::string& c, const std::string& cmd) {
        return sh(w().ctr("run --runtime io.containerd.kata.v2 --runtime-config-path " + cfg +
                          " --rm " + w().image + " " + c + " " + cmd) +
                  " </dev/null");
    };
    std::string c1 = id("tpl1"), c2 = id("tpl2");
    // The first sandbox makes the template (a VM booted without sandbox state, saved, stopped)
    // and then restores from it like every later one.
    Result r1 = runWith(c1, "uname -r");
    ASSERT_EQ(r1.status, 0) << r1.out;
    EXPECT_EQ(trim(r1.out), w().guestRelease);
    EXPECT_TRUE(fs::exists(tpl + "/state"));
    EXPECT_NE(sh("pgrep -f \"[q]emu-system.*" + tpl + "\"").status, 0) << "template VM left";
    expectNothingLeft(c1);

    auto t0 = std::chrono::steady_clock::now();
    Result r2 = runWith(c2, "sh -c \"uname -r; date +%s; echo ok > /tmp/f; cat /tmp/f\"");
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    ASSERT_EQ(r2.status, 0) << r2.out;
    std::istringstream lines(r2.out);
    std::string release, guestDate, ok;
    std::getline(lines, release);
    std::getline(lines, guestDate);
    std::getline(lines, ok);
    EXPECT_EQ(trim(release), w().guestRelease) << r2.out;
    EXPECT_EQ(trim(ok), "ok") << r2.out;
    // SetGuestDateTime: the guest's clock is the host's, not the template's.
    long long guestNow = std::atoll(guestDate.c_str());
    EXPECT_LT(std::llabs(guestNow - static_cast<long long>(::time(nullptr))), 10) << r2.out;
    std::cout << "templated ctr run took " << ms << " ms\n";

    // Both VMs were restored from the template, each with its own run dir, and the second did
    // not make another template.
    std::string log = w().tmp + "/containerd.log";
    for (const auto& c : {c1, c2}) {
        EXPECT_EQ(sh("grep -F \"VM restored from template\" " + log +
                     " | grep -qF \"\\\"sandbox\\\":\\\"" + c + "\\\"\"")
                      .status,
                  0)
            << c << " was not restored";
    }
    EXPECT_EQ(trim(sh("grep -cF \"VM template saved\" " + log).out), "1");
    expectNothingLeft(c2);

    // The template stays for later sandboxes; the test removes its own.
    sh("rm -rf " + tpl);
}

// Runs `ctr run --rm` with the given configuration and returns what ctr printed and how long it
// took, the container removed whatever happened.
struct TimedRun {
    Result r;
    double secs = 0;
};

namespace {
TimedRun runWithConfig(const World& w, const std::string& config, const std::string& c,
                       const std::string& cmd) {
    auto t0 = std::chrono::steady_clock::now();
    TimedRun t;
    t.r = sh(w.ctr("run --runtime io.containerd.kata.v2 --runtime-config-path " + config +
                   " --rm " + w.image + " " + c + " " + cmd) +
             " </dev/null");
    t.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sh(w.ctr("container delete " + c) + " >/dev/null 2>&1");
    return t;
}
}  // namespace

TEST_F(ShimE2e, GuestWithoutAgentFailsAfterTheDialTimeoutAndLeavesNothing) {
    if (w().kernelDir.empty()) GTEST_SKIP() << "build-guest-assets.sh printed no kernel_dir";
    // An initrd that boots the same kernel but whose /init never starts an agent: it says so on
    // the console and sleeps.
    const std::string dir = w().tmp + "/no-agent";
    fs::create_directories(dir);
    std::ofstream(dir + "/init") << "#!/bin/sh\n"
                                 << "export PATH=/bin:/sbin:/usr/bin:/usr/sbin\n"
                                 << "mount -t proc proc /proc\n"
                                 << "echo NO-AGENT-HERE: init is up, no agent will answer\n"
                                 << "while :; do sleep 3600; done\n";
    fs::permissions(dir + "/init", fs::perms::owner_all | fs::perms::group_read |
                                       fs::perms::group_exec | fs::perms::others_read |
                                       fs::perms::others_exec);
    Result b = sh(std::string(KATA_E2E_REPO) + "/tools/osbuilder/osbuilder.sh initrd --agent " +
                      dir + "/init --kernel-dir " + w().kernelDir + " --out " + dir +
                      "/initrd.img --debug-console",
                  300);
    ASSERT_EQ(b.status, 0) << b.out;
    const std::string cfg = dir + "/configuration.toml";
    writeKataConfig(cfg, w().kernel, dir + "/initrd.img", "", 5);

    std::string c = id("noagent");
    TimedRun t = runWithConfig(w(), cfg, c, "true");
    EXPECT_NE(t.r.status, 0) << t.r.out;
    EXPECT_NE(t.r.status, 124) << "ctr run hung: " << t.r.out;
    // Boot (a few seconds under TCG) + 5 s dial timeout + containerd's own steps, with margin.
    EXPECT_LT(t.secs, 30) << t.r.out;
    EXPECT_GE(t.secs, 5) << "failed before the dial timeout: " << t.r.out;
    // ctr prints the shim's error: the agent's address, the timeout, the guest's console.
    EXPECT_NE(t.r.out.find("agent"), std::string::npos) << t.r.out;
    EXPECT_NE(t.r.out.find("/run/vc/vm/" + c + "/"), std::string::npos) << t.r.out;
    EXPECT_NE(t.r.out.find("within 5 s"), std::string::npos) << t.r.out;
    EXPECT_NE(t.r.out.find("NO-AGENT-HERE"), std::string::npos) << t.r.out;
    std::cout << "ctr run failed after " << t.secs << " s:\n" << t.r.out << "\n";
    expectNothingLeft(c);
}

TEST_F(ShimE2e, InvalidMemorySizeFailsFastNamingTheKeyAndLeavesNothing) {
    long hostMiB = ::sysconf(_SC_PHYS_PAGES) / (1024 * 1024 / ::sysconf(_SC_PAGESIZE));
    ASSERT_GT(hostMiB, 0);
    const std::string tooBig = std::to_string(hostMiB * 4);
    for (const std::string& mem : {std::string("0"), tooBig}) {
        SCOPED_TRACE("default_memory = " + mem);
        const std::string cfg = w().tmp + "/configuration-memory-" + mem + ".toml";
        writeKataConfig(cfg, w().kernel, w().initrd, "", 60, mem);
        std::string c = id("mem" + mem);
        TimedRun t = runWithConfig(w(), cfg, c, "true");
        EXPECT_NE(t.r.status, 0) << t.r.out;
        // Refused before any VM boots.
        EXPECT_LT(t.secs, 10) << t.r.out;
        EXPECT_NE(t.r.out.find("default_memory"), std::string::npos) << t.r.out;
        EXPECT_NE(t.r.out.find(mem), std::string::npos) << t.r.out;
        std::cout << "default_memory = " << mem << ": " << t.r.out << "\n";
        expectNothingLeft(c);
    }
}

namespace {
// The controlling side of a pty whose other side is `ctr run -t`: what a user at a terminal
// does, typed and read the way expect(1) does it.
class PtySession {
  public:
    PtySession(const std::vector<std::string>& argv, unsigned short rows, unsigned short cols) {
        winsize ws{};
        ws.ws_row = rows;
        ws.ws_col = cols;
        pid_ = ::forkpty(&master_, nullptr, nullptr, &ws);
        if (pid_ == 0) {
            std::vector<char*> args;
            for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
            args.push_back(nullptr);
            ::execvp(args[0], args.data());
            _exit(127);
        }
    }
    ~PtySession() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        if (master_ >= 0) ::close(master_);
    }
    bool started() const { return pid_ > 0 && master_ >= 0; }
    void type(const std::string& s) {
        for (size_t off = 0; off < s.size();) {
            ssize_t n = ::write(master_, s.data() + off, s.size() - off);
            if (n <= 0) return;
            off += static_cast<size_t>(n);
        }
    }
    void resize(unsigned short rows, unsigned short cols) {
        winsize ws{};
        ws.ws_row = rows;
        ws.ws_col = cols;
        ::ioctl(master_, TIOCSWINSZ, &ws);  // the kernel sends ctr SIGWINCH
    }
    // Reads until `what` appears in the output after `from`; true when it did in time.
    bool expect(const std::string& what, std::chrono::milliseconds timeout, size_t from = 0) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (out_.find(what, from) == std::string::npos) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            pollfd p{master_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
            char buf[4096];
            ssize_t n = ::read(master_, buf, sizeof buf);
            if (n <= 0) return false;  // EIO: ctr is gone
            out_.append(buf, static_cast<size_t>(n));
        }
        return true;
    }
    // Exit status of ctr, or -1 when it did not exit in time.
    int wait(std::chrono::milliseconds timeout) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            int st = 0;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            }
            char buf[4096];
            pollfd p{master_, POLLIN, 0};
            if (::poll(&p, 1, 100) > 0 && ::read(master_, buf, sizeof buf) > 0) continue;
        }
        return -1;
    }
    const std::string& output() const { return out_; }

  private:
    pid_t pid_ = -1;
    int master_ = -1;
    std::string out_;
};
}  // namespace

TEST_F(ShimE2e, InteractiveTerminalTypesResizesAndExits) {
    std::string c = id("pty");
    PtySession s({"ctr", "--address", w().sock, "--namespace", w().ns, "run", "--runtime",
                  "io.containerd.kata.v2", "--runtime-config-path", w().config, "-t", "--rm",
                  w().image, c, "sh"},
                 33, 77);
    ASSERT_TRUE(s.started());
    using std::chrono::seconds;
    // busybox sh prompts as root with "# " once the VM and the container are up.
    ASSERT_TRUE(s.expect("# ", seconds(120))) << s.output();
    // The arithmetic is done by the guest's shell: the echoed input line does not contain 42.
    s.type("stty size; echo RESULT-$((6*7))\r");
    ASSERT_TRUE(s.expect("RESULT-42", seconds(30))) << s.output();
    EXPECT_NE(s.output().find("33 77"), std::string::npos) << s.output();

    // A resize of the user's terminal reaches the container's pty (SIGWINCH -> ResizePty).
    s.resize(40, 100);
    bool resized = false;
    for (int i = 0; i < 20 && !resized; ++i) {
        size_t from = s.output().size();
        s.type("stty size\r");
        resized = s.expect("40 100", std::chrono::milliseconds(500), from);
    }
    EXPECT_TRUE(resized) << s.output();

    s.type("exit 7\r");
    EXPECT_EQ(s.wait(seconds(30)), 7) << s.output();
}

// Kata's tcfilter model with a network namespace made here the way CNI makes one: a veth with an
// address in the "pod" netns, its peer in an "outside" netns. The guest gets the veth's address
// and routes, traffic flows both ways through tap + tc mirred, and nothing is left in the netns.
TEST_F(ShimE2e, PodNetnsGivesTheGuestTheVethAddressAndTrafficFlowsBothWays) {
    const std::string c = id("podnet");
    const std::string tag = std::to_string(::getpid() % 100000);
    const std::string pod = "kpod-" + tag, out = "kout-" + tag;
    struct NetnsCleanup {
        std::string pod, out;
        ~NetnsCleanup() {
            sh("ip netns del " + pod + " 2>/dev/null; ip netns del " + out + " 2>/dev/null");
        }
    } cleanup{pod, out};
    Result setup =
        sh("set -e; ip netns add " + pod + "; ip netns add " + out + "; ip -n " + pod +
           " link add eth0 mtu 1400 type veth peer name peer0 netns " + out + "; ip -n " + pod +
           " addr add 10.211.7.2/24 dev eth0; ip -n " + pod + " link set lo up; ip -n " + pod +
           " link set eth0 up; ip -n " + pod + " route add default via 10.211.7.1; ip -n " + out +
           " addr add 10.211.7.1/24 dev peer0; ip -n " + out + " link set peer0 up");
    ASSERT_EQ(setup.status, 0) << setup.out;
    const std::string mac = trim(
        sh("ip -n " + pod + " -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2")
            .out);

    Result r = sh(w().run("-d --with-ns network:/var/run/netns/" + pod + " " + w().image + " " + c +
                          " sh -c \"echo hello-from-the-guest > /tmp/index.html;"
                          " exec httpd -f -p 8080 -h /tmp\"") +
                  " </dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    // The tap and both filters exist in the pod's netns while the pod runs.
    Result tc = sh("ip netns exec " + pod + " tc filter show dev eth0 ingress; ip -n " + pod +
                   " -o link show tap0_kata");
    EXPECT_NE(tc.out.find("mirred"), std::string::npos) << tc.out;
    EXPECT_NE(tc.out.find("tap0_kata"), std::string::npos) << tc.out;

    // Outside -> guest: the HTTP server in the guest answers on the veth's address.
    std::string page;
    for (int i = 0; i < 60 && page.find("hello-from-the-guest") == std::string::npos; ++i) {
        // bash's /dev/tcp: no client binary (busybox-static's wget crashes in glibc's NSS).
        page = sh("ip netns exec " + out +
                  " timeout 5 bash -c \"exec 3<>/dev/tcp/10.211.7.2/8080 && printf"
                  " \\\"GET /index.html HTTP/1.0\\\\r\\\\n\\\\r\\\\n\\\" >&3 && cat <&3\"")
                   .out;
        if (page.find("hello-from-the-guest") == std::string::npos)
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    EXPECT_NE(page.find("hello-from-the-guest"), std::string::npos) << page;

    // In the guest: the veth's address, MAC and MTU, the default route; guest -> outside works.
    Result in = sh(w().ctr("task exec --exec-id probe " + c +
                           " sh -c \"ip -o -4 addr show; ip -o link show eth0; ip route;"
                           " ping -c 1 -W 10 10.211.7.1\"") +
                   " </dev/null");
    EXPECT_EQ(in.status, 0) << in.out;
    EXPECT_NE(in.out.find("10.211.7.2/24"), std::string::npos) << in.out;
    EXPECT_NE(in.out.find("mtu 1400"), std::string::npos) << in.out;
    EXPECT_NE(in.out.find(mac), std::string::npos) << "MAC " << mac << " not in: " << in.out;
    EXPECT_NE(in.out.find("default via 10.211.7.1"), std::string::npos) << in.out;
    EXPECT_NE(in.out.find("1 packets received"), std::string::npos) << in.out;

    sh(w().ctr("task kill -s SIGKILL " + c) + "; sleep 1; " + w().ctr("task delete " + c) + "; " +
       w().ctr("container delete " + c));
    expectNothingLeft(c);
    // The netns is as it was before the pod: no tap, no qdisc, no filter.
    Result after =
        sh("ip -n " + pod + " -o link show; ip netns exec " + pod +
           " tc qdisc show dev eth0; ip netns exec " + pod + " tc filter show dev eth0 ingress");
    EXPECT_EQ(after.out.find("tap0_kata"), std::string::npos) << after.out;
    EXPECT_EQ(after.out.find("ingress"), std::string::npos) << after.out;
    EXPECT_EQ(after.out.find("mirred"), std::string::npos) << after.out;
}

// A host block device in linux.devices (ctr run --device) is hot-plugged into the VM as
// virtio-blk; what one sandbox writes to it a second sandbox (another VM) reads back.
// Disabled: QMP accepts the device behind the pci-bridge, but the guest (minimal kernel, q35,
// TCG) does not see it at PCI path 02/01 within the agent's hotplug timeout; the agent then
// fails CreateContainer naming the device. Enable once the guest side is fixed.
TEST_F(ShimE2e, BlockDeviceIsHotpluggedAndWhatOnePodWritesTheNextReads) {
    const std::string c1 = id("blk-w"), c2 = id("blk-r");
    const std::string img = w().tmp + "/blk-" + std::to_string(::getpid()) + ".img";
    Result lo = sh("truncate -s 8M " + img + " && losetup --find --show " + img);
    ASSERT_EQ(lo.status, 0) << lo.out;
    const std::string dev = trim(lo.out);
    struct LoopCleanup {
        std::string dev, img;
        ~LoopCleanup() { sh("losetup -d " + dev + "; rm -f " + img); }
    } cleanup{dev, img};
    const std::string token = "kata-block-" + std::to_string(::getpid());

    Result wr = sh(w().run("--rm --device " + dev + " " + w().image + " " + c1 + " sh -c \"echo " +
                           token + " | dd of=" + dev +
                           " bs=512 conv=sync,fsync 2>/dev/null && ls -l " + dev + "\"") +
                   " </dev/null");
    ASSERT_EQ(wr.status, 0) << wr.out;
    EXPECT_NE(wr.out.find("brw"), std::string::npos) << "no block device node: " << wr.out;
    Result rd = sh(w().run("--rm --device " + dev + " " + w().image + " " + c2 +
                           " sh -c \"dd if=" + dev + " bs=512 count=1 2>/dev/null | head -n 1\"") +
                   " </dev/null");
    EXPECT_EQ(rd.status, 0) << rd.out;
    EXPECT_EQ(trim(rd.out), token);
    // It went through to the host's device, not a copy.
    EXPECT_EQ(trim(sh("head -c " + std::to_string(token.size()) + " " + img).out), token);
    expectNothingLeft(c1);
    expectNothingLeft(c2);
}

TEST_F(ShimE2e, CharacterDeviceIsRefusedNamingIt) {
    const std::string c = id("chr");
    Result r =
        sh(w().run("--rm --device /dev/net/tun " + w().image + " " + c + " true") + " </dev/null");
    EXPECT_NE(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("/dev/net/tun"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("only block devices"), std::string::npos) << r.out;
    expectNothingLeft(c);
}
