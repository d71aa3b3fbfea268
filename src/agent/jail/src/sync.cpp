#include "sync.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kata/common/error.h"

namespace kata::jail {

SocketPair makeSyncSocketPair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
        throwErrno("socketpair", "container sync channel");
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

namespace {
ssize_t sendMsg(int fd, const SyncMsg& m, int passFd) {
    struct iovec iov = {const_cast<SyncMsg*>(&m), sizeof m};
    struct msghdr mh = {};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(struct cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))];
    if (passFd >= 0) {
        std::memset(ctrl, 0, sizeof ctrl);
        mh.msg_control = ctrl;
        mh.msg_controllen = sizeof ctrl;
        struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &passFd, sizeof(int));
    }
    ssize_t n;
    do {
        n = ::sendmsg(fd, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
}
}  // namespace

void syncSend(int fd, SyncType type, int pid, int passFd) {
    SyncMsg m = {};
    m.type = type;
    m.pid = pid;
    if (sendMsg(fd, m, passFd) < 0) throwErrno("send", "to container setup process");
}

bool syncRecv(int fd, SyncMsg* msg, UniqueFd* passedFd, int timeoutMs) {
    struct pollfd p = {fd, POLLIN, 0};
    int r;
    do {
        r = ::poll(&p, 1, timeoutMs);
    } while (r < 0 && errno == EINTR);
    if (r < 0) throwErrno("poll", "container setup channel");
    if (r == 0)
        throw Error(StatusCode::kDeadlineExceeded,
                    "container setup process did not answer within " +
                        std::to_string(timeoutMs / 1000) + "s");
    struct iovec iov = {msg, sizeof *msg};
    struct msghdr mh = {};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(struct cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))];
    mh.msg_control = ctrl;
    mh.msg_controllen = sizeof ctrl;
    ssize_t n;
    do {
        n = ::recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == ECONNRESET) return false;
        throwErrno("recvmsg", "container setup channel");
    }
    if (n == 0) return false;
    if (static_cast<size_t>(n) != sizeof *msg)
        throw Error(StatusCode::kInternal, "container setup channel: short message");
    msg->op[sizeof msg->op - 1] = 0;
    msg->what[sizeof msg->what - 1] = 0;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int got;
            std::memcpy(&got, CMSG_DATA(c), sizeof got);
            if (passedFd)
                passedFd->reset(got);
            else
                ::close(got);
        }
    }
    return true;
}

void childSend(int fd, SyncType type, int pid, int passFd) {
    SyncMsg m = {};
    m.type = type;
    m.pid = pid;
    if (sendMsg(fd, m, passFd) < 0) ::_exit(127);
}

void childFail(int fd, const char* op, const char* what, int err) {
    SyncMsg m = {};
    m.type = SyncType::kError;
    m.err = err;
    std::strncpy(m.op, op, sizeof m.op - 1);
    std::strncpy(m.what, what, sizeof m.what - 1);
    sendMsg(fd, m, -1);
    ::_exit(127);
}

void childFail(int fd, const char* op, const std::string& what, int err) {
    childFail(fd, op, what.c_str(), err);
}

void childWaitGo(int fd) {
    SyncMsg m;
    for (;;) {
        ssize_t n = ::recv(fd, &m, sizeof m, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == static_cast<ssize_t>(sizeof m) && m.type == SyncType::kGo) return;
        ::_exit(127);
    }
}

}  // namespace kata::jail
