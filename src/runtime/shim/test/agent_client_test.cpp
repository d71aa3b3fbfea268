// connectAgent against a socket that accepts connections but where no agent ever answers: what
// the shim sees while a guest boots without an agent (QEMU's chardev socket is there, the
// guest side of the port is silent).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "agent_client.h"
#include "kata/common/error.h"
#include "kata/ttrpc/ttrpc.h"

namespace fs = std::filesystem;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/agent-client-test-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

}  // namespace

TEST(ConnectAgent, SilentAgentTimesOutNamingTheAddressAndTheTimeout) {
    TempDir dir;
    const std::string sock = dir.path + "/agent.sock";
    kata::UniqueFd listener = kata::ttrpc::listenUnix(sock);  // connects succeed, nobody answers
    const std::string address = "unix://" + sock;
    auto t0 = std::chrono::steady_clock::now();
    try {
        kata::shim::connectAgent(address, std::chrono::milliseconds(1500));
        FAIL() << "connectAgent returned without an agent";
    } catch (const kata::Error& e) {
        EXPECT_EQ(e.code(), kata::StatusCode::kDeadlineExceeded);
        std::string what = e.what();
        EXPECT_NE(what.find("agent did not answer on " + address + " within 1500 ms"),
                  std::string::npos)
            << what;
        EXPECT_NE(what.find("dial_timeout"), std::string::npos) << what;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_GE(secs, 1.4);
    EXPECT_LT(secs, 5.0);
}

TEST(ConnectAgent, WholeSecondsAreSaidInSeconds) {
    TempDir dir;
    const std::string sock = dir.path + "/agent.sock";
    kata::UniqueFd listener = kata::ttrpc::listenUnix(sock);
    try {
        kata::shim::connectAgent("unix://" + sock, std::chrono::seconds(1));
        FAIL() << "connectAgent returned without an agent";
    } catch (const kata::Error& e) {
        EXPECT_NE(std::string(e.what()).find(" within 1 s "), std::string::npos) << e.what();
    }
}
