// The agent's sandbox: the containers and processes it runs, the storages mounted for them, the
// shared pid namespace, the guest hooks and the OOM event queue. The RPC layer (rpc.h) is a thin
// translation of AgentService requests onto these methods; every method throws kata::Error with
// the gRPC status to answer, and a failed call leaves nothing half-created behind.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent.pb.h"
#include "kata/agent/service/config.h"
#include "kata/common/fd.h"

namespace kata::jail {
class Container;
class Process;
}  // namespace kata::jail

namespace kata::agent {

class StorageManager;

// Container ids follow Kata's rule: ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$ (so no "/" and no leading
// "."). Throws kInvalidArgument naming the id.
void validateContainerId(const std::string& id);
// Exec ids: same charset, one character allowed.
void validateExecId(const std::string& id);

// One process of a container together with the agent's state for its I/O streams.
class ProcessHandle {
  public:
    explicit ProcessHandle(std::shared_ptr<jail::Process> proc);
    ~ProcessHandle();
    jail::Process& process() { return *proc_; }
    const std::shared_ptr<jail::Process>& shared() const { return proc_; }

    // Blocks until up to len bytes are available; throws "read meet eof" (kInternal, as Kata's
    // agent does) at end of stream, and kCancelled when the container is removed meanwhile.
    std::string read(bool stderrStream, uint32_t len);
    uint32_t write(const std::string& data);
    // Wakes every blocked read (they fail with kCancelled).
    void cancel();

    // An exec'd process can be forgotten once it was waited for and its output streams were
    // read to EOF: nothing the shim does later needs it.
    void markWaited() { waited_ = true; }
    bool finished() const;

  private:
    std::atomic<bool> waited_{false};
    std::atomic<bool> eof_[2] = {false, false};
    std::shared_ptr<jail::Process> proc_;
    UniqueFd cancelFd_;  // eventfd
    std::mutex readMu_[2];
    std::mutex writeMu_;
};

class Sandbox {
  public:
    explicit Sandbox(AgentConfig cfg);
    ~Sandbox();
    Sandbox(const Sandbox&) = delete;
    Sandbox& operator=(const Sandbox&) = delete;

    const AgentConfig& config() const { return cfg_; }

    void createSandbox(const grpc::CreateSandboxRequest& req);
    // Removes every container, unmounts the sandbox storages; the agent keeps serving.
    void destroySandbox();

    void createContainer(const grpc::CreateContainerRequest& req);
    void startContainer(const std::string& cid);
    // timeoutSec 0: wait as long as it takes; otherwise kDeadlineExceeded when destroy is late.
    void removeContainer(const std::string& cid, uint32_t timeoutSec);
    void execProcess(const grpc::ExecProcessRequest& req);
    void signalProcess(const std::string& cid, const std::string& execId, uint32_t sig);
    int waitProcess(const std::string& cid, const std::string& execId);
    uint32_t writeStdin(const std::string& cid, const std::string& execId, const std::string& data);
    std::string readStream(const std::string& cid, const std::string& execId, uint32_t len,
                           bool stderrStream);
    void closeStdin(const std::string& cid, const std::string& execId);
    void ttyWinResize(const std::string& cid, const std::string& execId, uint32_t rows,
                      uint32_t cols);
    void updateContainer(const std::string& cid, const grpc::LinuxResources& resources);
    grpc::StatsContainerResponse statsContainer(const std::string& cid);
    void pauseContainer(const std::string& cid);
    void resumeContainer(const std::string& cid);

    // Blocks until a container's memory cgroup had an OOM kill; returns its id. timeout 0 waits
    // for ever, else kDeadlineExceeded when it passes.
    std::string waitOomEvent(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

    size_t containerCount();
    size_t processCount();

  private:
    struct ContainerEntry;
    std::shared_ptr<ContainerEntry> find(const std::string& cid);
    std::shared_ptr<ProcessHandle> findProcess(const std::string& cid, const std::string& execId,
                                               std::shared_ptr<ContainerEntry>* entryOut = nullptr);
    void releaseContainerResources(ContainerEntry& entry);
    // Drops the agent's handle of an exec'd process once it was waited for and read to EOF,
    // and the jail's hold on it with it (forgetLocked: entry.procMu held, the process exited).
    void forgetIfFinished(const std::shared_ptr<ContainerEntry>& entry, const std::string& execId);
    void forgetLocked(ContainerEntry& entry,
                      std::map<std::string, std::shared_ptr<ProcessHandle>>::iterator it);
    void appendGuestHooks(grpc::Spec* spec);
    std::string prepareBundle(const std::string& cid, grpc::Spec* spec, bool* boundRootfs);

    AgentConfig cfg_;
    std::unique_ptr<StorageManager> storage_;
    bool noPivotRoot_ = false;  // "/" is the initramfs

    std::mutex mu_;
    std::map<std::string, std::shared_ptr<ContainerEntry>> containers_;
    std::string sandboxId_;
    std::string guestHookPath_;
    bool sandboxPidns_ = false;
    UniqueFd sandboxPidnsFd_;  // pins the shared pid namespace while the sandbox lives
    UniqueFd sharedIpcNs_, sharedUtsNs_;
    bool sandboxStorages_ = false;

    std::mutex oomMu_;
    std::condition_variable oomCv_;
    std::deque<std::string> oomEvents_;
};

}  // namespace kata::agent
