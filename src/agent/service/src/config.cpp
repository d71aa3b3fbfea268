#include "kata/agent/service/config.h"

#include <sstream>

#include "kata/common/error.h"
#include "kata/common/log.h"

namespace kata::agent {
namespace {

bool parseBool(const std::string& key, const std::string& value) {
    if (value.empty() || value == "1" || value == "true" || value == "on" || value == "yes") {
        return true;
    }
    if (value == "0" || value == "false" || value == "off" || value == "no") return false;
    throw Error(StatusCode::kInvalidArgument,
                "kernel option " + key + "=" + value + ": not a boolean");
}

uint64_t parseUint(const std::string& key, const std::string& value) {
    try {
        size_t pos = 0;
        uint64_t v = std::stoull(value, &pos, 10);
        if (pos == value.size() && !value.empty() && value[0] != '-') return v;
    } catch (const std::exception&) {
    }
    throw Error(StatusCode::kInvalidArgument,
                "kernel option " + key + "=" + value + ": not a number");
}

}  // namespace

void applyKernelCmdline(const std::string& cmdline, AgentConfig* cfg) {
    std::istringstream in(cmdline);
    std::string tok;
    while (in >> tok) {
        auto eq = tok.find('=');
        std::string key = tok.substr(0, eq);
        std::string value = eq == std::string::npos ? "" : tok.substr(eq + 1);
        if (key == "console") {
            cfg->console = value.substr(0, value.find(','));
            continue;
        }
        if (key.rfind("agent.", 0) != 0) continue;
        if (key == "agent.log") {
            log::Level l;
            if (!log::parseLevel(value, &l)) {
                throw Error(StatusCode::kInvalidArgument,
                            "kernel option agent.log=" + value + ": unknown log level");
            }
            cfg->logLevel = value;
        } else if (key == "agent.debug_console") {
            cfg->debugConsole = parseBool(key, value);
        } else if (key == "agent.debug_console_vport") {
            cfg->debugConsoleVport = static_cast<uint32_t>(parseUint(key, value));
        } else if (key == "agent.container_policy_file") {
            cfg->containerPolicyFile = value;
        } else if (key == "agent.server_addr") {
            cfg->serverAddr = value;
        } else if (key == "agent.channel") {
            if (value != "serial" && value != "vsock") {
                throw Error(StatusCode::kInvalidArgument,
                            "kernel option agent.channel=" + value + ": want serial or vsock");
            }
            cfg->channel = value;
        } else if (key == "agent.trace") {
            cfg->trace = parseBool(key, value);
        } else if (key == "agent.hotplug_timeout") {
            cfg->hotplugTimeout = std::chrono::seconds(parseUint(key, value));
        } else if (key == "agent.dial_timeout") {
            cfg->dialTimeout = std::chrono::seconds(parseUint(key, value));
        }
    }
}

std::string sharedContainersDir(const AgentConfig& cfg) {
    return cfg.runDir + "/shared/containers";
}

}  // namespace kata::agent
