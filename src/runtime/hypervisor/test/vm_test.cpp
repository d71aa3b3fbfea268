// Boots real VMs (TCG here, KVM where it works) with Debian's kernel and a busybox initrd.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <thread>

#include <gtest/gtest.h>

#include "kata/common/error.h"
#include "kata/hypervisor/hypervisor.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using kata::hypervisor::HypervisorConfig;
using kata::hypervisor::VmSpec;

namespace {

constexpr const char* kQemu = "/usr/bin/qemu-system-x86_64";
constexpr const char* kMarker = "kata-hypervisor-test: init running";

std::string readFile(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// Any process whose command line mentions `needle` (a run dir unique to one test).
bool processMentioning(const std::string& needle) {
    for (const auto& e : fs::directory_iterator("/proc")) {
        std::string name = e.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::string cmdline = readFile(e.path().string() + "/cmdline");
        std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
        std::string stat = readFile(e.path().string() + "/stat");
        bool zombie = stat.find(") Z ") != std::string::npos;
        if (!zombie && cmdline.find(needle) != std::string::npos) return true;
    }
    return false;
}

class TempDir {
  public:
    explicit TempDir(const std::string& parent = "/tmp") {
        std::string tmpl = parent + "/kata-hv-vm.XXXXXX";
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp in " + parent + " failed");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

class VmTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        if (::access(kQemu, X_OK) != 0) return;
        guestDir_ = new TempDir();
        startWatchdog(guestDir_->path());
        const std::string log = guestDir_->path() + "/make-test-guest.log";
        std::string cmd = std::string("bash '") + KATA_TEST_GUEST_SCRIPT + "' '" +
                          guestDir_->path() + "' >'" + log + "' 2>&1";
        guestReady_ = std::system(cmd.c_str()) == 0;
        if (!guestReady_) guestLog_ = readFile(log);
    }
    static void TearDownTestSuite() {
        if (watchdogFd_ >= 0) {
            ::close(watchdogFd_);
            watchdogFd_ = -1;
            ::waitpid(watchdogPid_, nullptr, 0);
        }
        delete guestDir_;
        guestDir_ = nullptr;
    }

    // If this test process dies without cleaning up (killed on a ctest timeout, crashed), a
    // watchdog process notices the pipe closing, kills every QEMU whose command line mentions
    // the suite's directory and removes it. QEMU deliberately survives its parent, so nothing
    // else would.
    static void startWatchdog(const std::string& dir) {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) return;
        pid_t pid = ::fork();
        if (pid < 0) {
            ::close(p[0]);
            ::close(p[1]);
            return;
        }
        if (pid == 0) {
            ::setsid();
            ::close(p[1]);
            char c;
            while (::read(p[0], &c, 1) < 0 && errno == EINTR) {
            }
            for (int round = 0; round < 3; ++round) {
                std::error_code ec;
                for (const auto& e : fs::directory_iterator("/proc", ec)) {
                    std::string name = e.path().filename();
                    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
                    std::string cmdline = readFile(e.path().string() + "/cmdline");
                    if (std::stoi(name) != ::getpid() && cmdline.find(dir) != std::string::npos)
                        ::kill(std::stoi(name), SIGKILL);
                }
                std::this_thread::sleep_for(100ms);
            }
            std::error_code ec;
            fs::remove_all(dir, ec);
            ::_exit(0);
        }
        ::close(p[0]);
        watchdogFd_ = p[1];
        watchdogPid_ = pid;
    }

    void SetUp() override {
        if (::access(kQemu, X_OK) != 0) GTEST_SKIP() << kQemu << " is not installed";
        ASSERT_TRUE(guestReady_) << "make-test-guest.sh failed to build the test guest:\n"
                                 << guestLog_;
        config_.path = kQemu;
        config_.kernel = guestDir_->path() + "/kernel";
        config_.initrd = guestDir_->path() + "/initrd";
        config_.defaultMemoryMiB = 256;
        config_.accelerator = "auto";
        config_.agentChannel = "serial";
        fs::create_directories(work_.path() + "/shared");
        spec_.sandboxId = "hvtest-" + std::to_string(::getpid());
        spec_.runDir = work_.path() + "/run/" + spec_.sandboxId;
        spec_.sharedDir = work_.path() + "/shared";
    }

    // Waits until the guest's init printed its marker on the console.
    static bool waitForMarker(const kata::hypervisor::Hypervisor& vm, std::chrono::seconds limit) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < deadline) {
            if (readFile(vm.consoleLogPath()).find(kMarker) != std::string::npos) return true;
            std::this_thread::sleep_for(200ms);
        }
        return false;
    }

    static TempDir* guestDir_;
    static bool guestReady_;
    static inline std::string guestLog_;
    static inline int watchdogFd_ = -1;
    static inline pid_t watchdogPid_ = -1;
    TempDir work_{guestDir_ ? guestDir_->path() : "/tmp"};
    HypervisorConfig config_;
    VmSpec spec_;
};

TempDir* VmTest::guestDir_ = nullptr;
bool VmTest::guestReady_ = false;

TEST_F(VmTest, BootsPausesResumesHotplugsAndStopsLeavingNothing) {
    auto vm = kata::hypervisor::createHypervisor(config_, spec_);
    vm->start();
    const pid_t pid = vm->pid();
    ASSERT_GT(pid, 0);
    EXPECT_EQ(::kill(pid, 0), 0);
    EXPECT_EQ(std::atoi(readFile(spec_.runDir + "/pid").c_str()), pid);
    EXPECT_TRUE(fs::exists(spec_.runDir + "/qmp.sock"));
    EXPECT_TRUE(fs::exists(spec_.runDir + "/agent.sock"));
    EXPECT_EQ(vm->agentAddress(), "unix://" + spec_.runDir + "/agent.sock");
    EXPECT_EQ(vm->status(), "running");

    ASSERT_TRUE(waitForMarker(*vm, 180s)) << "console so far:\n" << vm->consoleTail(40);
    EXPECT_NE(vm->consoleTail(5).find(kMarker), std::string::npos);

    vm->pause();
    EXPECT_EQ(vm->status(), "paused");
    vm->resume();
    EXPECT_EQ(vm->status(), "running");

    std::vector<std::string> disks;
    for (const char* name : {"disk1.img", "disk2.img"}) {
        disks.push_back(work_.path() + "/" + name);
        { std::ofstream(disks.back()).put('\0'); }
        fs::resize_file(disks.back(), 1 << 20);
    }
    EXPECT_EQ(vm->hotplugBlockDevice("vol1", disks[0], false), "02/01");
    EXPECT_EQ(vm->hotplugBlockDevice("vol2", disks[1], true), "02/02");
    EXPECT_THROW(vm->hotplugBlockDevice("vol1", disks[1], false), kata::Error);
    // The guest (acpiphp) releases the device, then QEMU reports DEVICE_DELETED.
    EXPECT_NO_THROW(vm->unplugDevice("vol1"));
    EXPECT_EQ(vm->hotplugBlockDevice("vol3", disks[0], true), "02/01");  // slot reused
    EXPECT_THROW(vm->unplugDevice("no-such-device"), kata::Error);

    vm->stop(10s);
    EXPECT_NE(::kill(pid, 0), 0) << "QEMU pid " << pid << " still exists after stop";
    EXPECT_EQ(errno, ESRCH);
    EXPECT_FALSE(fs::exists(spec_.runDir));
    EXPECT_FALSE(processMentioning(spec_.runDir));
    EXPECT_NO_THROW(vm->stop(1s));  // idempotent
    EXPECT_THROW(vm->pause(), kata::Error);
    // The console tail stays readable after the run dir is gone.
    EXPECT_NE(vm->consoleTail(20).find(kMarker), std::string::npos);
}

// Reads from the agent's unix socket until `needle` arrives (the guest writes it every second).
std::string readAgentSocketUntil(const std::string& address, const std::string& needle,
                                 std::chrono::seconds limit) {
    const std::string path = address.substr(std::string("unix://").size());
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return "socket failed";
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    std::string got;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        got = std::string("connect ") + path + ": " + std::strerror(errno);
        ::close(fd);
        return got;
    }
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (got.find(needle) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 500) <= 0) continue;
        char buf[512];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return got;
}

TEST_F(VmTest, AgentChannelAndSharedDirReachTheGuest) {
    std::ofstream(spec_.sharedDir + "/host-wrote") << "from-host\n";
    auto vm = kata::hypervisor::createHypervisor(config_, spec_);
    vm->start();
    ASSERT_TRUE(waitForMarker(*vm, 180s)) << "console so far:\n" << vm->consoleTail(40);
    std::string got = readAgentSocketUntil(vm->agentAddress(), "hello over agent.channel.0", 60s);
    EXPECT_NE(got.find("kata-hypervisor-test: hello over agent.channel.0"), std::string::npos)
        << "read from " << vm->agentAddress() << ": \"" << got << "\"\nconsole:\n"
        << vm->consoleTail(40);
    EXPECT_NE(vm->consoleTail(40).find("share says from-host"), std::string::npos)
        << vm->consoleTail(40);
    EXPECT_EQ(readFile(spec_.sharedDir + "/guest-wrote"), "from-guest\n");
    vm->stop(10s);
    EXPECT_FALSE(fs::exists(spec_.runDir));
}

TEST_F(VmTest, RestoresFromASavedTemplateWithFreshChannelPaths) {
    config_.kernelParams = "kata_test.no9p";
    const std::string state = work_.path() + "/template.state";
    {
        auto tmpl = kata::hypervisor::createHypervisor(config_, spec_);
        tmpl->start();
        ASSERT_TRUE(waitForMarker(*tmpl, 180s)) << tmpl->consoleTail(40);
        tmpl->saveTemplate(state);
        std::string status = tmpl->status();
        EXPECT_TRUE(status == "postmigrate" || status == "paused") << status;
        tmpl->stop(5s);
    }
    ASSERT_TRUE(fs::exists(state));
    EXPECT_FALSE(fs::exists(state + ".tmp"));

    VmSpec restored = spec_;
    restored.sandboxId = spec_.sandboxId + "-restored";
    restored.runDir = work_.path() + "/run/" + restored.sandboxId;
    restored.sharedDir = work_.path() + "/shared2";
    fs::create_directories(restored.sharedDir);
    restored.templateState = state;
    auto vm = kata::hypervisor::createHypervisor(config_, restored);
    auto t0 = std::chrono::steady_clock::now();
    vm->start();
    auto startMs =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    EXPECT_EQ(vm->status(), "running");
    // The guest carries on where the template stopped: its loop writes to the new socket.
    std::string got = readAgentSocketUntil(vm->agentAddress(), "hello over agent.channel.0", 60s);
    EXPECT_NE(got.find("hello over agent.channel.0"), std::string::npos) << got;
    std::cout << "restored VM from template in " << startMs << " ms\n";
    vm->stop(5s);
    EXPECT_FALSE(fs::exists(restored.runDir));
}

TEST_F(VmTest, RestoreFromACorruptTemplateFailsNamingItAndLeavesNothing) {
    spec_.templateState = work_.path() + "/corrupt.state";
    std::ofstream(spec_.templateState) << "not a QEMU migration stream";
    auto vm = kata::hypervisor::createHypervisor(config_, spec_);
    try {
        vm->start();
        FAIL() << "restored from garbage";
    } catch (const kata::Error& e) {
        EXPECT_NE(std::string(e.what()).find(spec_.templateState), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(spec_.runDir));
    EXPECT_FALSE(processMentioning(spec_.runDir));
}

TEST_F(VmTest, BootsWithQbootFirmware) {
    const char* qboot = "/usr/share/qemu/qboot.rom";
    if (::access(qboot, R_OK) != 0) GTEST_SKIP() << qboot << " is not installed";
    config_.firmware = qboot;
    auto vm = kata::hypervisor::createHypervisor(config_, spec_);
    vm->start();
    EXPECT_TRUE(waitForMarker(*vm, 180s)) << "console so far:\n" << vm->consoleTail(40);
    EXPECT_EQ(readFile(vm->consoleLogPath()).find("SeaBIOS"), std::string::npos);
    vm->stop(10s);
}

TEST_F(VmTest, UnexpectedExitCallsCallbackWithStatusAndConsoleTail) {
    auto vm = kata::hypervisor::createHypervisor(config_, spec_);
    std::promise<std::string> reasonPromise;
    auto reason = reasonPromise.get_future();
    int calls = 0;
    kata::hypervisor::Hypervisor* raw = vm.get();
    vm->setExitCallback([&](const std::string& why) {
        ++calls;
        // What the shim does: tear the sandbox down from the callback itself.
        raw->stop(2s);
        reasonPromise.set_value(why);
    });
    vm->start();
    ASSERT_TRUE(waitForMarker(*vm, 180s)) << "console so far:\n" << vm->consoleTail(40);

    ASSERT_EQ(::kill(vm->pid(), SIGKILL), 0);
    ASSERT_EQ(reason.wait_for(20s), std::future_status::ready) << "exit callback not called";
    std::string why = reason.get();
    EXPECT_NE(why.find("killed by signal 9"), std::string::npos) << why;
    EXPECT_NE(why.find(kMarker), std::string::npos) << why;

    EXPECT_FALSE(fs::exists(spec_.runDir));  // removed by stop() inside the callback
    EXPECT_THROW(vm->status(), kata::Error);
    vm->stop(5s);
    EXPECT_EQ(calls, 1);
}

TEST_F(VmTest, QemuRejectingItsCommandLineFailsStartWithItsMessageAndLeavesNothing) {
    config_.extraArgs = {"-device", "no-such-device-model"};
    auto vm = kata::hypervisor::createHypervisor(config_, spec_);
    try {
        vm->start();
        FAIL() << "start succeeded with an unknown device";
    } catch (const kata::Error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("no-such-device-model"), std::string::npos) << msg;
        EXPECT_NE(msg.find("exited with status"), std::string::npos) << msg;
    }
    EXPECT_FALSE(fs::exists(spec_.runDir));
    EXPECT_FALSE(processMentioning(spec_.runDir));
}

TEST_F(VmTest, CleanupStaleVmKillsQemuLeftBehindByItsPidFile) {
    auto vm = kata::hypervisor::createHypervisor(config_, spec_);
    vm->start();
    const pid_t pid = vm->pid();
    // What `shim delete` does after the shim that started QEMU died: only the run dir is known.
    kata::hypervisor::cleanupStaleVm(spec_.runDir);
    EXPECT_FALSE(fs::exists(spec_.runDir));
    EXPECT_FALSE(processMentioning(spec_.runDir));
    vm->stop(2s);  // reaps; nothing left to remove
    EXPECT_NE(::kill(pid, 0), 0);
}

}  // namespace
