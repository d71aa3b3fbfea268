#include "task_service.h"

#include <google/protobuf/empty.pb.h>
#include <unistd.h>

#include <filesystem>

#include "containerd/events/task.pb.h"
#include "kata/common/error.h"
#include "kata/common/version.h"
#include "kata/oci/spec.h"
#include "kata/ttrpc/ttrpc.h"
#include "options.h"
#include "pod.h"
#include "stats.h"
#include "timing.h"

namespace kata::shim {

namespace fs = std::filesystem;
namespace ev = containerd::events;
using containerd::v1::types::Status;

namespace {
constexpr auto kDrainTimeout = std::chrono::seconds(5);
constexpr uint32_t kVmLostStatus = 255;
}  // namespace

struct TaskService::Proc {
    std::string cid;
    std::string execId;       // containerd's; "" for the init process
    std::string agentExecId;  // the agent's: the container id for the init process
    StdioPaths stdio;
    grpc::Process execSpec;  // exec processes only
    Status status = Status::CREATED;
    uint32_t pid = 0;
    bool started = false;
    bool exited = false;
    uint32_t exitStatus = 0;
    google::protobuf::Timestamp exitedAt;
    std::unique_ptr<ProcessIo> io;
};

// containerd's view of one container: its processes; the guest side is the Container.
struct TaskService::Task {
    std::string id;
    std::string bundle;
    std::shared_ptr<Container> ctr;
    std::shared_ptr<Proc> init;
    std::map<std::string, std::shared_ptr<Proc>> execs;
    bool paused = false;
};

TaskService::TaskService(TaskServiceOptions opts, SandboxDeps deps,
                         std::shared_ptr<EventPublisher> events)
    : opts_(std::move(opts)),
      deps_(std::move(deps)),
      events_(std::move(events)),
      log_(log::Logger("task-service")) {
    if (!opts_.loadConfig) {
        std::string name = opts_.shimName;
        opts_.loadConfig = [name](const std::string& explicitPath) {
            return config::loadConfig(config::resolveConfigPath(explicitPath, name));
        };
    }
}

TaskService::~TaskService() {
    stopSandbox();
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, std::chrono::seconds(5), [&] { return waitersRunning_ == 0; });
}

void TaskService::setShutdownHandler(std::function<void()> fn) {
    std::lock_guard<std::mutex> lk(mu_);
    onShutdown_ = std::move(fn);
}

size_t TaskService::containerCount() const {
    std::lock_guard<std::mutex> lk(mu_);
    return tasks_.size();
}

TaskService::Task& TaskService::findTask(const std::string& cid) {
    auto it = tasks_.find(cid);
    if (it == tasks_.end()) {
        throw Error(StatusCode::kNotFound, "container " + cid + ": not found");
    }
    return *it->second;
}

std::shared_ptr<Container> TaskService::containerOf(const std::string& cid) {
    std::lock_guard<std::mutex> lk(mu_);
    return findTask(cid).ctr;
}

std::shared_ptr<TaskService::Proc> TaskService::findProc(const std::string& cid,
                                                         const std::string& execId, Task** task) {
    Task& c = findTask(cid);
    if (task) *task = &c;
    if (execId.empty()) return c.init;
    auto it = c.execs.find(execId);
    if (it == c.execs.end()) {
        throw Error(StatusCode::kNotFound,
                    "exec " + execId + " in container " + cid + ": not found");
    }
    return it->second;
}

void TaskService::persistLocked() {
    if (!sandbox_) return;
    SandboxState s;
    s.sandboxId = sandbox_->id();
    s.ns = opts_.ns;
    s.vmRunDir = sandbox_->vmRunDir();
    s.shareRoot = opts_.paths.sandboxShareRoot(s.sandboxId);
    s.hypervisorPid = sandbox_->vmPid();
    s.netnsPath = netnsPath_;
    s.hostCgroupPath = hostCgroupPath_;
    for (const auto& [id, c] : tasks_) {
        ContainerState cs;
        cs.id = id;
        cs.bundle = c->bundle;
        cs.mounts = c->ctr->hostPaths();
        s.containers[id] = cs;
    }
    try {
        saveState(opts_.paths, s);
    } catch (const Error& e) {
        log_.with("sandbox", s.sandboxId).warn(std::string("persist sandbox state: ") + e.what());
    }
}

void TaskService::stopSandbox() {
    std::shared_ptr<Sandbox> sb;
    {
        std::lock_guard<std::mutex> lk(mu_);
        sb = std::move(sandbox_);
    }
    if (!sb) return;
    sb->stop();
    try {
        removeState(opts_.paths, sb->id());
    } catch (const Error& e) {
        log_.with("sandbox", sb->id()).warn(std::string("remove sandbox state: ") + e.what());
    }
}

task::CreateTaskResponse TaskService::create(const task::CreateTaskRequest& req) {
    std::lock_guard<std::mutex> createLk(createMu_);
    const std::string& id = req.id();
    log::Logger log = log_.with("container", id);
    StepTimer total;
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (tasks_.count(id)) {
            throw Error(StatusCode::kAlreadyExists, "create task " + id + ": already exists");
        }
        if (shutdownRequested_) {
            throw Error(StatusCode::kFailedPrecondition,
                        "create task " + id + ": the shim is shutting down");
        }
    }
    try {
        grpc::Spec spec = oci::loadSpecFile(req.bundle() + "/config.json");
        const PodInfo pod = podInfoFromSpec(spec, id);
        const std::string& sid = pod.sandboxId;
        log = log.with("sandbox", sid);
        refuseHostNamespaces(spec, pod, id);

        std::shared_ptr<Sandbox> sb;
        {
            std::lock_guard<std::mutex> lk(mu_);
            sb = sandbox_;
        }
        bool createdSandbox = false;
        if (!sb) {
            if (pod.role == PodRole::kContainer) {
                throw Error(StatusCode::kFailedPrecondition,
                            "sandbox " + sid + " does not run in this shim");
            }
            std::string explicitPath =
                req.has_options() ? configPathFromOptions(req.options()) : "";
            config::RuntimeConfig cfg = opts_.loadConfig(explicitPath);
            config::applyStaticSandboxSizing(cfg, pod.resources);
            if (opts_.debug || cfg.runtime.enableDebug) log::setLevel(log::Level::kDebug);
            log.with("config", cfg.path)
                .with("vcpus", std::to_string(cfg.hypervisor.defaultVcpus))
                .with("memory-mib", std::to_string(cfg.hypervisor.defaultMemoryMiB))
                .info("loaded configuration");
            for (const auto& w : cfg.warnings) log.warn("configuration " + cfg.path + ": " + w);
            log::setGlobalField("sandbox", sid);

            sb = std::make_shared<Sandbox>(sid, std::move(cfg), opts_.paths, deps_);
            sb->setOomHandler([this](const std::string& cid) {
                // containerd's CRI marks the container's exit reason OOMKilled on this event.
                ev::TaskOOM e;
                e.set_container_id(cid);
                events_->publish(topics::kTaskOOM, e);
            });
            sb->setVmExitHandler([log](const std::string& reason) {
                log.error("the VM is gone; running processes exit with status 255: " + reason);
            });
            {
                std::lock_guard<std::mutex> lk(mu_);
                sandbox_ = sb;
                netnsPath_ = pod.netnsPath;
                if (sb->config().runtime.sandboxCgroupOnly && spec.has_linux())
                    hostCgroupPath_ = spec.linux().cgroupspath();
                persistLocked();  // so `delete` finds the run dir if we die while booting
            }
            SandboxSetup setup;
            setup.netnsPath = pod.netnsPath;
            setup.hostname = pod.hostname;
            if (sb->config().runtime.sandboxCgroupOnly && spec.has_linux())
                setup.cgroupsPath = spec.linux().cgroupspath();
            if (pod.role == PodRole::kSandbox) {
                setup.dns = dnsLinesFromSpec(spec);
                setup.sandboxPidns = true;  // workload containers may share the pause's
            }
            try {
                sb->start(setup);
            } catch (...) {
                stopSandbox();
                throw;
            }
            createdSandbox = true;
        }

        try {
            auto c = std::make_unique<Task>();
            c->id = id;
            c->bundle = req.bundle();
            ContainerSetup cs;
            cs.id = id;
            cs.bundle = req.bundle();
            cs.rootfs.assign(req.rootfs().begin(), req.rootfs().end());
            cs.spec = std::move(spec);
            cs.sharesPodPidns = pod.sharesPodPidns;
            c->ctr = sb->createContainer(cs);

            auto p = std::make_shared<Proc>();
            p->cid = id;
            p->agentExecId = id;
            p->stdio = {req.stdin(), req.stdout(), req.stderr(), req.terminal()};
            p->pid = static_cast<uint32_t>(sb->vmPid());
            c->init = p;
            {
                std::lock_guard<std::mutex> lk(mu_);
                tasks_[id] = std::move(c);
                persistLocked();
            }
            total.done(log.with("pid", std::to_string(p->pid)), "create-task", "container created");

            ev::TaskCreate e;
            e.set_container_id(id);
            e.set_bundle(req.bundle());
            *e.mutable_rootfs() = req.rootfs();
            e.mutable_io()->set_stdin(req.stdin());
            e.mutable_io()->set_stdout(req.stdout());
            e.mutable_io()->set_stderr(req.stderr());
            e.mutable_io()->set_terminal(req.terminal());
            e.set_checkpoint(req.checkpoint());
            e.set_pid(p->pid);
            events_->publish(topics::kTaskCreate, e);

            task::CreateTaskResponse resp;
            resp.set_pid(p->pid);
            return resp;
        } catch (...) {
            if (createdSandbox) stopSandbox();
            throw;
        }
    } catch (const Error& e) {
        log.error(std::string("create task failed: ") + e.what());
        throw Error(e.code(), "create task " + id + ": " + e.what());
    }
}

void TaskService::startWaiter(const std::shared_ptr<Proc>& p) {
    std::shared_ptr<Container> ctr;
    {
        std::lock_guard<std::mutex> lk(mu_);
        auto it = tasks_.find(p->cid);
        if (it != tasks_.end()) ctr = it->second->ctr;
        ++waitersRunning_;
    }
    std::thread([this, p, ctr] {
        log::Logger log = log_.with("container", p->cid).with("exec", p->execId);
        StepTimer waited;
        uint32_t status = kVmLostStatus;
        try {
            if (!ctr) throw Error(StatusCode::kUnavailable, "container gone");
            int32_t st = ctr->wait(p->agentExecId);
            status = st < 0 ? kVmLostStatus : static_cast<uint32_t>(st);
        } catch (const Error& e) {
            log.warn(std::string("wait for process: ") + e.what());
        }
        if (p->io && !p->io->waitOutputDrained(kDrainTimeout)) {
            log.warn("process output not drained within 5s after exit");
        }
        ev::TaskExit e;
        {
            std::lock_guard<std::mutex> lk(mu_);
            p->exited = true;
            p->exitStatus = status;
            p->exitedAt = nowTimestamp();
            p->status = Status::STOPPED;
            e.set_container_id(p->cid);
            e.set_id(p->execId.empty() ? p->cid : p->execId);
            e.set_pid(p->pid);
            e.set_exit_status(p->exitStatus);
            *e.mutable_exited_at() = p->exitedAt;
        }
        waited.done(log.with("exit-status", std::to_string(status)), "wait", "process exited");
        events_->publish(topics::kTaskExit, e);
        std::lock_guard<std::mutex> lk(mu_);
        cv_.notify_all();
        --waitersRunning_;
    }).detach();
}

task::StartResponse TaskService::start(const task::StartRequest& req) {
    std::shared_ptr<Proc> p;
    std::shared_ptr<Container> ctr;
    std::shared_ptr<Sandbox> sb;
    {
        std::lock_guard<std::mutex> lk(mu_);
        Task* t = nullptr;
        p = findProc(req.id(), req.exec_id(), &t);
        if (p->started) {
            throw Error(StatusCode::kFailedPrecondition,
                        "start " + req.id() + (req.exec_id().empty() ? "" : "/" + req.exec_id()) +
                            ": already started");
        }
        ctr = t->ctr;
        sb = sandbox_;
    }
    if (!sb) throw Error(StatusCode::kFailedPrecondition, "start " + req.id() + ": no sandbox");
    StepTimer step;
    if (req.exec_id().empty()) {
        ctr->start();
        step.done(log_.with("container", req.id()), "start-container",
                  "container started in the guest");
    } else {
        ctr->exec(req.exec_id(), p->execSpec);
    }
    auto io = ctr->openIo(p->agentExecId, p->stdio);
    try {
        io->start();
    } catch (const Error& e) {
        log_.with("container", req.id()).error(std::string("start io copiers: ") + e.what());
    }
    uint32_t pid;
    {
        std::lock_guard<std::mutex> lk(mu_);
        p->io = std::move(io);
        p->started = true;
        p->status = Status::RUNNING;
        p->pid = static_cast<uint32_t>(sb->vmPid());
        pid = p->pid;
    }
    startWaiter(p);
    if (req.exec_id().empty()) {
        ev::TaskStart e;
        e.set_container_id(req.id());
        e.set_pid(pid);
        events_->publish(topics::kTaskStart, e);
    } else {
        ev::TaskExecStarted e;
        e.set_container_id(req.id());
        e.set_exec_id(req.exec_id());
        e.set_pid(pid);
        events_->publish(topics::kTaskExecStarted, e);
    }
    log_.with("container", req.id()).with("exec", req.exec_id()).info("process started");
    task::StartResponse resp;
    resp.set_pid(pid);
    return resp;
}

task::DeleteResponse TaskService::remove(const task::DeleteRequest& req) {
    task::DeleteResponse resp;
    std::unique_ptr<Task> gone;
    std::shared_ptr<Sandbox> sb;
    bool last = false;
    {
        std::lock_guard<std::mutex> lk(mu_);
        Task* c = nullptr;
        auto p = findProc(req.id(), req.exec_id(), &c);
        if (p->started && !p->exited) {
            throw Error(StatusCode::kFailedPrecondition,
                        "delete " + req.id() + (req.exec_id().empty() ? "" : "/" + req.exec_id()) +
                            ": process is still running");
        }
        if (!p->started && !p->exited) {
            p->exited = true;
            p->exitedAt = nowTimestamp();
            p->status = Status::STOPPED;
            cv_.notify_all();
        }
        resp.set_pid(p->pid);
        resp.set_exit_status(p->exitStatus);
        *resp.mutable_exited_at() = p->exitedAt;
        if (!req.exec_id().empty()) {
            c->execs.erase(req.exec_id());
            return resp;
        }
        for (auto& [eid, ep] : c->execs) {
            if (!ep->exited) {
                log_.with("container", req.id())
                    .with("exec", eid)
                    .warn("exec still running while its container is deleted");
            }
        }
        auto it = tasks_.find(req.id());
        gone = std::move(it->second);
        tasks_.erase(it);
        persistLocked();
        last = tasks_.empty();
        sb = sandbox_;
    }
    log::Logger log = log_.with("container", req.id());
    StepTimer step;
    gone->ctr->destroy(sb && sb->vmAlive());

    ev::TaskDelete e;
    e.set_container_id(req.id());
    e.set_id(req.id());
    e.set_pid(resp.pid());
    e.set_exit_status(resp.exit_status());
    *e.mutable_exited_at() = resp.exited_at();
    events_->publish(topics::kTaskDelete, e);
    step.done(log, "delete-container", "container deleted");
    if (last) {
        log.info("last container gone: stopping the sandbox");
        stopSandbox();
    }
    return resp;
}

void TaskService::exec(const task::ExecProcessRequest& req) {
    grpc::Process spec = oci::processFromJson(req.spec().value());
    spec.set_terminal(req.terminal());
    {
        std::lock_guard<std::mutex> lk(mu_);
        Task& c = findTask(req.id());
        if (!c.init->started || c.init->exited) {
            throw Error(StatusCode::kFailedPrecondition,
                        "exec " + req.exec_id() + " in container " + req.id() + ": not running");
        }
        if (req.exec_id().empty() || c.execs.count(req.exec_id()) || req.exec_id() == req.id()) {
            throw Error(StatusCode::kAlreadyExists,
                        "exec " + req.exec_id() + " in container " + req.id() + ": already exists");
        }
        auto p = std::make_shared<Proc>();
        p->cid = req.id();
        p->execId = req.exec_id();
        p->agentExecId = req.exec_id();
        p->stdio = {req.stdin(), req.stdout(), req.stderr(), req.terminal()};
        p->execSpec = spec;
        c.execs[req.exec_id()] = p;
    }
    ev::TaskExecAdded e;
    e.set_container_id(req.id());
    e.set_exec_id(req.exec_id());
    events_->publish(topics::kTaskExecAdded, e);
}

task::StateResponse TaskService::state(const task::StateRequest& req) {
    std::lock_guard<std::mutex> lk(mu_);
    Task* c = nullptr;
    auto p = findProc(req.id(), req.exec_id(), &c);
    task::StateResponse r;
    r.set_id(req.id());
    r.set_exec_id(req.exec_id());
    r.set_bundle(c->bundle);
    r.set_pid(p->pid);
    r.set_status(c->paused && !p->exited ? Status::PAUSED : p->status);
    r.set_stdin(p->stdio.stdinPath);
    r.set_stdout(p->stdio.stdoutPath);
    r.set_stderr(p->stdio.stderrPath);
    r.set_terminal(p->stdio.terminal);
    if (p->exited) {
        r.set_exit_status(p->exitStatus);
        *r.mutable_exited_at() = p->exitedAt;
    }
    return r;
}

task::PidsResponse TaskService::pids(const task::PidsRequest& req) {
    std::lock_guard<std::mutex> lk(mu_);
    findTask(req.id());
    task::PidsResponse r;
    // The container's processes live in the guest; the host only has the VM.
    if (sandbox_) r.add_processes()->set_pid(static_cast<uint32_t>(sandbox_->vmPid()));
    return r;
}

void TaskService::pause(const task::PauseRequest& req) {
    containerOf(req.id())->pause();
    {
        std::lock_guard<std::mutex> lk(mu_);
        findTask(req.id()).paused = true;
    }
    ev::TaskPaused e;
    e.set_container_id(req.id());
    events_->publish(topics::kTaskPaused, e);
}

void TaskService::resume(const task::ResumeRequest& req) {
    containerOf(req.id())->resume();
    {
        std::lock_guard<std::mutex> lk(mu_);
        findTask(req.id()).paused = false;
    }
    ev::TaskResumed e;
    e.set_container_id(req.id());
    events_->publish(topics::kTaskResumed, e);
}

void TaskService::kill(const task::KillRequest& req) {
    std::shared_ptr<Container> ctr;
    std::string agentExecId;
    {
        std::lock_guard<std::mutex> lk(mu_);
        Task* t = nullptr;
        auto p = findProc(req.id(), req.exec_id(), &t);
        // containerd's delete kills with all=true first and ignores NotFound: a finished
        // process, or one whose VM is gone, must answer that rather than fail the delete.
        const bool vmGone = !sandbox_ || !sandbox_->vmAlive();
        if (p->exited || vmGone) {
            throw Error(StatusCode::kNotFound,
                        "kill " + req.id() + (req.exec_id().empty() ? "" : "/" + req.exec_id()) +
                            (vmGone ? ": the VM is gone" : ": process already finished"));
        }
        // An empty exec id makes the agent signal every process of the container.
        agentExecId = req.all() && req.exec_id().empty() ? "" : p->agentExecId;
        ctr = t->ctr;
    }
    ctr->signal(agentExecId, req.signal());
}

void TaskService::resizePty(const task::ResizePtyRequest& req) {
    std::shared_ptr<Container> ctr;
    std::shared_ptr<Proc> p;
    {
        std::lock_guard<std::mutex> lk(mu_);
        Task* t = nullptr;
        p = findProc(req.id(), req.exec_id(), &t);
        if (!p->stdio.terminal || !p->started || p->exited) return;
        ctr = t->ctr;
    }
    ctr->resizePty(p->agentExecId, req.height(), req.width());
}

void TaskService::closeIO(const task::CloseIORequest& req) {
    std::lock_guard<std::mutex> lk(mu_);
    auto p = findProc(req.id(), req.exec_id());
    if (req.stdin() && p->io) p->io->closeStdin();
}

void TaskService::update(const task::UpdateTaskRequest& req) {
    grpc::LinuxResources res = oci::resourcesFromJson(req.resources().value());
    containerOf(req.id())->update(res);
}

task::WaitResponse TaskService::wait(const task::WaitRequest& req) {
    std::unique_lock<std::mutex> lk(mu_);
    auto p = findProc(req.id(), req.exec_id());
    cv_.wait(lk, [&] { return p->exited; });
    task::WaitResponse r;
    r.set_exit_status(p->exitStatus);
    *r.mutable_exited_at() = p->exitedAt;
    return r;
}

task::StatsResponse TaskService::stats(const task::StatsRequest& req) {
    auto ctr = containerOf(req.id());
    task::StatsResponse r;
    *r.mutable_stats() = packMetrics(metricsFromAgentStats(ctr->stats()));
    return r;
}

task::ConnectResponse TaskService::connect(const task::ConnectRequest& req) {
    std::lock_guard<std::mutex> lk(mu_);
    task::ConnectResponse r;
    r.set_shim_pid(static_cast<uint32_t>(::getpid()));
    if (sandbox_) r.set_task_pid(static_cast<uint32_t>(sandbox_->vmPid()));
    r.set_version(versionString());
    return r;
}

void TaskService::shutdown(const task::ShutdownRequest& req) {
    std::function<void()> fn;
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (!tasks_.empty() && !req.now()) return;
        shutdownRequested_ = true;
        fn = onShutdown_;
    }
    stopSandbox();
    if (fn) fn();
}

void registerTaskService(ttrpc::Server& server, TaskService& s) {
    const std::string svc = "containerd.task.v2.Task";
    using Empty = google::protobuf::Empty;
    using Ctx = ttrpc::CallContext;
    server.registerMethod<task::StateRequest, task::StateResponse>(
        svc, "State", [&s](const Ctx&, const task::StateRequest& r) { return s.state(r); });
    server.registerMethod<task::CreateTaskRequest, task::CreateTaskResponse>(
        svc, "Create", [&s](const Ctx&, const task::CreateTaskRequest& r) { return s.create(r); });
    server.registerMethod<task::StartRequest, task::StartResponse>(
        svc, "Start", [&s](const Ctx&, const task::StartRequest& r) { return s.start(r); });
    server.registerMethod<task::DeleteRequest, task::DeleteResponse>(
        svc, "Delete", [&s](const Ctx&, const task::DeleteRequest& r) { return s.remove(r); });
    server.registerMethod<task::PidsRequest, task::PidsResponse>(
        svc, "Pids", [&s](const Ctx&, const task::PidsRequest& r) { return s.pids(r); });
    server.registerMethod<task::PauseRequest, Empty>(svc, "Pause",
                                                     [&s](const Ctx&, const task::PauseRequest& r) {
                                                         s.pause(r);
                                                         return Empty();
                                                     });
    server.registerMethod<task::ResumeRequest, Empty>(
        svc, "Resume", [&s](const Ctx&, const task::ResumeRequest& r) {
            s.resume(r);
            return Empty();
        });
    server.registerMethod<task::CheckpointTaskRequest, Empty>(
        svc, "Checkpoint", [](const Ctx&, const task::CheckpointTaskRequest& r) -> Empty {
            throw Error(StatusCode::kUnimplemented,
                        "checkpoint " + r.id() + ": not supported by the kata shim");
        });
    server.registerMethod<task::KillRequest, Empty>(svc, "Kill",
                                                    [&s](const Ctx&, const task::KillRequest& r) {
                                                        s.kill(r);
                                                        return Empty();
                                                    });
    server.registerMethod<task::ExecProcessRequest, Empty>(
        svc, "Exec", [&s](const Ctx&, const task::ExecProcessRequest& r) {
            s.exec(r);
            return Empty();
        });
    server.registerMethod<task::ResizePtyRequest, Empty>(
        svc, "ResizePty", [&s](const Ctx&, const task::ResizePtyRequest& r) {
            s.resizePty(r);
            return Empty();
        });
    server.registerMethod<task::CloseIORequest, Empty>(
        svc, "CloseIO", [&s](const Ctx&, const task::CloseIORequest& r) {
            s.closeIO(r);
            return Empty();
        });
    server.registerMethod<task::UpdateTaskRequest, Empty>(
        svc, "Update", [&s](const Ctx&, const task::UpdateTaskRequest& r) {
            s.update(r);
            return Empty();
        });
    server.registerMethod<task::WaitRequest, task::WaitResponse>(
        svc, "Wait", [&s](const Ctx&, const task::WaitRequest& r) { return s.wait(r); });
    server.registerMethod<task::StatsRequest, task::StatsResponse>(
        svc, "Stats", [&s](const Ctx&, const task::StatsRequest& r) { return s.stats(r); });
    server.registerMethod<task::ConnectRequest, task::ConnectResponse>(
        svc, "Connect", [&s](const Ctx&, const task::ConnectRequest& r) { return s.connect(r); });
    server.registerMethod<task::ShutdownRequest, Empty>(
        svc, "Shutdown", [&s](const Ctx&, const task::ShutdownRequest& r) {
            s.shutdown(r);
            return Empty();
        });
}

}  // namespace kata::shim
