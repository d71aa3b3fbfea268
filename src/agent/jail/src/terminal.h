// A process's stdio: pipes, or a pty from the container's own devpts whose master goes back to
// the agent over the sync channel.
#pragma once

#include <cstdint>

#include "kata/common/fd.h"
#include "kata/jail/container.h"

namespace kata::jail {

struct StdioChildEnds {
    UniqueFd in, out, err;
};

// Agent side: pipes for a process without a terminal (agent ends go into io).
StdioChildEnds makeStdioPipes(ProcessIo* io);

// Child side, inside the container's mount namespace: opens a pty on /dev/ptmx, sends the master
// to the agent, makes the slave the controlling terminal and stdio.
void childSetupTerminal(int syncFd, uint32_t rows, uint32_t cols);
// Child side: new session, pipes onto 0/1/2.
void childSetupPipes(int syncFd, int in, int out, int err);

}  // namespace kata::jail
