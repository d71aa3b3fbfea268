// One container of a sandbox, as the shim holds it: what was mounted for it on the host side of
// the share, and every agent call that concerns it or its processes. The task service keeps
// containerd's view (process states, exit statuses, events) and reaches the guest only through
// this class and the Sandbox that made it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/agent.pb.h"
#include "agent_client.h"
#include "fs_share.h"
#include "io.h"
#include "kata/common/log.h"

namespace kata::shim {

class Container {
  public:
    // mounts/sharedPaths: what the sandbox made for it on the share; hostDir: the per-container
    // directory on the share (removed with it).
    // releaseDevices: unplugs what was hot-plugged for it, after it is gone from the guest.
    Container(std::string id, std::string bundle, std::shared_ptr<AgentClient> agent,
              MountSet mounts, std::vector<std::string> sharedPaths, std::string hostDir,
              std::function<void()> releaseDevices = {});
    ~Container();
    Container(const Container&) = delete;
    Container& operator=(const Container&) = delete;

    const std::string& id() const { return id_; }
    const std::string& bundle() const { return bundle_; }
    // Every host path made for the container (mount points and shared files), for persist.
    std::vector<std::string> hostPaths() const;

    // The agent's exec id of the init process is the container id.
    void start();
    void exec(const std::string& execId, const grpc::Process& process);
    // agentExecId "" signals every process of the container.
    void signal(const std::string& agentExecId, uint32_t signal);
    // Blocks until the process exits; its wait status.
    int32_t wait(const std::string& agentExecId);
    std::unique_ptr<ProcessIo> openIo(const std::string& agentExecId, const StdioPaths& stdio);
    void resizePty(const std::string& agentExecId, uint32_t rows, uint32_t cols);
    void pause();
    void resume();
    void update(const grpc::LinuxResources& resources);
    grpc::StatsContainerResponse stats();

    // RemoveContainer in the guest (when it is still there), then unmounts and removes what was
    // made on the host. Idempotent; problems are logged, not thrown.
    void destroy(bool guestAlive);

  private:
    std::string id_, bundle_;
    std::shared_ptr<AgentClient> agent_;
    log::Logger log_;
    std::mutex mu_;
    MountSet mounts_;
    std::vector<std::string> sharedPaths_;
    std::string hostDir_;
    std::function<void()> releaseDevices_;
    bool destroyed_ = false;
};

}  // namespace kata::shim
