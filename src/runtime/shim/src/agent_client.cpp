#include "agent_client.h"

#include <google/protobuf/empty.pb.h>

#include <thread>

#include "agent/health.pb.h"
#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/ttrpc/ttrpc.h"

namespace kata::shim {

namespace {
constexpr const char* kAgentService = "grpc.AgentService";
constexpr const char* kHealthService = "grpc.Health";
constexpr std::chrono::milliseconds kForever{0};
using Empty = google::protobuf::Empty;

// Prefixes the agent's error with the call, keeping its status code.
template <class F>
auto annotate(const std::string& what, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const Error& e) {
        throw Error(e.code(), "agent " + what + ": " + e.what());
    }
}
}  // namespace

TtrpcAgentClient::TtrpcAgentClient(UniqueFd fd, std::chrono::milliseconds requestTimeout)
    : client_(std::make_unique<ttrpc::Client>(std::move(fd))), timeout_(requestTimeout) {}

TtrpcAgentClient::~TtrpcAgentClient() { client_->close(); }

void TtrpcAgentClient::check(std::chrono::milliseconds timeout) {
    grpc::CheckRequest req;
    auto resp = annotate("Check", [&] {
        return client_->call<grpc::CheckRequest, grpc::HealthCheckResponse>(kHealthService, "Check",
                                                                            req, timeout);
    });
    if (resp.status() != grpc::HealthCheckResponse::SERVING) {
        throw Error(
            StatusCode::kUnavailable,
            "agent Check: status " + grpc::HealthCheckResponse::ServingStatus_Name(resp.status()));
    }
}

void TtrpcAgentClient::createSandbox(const grpc::CreateSandboxRequest& req) {
    annotate("CreateSandbox " + req.sandbox_id(), [&] {
        return client_->call<grpc::CreateSandboxRequest, Empty>(kAgentService, "CreateSandbox", req,
                                                                timeout_);
    });
}

void TtrpcAgentClient::destroySandbox() {
    grpc::DestroySandboxRequest req;
    annotate("DestroySandbox", [&] {
        return client_->call<grpc::DestroySandboxRequest, Empty>(kAgentService, "DestroySandbox",
                                                                 req, timeout_);
    });
}

void TtrpcAgentClient::setGuestDateTime(int64_t sec, int64_t usec) {
    grpc::SetGuestDateTimeRequest req;
    req.set_sec(sec);
    req.set_usec(usec);
    annotate("SetGuestDateTime", [&] {
        return client_->call<grpc::SetGuestDateTimeRequest, Empty>(
            kAgentService, "SetGuestDateTime", req, timeout_);
    });
}

void TtrpcAgentClient::updateInterface(const types::Interface& iface) {
    grpc::UpdateInterfaceRequest req;
    *req.mutable_interface() = iface;
    annotate("UpdateInterface " + iface.name() + " (" + iface.hwaddr() + ")", [&] {
        return client_->call<grpc::UpdateInterfaceRequest, types::Interface>(
            kAgentService, "UpdateInterface", req, timeout_);
    });
}

void TtrpcAgentClient::updateRoutes(const grpc::Routes& routes) {
    grpc::UpdateRoutesRequest req;
    *req.mutable_routes() = routes;
    annotate("UpdateRoutes", [&] {
        return client_->call<grpc::UpdateRoutesRequest, grpc::Routes>(kAgentService, "UpdateRoutes",
                                                                      req, timeout_);
    });
}

void TtrpcAgentClient::addArpNeighbors(const grpc::ARPNeighbors& neighbors) {
    grpc::AddARPNeighborsRequest req;
    *req.mutable_neighbors() = neighbors;
    annotate("AddARPNeighbors", [&] {
        return client_->call<grpc::AddARPNeighborsRequest, Empty>(kAgentService, "AddARPNeighbors",
                                                                  req, timeout_);
    });
}

std::string TtrpcAgentClient::getOomEvent() {
    grpc::GetOOMEventRequest req;
    auto ev = annotate("GetOOMEvent", [&] {
        return client_->call<grpc::GetOOMEventRequest, grpc::OOMEvent>(kAgentService, "GetOOMEvent",
                                                                       req, kForever);
    });
    return ev.container_id();
}

void TtrpcAgentClient::reseedRandomDev(const std::string& data) {
    grpc::ReseedRandomDevRequest req;
    req.set_data(data);
    annotate("ReseedRandomDev", [&] {
        return client_->call<grpc::ReseedRandomDevRequest, Empty>(kAgentService, "ReseedRandomDev",
                                                                  req, timeout_);
    });
}

void TtrpcAgentClient::createContainer(const grpc::CreateContainerRequest& req) {
    annotate("CreateContainer " + req.container_id(), [&] {
        return client_->call<grpc::CreateContainerRequest, Empty>(kAgentService, "CreateContainer",
                                                                  req, timeout_);
    });
}

void TtrpcAgentClient::startContainer(const std::string& cid) {
    grpc::StartContainerRequest req;
    req.set_container_id(cid);
    annotate("StartContainer " + cid, [&] {
        return client_->call<grpc::StartContainerRequest, Empty>(kAgentService, "StartContainer",
                                                                 req, timeout_);
    });
}

void TtrpcAgentClient::removeContainer(const std::string& cid, uint32_t timeoutSec) {
    grpc::RemoveContainerRequest req;
    req.set_container_id(cid);
    req.set_timeout(timeoutSec);
    annotate("RemoveContainer " + cid, [&] {
        return client_->call<grpc::RemoveContainerRequest, Empty>(
            kAgentService, "RemoveContainer", req, timeout_ + std::chrono::seconds(timeoutSec));
    });
}

void TtrpcAgentClient::execProcess(const grpc::ExecProcessRequest& req) {
    annotate("ExecProcess " + req.container_id() + "/" + req.exec_id(), [&] {
        return client_->call<grpc::ExecProcessRequest, Empty>(kAgentService, "ExecProcess", req,
                                                              timeout_);
    });
}

void TtrpcAgentClient::signalProcess(const std::string& cid, const std::string& execId,
                                     uint32_t signal) {
    grpc::SignalProcessRequest req;
    req.set_container_id(cid);
    req.set_exec_id(execId);
    req.set_signal(signal);
    annotate("SignalProcess " + cid + "/" + execId, [&] {
        return client_->call<grpc::SignalProcessRequest, Empty>(kAgentService, "SignalProcess", req,
                                                                timeout_);
    });
}

int32_t TtrpcAgentClient::waitProcess(const std::string& cid, const std::string& execId) {
    grpc::WaitProcessRequest req;
    req.set_container_id(cid);
    req.set_exec_id(execId);
    return annotate("WaitProcess " + cid + "/" + execId,
                    [&] {
                        return client_->call<grpc::WaitProcessRequest, grpc::WaitProcessResponse>(
                            kAgentService, "WaitProcess", req, kForever);
                    })
        .status();
}

void TtrpcAgentClient::updateContainer(const std::string& cid, const grpc::LinuxResources& res) {
    grpc::UpdateContainerRequest req;
    req.set_container_id(cid);
    *req.mutable_resources() = res;
    annotate("UpdateContainer " + cid, [&] {
        return client_->call<grpc::UpdateContainerRequest, Empty>(kAgentService, "UpdateContainer",
                                                                  req, timeout_);
    });
}

grpc::StatsContainerResponse TtrpcAgentClient::statsContainer(const std::string& cid) {
    grpc::StatsContainerRequest req;
    req.set_container_id(cid);
    return annotate("StatsContainer " + cid, [&] {
        return client_->call<grpc::StatsContainerRequest, grpc::StatsContainerResponse>(
            kAgentService, "StatsContainer", req, timeout_);
    });
}

void TtrpcAgentClient::pauseContainer(const std::string& cid) {
    grpc::PauseContainerRequest req;
    req.set_container_id(cid);
    annotate("PauseContainer " + cid, [&] {
        return client_->call<grpc::PauseContainerRequest, Empty>(kAgentService, "PauseContainer",
                                                                 req, timeout_);
    });
}

void TtrpcAgentClient::resumeContainer(const std::string& cid) {
    grpc::ResumeContainerRequest req;
    req.set_container_id(cid);
    annotate("ResumeContainer " + cid, [&] {
        return client_->call<grpc::ResumeContainerRequest, Empty>(kAgentService, "ResumeContainer",
                                                                  req, timeout_);
    });
}

std::string TtrpcAgentClient::readStdout(const std::string& cid, const std::string& execId,
                                         uint32_t len) {
    grpc::ReadStreamRequest req;
    req.set_container_id(cid);
    req.set_exec_id(execId);
    req.set_len(len);
    return annotate("ReadStdout " + cid + "/" + execId,
                    [&] {
                        return client_->call<grpc::ReadStreamRequest, grpc::ReadStreamResponse>(
                            kAgentService, "ReadStdout", req, kForever);
                    })
        .data();
}

std::string TtrpcAgentClient::readStderr(const std::string& cid, const std::string& execId,
                                         uint32_t len) {
    grpc::ReadStreamRequest req;
    req.set_container_id(cid);
    req.set_exec_id(execId);
    req.set_len(len);
    return annotate("ReadStderr " + cid + "/" + execId,
                    [&] {
                        return client_->call<grpc::ReadStreamRequest, grpc::ReadStreamResponse>(
                            kAgentService, "ReadStderr", req, kForever);
                    })
        .data();
}

uint32_t TtrpcAgentClient::writeStdin(const std::string& cid, const std::string& execId,
                                      const std::string& data) {
    grpc::WriteStreamRequest req;
    req.set_container_id(cid);
    req.set_exec_id(execId);
    req.set_data(data);
    return annotate("WriteStdin " + cid + "/" + execId,
                    [&] {
                        return client_->call<grpc::WriteStreamRequest, grpc::WriteStreamResponse>(
                            kAgentService, "WriteStdin", req, kForever);
                    })
        .len();
}

void TtrpcAgentClient::closeStdin(const std::string& cid, const std::string& execId) {
    grpc::CloseStdinRequest req;
    req.set_container_id(cid);
    req.set_exec_id(execId);
    annotate("CloseStdin " + cid + "/" + execId, [&] {
        return client_->call<grpc::CloseStdinRequest, Empty>(kAgentService, "CloseStdin", req,
                                                             timeout_);
    });
}

void TtrpcAgentClient::ttyWinResize(const std::string& cid, const std::string& execId,
                                    uint32_t rows, uint32_t cols) {
    grpc::TtyWinResizeRequest req;
    req.set_container_id(cid);
    req.set_exec_id(execId);
    req.set_row(rows);
    req.set_column(cols);
    annotate("TtyWinResize " + cid + "/" + execId, [&] {
        return client_->call<grpc::TtyWinResizeRequest, Empty>(kAgentService, "TtyWinResize", req,
                                                               timeout_);
    });
}

void TtrpcAgentClient::close() { client_->close(); }

std::shared_ptr<AgentClient> connectAgent(const std::string& address,
                                          std::chrono::milliseconds dialTimeout) {
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + dialTimeout;
    auto left = [&] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    };
    log::Logger log = log::Logger("agent-client").with("address", address);
    std::string lastError;
    while (left().count() > 0) {
        UniqueFd fd;
        try {
            fd = ttrpc::dial(address, left());
        } catch (const Error& e) {
            lastError = e.what();
            break;
        }
        auto client = std::make_shared<TtrpcAgentClient>(std::move(fd), std::chrono::seconds(120));
        // Over virtio-serial the first frames wait in the socket until the agent opens its port,
        // so one connection is kept and Check is simply asked again.
        while (left().count() > 0) {
            try {
                client->check(std::min(left(), std::chrono::milliseconds(2000)));
                log.debug("agent is ready");
                return client;
            } catch (const Error& e) {
                lastError = e.what();
                if (e.code() == StatusCode::kUnavailable) break;  // connection lost: redial
                if (e.code() != StatusCode::kDeadlineExceeded) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));
                }
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    // dial_timeout is configured in seconds; say it the way the user wrote it.
    const auto ms = dialTimeout.count();
    const std::string within =
        ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
    throw Error(StatusCode::kDeadlineExceeded,
                "agent did not answer on " + address + " within " + within +
                    " ([agent.kata] dial_timeout)" +
                    (lastError.empty() ? "" : " (last error: " + lastError + ")"));
}

}  // namespace kata::shim
