// containerd.task.v2.Task: what containerd asks of the shim, mapped onto the sandbox (VM) and
// the agent. Status codes follow containerd's errdefs (NotFound, AlreadyExists,
// FailedPrecondition, Unimplemented).
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "containerd/runtime/task/v2/shim.pb.h"
#include "events.h"
#include "io.h"
#include "kata/common/log.h"
#include "kata/config/config.h"
#include "paths.h"
#include "persist.h"
#include "sandbox.h"

namespace kata::ttrpc {
class Server;
}

namespace kata::shim {

namespace task = containerd::task::v2;

struct TaskServiceOptions {
    std::string ns;
    std::string shimName;  // argv[0] basename: selects configuration-<class>.toml
    Paths paths;
    bool debug = false;  // -debug from containerd
    // Resolves and loads the configuration; explicitPath is the ConfigPath runtime option.
    std::function<config::RuntimeConfig(const std::string& explicitPath)> loadConfig;
};

class TaskService {
  public:
    TaskService(TaskServiceOptions opts, SandboxDeps deps, std::shared_ptr<EventPublisher> events);
    ~TaskService();  // stops the sandbox if it still runs
    TaskService(const TaskService&) = delete;
    TaskService& operator=(const TaskService&) = delete;

    task::CreateTaskResponse create(const task::CreateTaskRequest& req);
    task::StartResponse start(const task::StartRequest& req);
    task::DeleteResponse remove(const task::DeleteRequest& req);
    void exec(const task::ExecProcessRequest& req);
    task::StateResponse state(const task::StateRequest& req);
    task::PidsResponse pids(const task::PidsRequest& req);
    void pause(const task::PauseRequest& req);
    void resume(const task::ResumeRequest& req);
    void kill(const task::KillRequest& req);
    void resizePty(const task::ResizePtyRequest& req);
    void closeIO(const task::CloseIORequest& req);
    void update(const task::UpdateTaskRequest& req);
    task::WaitResponse wait(const task::WaitRequest& req);
    task::StatsResponse stats(const task::StatsRequest& req);
    task::ConnectResponse connect(const task::ConnectRequest& req);
    void shutdown(const task::ShutdownRequest& req);

    // Called (once) when the shim should exit: after Shutdown with no containers left.
    void setShutdownHandler(std::function<void()> fn);
    size_t containerCount() const;

  private:
    struct Proc;
    struct Task;

    std::shared_ptr<Proc> findProc(const std::string& cid, const std::string& execId,
                                   Task** task = nullptr);
    Task& findTask(const std::string& cid);
    // The container of a task, for a call outside mu_.
    std::shared_ptr<Container> containerOf(const std::string& cid);
    void startWaiter(const std::shared_ptr<Proc>& p);
    void persistLocked();
    void stopSandbox();

    TaskServiceOptions opts_;
    SandboxDeps deps_;
    std::shared_ptr<EventPublisher> events_;
    log::Logger log_;

    std::mutex createMu_;  // one Create at a time (it boots the VM outside mu_)
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::shared_ptr<Sandbox> sandbox_;
    std::string netnsPath_;       // the sandbox's pod netns, persisted for `shim delete`
    std::string hostCgroupPath_;  // sandbox_cgroup_only: its cgroupsPath, for `shim delete`
    std::map<std::string, std::unique_ptr<Task>> tasks_;
    std::function<void()> onShutdown_;
    bool shutdownRequested_ = false;
    int waitersRunning_ = 0;  // detached waiter threads that still use this object
};

void registerTaskService(ttrpc::Server& server, TaskService& service);

}  // namespace kata::shim
