// The message protocol between the agent and the children it forks to build a container or run
// a process in one (a SOCK_SEQPACKET socketpair, close-on-exec: EOF means "execve succeeded").
// Children report a failing step with its errno; the agent turns it into a kata::Error.
#pragma once

#include <sys/types.h>

#include <string>

#include "kata/common/fd.h"

namespace kata::jail {

enum class SyncType : int {
    kPid = 1,      // intermediate -> agent: pid of the process it cloned (agent's pid ns)
    kGo,           // agent -> child: continue (id maps written / start)
    kPty,          // child -> agent: pty master attached as SCM_RIGHTS
    kReady,        // init -> agent: container set up, waiting for start
    kError,        // child -> agent: op/what/err of the failing step
    kCreateHooks,  // init -> agent: mounts done, before pivot_root: run create hooks
};

struct SyncMsg {
    SyncType type;
    int err;
    int pid;
    char op[64];
    char what[1024];
};

struct SocketPair {
    UniqueFd parent, child;
};
SocketPair makeSyncSocketPair();

// Agent side. recv returns false on EOF; throws on timeout (ms) or socket error.
void syncSend(int fd, SyncType type, int pid = 0, int passFd = -1);
bool syncRecv(int fd, SyncMsg* msg, UniqueFd* passedFd, int timeoutMs);

// Child side: sends the failure and _exit(127)s. Never allocates.
[[noreturn]] void childFail(int fd, const char* op, const char* what, int err);
[[noreturn]] void childFail(int fd, const char* op, const std::string& what, int err);
// Child side: sends a message, _exit(127) if the agent is gone.
void childSend(int fd, SyncType type, int pid = 0, int passFd = -1);
// Child side: waits for kGo; _exit(127)s on EOF (the agent gave up on us).
void childWaitGo(int fd);

}  // namespace kata::jail
