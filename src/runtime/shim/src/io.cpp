#include "io.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/common/log.h"

namespace kata::shim {

namespace {
constexpr uint32_t kChunk = 32 * 1024;
}

struct ProcessIo::Shared {
    std::shared_ptr<AgentClient> agent;
    std::string cid, execId;
    StdioPaths paths;
    log::Logger log{"io"};

    UniqueFd cancelRead, cancelWrite;  // a byte on this pipe wakes every poll()
    std::mutex mu;
    std::condition_variable cv;
    int outputRunning = 0;
    bool stdinClosed = false;  // CloseStdin sent (or stdin copier done)
    bool cancelled = false;
    bool stdinCopier = false;  // a copier owns the stdin FIFO

    // Waits for fd to become ready for `events` or for cancellation; false when cancelled.
    bool waitFd(int fd, short events) {
        pollfd p[2] = {{fd, events, 0}, {cancelRead.get(), POLLIN, 0}};
        for (;;) {
            int n = ::poll(p, 2, -1);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return false;
            if (p[1].revents) return false;
            if (p[0].revents) return true;
        }
    }

    // Writes everything unless the reader went away (EPIPE) or we are cancelled; false then.
    bool writeAll(int fd, const std::string& data) {
        size_t off = 0;
        while (off < data.size()) {
            ssize_t n = ::write(fd, data.data() + off, data.size() - off);
            if (n >= 0) {
                off += static_cast<size_t>(n);
                continue;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                if (!waitFd(fd, POLLOUT)) return false;
                continue;
            }
            return false;
        }
        return true;
    }

    void copyOutput(UniqueFd fifo, bool isStderr) {
        bool readerGone = false;
        for (;;) {
            std::string data;
            try {
                data = isStderr ? agent->readStderr(cid, execId, kChunk)
                                : agent->readStdout(cid, execId, kChunk);
            } catch (const Error& e) {
                // The agent ends a stream with an error once the process's pipe is closed;
                // a lost VM ends it too.
                log.debug(std::string("output stream ended: ") + e.what());
                break;
            }
            if (data.empty()) break;
            if (!readerGone && !writeAll(fifo.get(), data)) {
                // Keep draining the agent so the process does not block on a full pipe.
                readerGone = true;
            }
            {
                std::lock_guard<std::mutex> lk(mu);
                if (cancelled) break;
            }
        }
        fifo.reset();
        std::lock_guard<std::mutex> lk(mu);
        --outputRunning;
        cv.notify_all();
    }

    void sendCloseStdin() {
        {
            std::lock_guard<std::mutex> lk(mu);
            if (stdinClosed) return;
            stdinClosed = true;
        }
        try {
            agent->closeStdin(cid, execId);
        } catch (const Error& e) {
            log.debug(std::string("close stdin: ") + e.what());
        }
    }

    void copyInput(UniqueFd fifo) {
        std::string buf(kChunk, '\0');
        for (;;) {
            if (!waitFd(fifo.get(), POLLIN)) return;  // cancelled
            ssize_t n = ::read(fifo.get(), buf.data(), buf.size());
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n <= 0) break;  // every writer closed the FIFO
            std::string chunk(buf.data(), static_cast<size_t>(n));
            try {
                while (!chunk.empty()) {
                    uint32_t took = agent->writeStdin(cid, execId, chunk);
                    if (took == 0) throw Error(StatusCode::kUnavailable, "agent took no bytes");
                    chunk.erase(0, std::min<size_t>(took, chunk.size()));
                }
            } catch (const Error& e) {
                log.debug(std::string("stdin stream ended: ") + e.what());
                return;
            }
        }
        sendCloseStdin();
    }
};

ProcessIo::ProcessIo(std::shared_ptr<AgentClient> agent, std::string cid, std::string execId,
                     StdioPaths paths)
    : s_(std::make_shared<Shared>()) {
    s_->agent = std::move(agent);
    s_->cid = std::move(cid);
    s_->execId = std::move(execId);
    s_->paths = std::move(paths);
    s_->log = log::Logger("io").with("container", s_->cid).with("exec", s_->execId);
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
        throwErrno("create cancel pipe for io of", s_->cid);
    s_->cancelRead.reset(p[0]);
    s_->cancelWrite.reset(p[1]);
}

ProcessIo::~ProcessIo() {
    std::lock_guard<std::mutex> lk(s_->mu);
    s_->cancelled = true;
    (void)!::write(s_->cancelWrite.get(), "x", 1);
}

void ProcessIo::start() {
    auto openOut = [](const std::string& path) {
        // O_WRONLY so the copier sees EPIPE once containerd's reader is gone; O_RDWR when no
        // reader is there yet (opening write-only would fail with ENXIO).
        int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0 && errno == ENXIO) fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) throwErrno("open output fifo", path);
        return UniqueFd(fd);
    };
    UniqueFd out, err, in;
    if (!s_->paths.stdoutPath.empty()) out = openOut(s_->paths.stdoutPath);
    if (!s_->paths.stderrPath.empty() && !s_->paths.terminal) err = openOut(s_->paths.stderrPath);
    if (!s_->paths.stdinPath.empty()) {
        // Non-blocking read end: opening does not wait for a writer, poll() does.
        int fd = ::open(s_->paths.stdinPath.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) throwErrno("open stdin fifo", s_->paths.stdinPath);
        in.reset(fd);
    }
    auto s = s_;
    {
        std::lock_guard<std::mutex> lk(s->mu);
        s->outputRunning = (out ? 1 : 0) + (err ? 1 : 0);
        s->stdinCopier = in.valid();
    }
    if (out)
        std::thread([s, fd = std::move(out)]() mutable {
            s->copyOutput(std::move(fd), false);
        }).detach();
    if (err)
        std::thread([s, fd = std::move(err)]() mutable {
            s->copyOutput(std::move(fd), true);
        }).detach();
    if (in)
        std::thread([s, fd = std::move(in)]() mutable { s->copyInput(std::move(fd)); }).detach();
}

bool ProcessIo::waitOutputDrained(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk(s_->mu);
    return s_->cv.wait_for(lk, timeout, [&] { return s_->outputRunning == 0; });
}

void ProcessIo::closeStdin() {
    // containerd closes its end of the FIFO before CloseIO, so a running stdin copier reads end
    // of file and sends CloseStdin after the last write; sending it from here could overtake
    // that write.
    {
        std::lock_guard<std::mutex> lk(s_->mu);
        if (s_->stdinCopier) return;
    }
    auto s = s_;
    std::thread([s] { s->sendCloseStdin(); }).detach();
}

}  // namespace kata::shim
