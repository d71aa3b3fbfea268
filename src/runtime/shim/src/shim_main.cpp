// containerd-shim-kata-v2: the three faces containerd's shim v2 contract gives one binary.
//   start   spawn (or find) the server for this sandbox, print its ttrpc address
//   delete  clean up after a shim that died: kill its VM, unmount, remove state
//   (none)  serve containerd.task.v2.Task on the socket start prepared
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "containerd/runtime/task/v2/shim.pb.h"
#include "events.h"
#include "fs_share.h"
#include "host_cgroup.h"
#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/common/version.h"
#include "kata/hypervisor/hypervisor.h"
#include "kata/network/pod_network.h"
#include "kata/ttrpc/ttrpc.h"
#include "options.h"
#include "paths.h"
#include "persist.h"
#include "task_service.h"

namespace fs = std::filesystem;
using namespace kata;
using namespace kata::shim;

namespace {

constexpr int kListenerFd = 3;  // start hands the listening socket to the server here
constexpr const char* kCriContainerType = "io.kubernetes.cri.container-type";
constexpr const char* kCriSandboxId = "io.kubernetes.cri.sandbox-id";

std::string currentDir() {
    std::error_code ec;
    auto p = fs::current_path(ec);
    if (ec) throw SystemError("getcwd", "", ec.value());
    return p.string();
}

// The sandbox a bundle belongs to: its own id unless CRI says it is a container of a pod.
std::string sandboxIdOfBundle(const std::string& bundle, const std::string& id) {
    std::ifstream in(bundle + "/config.json");
    if (!in) return id;
    try {
        auto j = nlohmann::json::parse(in);
        auto a = j.value("annotations", nlohmann::json::object());
        if (a.value(kCriContainerType, "") == "container") {
            std::string sid = a.value(kCriSandboxId, "");
            if (!sid.empty()) return sid;
        }
    } catch (const nlohmann::json::exception&) {
    }
    return id;
}

void writeFileAtomic(const std::string& path, const std::string& text) {
    std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        if (!out) throwErrno("open", tmp);
        out << text;
        if (!out.flush()) throwErrno("write", tmp);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) throwErrno("rename " + tmp + " to", path);
}

bool socketAnswers(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return false;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) return false;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

int runStart(const ShimOptions& opts) {
    const std::string bundle = currentDir();
    const std::string sid = sandboxIdOfBundle(bundle, opts.id);
    const std::string address = shimSocketAddress(opts.address, opts.ns, sid);
    const std::string path = socketPathOf(address);

    // A container of a pod, or a second start for the same sandbox: its shim already serves.
    if (sid != opts.id || socketAnswers(path)) {
        if (sid != opts.id && !socketAnswers(path)) {
            throw Error(StatusCode::kNotFound, "start shim for container " + opts.id +
                                                   ": the shim of sandbox " + sid +
                                                   " does not answer at " + path);
        }
        writeFileAtomic(bundle + "/address", address);
        std::cout << address << std::flush;
        return 0;
    }

    std::error_code ec;
    fs::create_directories(kShimSocketRoot, ec);
    if (ec) throw SystemError("create directory", kShimSocketRoot, ec.value());
    UniqueFd listener = ttrpc::listenUnix(path);

    std::vector<std::string> args = serveArgs(opts, address);
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    pid_t pid = ::fork();
    if (pid < 0) throwErrno("fork shim server for", opts.id);
    if (pid == 0) {
        ::setsid();
        if (listener.get() == kListenerFd) {
            ::fcntl(kListenerFd, F_SETFD, 0);
        } else if (::dup2(listener.get(), kListenerFd) < 0) {
            _exit(120);
        }
        // containerd reads start's output to EOF: the server must not hold stdout/stderr.
        int devnull = ::open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            ::dup2(devnull, 0);
            ::dup2(devnull, 1);
            ::dup2(devnull, 2);
            if (devnull > kListenerFd) ::close(devnull);
        }
        ::execv("/proc/self/exe", argv.data());
        _exit(127);
    }
    listener.reset();
    writeFileAtomic(bundle + "/address", address);
    writeFileAtomic(bundle + "/shim.pid", std::to_string(pid));
    std::cout << address << std::flush;
    return 0;
}

int runDelete(const ShimOptions& opts) {
    log::init("containerd-shim-kata-v2", "runtime",
              opts.debug ? log::Level::kDebug : log::Level::kWarn, 2);
    const std::string bundle = opts.bundle.empty() ? currentDir() : opts.bundle;
    const std::string sid = sandboxIdOfBundle(bundle, opts.id);
    Paths paths;
    log::Logger log = log::Logger("delete").with("sandbox", sid).with("container", opts.id);
    auto state = loadState(paths, sid);

    if (sid == opts.id) {
        hypervisor::cleanupStaleVm(paths.vmRunDir(sid));
        if (state && !state->netnsPath.empty()) {
            try {
                network::detachAll(state->netnsPath);
            } catch (const Error& e) {
                log.warn("clean up the pod network in " + state->netnsPath + ": " + e.what());
            }
        }
        if (state && !state->hostCgroupPath.empty()) {
            try {
                std::string left =
                    removeSandboxCgroup(state->hostCgroupPath, cgroupHierarchies(readMountinfo()));
                if (!left.empty()) log.warn("remove the sandbox cgroup: " + left);
            } catch (const Error& e) {
                log.warn(std::string("remove the sandbox cgroup: ") + e.what());
            }
        }
        std::string problem = cleanupTree(paths.sandboxShareRoot(sid));
        if (!problem.empty()) log.warn("clean up " + paths.sandboxShareRoot(sid) + ": " + problem);
        removeState(paths, sid);
        std::error_code ec;
        fs::remove(socketPathOf(shimSocketAddress(opts.address, opts.ns, sid)), ec);
    } else if (state) {
        auto it = state->containers.find(opts.id);
        if (it != state->containers.end()) {
            MountSet mounts;
            for (const auto& m : it->second.mounts) mounts.add(m);
            mounts.unmountAll();
            state->containers.erase(it);
            saveState(paths, *state);
        }
        std::string problem =
            cleanupTree(fs::path(paths.containerRootfsHost(sid, opts.id)).parent_path().string());
        if (!problem.empty()) log.warn("clean up container dir: " + problem);
    }
    log.info("cleaned up after the shim");

    containerd::task::v2::DeleteResponse resp;
    resp.set_exit_status(128 + SIGKILL);
    *resp.mutable_exited_at() = nowTimestamp();
    std::string out = resp.SerializeAsString();
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    return 0;
}

// The log FIFO containerd opened in the bundle ("log"); -1 when there is none.
int openLogFifo() {
    int fd = ::open("log", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return fd;
}

int runServe(const ShimOptions& opts) {
    // One malloc arena for all threads: the shim is not allocation-bound, and each extra
    // arena keeps its own touched pages (one shim runs per pod, for the pod's whole life).
    ::mallopt(M_ARENA_MAX, 1);
    int logFd = openLogFifo();
    log::init("containerd-shim-kata-v2", "runtime",
              opts.debug ? log::Level::kDebug : log::Level::kInfo, logFd >= 0 ? logFd : 2);
    log::Logger log = log::Logger("shim").with("container", opts.id);

    // Signals are taken by one thread; every other thread inherits the mask.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    UniqueFd listener;
    struct stat st {};
    if (::fstat(kListenerFd, &st) == 0 && S_ISSOCK(st.st_mode)) {
        listener.reset(kListenerFd);
    } else {
        std::string address =
            opts.socket.empty() ? shimSocketAddress(opts.address, opts.ns, opts.id) : opts.socket;
        std::error_code ec;
        fs::create_directories(kShimSocketRoot, ec);
        listener = ttrpc::listenUnix(socketPathOf(address));
    }
    const std::string socketPath = socketPathOf(
        opts.socket.empty() ? shimSocketAddress(opts.address, opts.ns, opts.id) : opts.socket);

    auto events = std::make_shared<TtrpcEventPublisher>(opts.ttrpcAddress, opts.ns);
    TaskServiceOptions so;
    so.ns = opts.ns;
    so.shimName = shimName(opts.argv0);
    so.debug = opts.debug;
    auto service = std::make_unique<TaskService>(so, realSandboxDeps(), events);
    ttrpc::Server server;
    registerTaskService(server, *service);
    service->setShutdownHandler([&server] {
        // Let the Shutdown response reach containerd before the server goes away.
        std::thread([&server] {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            server.shutdown();
        }).detach();
    });
    std::thread([&set, &server, &service, log] {
        int sig = 0;
        if (sigwait(&set, &sig) == 0) {
            log.with("signal", std::to_string(sig)).info("terminating on signal");
            containerd::task::v2::ShutdownRequest req;
            req.set_now(true);
            try {
                service->shutdown(req);
            } catch (const std::exception&) {
            }
            server.shutdown();
        }
    }).detach();

    log.with("version", versionString()).info("shim serving");
    server.serveListener(std::move(listener));
    log.info("shim exiting");
    service.reset();
    events->flush(std::chrono::seconds(2));
    ::unlink(socketPath.c_str());
    // Detached helper threads may still run: leave without running static destructors.
    std::fflush(nullptr);
    _exit(0);
}

}  // namespace

int main(int argc, char** argv) {
    ::signal(SIGPIPE, SIG_IGN);
    ShimOptions opts;
    try {
        opts = parseShimArgs(std::vector<std::string>(argv, argv + argc));
    } catch (const Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 2;
    }
    if (const char* a = std::getenv("TTRPC_ADDRESS")) opts.ttrpcAddress = a;
    if (const char* a = std::getenv("GRPC_ADDRESS")) opts.grpcAddress = a;
    try {
        switch (opts.action) {
            case ShimAction::kVersion:
                std::printf("%s:\n  Version: %s\n", shimName(opts.argv0).c_str(), versionString());
                return 0;
            case ShimAction::kStart:
                return runStart(opts);
            case ShimAction::kDelete:
                return runDelete(opts);
            case ShimAction::kServe:
                return runServe(opts);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", shimName(opts.argv0).c_str(), e.what());
        return 1;
    }
    return 1;
}
