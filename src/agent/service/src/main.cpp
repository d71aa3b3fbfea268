// kata-agent: the guest agent. As PID 1 it sets the guest up and reads its options from the
// kernel command line; as a normal process (tests, debugging) it takes flags.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <thread>

#include "kata/agent/network.h"
#include "kata/agent/service/config.h"
#include "kata/agent/service/init.h"
#include "kata/agent/service/port_forward.h"
#include "kata/agent/service/rpc.h"
#include "kata/agent/service/sandbox.h"
#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/common/version.h"
#include "kata/jail/reaper.h"
#include "kata/ttrpc/ttrpc.h"

using namespace kata;
using namespace kata::agent;

namespace {

void serve(ttrpc::Server& server, const std::string& addr) {
    if (addr.rfind("unix://", 0) == 0) {
        server.serveListener(ttrpc::listenUnix(addr.substr(7)));
    } else if (addr.rfind("vsock://", 0) == 0) {
        auto colon = addr.rfind(':');
        uint32_t port = colon == std::string::npos || colon < 8
                            ? kVsockPort
                            : static_cast<uint32_t>(std::stoul(addr.substr(colon + 1)));
        server.serveListener(ttrpc::listenVsock(port));
    } else if (addr.rfind("serial:", 0) == 0) {
        server.serveSerial(addr.substr(7));
    } else {
        throw Error(StatusCode::kInvalidArgument,
                    "server address \"" + addr +
                        "\": want unix:///path, vsock://cid:port or serial:/dev/...");
    }
}

}  // namespace

int main(int argc, char** argv) {
    AgentConfig cfg;
    cfg.initMode = ::getpid() == 1;

    if (cfg.initMode) {
        ::setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
        log::init("kata-agent", "agent", log::Level::kInfo, 2);
        try {
            setupInitMounts();
            // The kernel gives init the console as stdio, unless the initrd had no
            // /dev/console; then fill 0-2 ourselves so no socket opened later lands on them.
            for (int fd = 0; fd <= 2; ++fd) {
                if (::fcntl(fd, F_GETFD) >= 0) continue;
                int c = ::open("/dev/console", O_RDWR | O_NOCTTY);
                if (c < 0) c = ::open("/dev/null", O_RDWR);
                if (c >= 0 && c != fd) {
                    ::dup2(c, fd);
                    ::close(c);
                }
            }
            std::ifstream in("/proc/cmdline");
            std::string cmdline((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
            applyKernelCmdline(cmdline, &cfg);
        } catch (const std::exception& e) {
            fatalPowerOff(e.what());
        }
    }

    CLI::App app{"kata-agent: the Kata Containers guest agent"};
    bool showVersion = false;
    app.add_flag("--version", showVersion, "print the version and exit");
    app.add_option("--server-addr", cfg.serverAddr,
                   "unix:///path | vsock://-1:1024 | serial:/dev/vportNpM (default: find the "
                   "agent.channel.0 serial port, or vsock with --channel vsock)");
    app.add_option("--channel", cfg.channel, "serial or vsock, when --server-addr is not given")
        ->check(CLI::IsMember({"serial", "vsock"}));
    app.add_option("--log-level", cfg.logLevel, "trace|debug|info|warn|error");
    app.add_flag("--debug-console", cfg.debugConsole, "run /bin/sh on the console");
    app.add_option("--debug-console-vport", cfg.debugConsoleVport,
                   "serve a shell on this vsock port");
    app.add_option("--container-policy-file", cfg.containerPolicyFile, "image signature policy");
    app.add_option("--run-dir", cfg.runDir, "guest state directory (bundles, shared fs)");
    unsigned dialTimeoutSec = 0;
    app.add_option("--dial-timeout", dialTimeoutSec,
                   "seconds to wait for the agent channel device (default 10)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (cfg.initMode) fatalPowerOff(std::string("parse arguments: ") + e.what());
        return app.exit(e);
    }
    if (dialTimeoutSec) cfg.dialTimeout = std::chrono::seconds(dialTimeoutSec);
    if (showVersion) {
        std::cout << "kata-agent version " << versionString() << std::endl;
        return 0;
    }

    log::Level level = log::Level::kInfo;
    if (!log::parseLevel(cfg.logLevel, &level)) {
        std::cerr << "kata-agent: unknown log level \"" << cfg.logLevel << "\"" << std::endl;
        if (!cfg.initMode) return 2;
    }
    if (!cfg.initMode) log::init("kata-agent", "agent", level, 2);
    log::setLevel(level);
    const log::Logger logger("agent");

    // SIGTERM/SIGINT are taken by a thread of their own; every thread inherits the mask.
    sigset_t stopSignals;
    sigemptyset(&stopSignals);
    sigaddset(&stopSignals, SIGTERM);
    sigaddset(&stopSignals, SIGINT);
    sigaddset(&stopSignals, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);

    try {
        jail::Reaper::instance().start();
        if (cfg.initMode) {
            loadKernelModules();
            net::setupLoopback();
        }
        if (cfg.debugConsole || cfg.debugConsoleVport) startDebugConsole(cfg);

        Sandbox sandbox(cfg);
        ttrpc::Server server;
        registerServices(server, sandbox);

        std::thread([&server, &logger, stopSignals, init = cfg.initMode] {
            for (;;) {
                int sig = 0;
                if (::sigwait(&stopSignals, &sig) != 0) continue;
                if (sig == SIGPIPE) continue;
                if (init) continue;  // init ignores them; the VM is stopped from outside
                logger.info("stopping on signal", {{"signal", std::to_string(sig)}});
                server.shutdown();
                return;
            }
        }).detach();

        std::string addr = resolveServerAddr(cfg);
        if (cfg.initMode) startPortForwardService(cfg);
        logger.info("agent started", {{"version", versionString()},
                                      {"server-addr", addr},
                                      {"init", cfg.initMode ? "true" : "false"}});
        serve(server, addr);
        logger.info("agent stopping");
    } catch (const std::exception& e) {
        if (cfg.initMode) fatalPowerOff(e.what());
        logger.error("agent failed", {{"error", e.what()}});
        return 1;
    }
    if (cfg.initMode) fatalPowerOff("agent server stopped");
    return 0;
}
