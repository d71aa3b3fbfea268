#include "process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "kata/common/error.h"
#include "kata/common/fd.h"

namespace kata::deploy {

std::string RunResult::summary() const {
    std::string head = timedOut        ? "timed out"
                       : exitCode >= 0 ? "exit " + std::to_string(exitCode)
                                       : "killed by a signal";
    std::string text = err.empty() ? out : err;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    if (text.size() > 600) text = "..." + text.substr(text.size() - 600);
    return text.empty() ? head : head + ": " + text;
}

std::string findExecutable(const std::string& name) {
    if (name.empty()) return "";
    if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    size_t start = 0;
    while (start <= dirs.size()) {
        size_t end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        std::string dir = dirs.substr(start, end - start);
        if (dir.empty()) dir = ".";
        std::string candidate = dir + "/" + name;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        start = end + 1;
    }
    return "";
}

RunResult run(const std::vector<std::string>& argv, int timeoutSeconds) {
    if (argv.empty()) throw Error(StatusCode::kInvalidArgument, "run: empty command");
    int outPipe[2], errPipe[2];
    if (::pipe2(outPipe, O_CLOEXEC) != 0) throwErrno("pipe", "for " + argv[0]);
    UniqueFd outR(outPipe[0]), outW(outPipe[1]);
    if (::pipe2(errPipe, O_CLOEXEC) != 0) throwErrno("pipe", "for " + argv[0]);
    UniqueFd errR(errPipe[0]), errW(errPipe[1]);

    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);

    pid_t pid = ::fork();
    if (pid < 0) throwErrno("fork", "for " + argv[0]);
    if (pid == 0) {
        int devnull = ::open("/dev/null", O_RDONLY);
        if (devnull >= 0) ::dup2(devnull, 0);
        ::dup2(outW.get(), 1);
        ::dup2(errW.get(), 2);
        ::setpgid(0, 0);  // a timeout kills the command's whole process group
        ::execvp(args[0], args.data());
        std::string msg = "exec " + argv[0] + ": " + std::strerror(errno) + "\n";
        (void)!::write(2, msg.data(), msg.size());
        ::_exit(127);
    }
    outW.reset();
    errW.reset();

    RunResult r;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSeconds);
    bool outOpen = true, errOpen = true, exited = false;
    int status = 0;
    // A daemon the command leaves running (a restarted containerd) may keep the pipes open, so
    // the command's own exit ends the wait too.
    ::fcntl(outR.get(), F_SETFL, O_NONBLOCK);
    ::fcntl(errR.get(), F_SETFL, O_NONBLOCK);
    while ((outOpen || errOpen) && !exited) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) {
            r.timedOut = true;
            ::kill(-pid, SIGKILL);
            break;
        }
        pollfd fds[2] = {{outR.get(), POLLIN, 0}, {errR.get(), POLLIN, 0}};
        if (!outOpen) fds[0].fd = -1;
        if (!errOpen) fds[1].fd = -1;
        int n = ::poll(fds, 2, static_cast<int>(std::min<long long>(left, 1000)));
        if (n < 0 && errno != EINTR) break;
        char buf[4096];
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
            if (got > 0)
                (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(got));
            else if (got == 0 || (errno != EINTR && errno != EAGAIN))
                (i == 0 ? outOpen : errOpen) = false;
        }
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            exited = true;
            char buf2[4096];
            ssize_t got;
            while (outOpen && (got = ::read(outR.get(), buf2, sizeof buf2)) > 0)
                r.out.append(buf2, static_cast<size_t>(got));
            while (errOpen && (got = ::read(errR.get(), buf2, sizeof buf2)) > 0)
                r.err.append(buf2, static_cast<size_t>(got));
        }
    }
    if (!exited)
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    r.exitCode = (!r.timedOut && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
    return r;
}

}  // namespace kata::deploy
