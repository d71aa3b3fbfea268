// kata-agent-ctl: drive a kata agent directly over ttrpc, one command at a time.
#include <CLI/CLI.hpp>

#include <iostream>

#include "commands.h"
#include "kata/common/error.h"
#include "kata/common/version.h"
#include "kata/ttrpc/ttrpc.h"

namespace {

class TtrpcCaller : public kata::agentctl::RpcCaller {
  public:
    explicit TtrpcCaller(kata::UniqueFd fd) : client_(std::move(fd)) {}
    std::string call(const std::string& service, const std::string& method,
                     const std::string& payload, std::chrono::milliseconds timeout) override {
        return client_.callRaw(service, method, payload, timeout);
    }

  private:
    kata::ttrpc::Client client_;
};

void printError(const std::string& what, const std::exception& e) {
    if (const auto* ke = dynamic_cast<const kata::Error*>(&e)) {
        std::cerr << "kata-agent-ctl: " << what << ": " << kata::statusCodeName(ke->code()) << ": "
                  << ke->what() << "\n";
    } else {
        std::cerr << "kata-agent-ctl: " << what << ": " << e.what() << "\n";
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"kata-agent-ctl: send agent API requests to a kata agent"};
    app.set_version_flag("--version", std::string(kata::versionString()));
    app.require_subcommand(1);

    std::string address, bundleDir;
    unsigned timeoutSecs = 30;
    std::vector<std::string> cmds;
    auto* connect = app.add_subcommand("connect", "connect to an agent and run commands in order");
    connect
        ->add_option("--server-address", address,
                     "unix:///path, vsock://cid:port, or the path of a serial-port socket")
        ->required();
    connect->add_option("--bundle-dir", bundleDir, "OCI bundle for CreateContainer");
    connect
        ->add_option("--timeout", timeoutSecs,
                     "seconds to wait for the connection and for each call")
        ->capture_default_str();
    connect->add_option("-c,--cmd", cmds, "\"<Command> key=value ...\" (repeatable)")
        ->required()
        ->expected(1)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    auto* list = app.add_subcommand("list", "list the commands and their keys");

    CLI11_PARSE(app, argc, argv);

    if (list->parsed()) {
        kata::agentctl::printCommandList(std::cout);
        return 0;
    }

    kata::agentctl::Context ctx;
    ctx.bundleDir = bundleDir;
    ctx.timeout = std::chrono::seconds(timeoutSecs);

    // Check every command before connecting, so a typo fails before anything is changed.
    std::vector<kata::agentctl::Invocation> invocations;
    for (const auto& text : cmds) {
        try {
            invocations.push_back(kata::agentctl::parseCommand(text));
            kata::agentctl::buildRequest(invocations.back(), ctx);
        } catch (const std::exception& e) {
            printError("bad command \"" + text + "\"", e);
            return 2;
        }
    }

    std::unique_ptr<TtrpcCaller> caller;
    try {
        caller = std::make_unique<TtrpcCaller>(
            kata::ttrpc::dial(address, std::chrono::milliseconds(ctx.timeout)));
    } catch (const std::exception& e) {
        printError("connect to " + address, e);
        return 1;
    }
    for (const auto& inv : invocations) {
        try {
            kata::agentctl::runCommand(inv, ctx, *caller, std::cout);
            std::cout.flush();
        } catch (const std::exception& e) {
            printError("command " + inv.command + " failed", e);
            return 1;
        }
    }
    return 0;
}
