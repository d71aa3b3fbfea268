// kata-agent-ctl's command language: "<Command> key=value ..." strings, turned into agent API
// requests and run against an RpcCaller (the ttrpc client in the binary, a fake in tests).
#pragma once

#include <google/protobuf/message.h>

#include <chrono>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kata::agentctl {

// Splits like a POSIX shell, without expansions: blanks separate words; '...' is literal;
// "..." honours \" \\ \$ \`; a backslash outside quotes escapes the next character.
// Throws kata::Error(kInvalidArgument) on an unterminated quote or trailing backslash.
std::vector<std::string> splitWords(const std::string& text);

struct Invocation {
    std::string command;
    // In the order given; a key may repeat (arg=... arg=...).
    std::vector<std::pair<std::string, std::string>> args;
};

// "ExecProcess cid=c1 cmd='sh -c \"echo hi\"'" -> {ExecProcess, {{cid,c1},{cmd,sh -c "echo hi"}}}
Invocation parseCommand(const std::string& text);

struct Context {
    // --bundle-dir: a bundle with config.json (and rootfs/) for CreateContainer.
    std::string bundleDir;
    // --timeout, applied to calls that do not block by design (WaitProcess, reads, ...).
    std::chrono::milliseconds timeout{std::chrono::seconds(30)};
};

class RpcCaller {
  public:
    virtual ~RpcCaller() = default;
    // Returns the serialized response or throws kata::Error with the remote status.
    virtual std::string call(const std::string& service, const std::string& method,
                             const std::string& payload, std::chrono::milliseconds timeout) = 0;
};

struct KeyInfo {
    KeyInfo(std::string name, std::string help, std::string defaultValue = "",
            bool required = false, bool repeated = false)
        : name(std::move(name)),
          help(std::move(help)),
          defaultValue(std::move(defaultValue)),
          required(required),
          repeated(repeated) {}

    std::string name;
    std::string help;
    std::string defaultValue;  // shown by `list`; empty: none
    bool required = false;
    bool repeated = false;
};

class Args;

struct CommandInfo {
    CommandInfo(std::string name, std::string help, std::string service, std::string method,
                std::vector<KeyInfo> keys, bool blocking = false)
        : name(std::move(name)),
          help(std::move(help)),
          service(std::move(service)),
          method(std::move(method)),
          keys(std::move(keys)),
          blocking(blocking) {}

    std::string name;
    std::string help;
    std::string service;  // empty for local commands (sleep, echo)
    std::string method;
    std::vector<KeyInfo> keys;
    // No call timeout unless timeout= is given: the call waits for an event by design.
    bool blocking = false;
};

// Every command, in the order `list` prints them.
const std::vector<CommandInfo>& commands();
const CommandInfo* findCommand(const std::string& name);

// Prints the commands with their keys (kata-agent-ctl list).
void printCommandList(std::ostream& out);

struct BuiltRequest {
    const CommandInfo* info = nullptr;
    std::unique_ptr<google::protobuf::Message> request;   // null for local commands
    std::unique_ptr<google::protobuf::Message> response;  // an empty response prototype
    std::chrono::milliseconds timeout{0};
};

// Validates the keys and builds the request. Throws kata::Error(kInvalidArgument) naming the
// command and the bad key or value.
BuiltRequest buildRequest(const Invocation& inv, const Context& ctx);

// Builds, calls and prints the response as one line of JSON (proto field names). Throws
// kata::Error on a bad command or a failed call.
void runCommand(const Invocation& inv, const Context& ctx, RpcCaller& caller, std::ostream& out);

// Signal by number ("9") or name ("SIGKILL", "KILL", "kill").
int parseSignal(const std::string& text);

// Interprets \n \t \r \0 \\ and \xHH in WriteStdin's data=.
std::string unescapeData(const std::string& text);

}  // namespace kata::agentctl
