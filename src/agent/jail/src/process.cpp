// A process the agent started in a container: its stdio ends, its exit status, signals, tty.
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>

#include <cerrno>
#include <chrono>

#include "kata/common/error.h"
#include "kata/jail/container.h"

namespace kata::jail {

Process::Process(std::string execId, pid_t pid, bool terminal, ProcessIo io)
    : execId_(std::move(execId)), pid_(pid), terminal_(terminal), io_(std::move(io)) {}

void Process::markExited(int rawStatus) {
    int code = WIFSIGNALED(rawStatus) ? 128 + WTERMSIG(rawStatus) : WEXITSTATUS(rawStatus);
    std::lock_guard<std::mutex> lock(mu_);
    exitCode_ = code;
    exited_.notify_all();
}

int Process::wait() {
    std::unique_lock<std::mutex> lock(mu_);
    exited_.wait(lock, [this] { return exitCode_.has_value(); });
    return *exitCode_;
}

std::optional<int> Process::waitFor(int timeoutMs) {
    std::unique_lock<std::mutex> lock(mu_);
    exited_.wait_for(lock, std::chrono::milliseconds(timeoutMs),
                     [this] { return exitCode_.has_value(); });
    return exitCode_;
}

std::optional<int> Process::exitCode() const {
    std::lock_guard<std::mutex> lock(mu_);
    return exitCode_;
}

void Process::signal(int sig) {
    // Once the reaper has seen the exit the pid may belong to someone else: never signal it.
    std::lock_guard<std::mutex> lock(mu_);
    if (exitCode_) return;
    if (::kill(pid_, sig) != 0 && errno != ESRCH)
        throwErrno("kill", "process " + execId_ + " (pid " + std::to_string(pid_) + ")");
}

void Process::resizeTty(uint32_t rows, uint32_t cols) {
    if (!io_.ptyMaster.valid())
        throw Error(StatusCode::kFailedPrecondition,
                    "resize tty of process " + execId_ + ": it has no terminal");
    struct winsize ws = {};
    ws.ws_row = static_cast<unsigned short>(rows);
    ws.ws_col = static_cast<unsigned short>(cols);
    if (::ioctl(io_.ptyMaster.get(), TIOCSWINSZ, &ws) != 0)
        throwErrno("ioctl TIOCSWINSZ", "process " + execId_);
}

void Process::closeStdin() {
    if (io_.stdinWriter.valid()) {
        io_.stdinWriter.reset();
    } else if (io_.ptyMaster.valid()) {
        // A terminal has no separate stdin: send EOF (^D) the way a user would.
        char eof = 4;
        (void)!::write(io_.ptyMaster.get(), &eof, 1);
    }
}

}  // namespace kata::jail
