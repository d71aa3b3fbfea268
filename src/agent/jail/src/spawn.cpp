#include "spawn.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>

#include "kata/common/error.h"
#include "kata/jail/reaper.h"
#include "terminal.h"
#include "util.h"

namespace kata::jail {

namespace {
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr int kSetupTimeoutMs = 60000;

bool hasEnv(const std::vector<std::string>& env, const char* key) {
    size_t n = std::strlen(key);
    for (const auto& e : env)
        if (e.size() > n && e.compare(0, n, key) == 0 && e[n] == '=') return true;
    return false;
}
}  // namespace

UniqueFd raiseFd(UniqueFd fd) {
    if (!fd.valid() || fd.get() >= 3) return fd;
    int high = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
    if (high < 0) throwErrno("fcntl F_DUPFD_CLOEXEC", "stdio");
    return UniqueFd(high);
}

ProcessPlan planProcess(const std::string& rootfs, const grpc::Process& process,
                        const SeccompFilter* seccomp) {
    if (process.args().empty())
        throw Error(StatusCode::kInvalidArgument, "process has no args: nothing to execute");
    ProcessPlan plan;
    plan.args.assign(process.args().begin(), process.args().end());
    plan.env.assign(process.env().begin(), process.env().end());
    plan.cwd = process.cwd().empty() ? "/" : process.cwd();
    if (plan.cwd[0] != '/')
        throw Error(StatusCode::kInvalidArgument, "cwd \"" + plan.cwd + "\" is not absolute");
    plan.user = resolveUser(rootfs, process.user());
    if (!hasEnv(plan.env, "HOME")) plan.env.push_back("HOME=" + plan.user.home);
    plan.caps = planCapabilities(process);
    plan.rlimits = planRlimits(process);
    plan.noNewPrivileges = process.nonewprivileges();
    plan.seccomp = seccomp;
    if (process.oomscoreadj() != 0) {
        plan.setOomScoreAdj = true;
        plan.oomScoreAdj = process.oomscoreadj();
    }
    plan.terminal = process.terminal();
    if (process.has_consolesize()) {
        plan.rows = process.consolesize().height();
        plan.cols = process.consolesize().width();
    }
    return plan;
}

void childSetupStdio(int syncFd, const ProcessPlan& plan) {
    if (plan.terminal)
        childSetupTerminal(syncFd, plan.rows, plan.cols);
    else
        childSetupPipes(syncFd, plan.stdinFd, plan.stdoutFd, plan.stderrFd);
}

std::string childFindExecutable(int syncFd, const ProcessPlan& plan) {
    std::string path = plan.args[0];
    if (path.find('/') != std::string::npos) {
        struct stat st;
        if (::stat(path.c_str(), &st) != 0) childFail(syncFd, "exec", "\"" + path + "\"", errno);
        return path;
    }
    std::string search = kDefaultPath;
    for (const auto& e : plan.env)
        if (e.rfind("PATH=", 0) == 0) search = e.substr(5);
    for (const auto& dir : split(search, ':')) {
        std::string cand = joinPath(dir.empty() ? "." : dir, path);
        struct stat st;
        if (::stat(cand.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
            ::access(cand.c_str(), X_OK) == 0)
            return cand;
    }
    childFail(syncFd, "exec", "\"" + path + "\"", ENOENT);
}

void childExec(int syncFd, const ProcessPlan& plan, const std::string& path) {
    if (::chdir(plan.cwd.c_str()) != 0) childFail(syncFd, "chdir", "\"" + plan.cwd + "\"", errno);
    childSetRlimits(syncFd, plan.rlimits);
    if (plan.setOomScoreAdj) {
        std::string v = std::to_string(plan.oomScoreAdj);
        int err = tryWriteFile("/proc/self/oom_score_adj", v);
        if (err) childFail(syncFd, "write", "oom_score_adj " + v, err);
    }
    childDropBounding(syncFd, plan.caps);
    if (!plan.noNewPrivileges) childLoadSeccomp(syncFd, plan.seccomp);
    childSwitchUser(syncFd, plan.user);
    childApplyCapabilities(syncFd, plan.caps);
    if (plan.noNewPrivileges) {
        if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
            childFail(syncFd, "prctl", "PR_SET_NO_NEW_PRIVS", errno);
        childLoadSeccomp(syncFd, plan.seccomp);
    }
    std::vector<char*> argv, envp;
    for (const auto& a : plan.args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : plan.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    // The agent may have ignored or blocked signals; the user's program starts clean.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s = 1; s < NSIG; ++s) ::signal(s, SIG_DFL);
    ::execve(path.c_str(), argv.data(), envp.data());
    childFail(syncFd, "exec", "\"" + plan.args[0] + "\"", errno);
}

void throwChildError(const SyncMsg& msg, const std::string& context) {
    std::string what = msg.what;
    what += context;
    if (msg.err != 0) throw SystemError(msg.op, what, msg.err);
    throw Error(StatusCode::kInternal, std::string(msg.op) + " " + what);
}

pid_t spawnProcess(const SpawnRequest& req, UniqueFd* sync, const std::string& context) {
    Reaper::instance().start();
    SocketPair sp = makeSyncSocketPair();
    int childSync = sp.child.get();
    pid_t mid = ::fork();
    if (mid < 0) throwErrno("fork", "container setup process" + context);
    if (mid == 0) {
        // Intermediate: single-threaded from here on.
        std::vector<int> keep = req.keepFds;
        keep.push_back(childSync);
        for (const auto& j : req.joins) keep.push_back(j.fd);
        closeAllExcept(keep);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        for (const auto& f : req.cgroupProcsFiles) {
            int err = tryWriteFile(f, "0");
            if (err) childFail(childSync, "join cgroup", f, err);
        }
        childJoinNamespaces(childSync, req.joins);
        for (const auto& j : req.joins) ::close(j.fd);
        // The final process waits until its pid has been reported, so the agent always reads the
        // pid first: the pipe's write end closes when the intermediate exits.
        int order[2];
        if (::pipe2(order, O_CLOEXEC) != 0)
            childFail(childSync, "pipe2", "process start order", errno);
        long pid = ::syscall(SYS_clone,
                             static_cast<unsigned long>(req.cloneFlags) | CLONE_PARENT | SIGCHLD,
                             nullptr, nullptr, nullptr, nullptr);
        if (pid < 0) {
            int err = errno;
            std::string what = "process with new namespaces:";
            for (int f : {CLONE_NEWUSER, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET, CLONE_NEWPID,
                          CLONE_NEWCGROUP, CLONE_NEWNS})
                if (req.cloneFlags & f) what += std::string(" ") + namespaceName(f);
            childFail(childSync, "clone", what, err);
        }
        if (pid == 0) {
            ::close(order[1]);
            char c;
            while (::read(order[0], &c, 1) < 0 && errno == EINTR) {
            }
            ::close(order[0]);
            // An exception must never unwind into the agent's frames copied into this child.
            try {
                req.childMain(childSync);
            } catch (const std::exception& e) {
                childFail(childSync, "set up process", e.what(), 0);
            } catch (...) {
                childFail(childSync, "set up process", "unknown exception", 0);
            }
            ::_exit(127);
        }
        childSend(childSync, SyncType::kPid, static_cast<int>(pid));
        ::_exit(0);
    }
    // Wait for the intermediate to be reaped before returning: until then it still counts as a
    // process of the container's cgroup.
    auto reaped = std::make_shared<std::promise<void>>();
    std::future<void> reapedFuture = reaped->get_future();
    Reaper::instance().watch(mid, [reaped](int) { reaped->set_value(); });
    sp.child.reset();
    SyncMsg msg;
    bool got = syncRecv(sp.parent.get(), &msg, nullptr, kSetupTimeoutMs);
    reapedFuture.wait_for(std::chrono::seconds(10));
    if (!got) throw Error(StatusCode::kInternal, "container setup process died" + context);
    if (msg.type == SyncType::kError) throwChildError(msg, context);
    if (msg.type != SyncType::kPid)
        throw Error(StatusCode::kInternal, "container setup process: unexpected message" + context);
    *sync = std::move(sp.parent);
    return msg.pid;
}

}  // namespace kata::jail
