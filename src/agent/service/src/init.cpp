#include "kata/agent/service/init.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/common/log.h"
#include "kata/jail/reaper.h"
#include "kata/ttrpc/ttrpc.h"

namespace fs = std::filesystem;

namespace kata::agent {
namespace {

const log::Logger kLog("init");

void mountOne(const std::string& source, const std::string& target, const std::string& type,
              unsigned long flags, const std::string& data, mode_t dirMode = 0755) {
    if (::mkdir(target.c_str(), dirMode) != 0 && errno != EEXIST) throwErrno("mkdir", target);
    if (::mount(source.c_str(), target.c_str(), type.c_str(), flags,
                data.empty() ? nullptr : data.c_str()) != 0) {
        if (errno == EBUSY) return;  // already mounted (e.g. devtmpfs by the kernel)
        throwErrno("mount " + type + " \"" + source + "\" on", target);
    }
}

bool kernelHasFs(const std::string& name) {
    std::ifstream in("/proc/filesystems");
    std::string line;
    while (std::getline(in, line)) {
        auto tab = line.find('\t');
        if (tab != std::string::npos && line.substr(tab + 1) == name) return true;
    }
    return false;
}

// Forks `argv` with its stdio on fd (or the console device path), as a session leader whose
// controlling terminal is that tty when it is one. Returns the pid.
pid_t spawnShell(int ioFd, const std::string& ttyPath) {
    pid_t pid = ::fork();
    if (pid < 0) throwErrno("fork", "debug console shell");
    if (pid == 0) {
        ::setsid();
        int fd = ioFd;
        if (!ttyPath.empty()) fd = ::open(ttyPath.c_str(), O_RDWR | O_NOCTTY);
        if (fd < 0) _exit(127);
        if (!ttyPath.empty()) ::ioctl(fd, TIOCSCTTY, 1);
        ::dup2(fd, 0);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        if (fd > 2) ::close(fd);
        sigset_t all;
        sigemptyset(&all);
        ::sigprocmask(SIG_SETMASK, &all, nullptr);
        const char* argv[] = {"/bin/sh", "-i", nullptr};
        const char* envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                              "TERM=vt100", "HOME=/", nullptr};
        ::execve(argv[0], const_cast<char* const*>(argv), const_cast<char* const*>(envp));
        _exit(127);
    }
    return pid;
}

void waitChild(pid_t pid) {
    auto done = std::make_shared<std::promise<int>>();
    auto fut = done->get_future();
    jail::Reaper::instance().watch(pid, [done](int status) { done->set_value(status); });
    fut.wait();
}

}  // namespace

std::string mountCgroups() {
    const std::string root = "/sys/fs/cgroup";
    if (kernelHasFs("cgroup2")) {
        mountOne("cgroup2", root, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
        // Hand every available controller to the containers' cgroups.
        std::ifstream in(root + "/cgroup.controllers");
        std::string ctrl, enable;
        while (in >> ctrl) enable += (enable.empty() ? "+" : " +") + ctrl;
        if (!enable.empty()) {
            std::ofstream out(root + "/cgroup.subtree_control");
            out << enable;
            out.close();
            if (!out) kLog.warn("enable cgroup controllers failed", {{"controllers", enable}});
        }
        return "v2";
    }
    mountOne("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755");
    std::ifstream in("/proc/cgroups");
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream f(line);
        std::string name;
        int hier, num, enabled;
        if (!(f >> name >> hier >> num >> enabled) || !enabled) continue;
        mountOne("cgroup", root + "/" + name, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, name);
    }
    return "v1";
}

void setupInitMounts() {
    mountOne("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
    mountOne("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
    mountOne("dev", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    mountOne("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620,gid=5");
    if (::access("/dev/ptmx", F_OK) != 0) (void)!::symlink("pts/ptmx", "/dev/ptmx");
    mountOne("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777);
    mountOne("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    std::string layout = mountCgroups();
    kLog.info("base filesystems mounted", {{"cgroups", layout}});
}

void loadKernelModules(const std::string& listFile) {
    std::ifstream in(listFile);
    if (!in) return;
    std::string line;
    while (std::getline(in, line)) {
        line.erase(0, line.find_first_not_of(" \t"));
        line.erase(line.find_last_not_of(" \t\r") + 1);
        if (line.empty() || line[0] == '#') continue;
        UniqueFd fd(::open(line.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) throwErrno("open kernel module", line);
        if (::syscall(SYS_finit_module, fd.get(), "", 0) != 0 && errno != EEXIST) {
            throwErrno("load kernel module", line);
        }
        kLog.debug("kernel module loaded", {{"module", line}});
    }
}

std::string findSerialPort(const std::string& name, std::chrono::milliseconds timeout,
                           const std::string& sysfsRoot) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    const std::string classDir = sysfsRoot + "/class/virtio-ports";
    for (;;) {
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(classDir, ec)) {
            std::ifstream in(e.path() / "name");
            std::string n;
            std::getline(in, n);
            if (n != name) continue;
            std::string dev = "/dev/" + e.path().filename().string();
            if (::access(dev.c_str(), F_OK) == 0) return dev;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            throw Error(StatusCode::kDeadlineExceeded,
                        "find virtio-serial port \"" + name + "\" in " + classDir +
                            ": not found within " + std::to_string(timeout.count()) +
                            "ms (virtio_console loaded? port on the VM?)");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

std::string resolveServerAddr(const AgentConfig& cfg) {
    if (!cfg.serverAddr.empty()) return cfg.serverAddr;
    if (cfg.channel == "vsock") return "vsock://-1:" + std::to_string(kVsockPort);
    return "serial:" + findSerialPort(kSerialChannelName, cfg.dialTimeout);
}

void startDebugConsole(const AgentConfig& cfg) {
    if (::access("/bin/sh", X_OK) != 0) {
        kLog.warn("debug console requested but /bin/sh is missing");
        return;
    }
    std::string tty = "/dev/console";
    if (!cfg.console.empty() && ::access(("/dev/" + cfg.console).c_str(), F_OK) == 0) {
        tty = "/dev/" + cfg.console;
    }
    if (cfg.debugConsole) {
        std::thread([tty] {
            for (;;) {
                try {
                    pid_t pid = spawnShell(-1, tty);
                    kLog.info("debug console started",
                              {{"tty", tty}, {"pid", std::to_string(pid)}});
                    waitChild(pid);
                } catch (const std::exception& e) {
                    kLog.error("debug console failed", {{"error", e.what()}});
                }
                std::this_thread::sleep_for(std::chrono::seconds(1));
            }
        }).detach();
    }
    if (cfg.debugConsoleVport != 0) {
        uint32_t port = cfg.debugConsoleVport;
        std::thread([port] {
            try {
                UniqueFd lfd = ttrpc::listenVsock(port);
                for (;;) {
                    UniqueFd conn(::accept4(lfd.get(), nullptr, nullptr, SOCK_CLOEXEC));
                    if (!conn) {
                        if (errno == EINTR) continue;
                        throwErrno("accept", "debug console vsock port " + std::to_string(port));
                    }
                    pid_t pid = spawnShell(conn.get(), "");
                    kLog.info("debug console connection", {{"pid", std::to_string(pid)}});
                    jail::Reaper::instance().watch(pid, [](int) {});
                }
            } catch (const std::exception& e) {
                kLog.error("debug console vport failed", {{"error", e.what()}});
            }
        }).detach();
    }
}

void fatalPowerOff(const std::string& reason) {
    kLog.error("fatal error, powering off", {{"error", reason}});
    ::sync();
    if (::getpid() == 1) {
        ::reboot(RB_POWER_OFF);
        for (;;) ::pause();  // never exit as init
    }
    ::_exit(1);
}

}  // namespace kata::agent
