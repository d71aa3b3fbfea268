#include "container.h"

#include <filesystem>

#include "kata/common/error.h"

namespace kata::shim {

namespace fs = std::filesystem;

namespace {
constexpr uint32_t kRemoveTimeoutSec = 10;
}

Container::Container(std::string id, std::string bundle, std::shared_ptr<AgentClient> agent,
                     MountSet mounts, std::vector<std::string> sharedPaths, std::string hostDir,
                     std::function<void()> releaseDevices)
    : id_(std::move(id)),
      bundle_(std::move(bundle)),
      agent_(std::move(agent)),
      log_(log::Logger("container").with("container", id_)),
      mounts_(std::move(mounts)),
      sharedPaths_(std::move(sharedPaths)),
      hostDir_(std::move(hostDir)),
      releaseDevices_(std::move(releaseDevices)) {}

Container::~Container() { destroy(false); }

std::vector<std::string> Container::hostPaths() const {
    std::vector<std::string> out = mounts_.points();
    out.insert(out.end(), sharedPaths_.begin(), sharedPaths_.end());
    return out;
}

void Container::start() { agent_->startContainer(id_); }

void Container::exec(const std::string& execId, const grpc::Process& process) {
    grpc::ExecProcessRequest req;
    req.set_container_id(id_);
    req.set_exec_id(execId);
    *req.mutable_process() = process;
    agent_->execProcess(req);
}

void Container::signal(const std::string& agentExecId, uint32_t signal) {
    agent_->signalProcess(id_, agentExecId, signal);
}

int32_t Container::wait(const std::string& agentExecId) {
    return agent_->waitProcess(id_, agentExecId);
}

std::unique_ptr<ProcessIo> Container::openIo(const std::string& agentExecId,
                                             const StdioPaths& stdio) {
    return std::make_unique<ProcessIo>(agent_, id_, agentExecId, stdio);
}

void Container::resizePty(const std::string& agentExecId, uint32_t rows, uint32_t cols) {
    agent_->ttyWinResize(id_, agentExecId, rows, cols);
}

void Container::pause() { agent_->pauseContainer(id_); }
void Container::resume() { agent_->resumeContainer(id_); }
void Container::update(const grpc::LinuxResources& resources) {
    agent_->updateContainer(id_, resources);
}
grpc::StatsContainerResponse Container::stats() { return agent_->statsContainer(id_); }

void Container::destroy(bool guestAlive) {
    std::lock_guard<std::mutex> lk(mu_);
    if (destroyed_) return;
    destroyed_ = true;
    if (guestAlive) {
        try {
            agent_->removeContainer(id_, kRemoveTimeoutSec);
        } catch (const Error& e) {
            log_.warn(std::string("remove container in the guest: ") + e.what());
        }
    }
    if (releaseDevices_) {
        try {
            releaseDevices_();
        } catch (const Error& e) {
            log_.warn(std::string("unplug devices: ") + e.what());
        }
    }
    mounts_.unmountAll();
    std::error_code ec;
    for (const auto& path : sharedPaths_) fs::remove(path, ec);
    if (!hostDir_.empty()) fs::remove_all(hostDir_, ec);
    if (ec) log_.warn("remove " + hostDir_ + ": " + ec.message());
}

}  // namespace kata::shim
