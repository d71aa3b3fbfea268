// Container lifecycle: create (init blocks before exec), start, exec, signals, freezer,
// resources, stats, OOM events, destroy.
#include "kata/jail/container.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "cgroup.h"
#include "hooks.h"
#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/jail/reaper.h"
#include "namespaces.h"
#include "rootfs.h"
#include "seccomp_filter.h"
#include "spawn.h"
#include "sync.h"
#include "terminal.h"
#include "util.h"

namespace kata::jail {

namespace {
constexpr int kSetupTimeoutMs = 60000;

// Re-throws a kata::Error with the container context in front, keeping its status code.
template <typename F>
auto withContext(const std::string& context, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const Error& e) {
        throw Error(e.code(), context + ": " + e.what());
    }
}

// Without a terminal the process gets pipes: the agent's ends go to io, the child's ends (raised
// out of the way of the fds the child sets up) are returned and named in plan. With a terminal
// nothing is made here: the child sends its pty master during setup.
StdioChildEnds prepareStdio(ProcessPlan* plan, ProcessIo* io) {
    StdioChildEnds ends;
    if (plan->terminal) return ends;
    ends = makeStdioPipes(io);
    ends.in = raiseFd(std::move(ends.in));
    ends.out = raiseFd(std::move(ends.out));
    ends.err = raiseFd(std::move(ends.err));
    plan->stdinFd = ends.in.get();
    plan->stdoutFd = ends.out.get();
    plan->stderrFd = ends.err.get();
    return ends;
}

std::string idMap(const google::protobuf::RepeatedPtrField<grpc::LinuxIDMapping>& maps) {
    std::string out;
    for (const auto& m : maps)
        out += std::to_string(m.containerid()) + " " + std::to_string(m.hostid()) + " " +
               std::to_string(m.size()) + "\n";
    return out;
}
}  // namespace

struct Container::Impl {
    std::string id;
    grpc::Spec spec;
    CreateOptions opts;
    std::string rootfs;
    std::unique_ptr<Cgroup> cgroup;
    std::unique_ptr<SeccompFilter> seccomp;
    std::shared_ptr<Process> init;
    UniqueFd initSync;  // to the init, which waits for start()
    mutable std::mutex mu;
    std::map<std::string, std::shared_ptr<Process>> processes;
    bool started = false, paused = false, destroyed = false;
    std::mutex oomMu;
    std::function<void()> oomCallback;
    std::unique_ptr<OomWatcher> oomWatcher;
    log::Logger log{"jail"};

    std::string context() const { return " in container " + id; }
    std::string state(const char* status) const {
        return containerStateJson(spec, id, status, init ? init->pid() : 0, opts.bundleDir);
    }
    void destroyLocked();

    // Runs a hook inside the container's namespaces and cgroup: createContainer hooks while the
    // init waits before pivot_root (so the path still resolves in the agent's tree, as OCI
    // says), startContainer hooks once the container's root is in place.
    HookSpawner inContainer() {
        return [this](const HookCommand& cmd) -> pid_t {
            std::vector<UniqueFd> owners;
            SpawnRequest req;
            req.cgroupProcsFiles = cgroup->procsFiles();
            req.joins = processNamespaces(init->pid(), &owners);
            req.keepFds = {cmd.stdinFd, cmd.outFd};
            req.childMain = [&](int) { childRunHook(cmd); };
            UniqueFd sync;
            return spawnProcess(req, &sync, context());
        };
    }
};

const char* stateName(Container::State state) {
    switch (state) {
        case Container::State::kCreated:
            return "created";
        case Container::State::kRunning:
            return "running";
        case Container::State::kPaused:
            return "paused";
        case Container::State::kStopped:
            return "stopped";
    }
    return "unknown";
}

Container::Container(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Container::~Container() {
    try {
        destroy();
    } catch (const std::exception& e) {
        impl_->log.error(std::string("destroy on release failed: ") + e.what());
    }
}

std::unique_ptr<Container> Container::create(const std::string& id, const grpc::Spec& spec,
                                             const CreateOptions& opts) {
    const std::string ctx = "create container " + id;
    if (id.empty() || id.find('/') != std::string::npos || id == "." || id == "..")
        throw Error(StatusCode::kInvalidArgument, ctx + ": invalid container id");
    if (!spec.has_process())
        throw Error(StatusCode::kInvalidArgument, ctx + ": spec has no process");
    Reaper::instance().start();

    auto impl = std::make_unique<Impl>();
    impl->id = id;
    impl->spec = spec;
    impl->opts = opts;
    impl->log = log::Logger("jail").with("container", id);
    impl->rootfs = spec.root().path();
    if (impl->rootfs.empty() || impl->rootfs[0] != '/')
        throw Error(StatusCode::kInvalidArgument,
                    ctx + ": root path \"" + impl->rootfs + "\" is not absolute");
    struct stat st;
    if (::stat(impl->rootfs.c_str(), &st) != 0) throwErrno(ctx + ": rootfs", impl->rootfs);
    if (!S_ISDIR(st.st_mode))
        throw Error(StatusCode::kInvalidArgument,
                    ctx + ": rootfs " + impl->rootfs + " is not a directory");

    NamespacePlan ns =
        withContext(ctx, [&] { return planNamespaces(spec, opts.sandboxPidNsPath); });
    std::vector<UniqueFd> nsFds = withContext(ctx, [&] { return openJoins(ns); });
    RootfsPlan rootfsPlan =
        withContext(ctx, [&] { return planRootfs(spec, ns.cloneFlags & CLONE_NEWUTS); });
    if (spec.linux().has_seccomp())
        impl->seccomp =
            withContext(ctx, [&] { return buildSeccompFilter(spec.linux().seccomp()); });
    ProcessPlan plan = withContext(
        ctx, [&] { return planProcess(impl->rootfs, spec.process(), impl->seccomp.get()); });
    bool userns = ns.has(CLONE_NEWUSER);

    std::string cgPath = spec.linux().cgroupspath();
    if (cgPath.empty() || cgPath.find(':') != std::string::npos) {
        // systemd-style "slice:prefix:name" has no meaning without systemd: use our own layout.
        cgPath = Cgroup::defaultPath(id);
    }
    impl->cgroup = withContext(ctx, [&] { return Cgroup::create(cgPath); });
    Impl* raw = impl.get();
    // From here on a failure must undo the cgroup and the init process.
    struct Undo {
        Impl* impl;
        bool armed = true;
        ~Undo() {
            if (!armed) return;
            impl->initSync.reset();
            if (impl->init) {
                impl->init->signal(SIGKILL);
                impl->init->waitFor(10000);
            }
            try {
                impl->oomWatcher.reset();
                impl->cgroup->destroy();
            } catch (const std::exception& e) {
                impl->log.error(std::string("cleanup after failed create: ") + e.what());
            }
        }
    } undo{raw};

    if (spec.linux().has_resources())
        withContext(ctx, [&] { impl->cgroup->apply(spec.linux().resources(), true); });
    rootfsPlan.cgroupDirs = impl->cgroup->mountDirs();
    rootfsPlan.noPivotRoot = opts.noPivotRoot;

    ProcessIo io;
    StdioChildEnds ends = prepareStdio(&plan, &io);

    SpawnRequest req;
    req.cgroupProcsFiles = impl->cgroup->procsFiles();
    req.joins = ns.joins;
    req.cloneFlags = ns.cloneFlags;
    req.keepFds = {plan.stdinFd, plan.stdoutFd, plan.stderrFd};
    req.childMain = [&](int fd) {
        childWaitGo(fd);  // id maps written
        if (userns) {
            if (::setresgid(0, 0, 0) != 0)
                childFail(fd, "setresgid", "0 in the user namespace", errno);
            if (::setresuid(0, 0, 0) != 0)
                childFail(fd, "setresuid", "0 in the user namespace", errno);
        }
        childPrepareRootfs(fd, rootfsPlan);
        childSend(fd, SyncType::kCreateHooks);
        childWaitGo(fd);  // createRuntime/createContainer hooks done
        childFinishRootfs(fd, rootfsPlan);
        childSetupStdio(fd, plan);
        std::string path = childFindExecutable(fd, plan);
        childSend(fd, SyncType::kReady);
        childWaitGo(fd);  // start()
        childExec(fd, plan, path);
    };
    pid_t pid = spawnProcess(req, &impl->initSync, impl->context());
    ends = StdioChildEnds();
    impl->init = std::make_shared<Process>(id, pid, plan.terminal, std::move(io));
    Reaper::instance().watch(pid, [p = impl->init](int status) { p->markExited(status); });

    if (ns.cloneFlags & CLONE_NEWUSER) {
        std::string base = "/proc/" + std::to_string(pid);
        withContext(ctx, [&] {
            if (spec.linux().uidmappings_size())
                writeFile(base + "/uid_map", idMap(spec.linux().uidmappings()));
            if (spec.linux().gidmappings_size())
                writeFile(base + "/gid_map", idMap(spec.linux().gidmappings()));
        });
    }
    syncSend(impl->initSync.get(), SyncType::kGo);
    for (;;) {
        SyncMsg msg;
        UniqueFd passed;
        if (!syncRecv(impl->initSync.get(), &msg, &passed, kSetupTimeoutMs))
            throw Error(StatusCode::kInternal,
                        ctx + ": the container's init process died during setup");
        if (msg.type == SyncType::kError) throwChildError(msg, impl->context());
        if (msg.type == SyncType::kPty) impl->init->io().ptyMaster = std::move(passed);
        if (msg.type == SyncType::kCreateHooks) {
            withContext(ctx, [&] {
                std::string state = impl->state("creating");
                runHooks("prestart", spec.hooks().prestart(), state);
                runHooks("createRuntime", spec.hooks().createruntime(), state);
                runHooks("createContainer", spec.hooks().createcontainer(), state,
                         raw->inContainer());
            });
            syncSend(impl->initSync.get(), SyncType::kGo);
        }
        if (msg.type == SyncType::kReady) break;
    }

    impl->oomWatcher = withContext(ctx, [&] {
        return impl->cgroup->watchOom([raw] {
            std::function<void()> cb;
            {
                std::lock_guard<std::mutex> lock(raw->oomMu);
                cb = raw->oomCallback;
            }
            raw->log.warn("OOM kill in the container's memory cgroup");
            if (cb) cb();
        });
    });

    impl->processes[id] = impl->init;
    undo.armed = false;
    impl->log.with("init_pid", std::to_string(pid)).info("container created");
    return std::unique_ptr<Container>(new Container(std::move(impl)));
}

const std::string& Container::id() const { return impl_->id; }
const std::string& Container::cgroupPath() const { return impl_->cgroup->path(); }

Container::State Container::state() const {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->destroyed || impl_->init->exitCode()) return State::kStopped;
    if (impl_->paused) return State::kPaused;
    return impl_->started ? State::kRunning : State::kCreated;
}

std::shared_ptr<Process> Container::initProcess() { return impl_->init; }

void Container::start() {
    std::lock_guard<std::mutex> lock(impl_->mu);
    const std::string ctx = "start container " + impl_->id;
    if (impl_->destroyed || impl_->started || !impl_->initSync)
        throw Error(StatusCode::kFailedPrecondition, ctx + ": it is not in the created state");
    if (impl_->init->exitCode())
        throw Error(StatusCode::kFailedPrecondition, ctx + ": its init process has exited");
    withContext(ctx, [&] {
        runHooks("startContainer", impl_->spec.hooks().startcontainer(), impl_->state("created"),
                 impl_->inContainer());
    });
    syncSend(impl_->initSync.get(), SyncType::kGo);
    SyncMsg msg;
    bool got = syncRecv(impl_->initSync.get(), &msg, nullptr, kSetupTimeoutMs);
    impl_->initSync.reset();
    if (got && msg.type == SyncType::kError) throwChildError(msg, impl_->context());
    impl_->started = true;
    try {
        runHooks("poststart", impl_->spec.hooks().poststart(), impl_->state("running"));
    } catch (const std::exception& e) {
        impl_->log.warn(e.what());
    }
    impl_->log.info("container started");
}

std::shared_ptr<Process> Container::exec(const std::string& execId, const grpc::Process& process) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    const std::string ctx = "exec process " + execId + " in container " + impl_->id;
    if (impl_->processes.count(execId))
        throw Error(StatusCode::kAlreadyExists, ctx + ": the exec id is already in use");
    if (impl_->destroyed || impl_->init->exitCode())
        throw Error(StatusCode::kFailedPrecondition, ctx + ": the container is not running");
    if (impl_->paused)
        throw Error(StatusCode::kFailedPrecondition, ctx + ": the container is paused");
    ProcessPlan plan =
        withContext(ctx, [&] { return planProcess(impl_->rootfs, process, impl_->seccomp.get()); });
    std::vector<UniqueFd> nsOwners;
    std::vector<NamespaceJoin> joins =
        withContext(ctx, [&] { return processNamespaces(impl_->init->pid(), &nsOwners); });
    ProcessIo io;
    StdioChildEnds ends = prepareStdio(&plan, &io);
    SpawnRequest req;
    req.cgroupProcsFiles = impl_->cgroup->procsFiles();
    req.joins = joins;
    req.keepFds = {plan.stdinFd, plan.stdoutFd, plan.stderrFd};
    req.childMain = [&](int fd) {
        childSetupStdio(fd, plan);
        std::string path = childFindExecutable(fd, plan);
        childExec(fd, plan, path);
    };
    UniqueFd sync;
    pid_t pid = spawnProcess(req, &sync, impl_->context());
    ends = StdioChildEnds();
    auto proc = std::make_shared<Process>(execId, pid, plan.terminal, std::move(io));
    Reaper::instance().watch(pid, [proc](int status) { proc->markExited(status); });
    for (;;) {
        SyncMsg msg;
        UniqueFd passed;
        if (!syncRecv(sync.get(), &msg, &passed, kSetupTimeoutMs)) break;  // execve succeeded
        if (msg.type == SyncType::kError) {
            proc->waitFor(5000);
            throwChildError(msg, impl_->context());
        }
        if (msg.type == SyncType::kPty) proc->io().ptyMaster = std::move(passed);
    }
    impl_->processes[execId] = proc;
    return proc;
}

std::shared_ptr<Process> Container::process(const std::string& execId) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (execId.empty()) return impl_->init;
    auto it = impl_->processes.find(execId);
    return it == impl_->processes.end() ? nullptr : it->second;
}

void Container::forgetProcess(const std::string& execId) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    const std::string ctx = "forget process " + execId + " in container " + impl_->id;
    if (execId.empty() || execId == impl_->id)
        throw Error(StatusCode::kFailedPrecondition, ctx + ": it is the container's init process");
    auto it = impl_->processes.find(execId);
    if (it == impl_->processes.end()) throw Error(StatusCode::kNotFound, ctx + ": no such process");
    if (!it->second->exitCode())
        throw Error(StatusCode::kFailedPrecondition,
                    ctx + ": it is still running (pid " + std::to_string(it->second->pid()) + ")");
    impl_->processes.erase(it);
}

void Container::kill(int sig, bool all) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (!all) {
        impl_->init->signal(sig);
        return;
    }
    for (pid_t p : impl_->cgroup->pids())
        if (::kill(p, sig) != 0 && errno != ESRCH)
            throwErrno("kill", "pid " + std::to_string(p) + impl_->context());
}

void Container::pause() {
    std::lock_guard<std::mutex> lock(impl_->mu);
    const std::string ctx = "pause container " + impl_->id;
    if (impl_->destroyed || !impl_->started || impl_->init->exitCode())
        throw Error(StatusCode::kFailedPrecondition, ctx + ": it is not running");
    withContext(ctx, [&] { impl_->cgroup->freeze(); });
    impl_->paused = true;
}

void Container::resume() {
    std::lock_guard<std::mutex> lock(impl_->mu);
    const std::string ctx = "resume container " + impl_->id;
    if (!impl_->paused) throw Error(StatusCode::kFailedPrecondition, ctx + ": it is not paused");
    withContext(ctx, [&] { impl_->cgroup->thaw(); });
    impl_->paused = false;
}

void Container::update(const grpc::LinuxResources& resources) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->destroyed)
        throw Error(StatusCode::kFailedPrecondition,
                    "update container " + impl_->id + ": it is destroyed");
    withContext("update container " + impl_->id, [&] { impl_->cgroup->apply(resources, false); });
}

grpc::StatsContainerResponse Container::stats() {
    std::lock_guard<std::mutex> lock(impl_->mu);
    grpc::StatsContainerResponse resp;
    if (impl_->destroyed)
        throw Error(StatusCode::kFailedPrecondition,
                    "stats of container " + impl_->id + ": it is destroyed");
    withContext("stats of container " + impl_->id,
                [&] { impl_->cgroup->stats(resp.mutable_cgroup_stats()); });
    return resp;
}

std::vector<pid_t> Container::pids() {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->destroyed) return {};
    return impl_->cgroup->pids();
}

void Container::setOomCallback(std::function<void()> cb) {
    std::lock_guard<std::mutex> lock(impl_->oomMu);
    impl_->oomCallback = std::move(cb);
}

void Container::destroy() {
    // Stop the OOM watcher outside the lock: its callback may be running and calling us.
    std::unique_ptr<OomWatcher> watcher;
    {
        std::lock_guard<std::mutex> lock(impl_->mu);
        watcher = std::move(impl_->oomWatcher);
    }
    watcher.reset();
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->destroyLocked();
}

void Container::Impl::destroyLocked() {
    if (destroyed) return;
    destroyed = true;
    oomWatcher.reset();
    initSync.reset();  // an init still waiting for start() exits
    init->signal(SIGKILL);
    std::string err;
    try {
        cgroup->destroy();  // thaws, kills every process left, removes the directories
    } catch (const std::exception& e) {
        err = e.what();
    }
    if (!init->waitFor(10000)) log.warn("init process did not exit after SIGKILL");
    for (auto& [execId, p] : processes)
        if (!p->waitFor(5000))
            log.with("exec_id", execId).warn("process did not exit after SIGKILL");
    if (started) {
        try {
            runHooks("poststop", spec.hooks().poststop(), state("stopped"));
        } catch (const std::exception& e) {
            log.warn(e.what());
        }
    }
    log.info("container destroyed");
    if (!err.empty()) throw Error(StatusCode::kInternal, "destroy container " + id + ": " + err);
}

}  // namespace kata::jail
