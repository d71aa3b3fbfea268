#include "kata/agent/service/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "kata/agent/devices.h"
#include "kata/agent/storage.h"
#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/jail/container.h"
#include "kata/jail/reaper.h"
#include "kata/oci/spec.h"

namespace fs = std::filesystem;

namespace kata::agent {
namespace {

const log::Logger kLog("sandbox");

bool idChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

bool alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

void validateId(const std::string& kind, const std::string& id, size_t minLen) {
    bool ok = id.size() >= minLen && id.size() <= 256 && alnum(id[0]);
    for (char c : id) ok = ok && idChar(c);
    if (!ok) {
        throw Error(StatusCode::kInvalidArgument,
                    "invalid " + kind + " \"" + id +
                        "\": must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$ (no \"/\", no \"..\")");
    }
}

// Undoes a step of a multi-step operation unless dismissed.
class Rollback {
  public:
    explicit Rollback(std::function<void()> fn) : fn_(std::move(fn)) {}
    ~Rollback() {
        if (!fn_) return;
        try {
            fn_();
        } catch (const std::exception& e) {
            kLog.warn("rollback step failed", {{"error", e.what()}});
        }
    }
    void dismiss() { fn_ = nullptr; }
    Rollback(const Rollback&) = delete;
    Rollback& operator=(const Rollback&) = delete;

  private:
    std::function<void()> fn_;
};

std::string statusFileField(pid_t pid, const std::string& key) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key + ":", 0) == 0) {
            auto v = line.substr(key.size() + 1);
            v.erase(0, v.find_first_not_of(" \t"));
            return v;
        }
    }
    return {};
}

// A pid-namespace init gets no default signal actions: SIGTERM is ignored unless it installed a
// handler, so Kata's agent turns such a SIGTERM into SIGKILL to make `stop` work.
bool ignoresSigterm(pid_t pid) {
    std::string nspid = statusFileField(pid, "NSpid");
    auto last = nspid.find_last_of(" \t");
    std::string inner = last == std::string::npos ? nspid : nspid.substr(last + 1);
    if (inner != "1") return false;
    std::string caught = statusFileField(pid, "SigCgt");
    if (caught.empty()) return false;
    unsigned long long mask = std::stoull(caught, nullptr, 16);
    return (mask & (1ULL << (SIGTERM - 1))) == 0;
}

bool dirEmptyOrMissing(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) return true;
    return fs::is_directory(path, ec) && fs::is_empty(path, ec);
}

// Kata's rule: when "/" is the initramfs (fs type "rootfs"), pivot_root is impossible (EINVAL)
// and containers must be entered with MS_MOVE + chroot instead.
bool rootIsInitramfs() {
    std::ifstream in("/proc/self/mounts");
    std::string dev, mnt, type, rest;
    std::string rootType;
    while (in >> dev >> mnt >> type && std::getline(in, rest)) {
        if (mnt == "/") rootType = type;  // the last mount on "/" is the visible one
    }
    return rootType == "rootfs";
}

// Kata gives a sandbox's containers one IPC and one UTS namespace (a pod shares IPC and its
// hostname). They are made by a short-lived child and pinned by open fds.
struct SharedNamespaces {
    UniqueFd ipc, uts;
};

SharedNamespaces makeSharedNamespaces(const std::string& hostname) {
    int sync[2];
    if (::pipe2(sync, O_CLOEXEC) != 0) throwErrno("pipe", "for the sandbox namespaces");
    UniqueFd rd(sync[0]), wr(sync[1]);
    pid_t pid = ::fork();
    if (pid < 0) throwErrno("fork", "sandbox namespace holder");
    if (pid == 0) {
        char ok = 1;
        if (::unshare(CLONE_NEWIPC | CLONE_NEWUTS) != 0) ok = 0;
        if (ok && !hostname.empty() && ::sethostname(hostname.data(), hostname.size()) != 0) ok = 0;
        (void)!::write(wr.get(), &ok, 1);
        ::pause();
        _exit(0);
    }
    wr.reset();
    char ok = 0;
    ssize_t n = ::read(rd.get(), &ok, 1);
    SharedNamespaces ns;
    if (n == 1 && ok) {
        ns.ipc.reset(
            ::open(("/proc/" + std::to_string(pid) + "/ns/ipc").c_str(), O_RDONLY | O_CLOEXEC));
        ns.uts.reset(
            ::open(("/proc/" + std::to_string(pid) + "/ns/uts").c_str(), O_RDONLY | O_CLOEXEC));
    }
    int err = errno;
    ::kill(pid, SIGKILL);
    jail::Reaper::instance().waitFor(pid);
    if (n != 1 || !ok) {
        throw Error(StatusCode::kInternal, "create the sandbox's ipc/uts namespaces (hostname \"" +
                                               hostname + "\") failed");
    }
    if (!ns.ipc || !ns.uts) throw SystemError("open", "sandbox namespace holder's ns", err);
    return ns;
}

std::string fdPath(const UniqueFd& fd) {
    return "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fd.get());
}

// CreateSandbox's kernel modules, loaded the way Kata's agent does: `modprobe <name> <params>`.
void loadKernelModule(const grpc::KernelModule& module) {
    const std::string& name = module.name();
    bool ok = !name.empty() && name.size() < 64;
    for (char c : name) ok = ok && (idChar(c) || c == ',');
    if (!ok)
        throw Error(StatusCode::kInvalidArgument, "kernel module name \"" + name + "\" is invalid");
    const char* modprobe =
        ::access("/sbin/modprobe", X_OK) == 0 ? "/sbin/modprobe" : "/usr/sbin/modprobe";
    if (::access(modprobe, X_OK) != 0) {
        throw Error(StatusCode::kFailedPrecondition,
                    "load kernel module \"" + name + "\": modprobe not found in the guest");
    }
    std::vector<std::string> args = {modprobe, name};
    for (const auto& p : module.parameters()) args.push_back(p);
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, modprobe, nullptr, nullptr, argv.data(), environ);
    if (rc != 0) throw SystemError("spawn", std::string(modprobe) + " " + name, rc);
    int status = jail::Reaper::instance().waitFor(pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw Error(StatusCode::kInternal, "load kernel module \"" + name +
                                               "\": modprobe failed (status " +
                                               std::to_string(status) + ")");
    }
}

}  // namespace

void validateContainerId(const std::string& id) { validateId("container id", id, 2); }
void validateExecId(const std::string& id) { validateId("exec id", id, 1); }

// ---- ProcessHandle ----

ProcessHandle::ProcessHandle(std::shared_ptr<jail::Process> proc)
    : proc_(std::move(proc)), cancelFd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!cancelFd_) throwErrno("eventfd", "for process " + proc_->execId());
}

ProcessHandle::~ProcessHandle() = default;

void ProcessHandle::cancel() {
    uint64_t one = 1;
    (void)!::write(cancelFd_.get(), &one, sizeof(one));
}

std::string ProcessHandle::read(bool stderrStream, uint32_t len) {
    const std::string name = stderrStream ? "stderr" : "stdout";
    auto& io = proc_->io();
    int fd = -1;
    if (io.ptyMaster) {
        // A terminal merges both streams on the pty; stderr has nothing of its own.
        fd = stderrStream ? -1 : io.ptyMaster.get();
    } else {
        fd = stderrStream ? io.stderrReader.get() : io.stdoutReader.get();
    }
    const int idx = stderrStream ? 1 : 0;
    auto eof = [&]() -> Error {
        eof_[idx] = true;
        return Error(StatusCode::kInternal, "read meet eof");
    };
    if (fd < 0) throw eof();
    if (len == 0) len = 32 * 1024;
    len = std::min<uint32_t>(len, 1 << 20);

    std::lock_guard<std::mutex> lk(readMu_[stderrStream ? 1 : 0]);
    std::string buf(len, '\0');
    for (;;) {
        // Once the process has exited, whatever it wrote is already in the pipe: drain it, then
        // report EOF even if a stray descendant still holds the write end open.
        bool exited = proc_->exitCode().has_value();
        pollfd pfds[2] = {{fd, POLLIN, 0}, {cancelFd_.get(), POLLIN, 0}};
        int n = ::poll(pfds, 2, exited ? 0 : 200);
        if (n < 0) {
            if (errno == EINTR) continue;
            throwErrno("poll", name + " of process " + proc_->execId());
        }
        if (pfds[1].revents & POLLIN) {
            throw Error(StatusCode::kCancelled,
                        "read " + name + " of process " + proc_->execId() + ": container removed");
        }
        if (pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = ::read(fd, buf.data(), buf.size());
            if (r > 0) {
                buf.resize(static_cast<size_t>(r));
                return buf;
            }
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            // 0 = all writers gone; EIO = the pty's slave side closed.
            if (r == 0 || errno == EIO) throw eof();
            throwErrno("read", name + " of process " + proc_->execId());
        }
        if (n == 0 && exited) throw eof();
    }
}

bool ProcessHandle::finished() const {
    if (!waited_) return false;
    // With a terminal only the pty carries output; stderr reads hit EOF at once.
    return eof_[0] && (proc_->terminal() || eof_[1]);
}

uint32_t ProcessHandle::write(const std::string& data) {
    auto& io = proc_->io();
    int fd = io.ptyMaster ? io.ptyMaster.get() : io.stdinWriter.get();
    if (fd < 0) {
        throw Error(StatusCode::kFailedPrecondition,
                    "write stdin of process " + proc_->execId() + ": stdin is closed");
    }
    std::lock_guard<std::mutex> lk(writeMu_);
    size_t done = 0;
    while (done < data.size()) {
        ssize_t w = ::write(fd, data.data() + done, data.size() - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                pollfd p{fd, POLLOUT, 0};
                ::poll(&p, 1, 200);
                continue;
            }
            throwErrno("write", "stdin of process " + proc_->execId());
        }
        done += static_cast<size_t>(w);
    }
    return static_cast<uint32_t>(done);
}

// ---- Sandbox ----

struct Sandbox::ContainerEntry {
    std::string id;
    std::unique_ptr<jail::Container> ctr;  // null while being created
    std::string bundleDir;
    bool boundRootfs = false;
    bool hasStorages = false;
    std::mutex opMu;  // serializes lifecycle operations on this container
    std::mutex procMu;
    std::string initExecId;
    std::map<std::string, std::shared_ptr<ProcessHandle>> procs;  // by exec id
    std::shared_ptr<ProcessHandle> init;
};

Sandbox::Sandbox(AgentConfig cfg)
    : cfg_(std::move(cfg)), storage_(std::make_unique<StorageManager>(cfg_.runDir)) {
    DeviceEnvironment env;
    env.timeout = cfg_.hotplugTimeout;
    storage_->setDeviceEnvironment(env);
    noPivotRoot_ = rootIsInitramfs();
    if (noPivotRoot_) kLog.info("root is the initramfs: containers are entered without pivot_root");
}

Sandbox::~Sandbox() {
    try {
        destroySandbox();
    } catch (const std::exception& e) {
        kLog.warn("destroy sandbox at exit failed", {{"error", e.what()}});
    }
}

std::shared_ptr<Sandbox::ContainerEntry> Sandbox::find(const std::string& cid) {
    validateContainerId(cid);
    std::lock_guard<std::mutex> lk(mu_);
    auto it = containers_.find(cid);
    if (it == containers_.end() || !it->second->ctr) {
        throw Error(StatusCode::kNotFound, "container \"" + cid + "\" not found");
    }
    return it->second;
}

std::shared_ptr<ProcessHandle> Sandbox::findProcess(const std::string& cid,
                                                    const std::string& execId,
                                                    std::shared_ptr<ContainerEntry>* entryOut) {
    auto entry = find(cid);
    if (entryOut) *entryOut = entry;
    std::lock_guard<std::mutex> lk(entry->procMu);
    if (execId.empty() || execId == entry->initExecId) return entry->init;
    auto it = entry->procs.find(execId);
    if (it == entry->procs.end()) {
        throw Error(StatusCode::kNotFound,
                    "process \"" + execId + "\" not found in container \"" + cid + "\"");
    }
    return it->second;
}

void Sandbox::createSandbox(const grpc::CreateSandboxRequest& req) {
    if (!req.sandbox_id().empty()) validateContainerId(req.sandbox_id());
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (!sandboxId_.empty()) {
            throw Error(StatusCode::kAlreadyExists,
                        "sandbox \"" + sandboxId_ + "\" already created");
        }
    }
    const std::string sid = req.sandbox_id().empty() ? "sandbox" : req.sandbox_id();
    if (!req.guest_hook_path().empty() && req.guest_hook_path()[0] != '/') {
        throw Error(StatusCode::kInvalidArgument,
                    "guest hook path \"" + req.guest_hook_path() + "\" is not absolute");
    }
    for (const auto& m : req.kernel_modules()) loadKernelModule(m);
    if (!req.storages().empty()) storage_->add(sid, req.storages());
    Rollback undoStorage([&] {
        if (!req.storages().empty()) storage_->remove(sid);
    });

    SharedNamespaces shared = makeSharedNamespaces(req.hostname());
    if (cfg_.initMode && !req.hostname().empty()) {
        if (::sethostname(req.hostname().data(), req.hostname().size()) != 0) {
            throwErrno("sethostname", req.hostname());
        }
    }
    if (!req.dns().empty()) {
        // Only the guest's resolver is ours to write; on a host the agent must not touch it.
        if (cfg_.initMode) {
            std::ofstream out("/etc/resolv.conf", std::ios::trunc);
            for (const auto& line : req.dns()) out << line << "\n";
            if (!out) throw SystemError("write", "/etc/resolv.conf", errno);
        } else {
            kLog.warn("not writing DNS servers: agent is not the guest's init");
        }
    }
    std::lock_guard<std::mutex> lk(mu_);
    sandboxId_ = sid;
    guestHookPath_ = req.guest_hook_path();
    sandboxPidns_ = req.sandbox_pidns();
    sandboxStorages_ = !req.storages().empty();
    sharedIpcNs_ = std::move(shared.ipc);
    sharedUtsNs_ = std::move(shared.uts);
    log::setGlobalField("sandbox", sid);
    undoStorage.dismiss();
    kLog.info("sandbox created", {{"sandbox", sid}});
}

void Sandbox::destroySandbox() {
    std::vector<std::string> ids;
    {
        std::lock_guard<std::mutex> lk(mu_);
        for (auto& [id, e] : containers_) {
            if (e->ctr) ids.push_back(id);
        }
    }
    std::string firstError;
    for (const auto& id : ids) {
        try {
            removeContainer(id, 0);
        } catch (const Error& e) {
            if (e.code() != StatusCode::kNotFound && firstError.empty()) firstError = e.what();
        }
    }
    std::string sid;
    bool storages;
    {
        std::lock_guard<std::mutex> lk(mu_);
        sid = sandboxId_;
        storages = sandboxStorages_;
        sandboxId_.clear();
        sandboxStorages_ = false;
        sandboxPidns_ = false;
        sandboxPidnsFd_.reset();
        sharedIpcNs_.reset();
        sharedUtsNs_.reset();
        guestHookPath_.clear();
    }
    if (storages) storage_->remove(sid);
    {
        std::lock_guard<std::mutex> lk(oomMu_);
        oomEvents_.clear();
    }
    if (!firstError.empty()) throw Error(StatusCode::kInternal, "destroy sandbox: " + firstError);
}

void Sandbox::appendGuestHooks(grpc::Spec* spec) {
    std::string dir;
    {
        std::lock_guard<std::mutex> lk(mu_);
        dir = guestHookPath_;
    }
    if (dir.empty()) return;
    auto add = [&](const std::string& kind, auto* (grpc::Hooks::*adder)()) {
        std::error_code ec;
        std::vector<std::string> paths;
        for (const auto& ent : fs::directory_iterator(dir + "/" + kind, ec)) {
            if (ent.is_regular_file(ec) && ::access(ent.path().c_str(), X_OK) == 0) {
                paths.push_back(ent.path().string());
            }
        }
        std::sort(paths.begin(), paths.end());
        for (const auto& p : paths) {
            auto* hook = (spec->mutable_hooks()->*adder)();
            hook->set_path(p);
            hook->add_args(p);
        }
    };
    add("prestart", &grpc::Hooks::add_prestart);
    add("poststart", &grpc::Hooks::add_poststart);
    add("poststop", &grpc::Hooks::add_poststop);
}

// Kata's bundle rule: the container's rootfs is <runDir>/<cid>/rootfs. If it already holds a
// rootfs (an image pulled in the guest) it is used as is; otherwise the spec's root.path (the
// shared-fs path /run/kata-containers/shared/containers/<cid>/rootfs as the shim sends it, or a
// path relative to that container's shared directory) is bind-mounted there.
std::string Sandbox::prepareBundle(const std::string& cid, grpc::Spec* spec, bool* boundRootfs) {
    std::string bundle = cfg_.runDir + "/" + cid;  // returned: not const, so it moves
    const std::string rootfs = bundle + "/rootfs";
    *boundRootfs = false;
    std::error_code ec;
    fs::create_directories(bundle, ec);
    if (ec) throw SystemError("mkdir", bundle, ec.value());

    if (dirEmptyOrMissing(rootfs)) {
        std::string source = spec->root().path();
        if (source.empty() || source[0] != '/') {
            source =
                sharedContainersDir(cfg_) + "/" + cid + "/" + (source.empty() ? "rootfs" : source);
        }
        if (fs::path(source).lexically_normal().string().find("..") != std::string::npos) {
            throw Error(StatusCode::kInvalidArgument,
                        "container \"" + cid + "\": root path \"" + source + "\" escapes");
        }
        struct stat st {};
        if (::stat(source.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
            throw Error(StatusCode::kNotFound, "container \"" + cid + "\": rootfs \"" + source +
                                                   "\" does not exist or is not a directory");
        }
        fs::create_directories(rootfs, ec);
        if (ec) throw SystemError("mkdir", rootfs, ec.value());
        if (::mount(source.c_str(), rootfs.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
            throwErrno("bind mount", source + " on " + rootfs);
        }
        *boundRootfs = true;
    }
    spec->mutable_root()->set_path(rootfs);

    oci::saveSpecFile(*spec, bundle + "/config.json");
    return bundle;
}

void Sandbox::releaseContainerResources(ContainerEntry& entry) {
    if (entry.boundRootfs) {
        const std::string rootfs = entry.bundleDir + "/rootfs";
        if (::umount2(rootfs.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
            throwErrno("unmount", rootfs);
        }
        entry.boundRootfs = false;
    }
    if (!entry.bundleDir.empty()) {
        // Only remove what we created; a pulled image's rootfs is not a mount of ours but our
        // bundle all the same, so it goes too.
        std::error_code ec;
        fs::remove_all(entry.bundleDir, ec);
        if (ec)
            kLog.warn("remove bundle failed", {{"path", entry.bundleDir}, {"error", ec.message()}});
    }
    if (entry.hasStorages) {
        storage_->remove(entry.id);
        entry.hasStorages = false;
    }
}

void Sandbox::createContainer(const grpc::CreateContainerRequest& req) {
    const std::string& cid = req.container_id();
    validateContainerId(cid);
    if (!req.exec_id().empty()) validateExecId(req.exec_id());
    if (!req.has_oci()) {
        throw Error(StatusCode::kInvalidArgument, "container \"" + cid + "\": no OCI spec");
    }
    if (!req.oci().has_process() || req.oci().process().args().empty()) {
        throw Error(StatusCode::kInvalidArgument,
                    "container \"" + cid + "\": spec has no process args (nothing to run)");
    }
    if (!req.oci().has_linux()) {
        throw Error(StatusCode::kInvalidArgument,
                    "container \"" + cid + "\": spec does not contain a linux field");
    }

    auto entry = std::make_shared<ContainerEntry>();
    entry->id = cid;
    std::string pidnsPath, ipcPath, utsPath;
    bool firstContainer = false;
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (sharedIpcNs_) ipcPath = fdPath(sharedIpcNs_);
        if (sharedUtsNs_) utsPath = fdPath(sharedUtsNs_);
        if (containers_.count(cid)) {
            throw Error(StatusCode::kAlreadyExists, "container \"" + cid + "\" already exists");
        }
        firstContainer = containers_.empty() && !sandboxPidnsFd_;
        if (req.sandbox_pidns() && sandboxPidnsFd_) {
            pidnsPath = "/proc/" + std::to_string(::getpid()) + "/fd/" +
                        std::to_string(sandboxPidnsFd_.get());
        } else if (req.sandbox_pidns() && !sandboxPidns_) {
            throw Error(StatusCode::kFailedPrecondition,
                        "container \"" + cid + "\": sandbox does not have sandbox_pidns");
        }
        containers_[cid] = entry;  // reserves the id while we work without the lock
    }
    Rollback unreserve([&] {
        std::lock_guard<std::mutex> lk(mu_);
        containers_.erase(cid);
    });
    std::lock_guard<std::mutex> op(entry->opMu);

    grpc::Spec spec = req.oci();
    auto log = kLog.with("container", cid);

    if (!req.storages().empty()) {
        storage_->add(cid, req.storages());
        entry->hasStorages = true;
    }
    Rollback undoResources([&] { releaseContainerResources(*entry); });

    if (!req.devices().empty()) {
        DeviceEnvironment env;
        env.timeout = cfg_.hotplugTimeout;
        applyDevices(req.devices(), &spec, env);
    }

    if (!pidnsPath.empty()) {
        auto* linux = spec.mutable_linux();
        bool found = false;
        for (auto& ns : *linux->mutable_namespaces()) {
            if (ns.type() == "pid") {
                ns.set_path(pidnsPath);
                found = true;
            }
        }
        if (!found) {
            auto* ns = linux->add_namespaces();
            ns->set_type("pid");
            ns->set_path(pidnsPath);
        }
    }
    // The sandbox's IPC and UTS namespaces replace new ones; the pod's hostname is the
    // sandbox's, set when those were made.
    for (auto& ns : *spec.mutable_linux()->mutable_namespaces()) {
        if (ns.type() == "ipc" && !ipcPath.empty() && ns.path().empty()) ns.set_path(ipcPath);
        if (ns.type() == "uts" && !utsPath.empty() && ns.path().empty()) {
            ns.set_path(utsPath);
            spec.clear_hostname();
        }
    }
    appendGuestHooks(&spec);

    bool bound = false;
    entry->bundleDir = cfg_.runDir + "/" + cid;
    try {
        prepareBundle(cid, &spec, &bound);
    } catch (...) {
        entry->boundRootfs = bound;
        throw;
    }
    entry->boundRootfs = bound;

    jail::CreateOptions opts;
    opts.bundleDir = entry->bundleDir;
    opts.sandboxPidNsPath = pidnsPath;
    opts.noPivotRoot = noPivotRoot_;
    std::unique_ptr<jail::Container> ctr = jail::Container::create(cid, spec, opts);
    Rollback undoCreate([&] { ctr->destroy(); });

    auto init = std::make_shared<ProcessHandle>(ctr->initProcess());
    ctr->setOomCallback([this, cid] {
        kLog.with("container", cid).warn("OOM kill in container");
        {
            std::lock_guard<std::mutex> lk(oomMu_);
            oomEvents_.push_back(cid);
        }
        oomCv_.notify_all();
    });

    if (firstContainer) {
        // The first container's pid namespace becomes the sandbox's, for containers that ask to
        // share it; an open fd keeps it alive after that container is gone.
        std::string nsPath = "/proc/" + std::to_string(init->process().pid()) + "/ns/pid";
        int fd = ::open(nsPath.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            log.warn("cannot pin sandbox pid namespace",
                     {{"path", nsPath}, {"error", strerror(errno)}});
        } else {
            std::lock_guard<std::mutex> lk(mu_);
            sandboxPidnsFd_.reset(fd);
        }
    }

    {
        std::lock_guard<std::mutex> lk(entry->procMu);
        entry->initExecId = req.exec_id().empty() ? cid : req.exec_id();
        entry->init = init;
    }
    {
        std::lock_guard<std::mutex> lk(mu_);
        entry->ctr = std::move(ctr);
    }
    undoCreate.dismiss();
    undoResources.dismiss();
    unreserve.dismiss();
    log.info("container created", {{"bundle", entry->bundleDir}});
}

void Sandbox::startContainer(const std::string& cid) {
    auto entry = find(cid);
    std::lock_guard<std::mutex> op(entry->opMu);
    if (!entry->ctr) throw Error(StatusCode::kNotFound, "container \"" + cid + "\" not found");
    entry->ctr->start();
    kLog.with("container", cid).info("container started");
}

void Sandbox::removeContainer(const std::string& cid, uint32_t timeoutSec) {
    auto entry = find(cid);
    // Destroy runs on its own thread so a timeout can answer while it continues; the entry is
    // shared, so it outlives this call if need be.
    auto done = std::make_shared<std::promise<void>>();
    auto fut = done->get_future();
    std::thread([this, entry, done] {
        try {
            std::lock_guard<std::mutex> op(entry->opMu);
            if (!entry->ctr) {
                throw Error(StatusCode::kNotFound, "container \"" + entry->id + "\" not found");
            }
            std::vector<std::shared_ptr<ProcessHandle>> handles;
            {
                std::lock_guard<std::mutex> lk(entry->procMu);
                if (entry->init) handles.push_back(entry->init);
                for (auto& [id, p] : entry->procs) handles.push_back(p);
            }
            entry->ctr->destroy();
            for (auto& h : handles) h->cancel();
            releaseContainerResources(*entry);
            {
                std::lock_guard<std::mutex> lk(mu_);
                auto it = containers_.find(entry->id);
                if (it != containers_.end() && it->second == entry) containers_.erase(it);
            }
            done->set_value();
        } catch (...) {
            done->set_exception(std::current_exception());
        }
    }).detach();
    if (timeoutSec != 0 &&
        fut.wait_for(std::chrono::seconds(timeoutSec)) == std::future_status::timeout) {
        throw Error(StatusCode::kDeadlineExceeded, "remove container \"" + cid +
                                                       "\": not destroyed within " +
                                                       std::to_string(timeoutSec) + "s (ETIME)");
    }
    fut.get();
    kLog.with("container", cid).info("container removed");
}

void Sandbox::execProcess(const grpc::ExecProcessRequest& req) {
    validateExecId(req.exec_id());
    if (!req.has_process() || req.process().args().empty()) {
        throw Error(StatusCode::kInvalidArgument, "exec \"" + req.exec_id() + "\" in container \"" +
                                                      req.container_id() + "\": no process args");
    }
    auto entry = find(req.container_id());
    std::lock_guard<std::mutex> op(entry->opMu);
    {
        std::lock_guard<std::mutex> lk(entry->procMu);
        auto it = entry->procs.find(req.exec_id());
        bool liveDup = it != entry->procs.end() && !it->second->process().exitCode().has_value();
        if (liveDup || req.exec_id() == entry->initExecId) {
            throw Error(StatusCode::kAlreadyExists, "process \"" + req.exec_id() +
                                                        "\" already exists in container \"" +
                                                        req.container_id() + "\"");
        }
        // An exited process whose output nobody read to the end gives way to the new one.
        if (it != entry->procs.end()) forgetLocked(*entry, it);
    }
    auto proc = entry->ctr->exec(req.exec_id(), req.process());
    auto handle = std::make_shared<ProcessHandle>(std::move(proc));
    std::lock_guard<std::mutex> lk(entry->procMu);
    entry->procs[req.exec_id()] = handle;
    kLog.with("container", req.container_id())
        .info("process started",
              {{"exec-id", req.exec_id()}, {"pid", std::to_string(handle->process().pid())}});
}

void Sandbox::signalProcess(const std::string& cid, const std::string& execId, uint32_t sig) {
    if (sig == 0 || sig >= 65) {
        throw Error(StatusCode::kInvalidArgument,
                    "signal " + std::to_string(sig) + " for \"" + cid + "\" is not a valid signal");
    }
    std::shared_ptr<ContainerEntry> entry;
    auto handle = findProcess(cid, execId, &entry);
    int s = static_cast<int>(sig);
    if (handle == entry->init) {
        if (s == SIGTERM && !handle->process().exitCode() &&
            ignoresSigterm(handle->process().pid())) {
            s = SIGKILL;
        }
        // Kata: an empty exec id signals every process in the container's cgroup.
        entry->ctr->kill(s, execId.empty());
    } else {
        handle->process().signal(s);
    }
}

void Sandbox::forgetIfFinished(const std::shared_ptr<ContainerEntry>& entry,
                               const std::string& execId) {
    std::lock_guard<std::mutex> lk(entry->procMu);
    auto it = entry->procs.find(execId);
    if (it == entry->procs.end() || !it->second->finished()) return;
    forgetLocked(*entry, it);
}

void Sandbox::forgetLocked(ContainerEntry& entry,
                           std::map<std::string, std::shared_ptr<ProcessHandle>>::iterator it) {
    const std::string execId = it->first;
    entry.procs.erase(it);
    // The jail lets go too, so the exec id is free again and the process's stdio fds close
    // as soon as a read still running on the handle returns.
    try {
        entry.ctr->forgetProcess(execId);
    } catch (const Error& e) {
        kLog.with("container", entry.id)
            .warn("forget process failed", {{"exec-id", execId}, {"error", e.what()}});
    }
}

int Sandbox::waitProcess(const std::string& cid, const std::string& execId) {
    std::shared_ptr<ContainerEntry> entry;
    auto handle = findProcess(cid, execId, &entry);
    int status = handle->process().wait();
    handle->markWaited();
    if (handle != entry->init) forgetIfFinished(entry, handle->process().execId());
    return status;
}

uint32_t Sandbox::writeStdin(const std::string& cid, const std::string& execId,
                             const std::string& data) {
    return findProcess(cid, execId)->write(data);
}

std::string Sandbox::readStream(const std::string& cid, const std::string& execId, uint32_t len,
                                bool stderrStream) {
    std::shared_ptr<ContainerEntry> entry;
    auto handle = findProcess(cid, execId, &entry);
    try {
        return handle->read(stderrStream, len);
    } catch (const Error&) {
        if (handle != entry->init) forgetIfFinished(entry, handle->process().execId());
        throw;
    }
}

void Sandbox::closeStdin(const std::string& cid, const std::string& execId) {
    findProcess(cid, execId)->process().closeStdin();
}

void Sandbox::ttyWinResize(const std::string& cid, const std::string& execId, uint32_t rows,
                           uint32_t cols) {
    auto handle = findProcess(cid, execId);
    if (!handle->process().terminal()) {
        throw Error(StatusCode::kFailedPrecondition, "resize tty of process \"" +
                                                         handle->process().execId() + "\" in \"" +
                                                         cid + "\": it has no terminal");
    }
    handle->process().resizeTty(rows, cols);
}

void Sandbox::updateContainer(const std::string& cid, const grpc::LinuxResources& resources) {
    auto entry = find(cid);
    std::lock_guard<std::mutex> op(entry->opMu);
    entry->ctr->update(resources);
}

grpc::StatsContainerResponse Sandbox::statsContainer(const std::string& cid) {
    auto entry = find(cid);
    std::lock_guard<std::mutex> op(entry->opMu);
    return entry->ctr->stats();
}

void Sandbox::pauseContainer(const std::string& cid) {
    auto entry = find(cid);
    std::lock_guard<std::mutex> op(entry->opMu);
    entry->ctr->pause();
}

void Sandbox::resumeContainer(const std::string& cid) {
    auto entry = find(cid);
    std::lock_guard<std::mutex> op(entry->opMu);
    entry->ctr->resume();
}

std::string Sandbox::waitOomEvent(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk(oomMu_);
    auto ready = [&] { return !oomEvents_.empty(); };
    if (timeout.count() <= 0) {
        oomCv_.wait(lk, ready);
    } else if (!oomCv_.wait_for(lk, timeout, ready)) {
        throw Error(StatusCode::kDeadlineExceeded,
                    "GetOOMEvent: no OOM event within " + std::to_string(timeout.count()) + "ms");
    }
    std::string id = oomEvents_.front();
    oomEvents_.pop_front();
    return id;
}

size_t Sandbox::containerCount() {
    std::lock_guard<std::mutex> lk(mu_);
    return containers_.size();
}

size_t Sandbox::processCount() {
    std::vector<std::shared_ptr<ContainerEntry>> entries;
    {
        std::lock_guard<std::mutex> lk(mu_);
        for (auto& [id, e] : containers_) entries.push_back(e);
    }
    size_t n = 0;
    for (auto& e : entries) {
        std::lock_guard<std::mutex> lk(e->procMu);
        if (e->init && !e->init->process().exitCode()) ++n;
        for (auto& [id, p] : e->procs) {
            if (!p->process().exitCode()) ++n;
        }
    }
    return n;
}

}  // namespace kata::agent
