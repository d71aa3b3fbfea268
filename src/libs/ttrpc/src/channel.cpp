#include "channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <cerrno>

#include "kata/common/error.h"

namespace kata::ttrpc {

Channel::Channel(UniqueFd fd, std::string what) : fd_(std::move(fd)), what_(std::move(what)) {
    wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) throwErrno("eventfd for ttrpc channel", what_);
    // Non-blocking I/O, so a blocked read or write can be woken by close() on any kind of fd
    // (shutdown(2) only works on sockets; serial ports and ptys need this).
    int fl = ::fcntl(fd_.get(), F_GETFL);
    if (fl < 0 || ::fcntl(fd_.get(), F_SETFL, fl | O_NONBLOCK) < 0) {
        throwErrno("set O_NONBLOCK on", what_);
    }
    struct stat st {};
    isSocket_ = ::fstat(fd_.get(), &st) == 0 && S_ISSOCK(st.st_mode);
}

Channel::~Channel() { close(); }

void Channel::close() {
    if (closed_.exchange(true)) return;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
    if (isSocket_) ::shutdown(fd_.get(), SHUT_RDWR);
    // Let go of the underlying file now, not when the last handler holding this channel ends:
    // a virtio-serial port can be open only once, and the next host session must be able to
    // reopen it while a call of the previous session (a WaitProcess) is still blocked. The fd
    // number itself stays valid (now /dev/null) until destruction, so no other thread can
    // touch an unrelated file that reused it.
    UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (devnull) ::dup3(devnull.get(), fd_.get(), O_CLOEXEC);
}

bool Channel::waitFor(short events) {
    for (;;) {
        if (closed_.load()) return false;
        pollfd fds[2] = {{fd_.get(), events, 0}, {wake_.get(), POLLIN, 0}};
        int n = ::poll(fds, 2, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            throwErrno("poll", what_);
        }
        if (fds[1].revents) return false;
        if (fds[0].revents) return true;  // ready, or hangup/error: the next syscall says which
    }
}

Channel::ReadResult Channel::readFrame(wire::Frame* out) {
    char buf[64 * 1024];
    for (;;) {
        switch (decoder_.next(out)) {
            case wire::FrameDecoder::Result::kFrame:
                return ReadResult::kFrame;
            case wire::FrameDecoder::Result::kOversized:
                return ReadResult::kOversized;
            case wire::FrameDecoder::Result::kNeedMore:
                break;
        }
        if (closed_.load()) return ReadResult::kClosed;
        ssize_t n = ::read(fd_.get(), buf, sizeof buf);
        if (n > 0) {
            decoder_.feed(buf, size_t(n));
            bytesRead_ += size_t(n);
            continue;
        }
        if (n == 0) return ReadResult::kEof;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            pollfd pfd{fd_.get(), POLLIN, 0};
            if (!waitFor(POLLIN)) return ReadResult::kClosed;
            // Hangup with nothing left to read: a serial port whose host side is gone, or a
            // pty whose other end closed.
            if (::poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR)) &&
                !(pfd.revents & POLLIN)) {
                return ReadResult::kEof;
            }
            continue;
        }
        // EIO: pty master closed; ECONNRESET: socket peer died with unread data.
        if (errno == EIO || errno == ECONNRESET || errno == EPIPE || errno == ENOTCONN) {
            return ReadResult::kEof;
        }
        if (closed_.load()) return ReadResult::kClosed;
        throwErrno("read ttrpc frame from", what_);
    }
}

void Channel::writeAll(const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = isSocket_ ? ::send(fd_.get(), p, n, MSG_NOSIGNAL) : ::write(fd_.get(), p, n);
        if (w > 0) {
            p += w;
            n -= size_t(w);
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            if (!waitFor(POLLOUT))
                throw Error(StatusCode::kUnavailable, "write to " + what_ + ": connection closed");
            continue;
        }
        int err = w < 0 ? errno : EIO;
        close();
        throw Error(StatusCode::kUnavailable,
                    SystemError("write ttrpc frame to", what_, err).what());
    }
}

void Channel::writeFrame(uint32_t streamId, uint8_t type, uint8_t flags, std::string_view payload) {
    if (payload.size() > kMaxMessageSize) {
        throw Error(StatusCode::kResourceExhausted,
                    "write ttrpc frame to " + what_ + ": message of " +
                        std::to_string(payload.size()) + " bytes exceeds the maximum of " +
                        std::to_string(kMaxMessageSize));
    }
    wire::FrameHeader h;
    h.length = uint32_t(payload.size());
    h.streamId = streamId;
    h.type = type;
    h.flags = flags;
    uint8_t hdr[wire::kHeaderSize];
    wire::encodeHeader(h, hdr);

    std::lock_guard<std::mutex> lock(writeMu_);
    if (closed_.load())
        throw Error(StatusCode::kUnavailable, "write to " + what_ + ": connection closed");
    // Header and small payloads in one syscall, so the peer rarely sees half a frame.
    if (payload.size() <= 16 * 1024) {
        std::string one(reinterpret_cast<const char*>(hdr), sizeof hdr);
        one.append(payload);
        writeAll(one.data(), one.size());
    } else {
        writeAll(reinterpret_cast<const char*>(hdr), sizeof hdr);
        writeAll(payload.data(), payload.size());
    }
}

}  // namespace kata::ttrpc
