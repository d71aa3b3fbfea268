// The shim's view of the guest agent (grpc.AgentService / grpc.Health over ttrpc). A small
// interface so the task service can be unit tested against a fake; TtrpcAgentClient is the only
// implementation that ships.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "agent/agent.pb.h"
#include "kata/common/fd.h"

namespace kata::ttrpc {
class Client;
}

namespace kata::shim {

class AgentClient {
  public:
    virtual ~AgentClient() = default;

    // grpc.Health/Check; throws when the agent does not answer SERVING within timeout.
    virtual void check(std::chrono::milliseconds timeout) = 0;
    virtual void createSandbox(const grpc::CreateSandboxRequest& req) = 0;
    virtual void destroySandbox() = 0;
    // After a VM is restored from a template: its clock and entropy are the template's.
    virtual void setGuestDateTime(int64_t sec, int64_t usec) = 0;
    virtual void reseedRandomDev(const std::string& data) = 0;
    // The pod network in the guest: each NIC (found by MAC), then routes, then neighbours.
    virtual void updateInterface(const types::Interface& iface) = 0;
    virtual void updateRoutes(const grpc::Routes& routes) = 0;
    virtual void addArpNeighbors(const grpc::ARPNeighbors& neighbors) = 0;
    virtual void createContainer(const grpc::CreateContainerRequest& req) = 0;
    virtual void startContainer(const std::string& cid) = 0;
    virtual void removeContainer(const std::string& cid, uint32_t timeoutSec) = 0;
    virtual void execProcess(const grpc::ExecProcessRequest& req) = 0;
    virtual void signalProcess(const std::string& cid, const std::string& execId,
                               uint32_t signal) = 0;
    // Blocks until the process exits; returns its wait status as the agent reports it.
    virtual int32_t waitProcess(const std::string& cid, const std::string& execId) = 0;
    virtual void updateContainer(const std::string& cid, const grpc::LinuxResources& res) = 0;
    virtual grpc::StatsContainerResponse statsContainer(const std::string& cid) = 0;
    // Blocks until a container of the sandbox had an OOM kill; returns its id. Fails with
    // kUnavailable once close() was called.
    virtual std::string getOomEvent() = 0;
    virtual void pauseContainer(const std::string& cid) = 0;
    virtual void resumeContainer(const std::string& cid) = 0;
    // Up to len bytes of the process's stdout/stderr; blocks until some are there. An empty
    // result means end of stream (the process and every holder of the pipe are gone).
    virtual std::string readStdout(const std::string& cid, const std::string& execId,
                                   uint32_t len) = 0;
    virtual std::string readStderr(const std::string& cid, const std::string& execId,
                                   uint32_t len) = 0;
    // Returns how many bytes the agent took.
    virtual uint32_t writeStdin(const std::string& cid, const std::string& execId,
                                const std::string& data) = 0;
    virtual void closeStdin(const std::string& cid, const std::string& execId) = 0;
    virtual void ttyWinResize(const std::string& cid, const std::string& execId, uint32_t rows,
                              uint32_t cols) = 0;
    // Makes pending and later calls fail with kUnavailable (the VM is gone).
    virtual void close() = 0;
};

class TtrpcAgentClient : public AgentClient {
  public:
    // requestTimeout bounds every call that is not meant to block (wait, read, write).
    TtrpcAgentClient(UniqueFd fd, std::chrono::milliseconds requestTimeout);
    ~TtrpcAgentClient() override;

    void check(std::chrono::milliseconds timeout) override;
    void createSandbox(const grpc::CreateSandboxRequest& req) override;
    void destroySandbox() override;
    void setGuestDateTime(int64_t sec, int64_t usec) override;
    void reseedRandomDev(const std::string& data) override;
    void updateInterface(const types::Interface& iface) override;
    void updateRoutes(const grpc::Routes& routes) override;
    void addArpNeighbors(const grpc::ARPNeighbors& neighbors) override;
    void createContainer(const grpc::CreateContainerRequest& req) override;
    void startContainer(const std::string& cid) override;
    void removeContainer(const std::string& cid, uint32_t timeoutSec) override;
    void execProcess(const grpc::ExecProcessRequest& req) override;
    void signalProcess(const std::string& cid, const std::string& execId, uint32_t signal) override;
    int32_t waitProcess(const std::string& cid, const std::string& execId) override;
    void updateContainer(const std::string& cid, const grpc::LinuxResources& res) override;
    grpc::StatsContainerResponse statsContainer(const std::string& cid) override;
    std::string getOomEvent() override;
    void pauseContainer(const std::string& cid) override;
    void resumeContainer(const std::string& cid) override;
    std::string readStdout(const std::string& cid, const std::string& execId,
                           uint32_t len) override;
    std::string readStderr(const std::string& cid, const std::string& execId,
                           uint32_t len) override;
    uint32_t writeStdin(const std::string& cid, const std::string& execId,
                        const std::string& data) override;
    void closeStdin(const std::string& cid, const std::string& execId) override;
    void ttyWinResize(const std::string& cid, const std::string& execId, uint32_t rows,
                      uint32_t cols) override;
    void close() override;

  private:
    std::unique_ptr<ttrpc::Client> client_;
    std::chrono::milliseconds timeout_;
};

// Dials the agent at address (kata::ttrpc::dial retries while the VM boots) and polls
// grpc.Health/Check until it answers SERVING; throws kDeadlineExceeded naming the address and
// the last error once dialTimeout has passed.
std::shared_ptr<AgentClient> connectAgent(const std::string& address,
                                          std::chrono::milliseconds dialTimeout);

}  // namespace kata::shim
