#include "hooks.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/jail/reaper.h"
#include "util.h"

namespace kata::jail {

std::string containerStateJson(const grpc::Spec& spec, const std::string& id,
                               const std::string& status, pid_t pid, const std::string& bundle) {
    nlohmann::json j;
    j["ociVersion"] = spec.version().empty() ? "1.0.2" : spec.version();
    j["id"] = id;
    j["status"] = status;
    if (pid > 0) j["pid"] = pid;
    j["bundle"] = bundle;
    nlohmann::json ann = nlohmann::json::object();
    for (const auto& [k, v] : spec.annotations()) ann[k] = v;
    j["annotations"] = ann;
    return j.dump();
}

void childRunHook(const HookCommand& cmd) {
    ::dup2(cmd.stdinFd, 0);
    ::dup2(cmd.outFd, 1);
    ::dup2(cmd.outFd, 2);
    closeAllExcept({});
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(cmd.path, cmd.argv, cmd.envp);
    dprintf(2, "exec %s: %s", cmd.path, strerror(errno));
    ::_exit(127);
}

namespace {
pid_t forkHook(const HookCommand& cmd) {
    pid_t pid = ::fork();
    if (pid < 0) throwErrno("fork", std::string("hook ") + cmd.path);
    if (pid == 0) childRunHook(cmd);
    return pid;
}

void runHook(const char* stage, const grpc::Hook& hook, const std::string& state,
             const HookSpawner& spawner) {
    std::string what = std::string(stage) + " hook " + hook.path();
    int in[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0) throwErrno("pipe2", what);
    UniqueFd inR(in[0]), inW(in[1]);
    if (::pipe2(err, O_CLOEXEC) != 0) throwErrno("pipe2", what);
    UniqueFd errR(err[0]), errW(err[1]);
    std::vector<std::string> args(hook.args().begin(), hook.args().end());
    if (args.empty()) args.push_back(hook.path());
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env(hook.env().begin(), hook.env().end());
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    Reaper::instance().start();
    HookCommand cmd{hook.path().c_str(), argv.data(), envp.data(), inR.get(), errW.get()};
    pid_t pid = spawner ? spawner(cmd) : forkHook(cmd);
    std::mutex mu;
    std::condition_variable cv;
    std::optional<int> status;
    Reaper::instance().watch(pid, [&](int s) {
        std::lock_guard<std::mutex> lock(mu);
        status = s;
        cv.notify_all();
    });
    inR.reset();
    errW.reset();
    // A hook that does not read its stdin must not block us.
    ::fcntl(inW.get(), F_SETFL, O_NONBLOCK);
    (void)!::write(inW.get(), state.data(), state.size());
    inW.reset();
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::seconds(hook.timeout() > 0 ? hook.timeout() : 3600 * 24);
    std::string output;
    bool timedOut = false;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) {
            timedOut = true;
            break;
        }
        struct pollfd p = {errR.get(), POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
        if (r < 0 && errno != EINTR) break;
        if (r <= 0) continue;
        char buf[1024];
        ssize_t n = ::read(errR.get(), buf, sizeof buf);
        if (n <= 0) break;
        if (output.size() < 4096) output.append(buf, static_cast<size_t>(n));
    }
    std::unique_lock<std::mutex> lock(mu);
    if (!timedOut && !cv.wait_until(lock, deadline, [&] { return status.has_value(); }))
        timedOut = true;
    if (timedOut) {
        ::kill(pid, SIGKILL);
        cv.wait(lock, [&] { return status.has_value(); });
        throw Error(StatusCode::kDeadlineExceeded,
                    what + " timed out after " + std::to_string(hook.timeout()) + "s");
    }
    cv.wait(lock, [&] { return status.has_value(); });
    int s = *status;
    if (WIFEXITED(s) && WEXITSTATUS(s) == 0) return;
    std::string how = WIFSIGNALED(s) ? "was killed by signal " + std::to_string(WTERMSIG(s))
                                     : "exited with status " + std::to_string(WEXITSTATUS(s));
    output = trim(output);
    throw Error(StatusCode::kFailedPrecondition,
                what + " " + how + (output.empty() ? "" : ": " + output));
}
}  // namespace

void runHooks(const char* stage, const google::protobuf::RepeatedPtrField<grpc::Hook>& hooks,
              const std::string& stateJson, const HookSpawner& spawner) {
    for (const auto& h : hooks) runHook(stage, h, stateJson, spawner);
}

}  // namespace kata::jail
