// Reaps every child of the agent. A SIGCHLD handler pokes a pipe; one thread drains exits with
// waitpid(-1, WNOHANG) and hands each status to whoever watches that pid.
#include "kata/jail/reaper.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "kata/common/error.h"
#include "kata/common/log.h"

namespace kata::jail {

namespace {
int gWakeWrite = -1;
// Exits nobody watched (orphans re-parented to us, helpers whose starter gave up) are kept for a
// late watch(); past this many the oldest are forgotten.
constexpr size_t kMaxUnclaimed = 4096;

void onSigchld(int) {
    int saved = errno;
    if (gWakeWrite >= 0) {
        char c = 1;
        (void)!::write(gWakeWrite, &c, 1);
    }
    errno = saved;
}
}  // namespace

struct Reaper::State {
    std::mutex mu;
    bool started = false;
    int wakeRead = -1;
    std::map<pid_t, std::function<void(int)>> watchers;
    std::map<pid_t, int> unclaimed;
    std::deque<pid_t> unclaimedOrder;  // oldest first, to bound what orphans can pile up
    // Exits claimed by watch() after they happened; delivered from the reaper thread.
    std::deque<std::pair<std::function<void(int)>, int>> pending;

    void wake() {
        char c = 1;
        (void)!::write(gWakeWrite, &c, 1);
    }

    void loop() {
        for (;;) {
            struct pollfd p = {wakeRead, POLLIN, 0};
            // The timeout is a safety net for a SIGCHLD lost to another handler.
            ::poll(&p, 1, 1000);
            char buf[64];
            while (::read(wakeRead, buf, sizeof buf) > 0) {
            }
            std::vector<std::pair<std::function<void(int)>, int>> deliver;
            for (;;) {
                int status = 0;
                pid_t pid = ::waitpid(-1, &status, WNOHANG | __WALL);
                if (pid <= 0) break;
                std::lock_guard<std::mutex> lock(mu);
                auto it = watchers.find(pid);
                if (it != watchers.end()) {
                    deliver.emplace_back(std::move(it->second), status);
                    watchers.erase(it);
                } else {
                    if (unclaimed.emplace(pid, status).second) {
                        unclaimedOrder.push_back(pid);
                    } else {
                        unclaimed[pid] = status;
                    }
                    while (unclaimedOrder.size() > kMaxUnclaimed) {
                        unclaimed.erase(unclaimedOrder.front());
                        unclaimedOrder.pop_front();
                    }
                }
            }
            {
                std::lock_guard<std::mutex> lock(mu);
                while (!pending.empty()) {
                    deliver.push_back(std::move(pending.front()));
                    pending.pop_front();
                }
            }
            for (auto& [cb, status] : deliver) {
                try {
                    cb(status);
                } catch (const std::exception& e) {
                    log::Logger("reaper").error(std::string("exit callback threw: ") + e.what());
                }
            }
        }
    }
};

Reaper::Reaper() : state_(new State) {}

Reaper& Reaper::instance() {
    static Reaper* reaper = new Reaper;  // never destroyed: its thread outlives static teardown
    return *reaper;
}

void Reaper::start() {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->started) return;
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 && ::getpid() != 1)
        throwErrno("prctl PR_SET_CHILD_SUBREAPER", "agent");
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throwErrno("pipe2", "reaper wake pipe");
    state_->wakeRead = fds[0];
    gWakeWrite = fds[1];
    struct sigaction sa = {};
    sa.sa_handler = onSigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGCHLD, &sa, nullptr) != 0) throwErrno("sigaction", "SIGCHLD");
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    std::thread([s = state_] { s->loop(); }).detach();
    state_->started = true;
}

void Reaper::watch(pid_t pid, std::function<void(int)> cb) {
    std::lock_guard<std::mutex> lock(state_->mu);
    auto it = state_->unclaimed.find(pid);
    if (it != state_->unclaimed.end()) {
        // A live process with this pid means the kept exit belonged to an earlier holder of the
        // number; the new process's exit will come later.
        bool alive = ::kill(pid, 0) == 0 || errno == EPERM;
        if (!alive) {
            state_->pending.emplace_back(std::move(cb), it->second);
            state_->unclaimed.erase(it);
            state_->wake();
            return;
        }
        state_->unclaimed.erase(it);
    }
    state_->watchers[pid] = std::move(cb);
}

int Reaper::waitFor(pid_t pid) {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<int> result;
    watch(pid, [&](int status) {
        std::lock_guard<std::mutex> lock(mu);
        result = status;
        cv.notify_all();
    });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return result.has_value(); });
    return *result;
}

}  // namespace kata::jail
