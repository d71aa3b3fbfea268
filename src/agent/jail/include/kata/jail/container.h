// The agent's container library: runs OCI containers directly (no runc) from a grpc::Spec.
// One file per concern lives in src/ (namespaces, rootfs, cgroups v1/v2, capabilities, seccomp,
// users/rlimits, terminal, hooks, spawning); this header is the whole public surface.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent.pb.h"
#include "agent/oci.pb.h"
#include "kata/common/fd.h"

namespace kata::jail {

// The agent's ends of a process's stdio; with a terminal only ptyMaster is set (read+write).
struct ProcessIo {
    UniqueFd stdinWriter, stdoutReader, stderrReader, ptyMaster;
};

class Process {
  public:
    Process(std::string execId, pid_t pid, bool terminal, ProcessIo io);
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    const std::string& execId() const { return execId_; }
    pid_t pid() const { return pid_; }  // in the agent's pid namespace
    bool terminal() const { return terminal_; }
    ProcessIo& io() { return io_; }
    int wait();  // blocks until exit; exit code, 128+signal if killed
    // Like wait() but gives up after timeoutMs; nullopt on timeout.
    std::optional<int> waitFor(int timeoutMs);
    std::optional<int> exitCode() const;  // set once exited
    void signal(int sig);                 // ESRCH after exit is not an error
    void resizeTty(uint32_t rows, uint32_t cols);
    void closeStdin();

    // Called by the reaper with the raw wait status; public for the library's own use.
    void markExited(int rawStatus);

  private:
    std::string execId_;
    pid_t pid_;
    bool terminal_;
    ProcessIo io_;
    mutable std::mutex mu_;
    std::condition_variable exited_;
    std::optional<int> exitCode_;
};

struct CreateOptions {
    std::string bundleDir;         // e.g. /run/kata-containers/<cid> (config.json written there)
    std::string sandboxPidNsPath;  // non-empty: join this pid namespace instead of creating one
    // Enter the rootfs with MS_MOVE + chroot instead of pivot_root: needed when the agent's own
    // root is an initramfs, where pivot_root fails with EINVAL.
    bool noPivotRoot = false;
};

class Container {
  public:
    enum class State { kCreated, kRunning, kPaused, kStopped };

    // Like `runc create`: namespaces, rootfs (spec.root.path, absolute in the agent's mount ns),
    // mounts, cgroups, devices; the init process is created and blocks until start(). Throws
    // kata::Error naming the failing step; nothing is left behind on failure.
    static std::unique_ptr<Container> create(const std::string& id, const grpc::Spec& spec,
                                             const CreateOptions& opts);
    ~Container();
    Container(const Container&) = delete;
    Container& operator=(const Container&) = delete;

    const std::string& id() const;
    State state() const;
    std::shared_ptr<Process> initProcess();
    void start();  // runs hooks, execs the user's process
    // Runs a new process inside the container's namespaces and cgroup; started at once.
    std::shared_ptr<Process> exec(const std::string& execId, const grpc::Process& process);
    std::shared_ptr<Process> process(const std::string& execId);  // nullptr if unknown
    // Drops the container's hold on an exec'd process that has exited, so its exec id can be
    // used again and its stdio/pty fds close once the caller's last reference goes. Throws
    // kNotFound for an unknown id, kFailedPrecondition for the init process (never forgotten:
    // the container's state depends on it) or for a process still running.
    void forgetProcess(const std::string& execId);
    void kill(int sig, bool all);  // all: every process in the container
    void pause();                  // freezer
    void resume();
    void update(const grpc::LinuxResources& resources);
    grpc::StatsContainerResponse stats();  // cgroup stats (cpu, memory, pids, blkio)
    std::vector<pid_t> pids();
    void setOomCallback(std::function<void()> cb);  // called on each OOM kill in its memory cgroup
    void destroy();  // SIGKILL all, reap, remove cgroups, unmount; idempotent

    // The cgroup path (relative to each hierarchy's root) the container lives in.
    const std::string& cgroupPath() const;

    struct Impl;

  private:
    explicit Container(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

const char* stateName(Container::State state);

}  // namespace kata::jail
