// The QEMU implementation of the Hypervisor seam: QEMU runs as our child (never daemonized, so
// its death is noticed), is driven over QMP and leaves its pid in <runDir>/pid so that a later
// `shim delete` can kill it if the shim that started it died.
#include <fcntl.h>
#include <linux/ioctl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/common/log.h"
#include "kata/hypervisor/hypervisor.h"
#include "kata/hypervisor/qemu_cmdline.h"
#include "kata/hypervisor/qmp.h"

namespace kata::hypervisor {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr int kFirstPassedFd = 3;
// From linux/vhost.h, which cannot be included from C++ (its virtio_ring.h is C-only).
constexpr unsigned long kVhostVsockSetGuestCid = _IOW(0xAF, 0x60, uint64_t);
constexpr auto kQmpStartTimeout = 30s;

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

// The end of a file only: console logs of long-lived debug guests grow without bound.
std::string readTail(const std::string& path, size_t maxBytes = 64 * 1024) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) return "";
    std::streamoff size = in.tellg();
    std::streamoff start = size > static_cast<std::streamoff>(maxBytes) ? size - maxBytes : 0;
    in.seekg(start);
    std::string text(static_cast<size_t>(size - start), '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    return text;
}

// Drops terminal control sequences (firmware clears the screen) so logs stay readable.
std::string printable(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        if (c == 0x1b) {  // ESC [ ... final byte, or ESC + one char
            if (i + 1 < text.size() && text[i + 1] == '[') {
                i += 2;
                while (i < text.size() && !(text[i] >= 0x40 && text[i] <= 0x7e)) ++i;
            } else {
                ++i;
            }
            continue;
        }
        if (c == '\r') continue;
        if (c < 0x20 && c != '\n' && c != '\t') continue;
        out += static_cast<char>(c);
    }
    return out;
}

std::string lastLines(const std::string& text, size_t lines) {
    if (lines == 0 || text.empty()) return "";
    size_t end = text.size();
    if (text[end - 1] == '\n') --end;
    size_t pos = end;
    size_t count = 0;
    while (pos > 0) {
        if (text[pos - 1] == '\n' && ++count == lines) break;
        --pos;
    }
    return text.substr(pos, end - pos);
}

std::string describeWaitStatus(int status) {
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char* name = sigabbrev_np(sig);
        return "killed by signal " + std::to_string(sig) +
               (name ? std::string(" (SIG") + name + ")" : "");
    }
    return "ended with wait status " + std::to_string(status);
}

// Removes a directory tree when it goes out of scope, unless released.
class RunDirGuard {
  public:
    explicit RunDirGuard(std::string dir) : dir_(std::move(dir)) {}
    ~RunDirGuard() {
        if (!dir_.empty()) {
            std::error_code ec;
            fs::remove_all(dir_, ec);
        }
    }
    void release() { dir_.clear(); }

  private:
    std::string dir_;
};

// Kills and reaps a child when it goes out of scope, unless released.
class ChildGuard {
  public:
    explicit ChildGuard(pid_t pid) : pid_(pid) {}
    ~ChildGuard() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
            }
        }
    }
    void release() { pid_ = -1; }

  private:
    pid_t pid_;
};

// fork+exec with stdin from /dev/null and stdout/stderr into logFd; passFds[i] becomes fd
// kFirstPassedFd + i in the child. Exec failures are reported back through a close-on-exec pipe.
pid_t spawn(const std::vector<std::string>& argv, int logFd, const std::vector<int>& passFds) {
    std::vector<char*> cargv;
    cargv.reserve(argv.size() + 1);
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    if (passFds.size() > 32) throw Error(StatusCode::kInvalidArgument, "too many fds for QEMU");

    int errPipe[2];
    if (::pipe2(errPipe, O_CLOEXEC) != 0) throwErrno("pipe for exec of", argv[0]);
    UniqueFd errRead(errPipe[0]), errWrite(errPipe[1]);
    UniqueFd devNull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!devNull) throwErrno("open", "/dev/null");
    const std::vector<int>& fds = passFds;  // read only after fork: no allocation there

    pid_t pid = ::fork();
    if (pid < 0) throwErrno("fork for", argv[0]);
    if (pid == 0) {
        // Only async-signal-safe calls from here on.
        ::setsid();  // a terminal's ^C or the shim's process group signals must not reach QEMU
        int errFd = ::fcntl(errWrite.get(), F_DUPFD_CLOEXEC, 100);
        // First move every fd to pass out of the way (they may sit where others must go).
        int moved[32];
        for (size_t i = 0; i < fds.size(); ++i) moved[i] = ::fcntl(fds[i], F_DUPFD, 64);
        ::dup2(devNull.get(), 0);
        ::dup2(logFd, 1);
        ::dup2(logFd, 2);
        for (size_t i = 0; i < fds.size(); ++i)
            ::dup2(moved[i], kFirstPassedFd + static_cast<int>(i));  // dup2 clears CLOEXEC
        int firstFree = kFirstPassedFd + static_cast<int>(fds.size());
        for (int fd = firstFree; fd < 1024; ++fd)
            if (fd != errFd) ::close(fd);
        ::syscall(SYS_close_range, 1024u, ~0u, 0u);
        ::execv(cargv[0], cargv.data());
        int err = errno;
        (void)!::write(errFd, &err, sizeof err);
        ::_exit(127);
    }
    errWrite.reset();
    int err = 0;
    ssize_t n;
    while ((n = ::read(errRead.get(), &err, sizeof err)) < 0 && errno == EINTR) {
    }
    if (n == sizeof err) {
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
        throw SystemError("exec", argv[0], err);
    }
    return pid;
}

bool processGone(pid_t pid) {
    std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
    if (stat.empty()) return true;
    size_t paren = stat.rfind(')');
    return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

// Picks a free guest CID by asking vhost-vsock to hold one; the fd is passed to QEMU.
UniqueFd allocateVsockCid(uint32_t* cid) {
    UniqueFd fd(::open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC));
    if (!fd) throwErrno("open", "/dev/vhost-vsock");
    std::mt19937 rng(std::random_device{}());
    uint32_t start = 3 + rng() % 100000;
    for (uint32_t i = 0; i < 1000; ++i) {
        uint64_t candidate = start + i;
        if (::ioctl(fd.get(), kVhostVsockSetGuestCid, &candidate) == 0) {
            *cid = static_cast<uint32_t>(candidate);
            return fd;
        }
        if (errno != EADDRINUSE) throwErrno("VHOST_VSOCK_SET_GUEST_CID", std::to_string(candidate));
    }
    throw Error(StatusCode::kResourceExhausted,
                "no free vsock guest CID found near " + std::to_string(start));
}

class Qemu final : public Hypervisor {
  public:
    Qemu(HypervisorConfig config, VmSpec spec)
        : config_(std::move(config)),
          spec_(std::move(spec)),
          paths_(QemuRunPaths::forRunDir(spec_.runDir)),
          log_(log::Logger("qemu").with("sandbox", spec_.sandboxId)) {}

    ~Qemu() override {
        try {
            stop(2s);
        } catch (const std::exception& e) {
            log_.error("stopping VM on destruction failed", {{"error", e.what()}});
        }
    }

    void start() override {
        std::lock_guard lifecycle(lifecycleMu_);
        if (started_)
            throw Error(StatusCode::kFailedPrecondition,
                        "start VM " + spec_.sandboxId + ": already started");
        launch_.hostMemoryMiB = hostMemoryMiB();
        launch_.hostCpus = hostCpuCount();
        validateConfig(config_, spec_, launch_.hostMemoryMiB);

        std::string warning;
        launch_.accelerator = resolveAccelerator(config_.accelerator, &warning);
        if (!warning.empty()) log_.warn(warning);
        std::string channelWhy;
        launch_.agentChannel = resolveAgentChannel(config_.agentChannel, &channelWhy);
        if (launch_.agentChannel == "vsock") {
            vhostFd_ = allocateVsockCid(&launch_.vsockCid);
        }
        std::vector<int> passFds;
        if (vhostFd_) {
            launch_.vhostFd = kFirstPassedFd + static_cast<int>(passFds.size());
            passFds.push_back(vhostFd_.get());
        }
        launch_.nicFds.clear();
        for (const NetDevice& nic : spec_.nics) {
            launch_.nicFds.push_back(kFirstPassedFd + static_cast<int>(passFds.size()));
            passFds.push_back(nic.tapFd);
        }

        prepareRunDir();
        RunDirGuard runDirGuard(spec_.runDir);

        std::optional<ChildGuard> virtiofsdGuard;
        if (config_.sharedFs == "virtio-fs" && !spec_.sharedDir.empty()) {
            virtiofsdPid_ = startVirtiofsd();
            virtiofsdGuard.emplace(virtiofsdPid_);
        }

        const auto argv = buildQemuCommandLine(config_, spec_, launch_);
        const std::string logPath = spec_.runDir + "/qemu.log";
        UniqueFd logFd(::open(logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
        if (!logFd) throwErrno("create", logPath);
        log_.with("accelerator", launch_.accelerator)
            .with("channel", launch_.agentChannel)
            .info("starting QEMU", {{"command", joinArgs(argv)}});
        pid_t pid = spawn(argv, logFd.get(), passFds);
        ChildGuard childGuard(pid);
        logFd.reset();
        writePidFile(pid);

        if (spec_.templateState.empty()) {
            qmp_ = connectQmp(pid, logPath, childGuard);
        } else {
            // QEMU may reject the stream before QMP is even up; either way the error names the
            // template, which is what the user has to look at.
            try {
                qmp_ = connectQmp(pid, logPath, childGuard);
                restoreFromTemplate();
            } catch (const Error& e) {
                std::this_thread::sleep_for(100ms);  // let QEMU finish its error message
                std::string what = e.what();
                const std::string said = lastLines(printable(readTail(logPath)), 10);
                if (!said.empty() && what.find(said) == std::string::npos)
                    what += "; QEMU said: " + said;
                throw Error(e.code(), "restore VM " + spec_.sandboxId + " from template " +
                                          spec_.templateState + ": " + what);
            }
        }
        std::string status = qmp_->status();
        if (status != "running")
            throw Error(StatusCode::kInternal, "QEMU for sandbox " + spec_.sandboxId + " is \"" +
                                                   status + "\" after start, not running");

        pid_ = pid;
        // A pidfd names this very process even after its pid is reaped and reused.
        pidFd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
        stopping_ = false;
        exited_ = false;
        watcher_ = std::thread([this, pid] { watch(pid); });
        childGuard.release();
        if (virtiofsdGuard) virtiofsdGuard->release();
        runDirGuard.release();
        started_ = true;
        log_.with("qemu_pid", std::to_string(pid)).info("QEMU running");
    }

    void stop(std::chrono::milliseconds timeout) override {
        std::thread watcher;
        {
            std::lock_guard lifecycle(lifecycleMu_);
            if (!started_ || stopped_) return;
            {
                std::lock_guard lock(exitMu_);
                stopping_ = true;
            }
            if (!waitExited(0ms)) {
                try {
                    std::lock_guard qmpLock(qmpMu_);
                    if (qmp_)
                        qmp_->execute("quit", nlohmann::json::object(),
                                      std::min<std::chrono::milliseconds>(timeout, 2s));
                } catch (const std::exception& e) {
                    log_.debug("QMP quit failed, will kill", {{"error", e.what()}});
                }
                if (!waitExited(timeout)) {
                    log_.warn("QEMU did not quit in time, killing it",
                              {{"qemu_pid", std::to_string(pid_)}});
                    killQemu();
                    if (!waitExited(30s))
                        throw Error(StatusCode::kInternal, "QEMU pid " + std::to_string(pid_) +
                                                               " did not die after SIGKILL");
                }
            }
            // Joined below, outside the lock: the exit callback running on it may call stop().
            watcher = std::move(watcher_);
            if (virtiofsdPid_ > 0) {
                ::kill(virtiofsdPid_, SIGTERM);
                for (int i = 0; i < 100 && ::waitpid(virtiofsdPid_, nullptr, WNOHANG) == 0; ++i)
                    std::this_thread::sleep_for(10ms);
                ::kill(virtiofsdPid_, SIGKILL);
                ::waitpid(virtiofsdPid_, nullptr, 0);
                virtiofsdPid_ = -1;
            }
            {
                std::lock_guard qmpLock(qmpMu_);
                qmp_.reset();
            }
            vhostFd_.reset();
            pidFd_.reset();
            savedConsoleTail_ = lastLines(printable(readTail(paths_.consoleLog)), 200);
            std::error_code ec;
            fs::remove_all(spec_.runDir, ec);
            if (ec)
                log_.warn("removing run dir failed",
                          {{"path", spec_.runDir}, {"error", ec.message()}});
            stopped_ = true;
        }
        if (watcher.joinable()) {
            if (watcher.get_id() == std::this_thread::get_id())
                watcher.detach();  // stop() called from the exit callback
            else
                watcher.join();
        }
        log_.info("QEMU stopped");
    }

    std::string agentAddress() const override {
        if (launch_.agentChannel == "vsock")
            return "vsock://" + std::to_string(launch_.vsockCid) + ":" +
                   std::to_string(kAgentVsockPort);
        return "unix://" + paths_.agentSocket;
    }

    std::string portForwardAddress() const override {
        return spec_.portForwardChannel ? "unix://" + paths_.portForwardSocket : "";
    }

    pid_t pid() const override { return pid_; }
    std::string consoleLogPath() const override { return paths_.consoleLog; }

    std::string consoleTail(size_t lines) const override {
        std::string text = printable(readTail(paths_.consoleLog));
        if (text.empty()) return lastLines(savedConsoleTail_, lines);
        return lastLines(text, lines);
    }

    void setExitCallback(std::function<void(const std::string&)> cb) override {
        std::lock_guard lock(exitMu_);
        exitCallback_ = std::move(cb);
    }

    std::string status() override {
        std::lock_guard qmpLock(qmpMu_);
        requireRunning("QMP query-status");
        return qmp_->status();
    }

    void pause() override { qmpCommand("stop", nlohmann::json::object()); }
    void resume() override { qmpCommand("cont", nlohmann::json::object()); }

    std::string hotplugBlockDevice(const std::string& id, const std::string& hostPath,
                                   bool readonly) override {
        if (config_.machineType == "microvm")
            throw Error(StatusCode::kUnimplemented,
                        "hotplug block device " + id + ": microvm has no hotplug-capable bus");
        struct stat st {};
        if (::stat(hostPath.c_str(), &st) != 0) throwErrno("hotplug block device " + id, hostPath);
        std::lock_guard qmpLock(qmpMu_);
        requireRunning("hotplug block device " + id);
        if (hotplugged_.count(id))
            throw Error(StatusCode::kAlreadyExists, "hotplug block device " + id + ": id in use");
        int slot = 0;
        for (int s = 1; s < 32; ++s) {
            bool used = false;
            for (const auto& [_, u] : hotplugged_) used = used || u == s;
            if (!used) {
                slot = s;
                break;
            }
        }
        if (slot == 0)
            throw Error(StatusCode::kResourceExhausted,
                        "hotplug block device " + id + ": all 31 bridge slots in use");
        const std::string node = "drive-" + id;
        qmp_->execute(
            "blockdev-add",
            {{"node-name", node},
             {"driver", "raw"},
             {"read-only", readonly},
             {"file",
              {{"driver", S_ISBLK(st.st_mode) ? "host_device" : "file"}, {"filename", hostPath}}}});
        char addr[8];
        std::snprintf(addr, sizeof addr, "0x%x", slot);
        try {
            qmp_->execute("device_add", {{"driver", "virtio-blk-pci"},
                                         {"id", id},
                                         {"drive", node},
                                         {"bus", kHotplugBridgeId},
                                         {"addr", addr}});
        } catch (...) {
            try {
                qmp_->execute("blockdev-del", {{"node-name", node}});
            } catch (...) {
            }
            throw;
        }
        hotplugged_[id] = slot;
        char path[8];
        std::snprintf(path, sizeof path, "%02x/%02x", kHotplugBridgeSlot, slot);
        return path;
    }

    void saveTemplate(const std::string& statePath) override {
        if (statePath.empty() || statePath.find('\'') != std::string::npos)
            throw Error(StatusCode::kInvalidArgument,
                        "save template \"" + statePath + "\": path empty or has a single quote");
        std::lock_guard qmpLock(qmpMu_);
        requireRunning("save template " + statePath);
        qmp_->execute("stop");
        const std::string tmp = statePath + ".tmp";
        qmp_->execute("migrate", {{"uri", "exec:cat > '" + tmp + "'"}});
        waitMigration("save template " + statePath, {"completed"});
        if (::rename(tmp.c_str(), statePath.c_str()) != 0) {
            int err = errno;
            ::unlink(tmp.c_str());
            throw SystemError("rename template state to", statePath, err);
        }
        log_.with("path", statePath).info("VM state saved as template");
    }

    void unplugDevice(const std::string& id) override {
        std::lock_guard qmpLock(qmpMu_);
        requireRunning("unplug device " + id);
        auto it = hotplugged_.find(id);
        if (it == hotplugged_.end())
            throw Error(StatusCode::kNotFound, "unplug device " + id + ": not hotplugged here");
        qmp_->execute("device_del", {{"id", id}});
        // The guest has to release the device before QEMU deletes it.
        qmp_->waitEvent(
            "DEVICE_DELETED",
            [&id](const nlohmann::json& data) { return data.value("device", "") == id; }, 10s);
        qmp_->execute("blockdev-del", {{"node-name", "drive-" + id}});
        hotplugged_.erase(it);
    }

  private:
    static std::string joinArgs(const std::vector<std::string>& argv) {
        std::string out;
        for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
        return out;
    }

    void prepareRunDir() {
        const fs::path dir(spec_.runDir);
        std::error_code ec;
        if (fs::exists(dir, ec)) {
            std::string pidText = readFile(paths_.pidFile);
            pid_t old = static_cast<pid_t>(std::atoi(pidText.c_str()));
            if (old > 0 && !processGone(old) &&
                readFile("/proc/" + std::to_string(old) + "/cmdline").find(spec_.runDir) !=
                    std::string::npos)
                throw Error(StatusCode::kAlreadyExists,
                            "start VM " + spec_.sandboxId + ": run dir " + spec_.runDir +
                                " belongs to running QEMU pid " + std::to_string(old));
            fs::remove_all(dir, ec);
            if (ec)
                throw Error(StatusCode::kInternal,
                            "remove stale run dir " + spec_.runDir + ": " + ec.message());
        }
        fs::create_directories(dir.parent_path(), ec);
        if (ec)
            throw Error(StatusCode::kInternal,
                        "create " + dir.parent_path().string() + ": " + ec.message());
        if (::mkdir(spec_.runDir.c_str(), 0750) != 0) throwErrno("mkdir", spec_.runDir);
    }

    void writePidFile(pid_t pid) {
        std::ofstream out(paths_.pidFile);
        out << pid << "\n";
        if (!out.flush()) throw Error(StatusCode::kInternal, "write pid file " + paths_.pidFile);
    }

    pid_t startVirtiofsd() {
        const std::string logPath = spec_.runDir + "/virtiofsd.log";
        UniqueFd logFd(::open(logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
        if (!logFd) throwErrno("create", logPath);
        std::vector<std::string> argv = {config_.virtioFsDaemon,
                                         "--socket-path=" + paths_.virtiofsSocket,
                                         "--shared-dir=" + spec_.sharedDir,
                                         "--cache=" + config_.virtioFsCache, "--sandbox=none"};
        pid_t pid = spawn(argv, logFd.get(), {});
        ChildGuard guard(pid);
        for (int i = 0; i < 500; ++i) {
            if (fs::exists(paths_.virtiofsSocket)) {
                guard.release();
                return pid;
            }
            int status = 0;
            if (::waitpid(pid, &status, WNOHANG) == pid) {
                guard.release();
                throw Error(StatusCode::kInternal, "virtiofsd " + config_.virtioFsDaemon + " " +
                                                       describeWaitStatus(status) + ": " +
                                                       lastLines(printable(readTail(logPath)), 10));
            }
            std::this_thread::sleep_for(10ms);
        }
        throw Error(StatusCode::kDeadlineExceeded,
                    "virtiofsd did not create " + paths_.virtiofsSocket + " within 5 s");
    }

    // Connects QMP while watching that QEMU did not die on its way up.
    QmpClient connectQmp(pid_t pid, const std::string& logPath, ChildGuard& guard) {
        const auto deadline = std::chrono::steady_clock::now() + kQmpStartTimeout;
        for (;;) {
            int status = 0;
            pid_t r = ::waitpid(pid, &status, WNOHANG);
            if (r == pid) {
                guard.release();  // reaped already
                throw Error(StatusCode::kInternal,
                            "QEMU " + config_.path + " for sandbox " + spec_.sandboxId + " " +
                                describeWaitStatus(status) +
                                " during start: " + lastLines(printable(readTail(logPath)), 20));
            }
            try {
                return QmpClient::connect(paths_.qmpSocket, 200ms);
            } catch (const Error& e) {
                if (std::chrono::steady_clock::now() >= deadline)
                    throw Error(StatusCode::kDeadlineExceeded,
                                "QEMU for sandbox " + spec_.sandboxId + " did not answer QMP on " +
                                    paths_.qmpSocket + ": " + e.what());
            }
        }
    }

    // Polls query-migrate until one of `done`; throws on "failed"/"cancelled" or after 120 s.
    void waitMigration(const std::string& op, std::initializer_list<const char*> done) {
        const auto deadline = std::chrono::steady_clock::now() + 120s;
        for (;;) {
            nlohmann::json info = qmp_->execute("query-migrate");
            std::string status = info.value("status", "");
            for (const char* d : done)
                if (status == d) return;
            if (status == "failed" || status == "cancelled")
                throw Error(StatusCode::kInternal,
                            op + ": migration " + status + ": " + info.value("error-desc", "?"));
            if (std::chrono::steady_clock::now() >= deadline)
                throw Error(StatusCode::kDeadlineExceeded,
                            op + ": migration still \"" + status + "\" after 120 s");
            std::this_thread::sleep_for(20ms);
        }
    }

    // With -incoming QEMU loads the state and then sits paused; resume it.
    void restoreFromTemplate() {
        const auto deadline = std::chrono::steady_clock::now() + 120s;
        std::string status;
        while ((status = qmp_->status()) == "inmigrate") {
            if (std::chrono::steady_clock::now() >= deadline)
                throw Error(StatusCode::kDeadlineExceeded, "restore VM " + spec_.sandboxId +
                                                               " from " + spec_.templateState +
                                                               ": still loading after 120 s");
            std::this_thread::sleep_for(10ms);
        }
        if (status != "paused" && status != "postmigrate" && status != "running")
            throw Error(StatusCode::kInternal, "restore VM " + spec_.sandboxId + " from " +
                                                   spec_.templateState + ": QEMU is \"" + status +
                                                   "\" (see " + spec_.runDir + "/qemu.log)");
        if (status != "running") qmp_->execute("cont");
        log_.with("template", spec_.templateState).info("VM restored from template");
    }

    void watch(pid_t pid) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        std::function<void(const std::string&)> cb;
        std::string reason;
        {
            std::lock_guard lock(exitMu_);
            exited_ = true;
            if (!stopping_) {
                reason = "QEMU pid " + std::to_string(pid) + " for sandbox " + spec_.sandboxId +
                         " " + describeWaitStatus(status);
                std::string qemuErr =
                    lastLines(printable(readTail(spec_.runDir + "/qemu.log")), 10);
                if (!qemuErr.empty()) reason += "; QEMU said: " + qemuErr;
                reason +=
                    "; console tail:\n" + lastLines(printable(readTail(paths_.consoleLog)), 30);
                cb = exitCallback_;
            }
        }
        exitCv_.notify_all();
        if (reason.empty()) return;
        log_.error("QEMU exited unexpectedly", {{"reason", reason}});
        // Nothing of *this is touched after the callback: it may stop and destroy us.
        if (cb) cb(reason);
    }

    void killQemu() {
        if (pidFd_ && ::syscall(SYS_pidfd_send_signal, pidFd_.get(), SIGKILL, nullptr, 0) == 0)
            return;
        ::kill(pid_, SIGKILL);
    }

    bool waitExited(std::chrono::milliseconds timeout) {
        std::unique_lock lock(exitMu_);
        return exitCv_.wait_for(lock, timeout, [this] { return exited_; });
    }

    void requireRunning(const std::string& op) {
        if (!qmp_ || stopped_)
            throw Error(StatusCode::kFailedPrecondition,
                        op + ": VM " + spec_.sandboxId + " is not running");
        std::lock_guard lock(exitMu_);
        if (exited_)
            throw Error(StatusCode::kFailedPrecondition,
                        op + ": QEMU for sandbox " + spec_.sandboxId + " has exited");
    }

    void qmpCommand(const std::string& command, const nlohmann::json& args) {
        std::lock_guard qmpLock(qmpMu_);
        requireRunning("QMP " + command);
        qmp_->execute(command, args);
    }

    HypervisorConfig config_;
    VmSpec spec_;
    QemuRunPaths paths_;
    log::Logger log_;
    QemuLaunchParams launch_;

    std::mutex lifecycleMu_;  // start/stop
    std::mutex qmpMu_;        // one QMP command at a time
    std::optional<QmpClient> qmp_;
    std::map<std::string, int> hotplugged_;  // device id -> bridge slot

    pid_t pid_ = -1;
    pid_t virtiofsdPid_ = -1;
    UniqueFd vhostFd_;
    UniqueFd pidFd_;
    std::thread watcher_;
    bool started_ = false, stopped_ = false;
    std::string savedConsoleTail_;

    std::mutex exitMu_;
    std::condition_variable exitCv_;
    bool exited_ = false;
    bool stopping_ = false;
    std::function<void(const std::string&)> exitCallback_;
};

}  // namespace

std::string defaultRunDir(const std::string& sandboxId) { return "/run/vc/vm/" + sandboxId; }

std::unique_ptr<Hypervisor> createHypervisor(const HypervisorConfig& config, const VmSpec& spec) {
    return std::make_unique<Qemu>(config, spec);
}

void cleanupStaleVm(const std::string& runDir) {
    if (runDir.empty() || runDir[0] != '/')
        throw Error(StatusCode::kInvalidArgument,
                    "cleanup VM: run dir \"" + runDir + "\" is not an absolute path");
    const auto paths = QemuRunPaths::forRunDir(runDir);
    pid_t pid = static_cast<pid_t>(std::atoi(readFile(paths.pidFile).c_str()));
    if (pid > 0 && !processGone(pid) &&
        readFile("/proc/" + std::to_string(pid) + "/cmdline").find(runDir) != std::string::npos) {
        log::Logger("qemu")
            .with("qemu_pid", std::to_string(pid))
            .warn("killing QEMU left behind", {{"run_dir", runDir}});
        ::kill(pid, SIGKILL);
        for (int i = 0; i < 500 && !processGone(pid); ++i) {
            ::waitpid(pid, nullptr, WNOHANG);  // in case it is our own child
            std::this_thread::sleep_for(10ms);
        }
        if (!processGone(pid))
            throw Error(StatusCode::kInternal, "cleanup VM " + runDir + ": QEMU pid " +
                                                   std::to_string(pid) + " survived SIGKILL");
    }
    std::error_code ec;
    fs::remove_all(runDir, ec);
    if (ec) throw Error(StatusCode::kInternal, "remove run dir " + runDir + ": " + ec.message());
}

}  // namespace kata::hypervisor
