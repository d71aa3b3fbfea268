// A process's standard streams between containerd's FIFOs and the agent: stdout/stderr are read
// from the agent (ReadStdout/ReadStderr) until end of stream and written to the FIFOs; stdin is
// read from its FIFO and written to the agent (WriteStdin), with CloseStdin at end of file.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "agent_client.h"

namespace kata::shim {

struct StdioPaths {
    std::string stdinPath, stdoutPath, stderrPath;
    bool terminal = false;
};

class ProcessIo {
  public:
    ProcessIo(std::shared_ptr<AgentClient> agent, std::string cid, std::string execId,
              StdioPaths paths);
    // Cancels the copiers; a copier blocked in an agent call finishes in the background.
    ~ProcessIo();
    ProcessIo(const ProcessIo&) = delete;
    ProcessIo& operator=(const ProcessIo&) = delete;

    // Opens the FIFOs and starts the copiers. Throws naming the FIFO that cannot be opened.
    void start();
    // Waits until stdout and stderr reached end of stream (every byte written to the FIFOs);
    // false on timeout.
    bool waitOutputDrained(std::chrono::milliseconds timeout);
    // containerd's CloseIO(stdin): the stdin FIFO is finished; the agent gets CloseStdin once
    // what was read is written.
    void closeStdin();

  private:
    struct Shared;
    std::shared_ptr<Shared> s_;
};

}  // namespace kata::shim
