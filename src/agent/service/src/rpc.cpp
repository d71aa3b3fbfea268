#include "kata/agent/service/rpc.h"

#include <google/protobuf/empty.pb.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "agent/health.pb.h"
#include "agent/image.pb.h"
#include "kata/agent/network.h"
#ifdef KATA_AGENT_IMAGE_PULL
#include "kata/agent/image/puller.h"
#endif
#include "kata/agent/service/config.h"
#include "kata/agent/service/guest.h"
#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/common/version.h"

namespace kata::agent {
namespace {

using Empty = google::protobuf::Empty;
const log::Logger kLog("rpc");

// Wraps a handler: logs the call, turns stray exceptions into INTERNAL naming the method, so
// the agent answers and keeps serving whatever a handler throws.
template <class Req, class Resp>
void add(ttrpc::Server& server, const char* service, const char* method,
         std::function<Resp(const Req&)> fn) {
    std::string name = std::string(service) + "/" + method;
    server.registerMethod<Req, Resp>(
        service, method, [fn = std::move(fn), name](const ttrpc::CallContext&, const Req& req) {
            if (kLog.enabled(log::Level::kDebug)) kLog.debug("rpc call", {{"method", name}});
            try {
                return fn(req);
            } catch (const Error& e) {
                // End of a stream is the normal way ReadStdout/ReadStderr finish.
                log::Level level = std::string(e.what()) == "read meet eof" ? log::Level::kDebug
                                                                            : log::Level::kWarn;
                if (kLog.enabled(level)) {
                    log::write(level, "rpc", "rpc failed",
                               {{"method", name},
                                {"code", statusCodeName(e.code())},
                                {"error", e.what()}});
                }
                throw;
            } catch (const std::exception& e) {
                kLog.error("rpc failed", {{"method", name}, {"error", e.what()}});
                throw Error(StatusCode::kInternal, name + ": " + e.what());
            }
        });
}

template <class Req, class Resp>
void agentRpc(ttrpc::Server& server, const char* method, std::function<Resp(const Req&)> fn) {
    add<Req, Resp>(server, kAgentServiceName, method, std::move(fn));
}

template <class Req>
void agentRpcEmpty(ttrpc::Server& server, const char* method, std::function<void(const Req&)> fn) {
    add<Req, Empty>(server, kAgentServiceName, method, [fn = std::move(fn)](const Req& req) {
        fn(req);
        return Empty();
    });
}

// The bundle is <runDir>/<cid>/{config.json,rootfs}, where CreateContainer finds a pulled rootfs.
grpc::PullImageResponse pullImage(const AgentConfig& cfg, const grpc::PullImageRequest& req) {
#ifdef KATA_AGENT_IMAGE_PULL
    const std::string& cid = req.container_id();
    if (cid.empty() || cid == "." || cid == ".." || cid.find('/') != std::string::npos ||
        cid.front() == '.')
        throw Error(StatusCode::kInvalidArgument,
                    "PullImage: invalid container id \"" + cid + "\"");
    // One content store for the guest, so layers shared by containers are fetched once.
    static std::mutex mu;
    static std::map<std::string, std::unique_ptr<image::ImagePuller>> pullers;  // by run dir
    image::ImagePuller* puller = nullptr;
    {
        std::lock_guard<std::mutex> g(mu);
        auto& p = pullers[cfg.runDir];
        if (!p) {
            image::PullOptions o;
            o.contentStoreDir = cfg.runDir + "/.image-store";
            p = std::make_unique<image::ImagePuller>(std::move(o));
        }
        puller = p.get();
    }
    image::PullResult result =
        puller->pull(req.image(), cfg.runDir + "/" + cid, req.source_creds());
    grpc::PullImageResponse resp;
    resp.set_image_ref(result.manifestDigest);
    return resp;
#else
    (void)cfg;
    (void)req;
    throw Error(StatusCode::kUnimplemented,
                "PullImage: this kata-agent was built without image pull (a static agent needs "
                "static libcurl and libarchive; configure with -DKATA_AGENT_STATIC=OFF)");
#endif
}

}  // namespace

void registerServices(ttrpc::Server& server, Sandbox& sb) {
    // ---- grpc.Health ----
    add<grpc::CheckRequest, grpc::HealthCheckResponse>(
        server, kHealthServiceName, "Check", [](const grpc::CheckRequest&) {
            grpc::HealthCheckResponse r;
            r.set_status(grpc::HealthCheckResponse::SERVING);
            return r;
        });
    add<grpc::CheckRequest, grpc::VersionCheckResponse>(server, kHealthServiceName, "Version",
                                                        [](const grpc::CheckRequest&) {
                                                            grpc::VersionCheckResponse r;
                                                            r.set_grpc_version(kAgentApiVersion);
                                                            r.set_agent_version(versionString());
                                                            return r;
                                                        });

    // ---- grpc.Image ----
    add<grpc::PullImageRequest, grpc::PullImageResponse>(
        server, kImageServiceName, "PullImage",
        [&sb](const grpc::PullImageRequest& r) { return pullImage(sb.config(), r); });

    // ---- grpc.AgentService: sandbox and containers ----
    agentRpcEmpty<grpc::CreateSandboxRequest>(server, "CreateSandbox",
                                              [&sb](const auto& r) { sb.createSandbox(r); });
    agentRpcEmpty<grpc::DestroySandboxRequest>(server, "DestroySandbox",
                                               [&sb](const auto&) { sb.destroySandbox(); });
    agentRpcEmpty<grpc::CreateContainerRequest>(server, "CreateContainer",
                                                [&sb](const auto& r) { sb.createContainer(r); });
    agentRpcEmpty<grpc::StartContainerRequest>(
        server, "StartContainer", [&sb](const auto& r) { sb.startContainer(r.container_id()); });
    agentRpcEmpty<grpc::RemoveContainerRequest>(server, "RemoveContainer", [&sb](const auto& r) {
        sb.removeContainer(r.container_id(), r.timeout());
    });
    agentRpcEmpty<grpc::ExecProcessRequest>(server, "ExecProcess",
                                            [&sb](const auto& r) { sb.execProcess(r); });
    agentRpcEmpty<grpc::SignalProcessRequest>(server, "SignalProcess", [&sb](const auto& r) {
        sb.signalProcess(r.container_id(), r.exec_id(), r.signal());
    });
    agentRpc<grpc::WaitProcessRequest, grpc::WaitProcessResponse>(
        server, "WaitProcess", [&sb](const auto& r) {
            grpc::WaitProcessResponse resp;
            resp.set_status(sb.waitProcess(r.container_id(), r.exec_id()));
            return resp;
        });
    agentRpc<grpc::WriteStreamRequest, grpc::WriteStreamResponse>(
        server, "WriteStdin", [&sb](const auto& r) {
            grpc::WriteStreamResponse resp;
            resp.set_len(sb.writeStdin(r.container_id(), r.exec_id(), r.data()));
            return resp;
        });
    agentRpc<grpc::ReadStreamRequest, grpc::ReadStreamResponse>(
        server, "ReadStdout", [&sb](const auto& r) {
            grpc::ReadStreamResponse resp;
            resp.set_data(sb.readStream(r.container_id(), r.exec_id(), r.len(), false));
            return resp;
        });
    agentRpc<grpc::ReadStreamRequest, grpc::ReadStreamResponse>(
        server, "ReadStderr", [&sb](const auto& r) {
            grpc::ReadStreamResponse resp;
            resp.set_data(sb.readStream(r.container_id(), r.exec_id(), r.len(), true));
            return resp;
        });
    agentRpcEmpty<grpc::CloseStdinRequest>(server, "CloseStdin", [&sb](const auto& r) {
        sb.closeStdin(r.container_id(), r.exec_id());
    });
    agentRpcEmpty<grpc::TtyWinResizeRequest>(server, "TtyWinResize", [&sb](const auto& r) {
        sb.ttyWinResize(r.container_id(), r.exec_id(), r.row(), r.column());
    });
    agentRpcEmpty<grpc::UpdateContainerRequest>(server, "UpdateContainer", [&sb](const auto& r) {
        sb.updateContainer(r.container_id(), r.resources());
    });
    agentRpc<grpc::StatsContainerRequest, grpc::StatsContainerResponse>(
        server, "StatsContainer",
        [&sb](const auto& r) { return sb.statsContainer(r.container_id()); });
    agentRpcEmpty<grpc::PauseContainerRequest>(
        server, "PauseContainer", [&sb](const auto& r) { sb.pauseContainer(r.container_id()); });
    agentRpcEmpty<grpc::ResumeContainerRequest>(
        server, "ResumeContainer", [&sb](const auto& r) { sb.resumeContainer(r.container_id()); });
    // Honours the call's timeout so a shim that went away does not pin a worker forever.
    server.registerMethod<grpc::GetOOMEventRequest, grpc::OOMEvent>(
        kAgentServiceName, "GetOOMEvent",
        [&sb](const ttrpc::CallContext& ctx, const grpc::GetOOMEventRequest&) {
            grpc::OOMEvent ev;
            ev.set_container_id(sb.waitOomEvent(
                std::chrono::duration_cast<std::chrono::milliseconds>(ctx.timeout)));
            return ev;
        });

    // ---- guest ----
    agentRpc<grpc::GuestDetailsRequest, grpc::GuestDetailsResponse>(
        server, "GetGuestDetails", [&sb](const auto& r) { return guestDetails(r, sb.config()); });
    agentRpcEmpty<grpc::SetGuestDateTimeRequest>(
        server, "SetGuestDateTime", [](const auto& r) { setGuestDateTime(r.sec(), r.usec()); });
    agentRpcEmpty<grpc::ReseedRandomDevRequest>(server, "ReseedRandomDev",
                                                [](const auto& r) { reseedRandomDev(r.data()); });
    agentRpcEmpty<grpc::OnlineCPUMemRequest>(
        server, "OnlineCPUMem", [](const auto& r) { onlineCpuMem(r.nb_cpus(), r.cpu_only()); });
    agentRpcEmpty<grpc::MemHotplugByProbeRequest>(server, "MemHotplugByProbe", [](const auto& r) {
        memHotplugByProbe(r.memhotplugprobeaddr());
    });
    agentRpcEmpty<grpc::CopyFileRequest>(server, "CopyFile",
                                         [&sb](const auto& r) { copyFile(r, sb.config()); });
    agentRpc<grpc::GetMetricsRequest, grpc::Metrics>(server, "GetMetrics", [&sb](const auto&) {
        grpc::Metrics m;
        m.set_metrics(agentMetrics(sb));
        return m;
    });

    // ---- network ----
    agentRpc<grpc::ListInterfacesRequest, grpc::Interfaces>(
        server, "ListInterfaces", [](const auto&) { return net::listInterfaces(); });
    agentRpc<grpc::ListRoutesRequest, grpc::Routes>(server, "ListRoutes",
                                                    [](const auto&) { return net::listRoutes(); });
    agentRpc<grpc::UpdateInterfaceRequest, types::Interface>(
        server, "UpdateInterface",
        [](const auto& r) { return net::updateInterface(r.interface()); });
    agentRpc<grpc::UpdateRoutesRequest, grpc::Routes>(
        server, "UpdateRoutes", [](const auto& r) { return net::updateRoutes(r.routes()); });
    agentRpcEmpty<grpc::AddARPNeighborsRequest>(
        server, "AddARPNeighbors", [](const auto& r) { net::addArpNeighbors(r.neighbors()); });
}

}  // namespace kata::agent
