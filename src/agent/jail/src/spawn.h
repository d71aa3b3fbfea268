// Starting processes from a multithreaded agent. The agent forks a single-threaded intermediate
// that joins the cgroup and the namespaces (setns into a mount namespace is refused to a
// multithreaded process) and clones the final process with CLONE_PARENT, so the agent is its
// parent and the reaper collects its exit. The final process reports its pid, a pty master, or
// the failing step over the sync channel; EOF (close-on-exec) means execve succeeded.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/oci.pb.h"
#include "capabilities.h"
#include "kata/common/fd.h"
#include "namespaces.h"
#include "seccomp_filter.h"
#include "sync.h"
#include "users.h"

namespace kata::jail {

// Everything a process needs to become the user's program, resolved by the agent beforehand.
struct ProcessPlan {
    std::vector<std::string> args, env;
    std::string cwd = "/";
    UserPlan user;
    CapabilityPlan caps;
    std::vector<RlimitPlan> rlimits;
    bool noNewPrivileges = false;
    const SeccompFilter* seccomp = nullptr;
    bool setOomScoreAdj = false;
    long long oomScoreAdj = 0;
    bool terminal = false;
    uint32_t rows = 0, cols = 0;
    int stdinFd = -1, stdoutFd = -1, stderrFd = -1;  // child ends when not a terminal
};

// rootfs: the container root in the agent's mount namespace (for user lookup).
ProcessPlan planProcess(const std::string& rootfs, const grpc::Process& process,
                        const SeccompFilter* seccomp);

// Child side, inside the container: stdio (pipes or pty).
void childSetupStdio(int syncFd, const ProcessPlan& plan);
// Child side, inside the container's mount namespace: finds args[0] in the process's PATH the
// way a shell would; its absence is reported as `exec "<name>"` with ENOENT.
std::string childFindExecutable(int syncFd, const ProcessPlan& plan);
// Child side: cwd, rlimits, oom score, user, capabilities, no_new_privs, seccomp, execve.
[[noreturn]] void childExec(int syncFd, const ProcessPlan& plan, const std::string& path);

struct SpawnRequest {
    std::vector<std::string> cgroupProcsFiles;  // joined by the intermediate ("0" = itself)
    std::vector<NamespaceJoin> joins;           // setns by the intermediate
    int cloneFlags = 0;                         // new namespaces for the final process
    std::vector<int> keepFds;                   // fds the final process needs
    std::function<void(int syncFd)> childMain;  // runs in the final process; must not return
};

// Returns the final process's pid (agent pid ns); *sync is the agent's end of the channel.
// Throws, naming the failing step + context, if the intermediate fails.
pid_t spawnProcess(const SpawnRequest& req, UniqueFd* sync, const std::string& context);

// Turns a child's kError message into the exception to throw.
[[noreturn]] void throwChildError(const SyncMsg& msg, const std::string& context);

// Moves fd to a number >= 3 so dup2 onto stdio cannot clobber it.
UniqueFd raiseFd(UniqueFd fd);

}  // namespace kata::jail
