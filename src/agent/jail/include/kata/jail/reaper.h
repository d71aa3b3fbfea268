// The agent reaps every child: it is PID 1 in the guest, or a child subreaper elsewhere.
#pragma once

#include <sys/types.h>

#include <functional>

namespace kata::jail {

class Reaper {
  public:
    static Reaper& instance();
    // PR_SET_CHILD_SUBREAPER + a thread that reaps on SIGCHLD; idempotent.
    void start();
    // cb(rawWaitStatus) is called once, from the reaper thread; a pid that exited before watch()
    // was called is delivered at once (unclaimed exits are kept).
    void watch(pid_t pid, std::function<void(int rawStatus)> cb);
    // Blocks until pid has exited and returns its raw wait status; for short-lived helpers.
    int waitFor(pid_t pid);

    struct State;

  private:
    Reaper();
    State* state_;
};

}  // namespace kata::jail
