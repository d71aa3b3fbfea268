// Drives the real kata-agent binary over ttrpc on a unix socket: containers from a busybox
// rootfs, their I/O, exec, signals, OOM events, bad input, and what is left afterwards.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <google/protobuf/empty.pb.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "agent/agent.pb.h"
#include "agent/health.pb.h"
#include "agent/image.pb.h"
#include "agent/types.pb.h"
#include "kata/agent/service/guest.h"
#include "kata/common/error.h"
#include "kata/ttrpc/ttrpc.h"
#include "spec_test_util.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using kata::Error;
using kata::StatusCode;
using Empty = google::protobuf::Empty;

namespace {

constexpr const char* kSvc = "grpc.AgentService";

std::string readAll(const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Every mount point below dir in our mount namespace.
std::vector<std::string> mountsUnder(const std::string& dir) {
    std::vector<std::string> out;
    std::istringstream in(readAll("/proc/self/mountinfo"));
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream f(line);
        std::string id, parent, dev, root, mp;
        f >> id >> parent >> dev >> root >> mp;
        if (mp.rfind(dir, 0) == 0) out.push_back(mp);
    }
    return out;
}

// Pids whose command line contains marker.
std::vector<pid_t> processesWith(const std::string& marker) {
    std::vector<pid_t> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
        std::string name = e.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::string cmd = readAll(e.path() / "cmdline");
        for (auto& c : cmd) {
            if (c == '\0') c = ' ';
        }
        if (cmd.find(marker) != std::string::npos) out.push_back(std::stoi(name));
    }
    return out;
}

std::vector<std::string> cgroupDirsNamed(const std::string& name) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& ctrl : fs::directory_iterator("/sys/fs/cgroup", ec)) {
        std::error_code ec2;
        if (fs::exists(ctrl.path() / name, ec2)) out.push_back((ctrl.path() / name).string());
    }
    if (fs::exists("/sys/fs/cgroup/" + name, ec)) out.push_back("/sys/fs/cgroup/" + name);
    return out;
}

// Starts argv[0] with stdout and stderr appended to logPath; -1 if fork fails.
pid_t spawnLogged(const std::string& logPath, std::vector<std::string> argv) {
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
        int fd = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::execv(args[0], args.data());
        _exit(127);
    }
    return pid;
}

// kata-agent in fresh pid/mount/net/uts/ipc namespaces, where it is PID 1 as in a guest.
std::vector<std::string> agentAsInit(std::vector<std::string> agentArgs) {
    std::vector<std::string> argv = {
        "/usr/bin/unshare", "--pid", "--fork", "--kill-child", "--mount",        "--propagation",
        "private",          "--net", "--uts",  "--ipc",        KATA_AGENT_BINARY};
    argv.insert(argv.end(), agentArgs.begin(), agentArgs.end());
    return argv;
}

class AgentTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        char tmpl[] = "/tmp/kata-agent-rootfs-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        rootfsParent_ = tmpl;
        std::string cmd = std::string(KATA_BUSYBOX_ROOTFS_SCRIPT) + " " + rootfsParent_ +
                          "/rootfs >/dev/null 2>&1";
        ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
    static void TearDownTestSuite() {
        std::error_code ec;
        if (!rootfsParent_.empty() && mountsUnder(rootfsParent_).empty()) {
            fs::remove_all(rootfsParent_, ec);
        }
    }

    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "containers need root";
        char tmpl[] = "/tmp/kata-agent-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        runDir_ = dir_ + "/run";
        fs::create_directories(runDir_);
        socket_ = dir_ + "/agent.sock";
        logPath_ = dir_ + "/agent.log";
        cgroupPrefix_ = "kata-agent-test-" + std::to_string(::getpid()) + "-";
        startAgent();
    }

    void TearDown() override {
        client_.reset();
        stopAgent();
        // Clean whatever a failed test left, then remove the temp dir.
        for (int i = 0; i < 3; ++i) {
            auto left = mountsUnder(dir_);
            for (auto it = left.rbegin(); it != left.rend(); ++it)
                ::umount2(it->c_str(), MNT_DETACH);
        }
        for (pid_t p : processesWith(marker_)) ::kill(p, SIGKILL);
        if (HasFailure() && !logPath_.empty()) {
            std::cerr << "---- agent log ----\n" << readAll(logPath_) << "-------------------\n";
        }
        std::error_code ec;
        if (!dir_.empty() && mountsUnder(dir_).empty()) fs::remove_all(dir_, ec);
    }

    void startAgent() {
        pid_t pid = spawnLogged(logPath_, {KATA_AGENT_BINARY, "--server-addr", "unix://" + socket_,
                                           "--run-dir", runDir_, "--log-level", "debug"});
        ASSERT_GE(pid, 0);
        agentPid_ = pid;
        client_ =
            std::make_unique<kata::ttrpc::Client>(kata::ttrpc::dial("unix://" + socket_, 10s));
    }

    void stopAgent() {
        if (agentPid_ <= 0) return;
        ::kill(agentPid_, SIGTERM);
        for (int i = 0; i < 200; ++i) {
            int st;
            if (::waitpid(agentPid_, &st, WNOHANG) == agentPid_) {
                agentPid_ = 0;
                return;
            }
            std::this_thread::sleep_for(50ms);
        }
        ADD_FAILURE() << "agent did not stop on SIGTERM";
        ::kill(agentPid_, SIGKILL);
        ::waitpid(agentPid_, nullptr, 0);
        agentPid_ = 0;
    }

    template <class Req, class Resp = Empty>
    Resp call(const std::string& method, const Req& req, std::chrono::milliseconds timeout = 30s) {
        return client_->call<Req, Resp>(kSvc, method, req, timeout);
    }

    // Runs method and expects status code with all `needles` in the message.
    template <class Req>
    void expectError(const std::string& method, const Req& req, StatusCode code,
                     std::vector<std::string> needles) {
        try {
            call(method, req);
            ADD_FAILURE() << method << " succeeded, expected " << kata::statusCodeName(code);
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), code) << method << ": " << e.what();
            for (const auto& n : needles) {
                EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
                    << method << ": \"" << e.what() << "\" does not name \"" << n << "\"";
            }
        }
    }

    grpc::Spec makeSpec(const std::string& cid, std::vector<std::string> args) {
        grpc::Spec spec;
        spec.set_version("1.0.2");
        auto* p = spec.mutable_process();
        for (auto& a : args) p->add_args(a);
        p->add_env("PATH=/usr/sbin:/usr/bin:/sbin:/bin");
        p->set_cwd("/");
        auto* caps = p->mutable_capabilities();
        for (const char* c : {"CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID",
                              "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"}) {
            caps->add_bounding(c);
            caps->add_effective(c);
            caps->add_permitted(c);
        }
        p->set_nonewprivileges(true);
        spec.mutable_root()->set_path(rootfsParent_ + "/rootfs");
        spec.set_hostname(cid);
        kata::jail::test::addMount(&spec, "/proc", "proc", "proc", {});
        kata::jail::test::addDefaultDevAndSysMounts(&spec);
        auto* linux = spec.mutable_linux();
        for (const char* ns : {"pid", "network", "ipc", "uts", "mount"}) {
            linux->add_namespaces()->set_type(ns);
        }
        linux->set_cgroupspath("/" + cgroupPrefix_ + cid);
        linux->add_maskedpaths("/proc/kcore");
        linux->add_readonlypaths("/proc/sys");
        return spec;
    }

    grpc::CreateContainerRequest createReq(const std::string& cid, std::vector<std::string> args) {
        grpc::CreateContainerRequest req;
        req.set_container_id(cid);
        req.set_exec_id(cid);
        *req.mutable_oci() = makeSpec(cid, std::move(args));
        return req;
    }

    void createSandbox(bool sandboxPidns = false) {
        grpc::CreateSandboxRequest req;
        req.set_sandbox_pidns(sandboxPidns);
        req.set_sandbox_id("sb1");
        req.set_hostname("sb1");
        call("CreateSandbox", req);
    }

    void startContainer(const std::string& cid) {
        grpc::StartContainerRequest req;
        req.set_container_id(cid);
        call("StartContainer", req);
    }

    // Reads a stream until the agent reports EOF.
    std::string readUntilEof(const std::string& cid, const std::string& eid, bool err) {
        std::string out;
        grpc::ReadStreamRequest req;
        req.set_container_id(cid);
        req.set_exec_id(eid);
        req.set_len(4096);
        for (int i = 0; i < 1000; ++i) {
            try {
                auto resp = call<grpc::ReadStreamRequest, grpc::ReadStreamResponse>(
                    err ? "ReadStderr" : "ReadStdout", req);
                out += resp.data();
            } catch (const Error& e) {
                EXPECT_NE(std::string(e.what()).find("eof"), std::string::npos) << e.what();
                return out;
            }
        }
        ADD_FAILURE() << "no EOF";
        return out;
    }

    int waitProcess(const std::string& cid, const std::string& eid) {
        grpc::WaitProcessRequest req;
        req.set_container_id(cid);
        req.set_exec_id(eid);
        return call<grpc::WaitProcessRequest, grpc::WaitProcessResponse>("WaitProcess", req, 60s)
            .status();
    }

    void removeContainer(const std::string& cid) {
        grpc::RemoveContainerRequest req;
        req.set_container_id(cid);
        req.set_timeout(30);
        call("RemoveContainer", req, 60s);
    }

    void expectNothingLeft() {
        EXPECT_TRUE(mountsUnder(runDir_).empty());
        EXPECT_TRUE(mountsUnder(rootfsParent_).empty());
        EXPECT_TRUE(processesWith(marker_).empty()) << "container processes survived";
        EXPECT_TRUE(cgroupDirsNamed(cgroupPrefix_ + "c1").empty());
        EXPECT_TRUE(cgroupDirsNamed(cgroupPrefix_ + "c2").empty());
        std::error_code ec;
        EXPECT_TRUE(fs::is_empty(runDir_, ec)) << "bundles left in " << runDir_;
    }

    void expectServing() {
        grpc::CheckRequest req;
        auto r = client_->call<grpc::CheckRequest, grpc::HealthCheckResponse>("grpc.Health",
                                                                              "Check", req, 10s);
        EXPECT_EQ(r.status(), grpc::HealthCheckResponse::SERVING);
    }

    static inline std::string rootfsParent_;
    std::string dir_, runDir_, socket_, logPath_, cgroupPrefix_;
    // Container commands carry this so leftovers can be found in /proc.
    const std::string marker_ = [] {
        // Fixed width, so no test process's marker is a substring of another's (ctest -j).
        char buf[16];
        std::snprintf(buf, sizeof(buf), "3%07d", static_cast<int>(::getpid()));
        return std::string(buf);
    }();
    pid_t agentPid_ = 0;
    std::unique_ptr<kata::ttrpc::Client> client_;
};

TEST_F(AgentTest, HealthCheckAndVersion) {
    expectServing();
    grpc::CheckRequest req;
    auto v = client_->call<grpc::CheckRequest, grpc::VersionCheckResponse>("grpc.Health", "Version",
                                                                           req, 10s);
    EXPECT_FALSE(v.agent_version().empty());
    EXPECT_FALSE(v.grpc_version().empty());
}

TEST_F(AgentTest, ContainerRunsAndItsOutputAndExitCodeArrive) {
    createSandbox();
    call("CreateContainer", createReq("c1", {"/bin/sh", "-c",
                                             "echo hello-from-container; echo oops >&2; "
                                             "hostname; exit 3; " +
                                                 marker_}));
    startContainer("c1");
    // In a sandbox the container shares the sandbox's UTS namespace and so its hostname.
    EXPECT_EQ(readUntilEof("c1", "c1", false), "hello-from-container\nsb1\n");
    EXPECT_EQ(readUntilEof("c1", "c1", true), "oops\n");
    EXPECT_EQ(waitProcess("c1", "c1"), 3);
    // The bundle holds the spec the container was created from, rootfs resolved.
    std::string config = readAll(runDir_ + "/c1/config.json");
    EXPECT_NE(config.find(runDir_ + "/c1/rootfs"), std::string::npos) << config;
    removeContainer("c1");
    grpc::DestroySandboxRequest d;
    call("DestroySandbox", d);
    expectNothingLeft();
    expectServing();
}

TEST_F(AgentTest, ExecSecondProcessAndSignalIt) {
    createSandbox();
    call("CreateContainer", createReq("c1", {"/bin/sleep", marker_}));
    startContainer("c1");
    // What expectNothingLeft() looks for exists while the container runs.
    EXPECT_FALSE(mountsUnder(runDir_).empty());
    EXPECT_FALSE(processesWith(marker_).empty());
    EXPECT_FALSE(cgroupDirsNamed(cgroupPrefix_ + "c1").empty());

    grpc::ExecProcessRequest ex;
    ex.set_container_id("c1");
    ex.set_exec_id("e1");
    *ex.mutable_process() =
        makeSpec("c1", {"/bin/sh", "-c", "echo exec-out; exec sleep 1" + marker_}).process();
    call("ExecProcess", ex);
    grpc::ReadStreamRequest rd;
    rd.set_container_id("c1");
    rd.set_exec_id("e1");
    rd.set_len(100);
    auto out = call<grpc::ReadStreamRequest, grpc::ReadStreamResponse>("ReadStdout", rd);
    EXPECT_EQ(out.data(), "exec-out\n");
    // A second exec with the same id while it runs is refused.
    expectError("ExecProcess", ex, StatusCode::kAlreadyExists, {"e1"});

    grpc::SignalProcessRequest sig;
    sig.set_container_id("c1");
    sig.set_exec_id("e1");
    sig.set_signal(SIGKILL);
    call("SignalProcess", sig);
    EXPECT_EQ(waitProcess("c1", "e1"), 128 + SIGKILL);
    // Waited and read to EOF, the exec is forgotten by the agent.
    EXPECT_EQ(readUntilEof("c1", "e1", false), "");
    EXPECT_EQ(readUntilEof("c1", "e1", true), "");
    grpc::WaitProcessRequest again;
    again.set_container_id("c1");
    again.set_exec_id("e1");
    expectError("WaitProcess", again, StatusCode::kNotFound, {"e1"});

    // SIGTERM to a pid-namespace init without a handler is delivered as SIGKILL (Kata).
    sig.set_exec_id("");
    sig.set_signal(SIGTERM);
    call("SignalProcess", sig);
    EXPECT_EQ(waitProcess("c1", ""), 128 + SIGKILL);

    removeContainer("c1");
    expectNothingLeft();
}

TEST_F(AgentTest, ExitedExecIdIsReusedAndItsFdsAreClosed) {
    call("CreateContainer", createReq("c1", {"/bin/sleep", marker_}));
    startContainer("c1");
    auto agentFds = [&] {
        size_t n = 0;
        for ([[maybe_unused]] const auto& e :
             fs::directory_iterator("/proc/" + std::to_string(agentPid_) + "/fd"))
            ++n;
        return n;
    };
    // The agent's fds once every exec is forgotten; the handle goes as WaitProcess returns,
    // so allow the answer to overtake it briefly.
    auto settledFds = [&](size_t want) {
        size_t n = agentFds();
        for (int i = 0; i < 40 && n != want; ++i) {
            std::this_thread::sleep_for(50ms);
            n = agentFds();
        }
        return n;
    };
    const size_t baseline = agentFds();

    grpc::ExecProcessRequest ex;
    ex.set_container_id("c1");
    ex.set_exec_id("e1");
    for (int round = 0; round < 3; ++round) {
        const std::string word = "round-" + std::to_string(round);
        *ex.mutable_process() = makeSpec("c1", {"/bin/echo", word}).process();
        call("ExecProcess", ex);
        EXPECT_GT(agentFds(), baseline) << "the exec's stdio pipes are not open in the agent";
        EXPECT_EQ(readUntilEof("c1", "e1", false), word + "\n");
        EXPECT_EQ(readUntilEof("c1", "e1", true), "");
        EXPECT_EQ(waitProcess("c1", "e1"), 0);
        EXPECT_EQ(settledFds(baseline), baseline) << "round " << round;
    }

    // Waited but never read: a new exec with the id replaces it, and its fds go too.
    ex.set_exec_id("e2");
    *ex.mutable_process() = makeSpec("c1", {"/bin/sh", "-c", "exit 5"}).process();
    call("ExecProcess", ex);
    EXPECT_EQ(waitProcess("c1", "e2"), 5);
    *ex.mutable_process() = makeSpec("c1", {"/bin/echo", "again"}).process();
    call("ExecProcess", ex);
    EXPECT_EQ(readUntilEof("c1", "e2", false), "again\n");
    EXPECT_EQ(readUntilEof("c1", "e2", true), "");
    EXPECT_EQ(waitProcess("c1", "e2"), 0);
    EXPECT_EQ(settledFds(baseline), baseline);

    // A running exec keeps its id.
    *ex.mutable_process() = makeSpec("c1", {"/bin/sleep", "1" + marker_}).process();
    call("ExecProcess", ex);
    expectError("ExecProcess", ex, StatusCode::kAlreadyExists, {"e2"});
    removeContainer("c1");
    expectNothingLeft();
}

TEST_F(AgentTest, StdinReachesTheProcess) {
    call("CreateContainer",
         createReq("c1", {"/bin/sh", "-c", "cat; hostname; echo done; : " + marker_}));
    startContainer("c1");
    grpc::WriteStreamRequest w;
    w.set_container_id("c1");
    w.set_exec_id("c1");
    w.set_data("ping\n");
    auto wr = call<grpc::WriteStreamRequest, grpc::WriteStreamResponse>("WriteStdin", w);
    EXPECT_EQ(wr.len(), 5u);
    grpc::CloseStdinRequest c;
    c.set_container_id("c1");
    c.set_exec_id("c1");
    call("CloseStdin", c);
    EXPECT_EQ(waitProcess("c1", "c1"), 0);
    // Without a sandbox the container has a UTS namespace, and hostname, of its own.
    EXPECT_EQ(readUntilEof("c1", "c1", false), "ping\nc1\ndone\n");
    removeContainer("c1");
    expectNothingLeft();
}

TEST_F(AgentTest, BadInputGetsTheRightStatusAndTheAgentKeepsServing) {
    createSandbox();
    grpc::StartContainerRequest start;
    start.set_container_id("nosuch");
    expectError("StartContainer", start, StatusCode::kNotFound, {"nosuch"});

    expectError("CreateContainer", createReq("../evil", {"/bin/true"}),
                StatusCode::kInvalidArgument, {"../evil"});
    expectError("CreateContainer", createReq("a/b", {"/bin/true"}), StatusCode::kInvalidArgument,
                {"a/b"});

    auto noRoot = createReq("c2", {"/bin/true"});
    noRoot.mutable_oci()->mutable_root()->set_path(dir_ + "/missing-rootfs");
    expectError("CreateContainer", noRoot, StatusCode::kNotFound, {"missing-rootfs"});

    auto noArgs = createReq("c2", {});
    expectError("CreateContainer", noArgs, StatusCode::kInvalidArgument, {"c2", "args"});

    // A command that does not exist in the rootfs fails the create or the start, naming it.
    auto badCmd = createReq("c2", {"/no/such/binary"});
    bool failed = false;
    try {
        call("CreateContainer", badCmd);
        startContainer("c2");
    } catch (const Error& e) {
        failed = true;
        EXPECT_NE(std::string(e.what()).find("/no/such/binary"), std::string::npos) << e.what();
    }
    if (!failed) {
        EXPECT_EQ(waitProcess("c2", ""), 127);
    }
    try {
        removeContainer("c2");
    } catch (const Error&) {
    }

    call("CreateContainer", createReq("c1", {"/bin/sleep", marker_}));
    expectError("CreateContainer", createReq("c1", {"/bin/true"}), StatusCode::kAlreadyExists,
                {"c1"});
    grpc::WaitProcessRequest wait;
    wait.set_container_id("c1");
    wait.set_exec_id("nosuchexec");
    expectError("WaitProcess", wait, StatusCode::kNotFound, {"nosuchexec", "c1"});
    grpc::RemoveContainerRequest rm;
    rm.set_container_id("ghost");
    expectError("RemoveContainer", rm, StatusCode::kNotFound, {"ghost"});

    // Unknown methods and the image service.
    try {
        client_->callRaw(kSvc, "NoSuchMethod", "", 10s);
        ADD_FAILURE() << "unknown method answered";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), StatusCode::kUnimplemented);
        EXPECT_NE(std::string(e.what()).find("NoSuchMethod"), std::string::npos) << e.what();
    }
    grpc::PullImageRequest pull;
    pull.set_image("busybox");
    try {
        client_->call<grpc::PullImageRequest, grpc::PullImageResponse>("grpc.Image", "PullImage",
                                                                       pull, 10s);
        ADD_FAILURE() << "PullImage answered";
    } catch (const Error& e) {
        // A static agent has no image pull; a dynamic one refuses the missing container id.
        if (e.code() == StatusCode::kUnimplemented) {
            EXPECT_NE(std::string(e.what()).find("without image pull"), std::string::npos)
                << e.what();
        } else {
            EXPECT_EQ(e.code(), StatusCode::kInvalidArgument) << e.what();
            EXPECT_NE(std::string(e.what()).find("invalid container id"), std::string::npos)
                << e.what();
        }
    }

    expectServing();
    removeContainer("c1");
    expectNothingLeft();
}

TEST_F(AgentTest, OomKillIsReported) {
    auto req = createReq("c1", {"/bin/sh", "-c", "tail /dev/zero; : " + marker_});
    auto* mem = req.mutable_oci()->mutable_linux()->mutable_resources()->mutable_memory();
    mem->set_limit(32 << 20);
    mem->set_swap(32 << 20);
    call("CreateContainer", req);
    startContainer("c1");
    grpc::GetOOMEventRequest oomReq;
    auto ev = call<grpc::GetOOMEventRequest, grpc::OOMEvent>("GetOOMEvent", oomReq, 60s);
    EXPECT_EQ(ev.container_id(), "c1");
    removeContainer("c1");
    expectNothingLeft();
}

TEST_F(AgentTest, ContainersShareTheSandboxPidNamespace) {
    createSandbox(/*sandboxPidns=*/true);
    call("CreateContainer", createReq("c1", {"/bin/sleep", marker_}));
    startContainer("c1");
    auto req = createReq("c2", {"/bin/ps", "-o", "args"});
    req.set_sandbox_pidns(true);
    call("CreateContainer", req);
    startContainer("c2");
    std::string ps = readUntilEof("c2", "c2", false);
    EXPECT_EQ(waitProcess("c2", "c2"), 0);
    EXPECT_NE(ps.find("sleep " + marker_), std::string::npos) << ps;
    removeContainer("c2");
    removeContainer("c1");
    grpc::DestroySandboxRequest d;
    call("DestroySandbox", d);
    expectNothingLeft();
}

TEST_F(AgentTest, WithoutSandboxPidnsContainersAreApart) {
    createSandbox();
    call("CreateContainer", createReq("c1", {"/bin/sleep", marker_}));
    startContainer("c1");
    call("CreateContainer", createReq("c2", {"/bin/ps", "-o", "args"}));
    startContainer("c2");
    std::string ps = readUntilEof("c2", "c2", false);
    EXPECT_EQ(ps.find("sleep " + marker_), std::string::npos) << ps;
    removeContainer("c2");
    removeContainer("c1");
    expectNothingLeft();
}

TEST_F(AgentTest, TerminalProcessGetsResizeAndOutputUntilEof) {
    auto req = createReq("c1", {"/bin/sh", "-c", "stty size; echo tty-ok; : " + marker_});
    req.mutable_oci()->mutable_process()->set_terminal(true);
    call("CreateContainer", req);
    grpc::TtyWinResizeRequest rs;
    rs.set_container_id("c1");
    rs.set_exec_id("c1");
    rs.set_row(31);
    rs.set_column(101);
    call("TtyWinResize", rs);
    startContainer("c1");
    std::string out = readUntilEof("c1", "c1", false);
    EXPECT_NE(out.find("31 101"), std::string::npos) << out;
    EXPECT_NE(out.find("tty-ok"), std::string::npos) << out;
    EXPECT_EQ(waitProcess("c1", "c1"), 0);
    // A process without a terminal cannot be resized.
    call("CreateContainer", createReq("c2", {"/bin/sleep", marker_}));
    rs.set_container_id("c2");
    rs.set_exec_id("");
    expectError("TtyWinResize", rs, StatusCode::kFailedPrecondition, {"terminal"});
    removeContainer("c2");
    removeContainer("c1");
    expectNothingLeft();
}

TEST_F(AgentTest, RemoveWakesBlockedReaders) {
    call("CreateContainer", createReq("c1", {"/bin/sleep", marker_}));
    startContainer("c1");
    auto reader = std::async(std::launch::async, [&] {
        grpc::ReadStreamRequest rd;
        rd.set_container_id("c1");
        rd.set_exec_id("c1");
        rd.set_len(100);
        try {
            call<grpc::ReadStreamRequest, grpc::ReadStreamResponse>("ReadStdout", rd, 20s);
            return std::string("data");
        } catch (const Error& e) {
            return std::string(kata::statusCodeName(e.code())) + ": " + e.what();
        }
    });
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(reader.wait_for(0ms), std::future_status::timeout) << "read did not block";
    removeContainer("c1");
    ASSERT_EQ(reader.wait_for(5s), std::future_status::ready) << "read still blocked after remove";
    std::string result = reader.get();
    EXPECT_NE(result, "data");
    EXPECT_EQ(result.find("DEADLINE"), std::string::npos) << result;
    expectServing();
    expectNothingLeft();
}

TEST_F(AgentTest, GuestDetailsMetricsAndCopyFile) {
    grpc::GuestDetailsRequest gd;
    gd.set_mem_block_size(true);
    auto details =
        call<grpc::GuestDetailsRequest, grpc::GuestDetailsResponse>("GetGuestDetails", gd);
    EXPECT_NE(details.agent_details().version().find(kata::agent::kernelRelease()),
              std::string::npos);
    EXPECT_GT(details.agent_details().storage_handlers_size(), 0);

    grpc::GetMetricsRequest mr;
    auto metrics = call<grpc::GetMetricsRequest, grpc::Metrics>("GetMetrics", mr);
    EXPECT_NE(metrics.metrics().find("kata_agent_process_resident_memory_bytes "),
              std::string::npos);

    grpc::CopyFileRequest cp;
    cp.set_path(runDir_ + "/shared/c9/hosts");
    cp.set_data("127.0.0.1 localhost\n");
    cp.set_file_size(cp.data().size());
    cp.set_file_mode(0100644);
    cp.set_dir_mode(0755);
    call("CopyFile", cp);
    EXPECT_EQ(readAll(runDir_ + "/shared/c9/hosts"), "127.0.0.1 localhost\n");

    cp.set_path(runDir_ + "/../escape");
    expectError("CopyFile", cp, StatusCode::kInvalidArgument, {"/../escape"});
    cp.set_path(dir_ + "/outside");
    expectError("CopyFile", cp, StatusCode::kInvalidArgument, {dir_ + "/outside"});
    EXPECT_FALSE(fs::exists(dir_ + "/outside"));
    fs::remove_all(runDir_ + "/shared");
}

// kata-agent as PID 1 (in fresh pid/mount/net/uts/ipc namespaces, the closest a host gets to a
// guest): it mounts the base filesystems itself and still serves.
TEST(AgentInitMode, MountsBaseFilesystemsAndServes) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root for namespaces";
    if (::access("/usr/bin/unshare", X_OK) != 0) GTEST_SKIP() << "unshare(1) missing";
    char tmpl[] = "/tmp/kata-agent-init-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string dir = tmpl, sock = dir + "/agent.sock", logPath = dir + "/agent.log";
    pid_t pid = spawnLogged(
        logPath, agentAsInit({"--server-addr", "unix://" + sock, "--run-dir", dir + "/run"}));
    ASSERT_GE(pid, 0);
    struct Cleanup {
        pid_t pid;
        std::string dir;
        ~Cleanup() {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
            std::error_code ec;
            fs::remove_all(dir, ec);
        }
    } cleanup{pid, dir};

    kata::ttrpc::Client client(kata::ttrpc::dial("unix://" + sock, 10s));
    grpc::CheckRequest check;
    auto health = client.call<grpc::CheckRequest, grpc::HealthCheckResponse>("grpc.Health", "Check",
                                                                             check, 10s);
    EXPECT_EQ(health.status(), grpc::HealthCheckResponse::SERVING);
    grpc::GuestDetailsRequest gd;
    auto details = client.call<grpc::GuestDetailsRequest, grpc::GuestDetailsResponse>(
        kSvc, "GetGuestDetails", gd, 10s);
    EXPECT_TRUE(details.agent_details().init_daemon());

    // The agent is the child of unshare; its mount table shows what it mounted.
    pid_t agent = 0;
    std::istringstream children(
        readAll("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children"));
    children >> agent;
    ASSERT_GT(agent, 0);
    std::string mounts = readAll("/proc/" + std::to_string(agent) + "/mounts");
    for (const char* want : {" /proc proc ", " /sys sysfs ", " /dev devtmpfs ", " /dev/pts devpts ",
                             " /dev/shm tmpfs ", " /run tmpfs ", " /sys/fs/cgroup"}) {
        EXPECT_NE(mounts.find(want), std::string::npos) << "no" << want << "mount in\n" << mounts;
    }

    // Network RPCs act on the agent's own (fresh) network namespace: lo is up, and a veth made
    // there is configured through UpdateInterface/UpdateRoutes.
    grpc::ListInterfacesRequest li;
    auto ifs =
        client.call<grpc::ListInterfacesRequest, grpc::Interfaces>(kSvc, "ListInterfaces", li, 10s);
    bool loUp = false;
    for (const auto& i : ifs.interfaces()) {
        if (i.name() == "lo") loUp = (i.raw_flags() & 1) != 0;  // IFF_UP
    }
    EXPECT_TRUE(loUp) << ifs.DebugString();
    std::string ns = "nsenter -t " + std::to_string(agent) + " -n ";
    if (std::system((ns + "ip link add kt0 type veth peer name kt1 2>/dev/null").c_str()) != 0) {
        GTEST_SKIP() << "cannot create a veth pair (no veth support)";
    }
    {
        // The agent mounted sysfs in its own network namespace: its view shows the veth.
        std::string mac =
            readAll("/proc/" + std::to_string(agent) + "/root/sys/class/net/kt0/address");
        ASSERT_FALSE(mac.empty());
        while (!mac.empty() && mac.back() == '\n') mac.pop_back();
        grpc::UpdateInterfaceRequest up;
        auto* iface = up.mutable_interface();
        iface->set_hwaddr(mac);
        iface->set_name("eth7");
        iface->set_mtu(1400);
        auto* addr = iface->add_ipaddresses();
        addr->set_address("10.77.0.2");
        addr->set_mask("24");
        auto done = client.call<grpc::UpdateInterfaceRequest, types::Interface>(
            kSvc, "UpdateInterface", up, 10s);
        EXPECT_EQ(done.name(), "eth7");
        EXPECT_EQ(done.mtu(), 1400u);
        grpc::UpdateRoutesRequest ur;
        // As Kata's shim sends them: the subnet's link route, then the default route.
        auto* link = ur.mutable_routes()->add_routes();
        link->set_dest("10.77.0.0/24");
        link->set_device("eth7");
        link->set_scope(253);
        auto* rt = ur.mutable_routes()->add_routes();
        rt->set_gateway("10.77.0.1");
        rt->set_device("eth7");
        auto routes =
            client.call<grpc::UpdateRoutesRequest, grpc::Routes>(kSvc, "UpdateRoutes", ur, 10s);
        bool hasDefault = false;
        for (const auto& r : routes.routes()) {
            hasDefault = hasDefault || (r.dest().empty() && r.gateway() == "10.77.0.1");
        }
        EXPECT_TRUE(hasDefault) << routes.DebugString();
    }
    if (HasFailure()) std::cerr << readAll(logPath);
}

// As PID 1 a fatal error must not end the agent (that panics the kernel): it logs the reason
// and powers off; in a child pid namespace that ends the namespace.
TEST(AgentInitMode, MissingChannelPowersOffWithTheReason) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root for namespaces";
    if (::access("/usr/bin/unshare", X_OK) != 0) GTEST_SKIP() << "unshare(1) missing";
    char tmpl[] = "/tmp/kata-agent-init-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string dir = tmpl, logPath = dir + "/agent.log";
    // No --server-addr: the agent looks for the agent.channel.0 serial port, which a host
    // namespace does not have.
    pid_t pid =
        spawnLogged(logPath, agentAsInit({"--run-dir", dir + "/run", "--dial-timeout", "1"}));
    ASSERT_GE(pid, 0);
    bool exited = false;
    for (int i = 0; i < 200 && !exited; ++i) {
        exited = ::waitpid(pid, nullptr, WNOHANG) == pid;
        if (!exited) std::this_thread::sleep_for(50ms);
    }
    if (!exited) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
    }
    EXPECT_TRUE(exited) << "agent as PID 1 did not power off";
    std::string log = readAll(logPath);
    EXPECT_NE(log.find("powering off"), std::string::npos) << log;
    EXPECT_NE(log.find("agent.channel.0"), std::string::npos) << log;
    std::error_code ec;
    fs::remove_all(dir, ec);
}

}  // namespace
