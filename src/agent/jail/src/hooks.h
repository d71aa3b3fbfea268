// OCI hooks: each runs with the container state JSON on stdin and an optional timeout.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

#include "agent/oci.pb.h"

namespace kata::jail {

std::string containerStateJson(const grpc::Spec& spec, const std::string& id,
                               const std::string& status, pid_t pid, const std::string& bundle);

// What a hook process needs; the fds are the child's stdin and stdout/stderr.
struct HookCommand {
    const char* path;
    char* const* argv;
    char* const* envp;
    int stdinFd, outFd;
};
// Starts a hook process and returns its pid (the reaper collects it). The default forks in the
// agent's namespaces; containers pass one that starts it inside their namespaces.
using HookSpawner = std::function<pid_t(const HookCommand&)>;

// Runs the hooks in order; throws on the first that fails (exit status, timeout, exec error),
// naming the stage and the hook's path and including what it wrote to stderr.
void runHooks(const char* stage, const google::protobuf::RepeatedPtrField<grpc::Hook>& hooks,
              const std::string& stateJson, const HookSpawner& spawner = {});

// Child side: stdio onto the pipes, then execve(path).
[[noreturn]] void childRunHook(const HookCommand& cmd);

}  // namespace kata::jail
