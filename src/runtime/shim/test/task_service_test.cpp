// The task service against a fake agent and a fake VM (below the seams): the containerd-facing
// lifecycle, status codes, events, I/O and cleanup. Mounts are real (needs root).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <thread>

#include "containerd/events/task.pb.h"
#include "factory.h"
#include "fs_share.h"
#include "kata/common/error.h"
#include "task_service.h"

using namespace kata::shim;
using kata::Error;
using kata::StatusCode;
namespace fs = std::filesystem;

namespace {

class FakeAgent : public AgentClient {
  public:
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::string> calls;
    grpc::CreateSandboxRequest sandboxReq;
    grpc::CreateContainerRequest containerReq;
    grpc::ExecProcessRequest execReq;
    std::map<std::string, int> exits;                    // "cid/exec" -> status
    std::map<std::string, std::deque<std::string>> out;  // "cid/exec" -> stdout chunks
    std::map<std::string, std::string> stdinData;
    std::map<std::string, bool> stdinClosed;
    bool closed = false;
    int64_t guestSec = 0;
    std::string seed;

    void record(const std::string& c) {
        std::lock_guard<std::mutex> lk(mu);
        calls.push_back(c);
        cv.notify_all();
    }
    void exitProcess(const std::string& key, int status, std::vector<std::string> output = {}) {
        std::lock_guard<std::mutex> lk(mu);
        for (auto& o : output) out[key].push_back(o);
        exits[key] = status;
        cv.notify_all();
    }
    bool waitForCall(const std::string& c) {
        std::unique_lock<std::mutex> lk(mu);
        return cv.wait_for(lk, std::chrono::seconds(5),
                           [&] { return std::find(calls.begin(), calls.end(), c) != calls.end(); });
    }
    bool called(const std::string& c) {
        std::lock_guard<std::mutex> lk(mu);
        return std::find(calls.begin(), calls.end(), c) != calls.end();
    }

    void check(std::chrono::milliseconds) override { record("Check"); }
    void createSandbox(const grpc::CreateSandboxRequest& r) override {
        sandboxReq = r;
        record("CreateSandbox");
    }
    void destroySandbox() override { record("DestroySandbox"); }
    void setGuestDateTime(int64_t sec, int64_t) override {
        record("SetGuestDateTime");
        guestSec = sec;
    }
    void reseedRandomDev(const std::string& data) override {
        record("ReseedRandomDev");
        seed = data;
    }
    std::deque<std::string> ooms;
    std::string getOomEvent() override {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return closed || !ooms.empty(); });
        if (ooms.empty()) throw Error(StatusCode::kUnavailable, "agent connection closed");
        std::string cid = ooms.front();
        ooms.pop_front();
        return cid;
    }
    void oom(const std::string& cid) {
        std::lock_guard<std::mutex> lk(mu);
        ooms.push_back(cid);
        cv.notify_all();
    }
    void updateInterface(const types::Interface& i) override {
        record("UpdateInterface " + i.name() + " " + i.hwaddr());
    }
    void updateRoutes(const grpc::Routes& r) override {
        record("UpdateRoutes " + std::to_string(r.routes_size()));
    }
    void addArpNeighbors(const grpc::ARPNeighbors& n) override {
        record("AddARPNeighbors " + std::to_string(n.arpneighbors_size()));
    }
    void createContainer(const grpc::CreateContainerRequest& r) override {
        containerReq = r;
        record("CreateContainer " + r.container_id());
    }
    void startContainer(const std::string& cid) override { record("StartContainer " + cid); }
    void removeContainer(const std::string& cid, uint32_t) override {
        record("RemoveContainer " + cid);
    }
    void execProcess(const grpc::ExecProcessRequest& r) override {
        execReq = r;
        record("ExecProcess " + r.exec_id());
    }
    void signalProcess(const std::string& cid, const std::string& eid, uint32_t sig) override {
        record("SignalProcess " + cid + "/" + eid + " " + std::to_string(sig));
    }
    int32_t waitProcess(const std::string& cid, const std::string& eid) override {
        std::unique_lock<std::mutex> lk(mu);
        const std::string key = cid + "/" + eid;
        cv.wait(lk, [&] { return closed || exits.count(key); });
        if (!exits.count(key)) throw Error(StatusCode::kUnavailable, "connection closed");
        return exits[key];
    }
    void updateContainer(const std::string& cid, const grpc::LinuxResources&) override {
        record("UpdateContainer " + cid);
    }
    grpc::StatsContainerResponse statsContainer(const std::string& cid) override {
        record("StatsContainer " + cid);
        return {};
    }
    void pauseContainer(const std::string& cid) override { record("PauseContainer " + cid); }
    void resumeContainer(const std::string& cid) override { record("ResumeContainer " + cid); }
    std::string readStdout(const std::string& cid, const std::string& eid, uint32_t) override {
        std::unique_lock<std::mutex> lk(mu);
        const std::string key = cid + "/" + eid;
        cv.wait(lk, [&] { return closed || !out[key].empty() || exits.count(key); });
        if (!out[key].empty()) {
            std::string d = out[key].front();
            out[key].pop_front();
            return d;
        }
        if (closed) throw Error(StatusCode::kUnavailable, "connection closed");
        throw Error(StatusCode::kUnknown, "read meet eof");
    }
    std::string readStderr(const std::string& cid, const std::string& eid, uint32_t) override {
        std::unique_lock<std::mutex> lk(mu);
        const std::string key = cid + "/" + eid;
        cv.wait(lk, [&] { return closed || exits.count(key); });
        return "";
    }
    uint32_t writeStdin(const std::string& cid, const std::string& eid,
                        const std::string& d) override {
        std::lock_guard<std::mutex> lk(mu);
        stdinData[cid + "/" + eid] += d;
        return static_cast<uint32_t>(d.size());
    }
    void closeStdin(const std::string& cid, const std::string& eid) override {
        {
            std::lock_guard<std::mutex> lk(mu);
            stdinClosed[cid + "/" + eid] = true;
        }
        record("CloseStdin " + cid + "/" + eid);
    }
    void ttyWinResize(const std::string& cid, const std::string& eid, uint32_t r,
                      uint32_t c) override {
        record("TtyWinResize " + cid + "/" + eid + " " + std::to_string(r) + "x" +
               std::to_string(c));
    }
    void close() override {
        std::lock_guard<std::mutex> lk(mu);
        closed = true;
        cv.notify_all();
    }
};

struct VmRecord {
    bool started = false, stopped = false;
    kata::hypervisor::VmSpec spec;
    std::vector<kata::hypervisor::VmSpec> specs;  // every VM created, in order
    std::vector<std::string> templatesSaved;      // sandbox ids of VMs saved as templates
    std::function<void(const std::string&)> exitCb;
};

class FakeVm : public kata::hypervisor::Hypervisor {
  public:
    FakeVm(std::shared_ptr<VmRecord> rec, std::string failWith)
        : rec_(std::move(rec)), failWith_(std::move(failWith)) {}
    void start() override {
        if (!failWith_.empty()) throw Error(StatusCode::kInvalidArgument, failWith_);
        rec_->started = true;
    }
    void stop(std::chrono::milliseconds) override { rec_->stopped = true; }
    std::string agentAddress() const override { return "unix:///fake/agent.sock"; }
    pid_t pid() const override { return rec_->started && !rec_->stopped ? 4242 : 0; }
    std::string consoleLogPath() const override { return ""; }
    std::string consoleTail(size_t) const override { return ""; }
    void setExitCallback(std::function<void(const std::string&)> cb) override {
        rec_->exitCb = std::move(cb);
    }
    std::string status() override { return rec_->stopped ? "shutdown" : "running"; }
    void pause() override {}
    void resume() override {}
    std::string hotplugBlockDevice(const std::string&, const std::string&, bool) override {
        return "";
    }
    void unplugDevice(const std::string&) override {}
    void saveTemplate(const std::string& path) override {
        rec_->templatesSaved.push_back(rec_->spec.sandboxId);
        std::ofstream(path) << "fake VM state";
    }

  private:
    std::shared_ptr<VmRecord> rec_;
    std::string failWith_;
};

struct NetRecord {
    std::vector<std::string> attached;  // netns paths
    int detached = 0;
};

class FakeNetwork : public PodNetwork {
  public:
    explicit FakeNetwork(std::shared_ptr<NetRecord> rec) : rec_(std::move(rec)) {
        kata::hypervisor::NetDevice nic;
        nic.id = "net0";
        nic.mac = "02:00:0a:01:00:05";
        nic.mtu = 1450;
        nic.tapFd = 99;
        g_.nics.push_back(nic);
        types::Interface i;
        i.set_name("eth0");
        i.set_hwaddr(nic.mac);
        g_.interfaces.push_back(i);
        g_.routes.add_routes()->set_gateway("10.1.0.1");
        g_.neighbors.add_arpneighbors()->set_lladdr("02:00:0a:01:00:01");
    }
    ~FakeNetwork() override { ++rec_->detached; }
    const GuestNetwork& guest() const override { return g_; }

  private:
    std::shared_ptr<NetRecord> rec_;
    GuestNetwork g_;
};

class FakeEvents : public EventPublisher {
  public:
    std::mutex mu;
    std::vector<std::string> topicsSeen;
    std::vector<containerd::events::TaskExit> exits;
    void publish(const std::string& topic, const google::protobuf::Message& e) override {
        std::lock_guard<std::mutex> lk(mu);
        topicsSeen.push_back(topic);
        if (topic == topics::kTaskExit) {
            containerd::events::TaskExit x;
            x.CopyFrom(e);
            exits.push_back(x);
        }
    }
    std::vector<std::string> seen() {
        std::lock_guard<std::mutex> lk(mu);
        return topicsSeen;
    }
};

const char* kBundleSpec = R"({
  "ociVersion": "1.0.2",
  "process": {"args": ["sh", "-c", "echo hello; exit 3"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
  "root": {"path": "rootfs"},
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
  "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}]}
})";

class TaskServiceTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "the task service mounts the rootfs: needs root";
        char tmpl[] = "/tmp/shim-task-XXXXXX";
        tmp_ = ::mkdtemp(tmpl);
        paths_.stateRoot = tmp_ + "/sbs";
        paths_.vmRoot = tmp_ + "/vm";
        paths_.shareRoot = tmp_ + "/shared-sandboxes";
        bundle_ = tmp_ + "/bundle";
        fs::create_directories(bundle_ + "/rootfs/bin");
        std::ofstream(bundle_ + "/config.json") << kBundleSpec;
        for (auto f : {"stdin", "stdout", "stderr"}) {
            ASSERT_EQ(::mkfifo((tmp_ + "/" + f).c_str(), 0600), 0);
        }
        agent_ = std::make_shared<FakeAgent>();
        vm_ = std::make_shared<VmRecord>();
        net_ = std::make_shared<NetRecord>();
        events_ = std::make_shared<FakeEvents>();
        makeService("");
    }
    void TearDown() override {
        service_.reset();
        if (!tmp_.empty()) {
            cleanupTree(tmp_);
            fs::remove_all(tmp_);
        }
    }
    void makeService(const std::string& vmFailure) {
        SandboxDeps deps;
        auto vm = vm_;
        deps.createHypervisor = [vm, vmFailure](const kata::hypervisor::HypervisorConfig&,
                                                const kata::hypervisor::VmSpec& s) {
            vm->spec = s;
            vm->specs.push_back(s);
            return std::make_unique<FakeVm>(vm, vmFailure);
        };
        auto agent = agent_;
        deps.connectAgent = [agent](const std::string&, std::chrono::milliseconds) {
            return agent;
        };
        auto net = net_;
        deps.attachNetwork = [net](const std::string& netns) -> std::unique_ptr<PodNetwork> {
            net->attached.push_back(netns);
            return std::make_unique<FakeNetwork>(net);
        };
        TaskServiceOptions o;
        o.ns = "default";
        o.shimName = "containerd-shim-kata-v2";
        o.paths = paths_;
        const std::string text = configText_;
        o.loadConfig = [text](const std::string&) {
            if (!text.empty()) return kata::config::parseConfig(text, "/fake/configuration.toml");
            kata::config::RuntimeConfig c;
            c.path = "/fake/configuration.toml";
            c.hypervisor.msize9p = 512 * 1024;
            return c;
        };
        service_ = std::make_unique<TaskService>(o, deps, events_);
    }
    task::CreateTaskRequest createReq(const std::string& id) {
        task::CreateTaskRequest r;
        r.set_id(id);
        r.set_bundle(bundle_);
        r.set_stdin(tmp_ + "/stdin");
        r.set_stdout(tmp_ + "/stdout");
        r.set_stderr(tmp_ + "/stderr");
        return r;
    }
    static std::string readAll(int fd) {
        std::string s;
        char buf[256];
        for (;;) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n > 0) {
                s.append(buf, static_cast<size_t>(n));
                continue;
            }
            if (n < 0 && errno == EAGAIN) {
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                continue;
            }
            return s;
        }
    }
    void expectCode(StatusCode code, const std::function<void()>& f) {
        try {
            f();
            ADD_FAILURE() << "no error, expected code " << static_cast<int>(code);
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), code) << e.what();
        }
    }

    std::string tmp_, bundle_;
    std::string configText_;  // non-empty: parsed as configuration.toml by makeService
    Paths paths_;
    std::shared_ptr<FakeAgent> agent_;
    std::shared_ptr<VmRecord> vm_;
    std::shared_ptr<NetRecord> net_;
    std::shared_ptr<FakeEvents> events_;
    std::unique_ptr<TaskService> service_;
};

}  // namespace

TEST_F(TaskServiceTest, LifecycleOfOneContainer) {
    // containerd opens its ends of the FIFOs before Create.
    int outFd = ::open((tmp_ + "/stdout").c_str(), O_RDONLY | O_NONBLOCK);
    int errFd = ::open((tmp_ + "/stderr").c_str(), O_RDONLY | O_NONBLOCK);
    ASSERT_GE(outFd, 0);

    auto created = service_->create(createReq("c1"));
    EXPECT_EQ(created.pid(), 4242u);
    EXPECT_TRUE(vm_->started);
    EXPECT_EQ(vm_->spec.runDir, paths_.vmRunDir("c1"));
    EXPECT_EQ(vm_->spec.sharedDir, paths_.sharedDir("c1"));

    ASSERT_EQ(agent_->sandboxReq.storages_size(), 1);
    const auto& st = agent_->sandboxReq.storages(0);
    EXPECT_EQ(st.driver(), "9p");
    EXPECT_EQ(st.source(), "kataShared");
    EXPECT_EQ(st.mount_point(), "/run/kata-containers/shared/containers/");
    EXPECT_NE(std::find(st.options().begin(), st.options().end(), "msize=524288"),
              st.options().end());

    const auto& spec = agent_->containerReq.oci();
    EXPECT_EQ(spec.root().path(), "/run/kata-containers/shared/containers/c1/rootfs");
    for (const auto& ns : spec.linux().namespaces()) EXPECT_NE(ns.type(), "network");
    // The bundle's rootfs is visible on the share.
    EXPECT_TRUE(fs::is_directory(paths_.containerRootfsHost("c1", "c1") + "/bin"));
    auto state = loadState(paths_, "c1");
    ASSERT_TRUE(state.has_value());
    EXPECT_EQ(state->containers.count("c1"), 1u);
    EXPECT_EQ(state->hypervisorPid, 4242);

    task::StateRequest sr;
    sr.set_id("c1");
    EXPECT_EQ(service_->state(sr).status(), containerd::v1::types::CREATED);

    // Wait is called before Start by ctr and must block until the exit.
    task::WaitResponse waited;
    std::thread waiter([&] {
        task::WaitRequest w;
        w.set_id("c1");
        waited = service_->wait(w);
    });

    task::StartRequest start;
    start.set_id("c1");
    EXPECT_EQ(service_->start(start).pid(), 4242u);
    EXPECT_TRUE(agent_->called("StartContainer c1"));
    EXPECT_EQ(service_->state(sr).status(), containerd::v1::types::RUNNING);

    agent_->exitProcess("c1/c1", 3, {"hel", "lo\n"});
    waiter.join();
    EXPECT_EQ(waited.exit_status(), 3u);
    EXPECT_GT(waited.exited_at().seconds(), 0);
    // Every byte reached the FIFO before the exit was reported, and the FIFO is closed.
    EXPECT_EQ(readAll(outFd), "hello\n");
    ::close(outFd);
    ::close(errFd);
    auto st2 = service_->state(sr);
    EXPECT_EQ(st2.status(), containerd::v1::types::STOPPED);
    EXPECT_EQ(st2.exit_status(), 3u);

    task::KillRequest k;
    k.set_id("c1");
    k.set_signal(9);
    expectCode(StatusCode::kNotFound, [&] { service_->kill(k); });

    task::DeleteRequest d;
    d.set_id("c1");
    auto del = service_->remove(d);
    EXPECT_EQ(del.exit_status(), 3u);
    EXPECT_TRUE(agent_->called("RemoveContainer c1"));
    EXPECT_TRUE(agent_->called("DestroySandbox"));
    EXPECT_TRUE(vm_->stopped);
    EXPECT_FALSE(fs::exists(paths_.sandboxStateDir("c1")));
    EXPECT_FALSE(fs::exists(paths_.sandboxShareRoot("c1")));
    EXPECT_TRUE(mountsUnder(tmp_).empty());
    EXPECT_EQ(service_->containerCount(), 0u);

    auto topicsSeen = events_->seen();
    EXPECT_EQ(topicsSeen, (std::vector<std::string>{"/tasks/create", "/tasks/start", "/tasks/exit",
                                                    "/tasks/delete"}));
    ASSERT_EQ(events_->exits.size(), 1u);
    EXPECT_EQ(events_->exits[0].container_id(), "c1");
    EXPECT_EQ(events_->exits[0].id(), "c1");
    EXPECT_EQ(events_->exits[0].exit_status(), 3u);

    expectCode(StatusCode::kNotFound, [&] { service_->state(sr); });
}

TEST_F(TaskServiceTest, StatusCodesContainerdRelieson) {
    service_->create(createReq("c1"));
    expectCode(StatusCode::kAlreadyExists, [&] { service_->create(createReq("c1")); });
    task::StartRequest start;
    start.set_id("nope");
    expectCode(StatusCode::kNotFound, [&] { service_->start(start); });
    start.set_id("c1");
    service_->start(start);
    expectCode(StatusCode::kFailedPrecondition, [&] { service_->start(start); });
    task::DeleteRequest d;
    d.set_id("c1");
    expectCode(StatusCode::kFailedPrecondition, [&] { service_->remove(d); });

    task::KillRequest k;
    k.set_id("c1");
    k.set_signal(15);
    service_->kill(k);
    EXPECT_TRUE(agent_->called("SignalProcess c1/c1 15"));
    k.set_all(true);
    k.set_signal(9);
    service_->kill(k);
    EXPECT_TRUE(agent_->called("SignalProcess c1/ 9"));

    task::StatsRequest s;
    s.set_id("c1");
    EXPECT_EQ(service_->stats(s).stats().type_url(), "io.containerd.cgroups.v1.Metrics");
    s.set_id("nope");
    expectCode(StatusCode::kNotFound, [&] { service_->stats(s); });

    agent_->exitProcess("c1/c1", 137);
    task::WaitRequest w;
    w.set_id("c1");
    EXPECT_EQ(service_->wait(w).exit_status(), 137u);
    service_->remove(d);
}

TEST_F(TaskServiceTest, ExecStdinPauseResume) {
    service_->create(createReq("c1"));
    task::StartRequest start;
    start.set_id("c1");
    service_->start(start);

    // An exec with its own FIFOs; containerd writes stdin and closes it.
    for (auto f : {"e-in", "e-out"}) ASSERT_EQ(::mkfifo((tmp_ + "/" + f).c_str(), 0600), 0);
    int outFd = ::open((tmp_ + "/e-out").c_str(), O_RDONLY | O_NONBLOCK);
    task::ExecProcessRequest ex;
    ex.set_id("c1");
    ex.set_exec_id("e1");
    ex.set_stdin(tmp_ + "/e-in");
    ex.set_stdout(tmp_ + "/e-out");
    ex.mutable_spec()->set_type_url("types.containerd.io/opencontainers/runtime-spec/1/Process");
    ex.mutable_spec()->set_value(R"({"args": ["head", "-n1"], "cwd": "/", "env": ["A=b"]})");
    service_->exec(ex);
    expectCode(StatusCode::kAlreadyExists, [&] { service_->exec(ex); });

    task::StartRequest es;
    es.set_id("c1");
    es.set_exec_id("e1");
    service_->start(es);
    EXPECT_EQ(agent_->execReq.process().args(1), "-n1");
    EXPECT_EQ(agent_->execReq.process().env(0), "A=b");

    int inFd = ::open((tmp_ + "/e-in").c_str(), O_WRONLY);
    ASSERT_GE(inFd, 0);
    ASSERT_EQ(::write(inFd, "hi\n", 3), 3);
    ::close(inFd);
    task::CloseIORequest cio;
    cio.set_id("c1");
    cio.set_exec_id("e1");
    cio.set_stdin(true);
    service_->closeIO(cio);
    ASSERT_TRUE(agent_->waitForCall("CloseStdin c1/e1"));
    {
        std::lock_guard<std::mutex> lk(agent_->mu);
        EXPECT_EQ(agent_->stdinData["c1/e1"], "hi\n");
    }
    agent_->exitProcess("c1/e1", 0, {"hi\n"});
    task::WaitRequest w;
    w.set_id("c1");
    w.set_exec_id("e1");
    EXPECT_EQ(service_->wait(w).exit_status(), 0u);
    EXPECT_EQ(readAll(outFd), "hi\n");
    ::close(outFd);
    task::DeleteRequest de;
    de.set_id("c1");
    de.set_exec_id("e1");
    service_->remove(de);
    expectCode(StatusCode::kNotFound, [&] { service_->wait(w); });

    task::PauseRequest p;
    p.set_id("c1");
    service_->pause(p);
    task::StateRequest sr;
    sr.set_id("c1");
    EXPECT_EQ(service_->state(sr).status(), containerd::v1::types::PAUSED);
    task::ResumeRequest r;
    r.set_id("c1");
    service_->resume(r);
    EXPECT_EQ(service_->state(sr).status(), containerd::v1::types::RUNNING);

    auto seen = events_->seen();
    for (auto t : {"/tasks/exec-added", "/tasks/exec-started", "/tasks/paused", "/tasks/resumed"}) {
        EXPECT_NE(std::find(seen.begin(), seen.end(), t), seen.end()) << t;
    }
    agent_->exitProcess("c1/c1", 0);
}

TEST_F(TaskServiceTest, FailedVmStartLeavesNothingBehind) {
    makeService("start VM: kernel /nope/vmlinux: No such file or directory (ENOENT)");
    try {
        service_->create(createReq("c1"));
        FAIL() << "create succeeded without a VM";
    } catch (const Error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("create task c1"), std::string::npos) << msg;
        EXPECT_NE(msg.find("/nope/vmlinux"), std::string::npos) << msg;
    }
    EXPECT_FALSE(fs::exists(paths_.sandboxStateDir("c1")));
    EXPECT_FALSE(fs::exists(paths_.sandboxShareRoot("c1")));
    EXPECT_TRUE(mountsUnder(tmp_).empty());
    EXPECT_EQ(service_->containerCount(), 0u);
}

TEST_F(TaskServiceTest, VmDeathEndsRunningProcessesWithNonZeroStatus) {
    service_->create(createReq("c1"));
    task::StartRequest start;
    start.set_id("c1");
    service_->start(start);
    ASSERT_TRUE(vm_->exitCb);
    vm_->exitCb("qemu exited with signal 9");
    task::WaitRequest w;
    w.set_id("c1");
    EXPECT_EQ(service_->wait(w).exit_status(), 255u);
    ASSERT_EQ(events_->exits.size(), 1u);
    // containerd's delete kills with all=true first and ignores only NotFound.
    task::KillRequest k;
    k.set_id("c1");
    k.set_signal(9);
    k.set_all(true);
    expectCode(StatusCode::kNotFound, [&] { service_->kill(k); });
    task::DeleteRequest d;
    d.set_id("c1");
    service_->remove(d);
    EXPECT_FALSE(fs::exists(paths_.sandboxStateDir("c1")));
    EXPECT_TRUE(mountsUnder(tmp_).empty());
}

TEST_F(TaskServiceTest, ShutdownWaitsForTheLastContainer) {
    bool down = false;
    service_->setShutdownHandler([&] { down = true; });
    service_->create(createReq("c1"));
    task::ShutdownRequest s;
    service_->shutdown(s);
    EXPECT_FALSE(down);
    task::DeleteRequest d;
    d.set_id("c1");
    service_->remove(d);
    service_->shutdown(s);
    EXPECT_TRUE(down);
    expectCode(StatusCode::kFailedPrecondition, [&] { service_->create(createReq("c2")); });
}

TEST_F(TaskServiceTest, CriContainerJoinsTheSandboxVm) {
    // The pod sandbox (pause) container, then an app container of the same pod.
    auto writeSpec = [&](const std::string& bundle, const std::string& type) {
        fs::create_directories(bundle + "/rootfs");
        std::ofstream(bundle + "/config.json")
            << R"({"ociVersion": "1.0.2", "process": {"args": ["x"], "cwd": "/"},
                   "root": {"path": "rootfs"}, "hostname": "web-1",
                   "linux": {"namespaces": [{"type": "network", "path": "/var/run/netns/cni-1"},
                     {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]},
                   "annotations": {"io.kubernetes.cri.container-type": ")"
            << type << R"(", "io.kubernetes.cri.sandbox-id": "pod1"}})";
    };
    writeSpec(tmp_ + "/b-pod1", "sandbox");
    writeSpec(tmp_ + "/b-app", "container");
    auto pod = createReq("pod1");
    pod.set_bundle(tmp_ + "/b-pod1");
    auto app = createReq("app");
    app.set_bundle(tmp_ + "/b-app");

    // An app container whose sandbox does not run here is refused.
    expectCode(StatusCode::kFailedPrecondition, [&] { service_->create(app); });
    EXPECT_FALSE(vm_->started);

    service_->create(pod);
    // The pod network is attached in the pod's netns before the VM boots, the NIC is
    // cold-plugged, and the agent hears about it before CreateSandbox, in Kata's order.
    ASSERT_EQ(net_->attached, std::vector<std::string>{"/var/run/netns/cni-1"});
    ASSERT_EQ(vm_->spec.nics.size(), 1u);
    EXPECT_EQ(vm_->spec.nics[0].mac, "02:00:0a:01:00:05");
    {
        std::lock_guard<std::mutex> lk(agent_->mu);
        std::vector<std::string> want = {"UpdateInterface eth0 02:00:0a:01:00:05", "UpdateRoutes 1",
                                         "AddARPNeighbors 1", "CreateSandbox"};
        auto first = std::find(agent_->calls.begin(), agent_->calls.end(), want[0]);
        ASSERT_NE(first, agent_->calls.end());
        EXPECT_EQ(std::vector<std::string>(first, first + 4), want);
    }
    EXPECT_EQ(agent_->sandboxReq.hostname(), "web-1");
    EXPECT_TRUE(agent_->sandboxReq.sandbox_pidns());
    service_->create(app);
    EXPECT_EQ(agent_->containerReq.container_id(), "app");
    EXPECT_EQ(net_->attached.size(), 1u) << "a pod's containers share its network";
    EXPECT_TRUE(fs::is_directory(paths_.containerRootfsHost("pod1", "app")));
    {
        std::lock_guard<std::mutex> lk(agent_->mu);
        EXPECT_EQ(std::count(agent_->calls.begin(), agent_->calls.end(), "CreateSandbox"), 1);
    }
    auto state = loadState(paths_, "pod1");
    ASSERT_TRUE(state.has_value());
    EXPECT_EQ(state->containers.size(), 2u);

    task::DeleteRequest d;
    d.set_id("app");
    service_->remove(d);
    EXPECT_FALSE(vm_->stopped) << "the VM must outlive a pod's app container";
    EXPECT_FALSE(fs::exists(paths_.containerRootfsHost("pod1", "app")));
    EXPECT_EQ(net_->detached, 0);
    d.set_id("pod1");
    service_->remove(d);
    EXPECT_TRUE(vm_->stopped);
    EXPECT_EQ(net_->detached, 1);
    EXPECT_FALSE(fs::exists(paths_.sandboxStateDir("pod1")));
}

TEST_F(TaskServiceTest, PodAskingForHostNamespacesIsRefusedNamingTheOption) {
    struct Case {
        const char* namespaces;
        const char* option;
    };
    for (const Case& c : {Case{R"([{"type": "pid"}, {"type": "ipc"}])", "hostNetwork"},
                          Case{R"([{"type": "network"}, {"type": "ipc"}])", "hostPID"},
                          Case{R"([{"type": "network"}, {"type": "pid"}])", "hostIPC"}}) {
        const std::string bundle = tmp_ + "/b-host-" + c.option;
        fs::create_directories(bundle + "/rootfs");
        std::ofstream(bundle + "/config.json")
            << R"({"ociVersion": "1.0.2", "process": {"args": ["x"], "cwd": "/"},
                   "root": {"path": "rootfs"}, "linux": {"namespaces": )"
            << c.namespaces << R"(}, "annotations": {"io.kubernetes.cri.container-type": "sandbox",
                   "io.kubernetes.cri.sandbox-name": "web", "io.kubernetes.cri.sandbox-namespace": "default"}})";
        auto req = createReq("podh");
        req.set_bundle(bundle);
        try {
            service_->create(req);
            ADD_FAILURE() << c.option << " was accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), StatusCode::kInvalidArgument);
            EXPECT_NE(std::string(e.what()).find(c.option), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("default/web"), std::string::npos) << e.what();
        }
        EXPECT_FALSE(vm_->started);
        EXPECT_TRUE(net_->attached.empty());
        EXPECT_FALSE(fs::exists(paths_.sandboxStateDir("podh")));
        EXPECT_EQ(service_->containerCount(), 0u);
    }
}

TEST_F(TaskServiceTest, EnableDebugRaisesTheLogLevelAndPutsAgentLogDebugOnTheKernelLine) {
    kata::log::setLevel(kata::log::Level::kInfo);
    configText_ =
        "[hypervisor.qemu]\nmsize_9p = 8192\n"
        "[agent.kata]\nenable_debug = true\n"
        "[runtime]\nenable_debug = true\n";
    makeService("");
    service_->create(createReq("dbg"));
    task::DeleteRequest d;
    d.set_id("dbg");
    EXPECT_NE(vm_->spec.extraKernelParams.find("agent.log=debug"), std::string::npos)
        << vm_->spec.extraKernelParams;
    EXPECT_EQ(kata::log::level(), kata::log::Level::kDebug);
    kata::log::setLevel(kata::log::Level::kInfo);
    service_->remove(d);
}

TEST_F(TaskServiceTest, WithoutEnableDebugTheAgentLogsAtItsDefault) {
    kata::log::setLevel(kata::log::Level::kInfo);
    configText_ = "[hypervisor.qemu]\nmsize_9p = 8192\n[agent.kata]\ndial_timeout = 5\n";
    makeService("");
    service_->create(createReq("nodbg"));
    task::DeleteRequest d;
    d.set_id("nodbg");
    EXPECT_EQ(vm_->spec.extraKernelParams.find("agent.log="), std::string::npos)
        << vm_->spec.extraKernelParams;
    EXPECT_EQ(kata::log::level(), kata::log::Level::kInfo);
    service_->remove(d);
}

TEST_F(TaskServiceTest, EnableTemplateMakesATemplateOnceAndRestoresSandboxesFromIt) {
    const std::string tpl = tmp_ + "/factory";
    configText_ =
        "[hypervisor.qemu]\nmsize_9p = 8192\n[factory]\nenable_template = true\n"
        "template_path = \"" +
        tpl + "\"\n";
    makeService("");
    service_->create(createReq("t1"));
    // The template VM: no sandbox state, its own run dir and an empty share of its own.
    ASSERT_EQ(vm_->specs.size(), 2u);
    EXPECT_EQ(vm_->specs[0].runDir, tpl + "/vm");
    EXPECT_EQ(vm_->specs[0].sharedDir, tpl + "/shared");
    EXPECT_TRUE(vm_->specs[0].templateState.empty());
    EXPECT_EQ(vm_->templatesSaved, std::vector<std::string>{"template"});
    EXPECT_TRUE(fs::is_empty(tpl + "/shared"));
    // The sandbox VM restores from it with its own run dir and share.
    EXPECT_EQ(vm_->specs[1].templateState, tpl + "/state");
    EXPECT_EQ(vm_->specs[1].runDir, paths_.vmRunDir("t1"));
    EXPECT_EQ(vm_->specs[1].sharedDir, paths_.sharedDir("t1"));
    // Clock and RNG refreshed before the sandbox is created in the guest.
    auto pos = [&](const std::string& c) {
        return std::find(agent_->calls.begin(), agent_->calls.end(), c) - agent_->calls.begin();
    };
    EXPECT_LT(pos("SetGuestDateTime"), pos("CreateSandbox"));
    EXPECT_LT(pos("ReseedRandomDev"), pos("CreateSandbox"));
    EXPECT_NEAR(agent_->guestSec, ::time(nullptr), 5);
    EXPECT_EQ(agent_->seed.size(), 64u);
    task::DeleteRequest d;
    d.set_id("t1");
    service_->remove(d);

    // A second shim finds the template and only restores.
    makeService("");
    service_->create(createReq("t2"));
    ASSERT_EQ(vm_->specs.size(), 3u);
    EXPECT_EQ(vm_->specs[2].templateState, tpl + "/state");
    EXPECT_EQ(vm_->templatesSaved.size(), 1u);
    d.set_id("t2");
    service_->remove(d);

    // Another guest configuration (here: memory) does not restore the old state: it is remade.
    configText_ =
        "[hypervisor.qemu]\nmsize_9p = 8192\ndefault_memory = 300\n"
        "[factory]\nenable_template = true\ntemplate_path = \"" +
        tpl + "\"\n";
    makeService("");
    service_->create(createReq("t3"));
    ASSERT_EQ(vm_->specs.size(), 5u);
    EXPECT_TRUE(vm_->specs[3].templateState.empty());
    EXPECT_EQ(vm_->specs[4].templateState, tpl + "/state");
    EXPECT_EQ(vm_->templatesSaved.size(), 2u);
    d.set_id("t3");
    service_->remove(d);

    destroyTemplate(tpl);
    EXPECT_FALSE(fs::exists(tpl));
}

TEST_F(TaskServiceTest, WithoutEnableTemplateTheVmBoots) {
    makeService("");
    service_->create(createReq("b1"));
    ASSERT_EQ(vm_->specs.size(), 1u);
    EXPECT_TRUE(vm_->specs[0].templateState.empty());
    EXPECT_FALSE(agent_->called("SetGuestDateTime"));
    task::DeleteRequest d;
    d.set_id("b1");
    service_->remove(d);
}

TEST_F(TaskServiceTest, GuestOomKillsArePublishedAsTaskOomEvents) {
    service_->create(createReq("c1"));
    agent_->oom("c1");
    bool seen = false;
    for (int i = 0; i < 100 && !seen; ++i) {
        auto topics = events_->seen();
        seen = std::find(topics.begin(), topics.end(), topics::kTaskOOM) != topics.end();
        if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(seen) << "no /tasks/oom event after the agent reported an OOM kill";
    task::DeleteRequest d;
    d.set_id("c1");
    service_->remove(d);  // the watcher ends with the agent connection
    EXPECT_TRUE(vm_->stopped);
}
