// Runs the kata-agent-ctl binary against an in-process ttrpc server that plays the agent.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "agent/agent.pb.h"
#include "agent/health.pb.h"
#include "agent/image.pb.h"
#include "google/protobuf/empty.pb.h"
#include "kata/common/error.h"
#include "kata/ttrpc/ttrpc.h"

namespace fs = std::filesystem;
using kata::ttrpc::CallContext;

namespace {

struct Result {
    int exitCode = -1;
    std::string out;
};

// Runs a shell command line, capturing stdout (stderr is merged in by the caller's 2>&1).
Result run(const std::string& cmd) {
    Result r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return r;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    int st = ::pclose(p);
    r.exitCode = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

class FakeAgent : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "agent-ctl-e2e.XXXXXX").string();
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        dir_ = tmpl;
        socket_ = (dir_ / "agent.sock").string();

        server_.registerMethod<grpc::CheckRequest, grpc::HealthCheckResponse>(
            "grpc.Health", "Check", [](const CallContext&, const grpc::CheckRequest&) {
                grpc::HealthCheckResponse r;
                r.set_status(grpc::HealthCheckResponse::SERVING);
                return r;
            });
        server_.registerMethod<grpc::CreateContainerRequest, google::protobuf::Empty>(
            "grpc.AgentService", "CreateContainer",
            [this](const CallContext&, const grpc::CreateContainerRequest& req) {
                created_ = req;
                return google::protobuf::Empty();
            });
        server_.registerMethod<grpc::StartContainerRequest, google::protobuf::Empty>(
            "grpc.AgentService", "StartContainer",
            [](const CallContext&,
               const grpc::StartContainerRequest& req) -> google::protobuf::Empty {
                throw kata::Error(kata::StatusCode::kNotFound,
                                  "container " + req.container_id() + " not found");
            });
        server_.registerMethod<grpc::PullImageRequest, grpc::PullImageResponse>(
            "grpc.Image", "PullImage", [](const CallContext&, const grpc::PullImageRequest& req) {
                grpc::PullImageResponse r;
                r.set_image_ref(req.image() + "@" + req.source_creds());
                return r;
            });
        server_.registerMethod<grpc::ReadStreamRequest, grpc::ReadStreamResponse>(
            "grpc.AgentService", "ReadStdout",
            [this](const CallContext&, const grpc::ReadStreamRequest&) {
                if (reads_++ >= 2)
                    throw kata::Error(kata::StatusCode::kUnknown, "read stdout: eof");
                grpc::ReadStreamResponse r;
                r.set_data("hi\n");
                return r;
            });
        thread_ = std::thread([this, fd = kata::ttrpc::listenUnix(socket_)]() mutable {
            server_.serveListener(std::move(fd));
        });
    }

    void TearDown() override {
        server_.shutdown();
        if (thread_.joinable()) thread_.join();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    Result ctl(const std::string& args) {
        return run(std::string(KATA_AGENT_CTL_BIN) +
                   " connect --timeout 5 --server-address unix://" + socket_ + " " + args +
                   " 2>&1");
    }

    fs::path dir_;
    std::string socket_;
    kata::ttrpc::Server server_;
    std::thread thread_;
    grpc::CreateContainerRequest created_;
    int reads_ = 0;
};

TEST_F(FakeAgent, ChecksCreatesAndPulls) {
    fs::create_directories(dir_ / "bundle" / "rootfs");
    std::ofstream(dir_ / "bundle" / "config.json")
        << R"({"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}})";
    Result r = ctl("--bundle-dir " + (dir_ / "bundle").string() +
                   " -c Check -c 'CreateContainer cid=c1' -c 'PullImage image=reg/busybox "
                   "source_creds=u:p'");
    EXPECT_EQ(r.exitCode, 0) << r.out;
    EXPECT_EQ(r.out, "{\"status\":\"SERVING\"}\n{}\n{\"image_ref\":\"reg/busybox@u:p\"}\n");
    EXPECT_EQ(created_.container_id(), "c1");
    EXPECT_EQ(created_.oci().root().path(), (dir_ / "bundle" / "rootfs").string());
}

TEST_F(FakeAgent, RemoteErrorStopsWithItsStatus) {
    Result r = ctl("-c 'StartContainer cid=c9' -c Check");
    EXPECT_EQ(r.exitCode, 1);
    EXPECT_EQ(r.out,
              "kata-agent-ctl: command StartContainer failed: NOT_FOUND: container c9 not found\n");
}

TEST_F(FakeAgent, ReadsUntilEof) {
    Result r = ctl("-c 'ReadStdout cid=c1 all=true raw=true'");
    EXPECT_EQ(r.exitCode, 0) << r.out;
    EXPECT_EQ(r.out, "hi\nhi\n");
}

TEST_F(FakeAgent, BadCommandFailsBeforeConnecting) {
    Result r = ctl("-c Check -c 'ExecProcess cid=c1 exec_id=e cmd=\"sh -c\" wat=1'");
    EXPECT_EQ(r.exitCode, 2);
    EXPECT_NE(r.out.find("command ExecProcess: unknown key \"wat\""), std::string::npos) << r.out;
}

}  // namespace
