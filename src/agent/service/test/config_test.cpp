#include <gtest/gtest.h>

#include "kata/agent/service/config.h"
#include "kata/agent/service/sandbox.h"
#include "kata/common/error.h"

using namespace kata;
using namespace kata::agent;

TEST(AgentConfig, ReadsAgentOptionsFromKernelCmdline) {
    AgentConfig cfg;
    applyKernelCmdline(
        "console=ttyS0,115200 quiet agent.log=debug agent.debug_console "
        "agent.debug_console_vport=1026 agent.container_policy_file=/etc/policy.json "
        "agent.channel=vsock agent.hotplug_timeout=7 agent.trace=false other.opt=1\n",
        &cfg);
    EXPECT_EQ(cfg.logLevel, "debug");
    EXPECT_TRUE(cfg.debugConsole);
    EXPECT_EQ(cfg.debugConsoleVport, 1026u);
    EXPECT_EQ(cfg.containerPolicyFile, "/etc/policy.json");
    EXPECT_EQ(cfg.channel, "vsock");
    EXPECT_EQ(cfg.hotplugTimeout, std::chrono::seconds(7));
    EXPECT_FALSE(cfg.trace);
    EXPECT_EQ(cfg.console, "ttyS0");
}

TEST(AgentConfig, RejectsMalformedValuesNamingTheOption) {
    AgentConfig cfg;
    try {
        applyKernelCmdline("agent.debug_console_vport=abc", &cfg);
        FAIL() << "accepted a non-numeric port";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), StatusCode::kInvalidArgument);
        EXPECT_NE(std::string(e.what()).find("agent.debug_console_vport=abc"), std::string::npos);
    }
    EXPECT_THROW(applyKernelCmdline("agent.log=loud", &cfg), Error);
    EXPECT_THROW(applyKernelCmdline("agent.channel=pigeon", &cfg), Error);
}

TEST(AgentIds, FollowKataContainerIdRule) {
    EXPECT_NO_THROW(validateContainerId("c1"));
    EXPECT_NO_THROW(validateContainerId("abc-DEF_1.2"));
    for (const char* bad : {"", "a", "..", "../etc", "a/b", ".hidden", "-x", "a b", "ü1"}) {
        try {
            validateContainerId(bad);
            ADD_FAILURE() << "accepted \"" << bad << "\"";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), StatusCode::kInvalidArgument);
            EXPECT_NE(std::string(e.what()).find("\"" + std::string(bad) + "\""),
                      std::string::npos);
        }
    }
    EXPECT_NO_THROW(validateExecId("e"));
    EXPECT_THROW(validateExecId("e/../x"), Error);
}
