#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "kata/ttrpc/ttrpc.h"

namespace kata::ttrpc {

namespace {

struct Address {
    int family = AF_UNIX;
    sockaddr_storage storage{};
    socklen_t len = 0;
};

Address unixAddress(const std::string& path, const std::string& original) {
    Address a;
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage);
    un->sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(un->sun_path)) {
        throw Error(StatusCode::kInvalidArgument,
                    "parse ttrpc address " + original +
                        ": unix socket path is empty or longer than " +
                        std::to_string(sizeof(un->sun_path) - 1) + " bytes");
    }
    std::memcpy(un->sun_path, path.data(), path.size());
    if (path[0] == '@') un->sun_path[0] = '\0';  // abstract namespace
    a.len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '@' ? 0 : 1));
    return a;
}

uint32_t parseU32(const std::string& text, const std::string& what, const std::string& original) {
    if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos ||
        text.size() > 10 || std::stoull(text) > 0xffffffffull) {
        throw Error(StatusCode::kInvalidArgument,
                    "parse ttrpc address " + original + ": bad " + what + " \"" + text + "\"");
    }
    return uint32_t(std::stoull(text));
}

Address parseAddress(const std::string& address) {
    auto startsWith = [&](const char* p) { return address.rfind(p, 0) == 0; };
    if (startsWith("unix://")) return unixAddress(address.substr(7), address);
    if (startsWith("unix:")) return unixAddress(address.substr(5), address);
    if (startsWith("/") || startsWith("@")) return unixAddress(address, address);
    if (startsWith("vsock://")) {
        std::string rest = address.substr(8);
        auto colon = rest.find(':');
        if (colon == std::string::npos) {
            throw Error(StatusCode::kInvalidArgument,
                        "parse ttrpc address " + address + ": expected vsock://<cid>:<port>");
        }
        Address a;
        a.family = AF_VSOCK;
        auto* vm = reinterpret_cast<sockaddr_vm*>(&a.storage);
        vm->svm_family = AF_VSOCK;
        vm->svm_cid = parseU32(rest.substr(0, colon), "vsock cid", address);
        vm->svm_port = parseU32(rest.substr(colon + 1), "vsock port", address);
        a.len = sizeof(sockaddr_vm);
        return a;
    }
    throw Error(StatusCode::kInvalidArgument,
                "parse ttrpc address " + address +
                    ": expected unix:///path, unix:path, /path or vsock://cid:port");
}

bool transientConnectError(int err) {
    switch (err) {
        case ENOENT:        // socket file not created yet
        case ECONNREFUSED:  // nobody listening yet
        case ECONNRESET:
        case EAGAIN:  // listen backlog full
        case ETIMEDOUT:
        case ENODEV:  // vsock: guest CID not up yet
        case EHOSTUNREACH:
        case ENETUNREACH:
        case ENXIO:
        case EINTR:
            return true;
        default:
            return false;
    }
}

// One non-blocking connect attempt, bounded by `budget`. Returns 0 or the errno.
int connectOnce(const Address& a, std::chrono::milliseconds budget, UniqueFd* out) {
    UniqueFd fd(::socket(a.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return errno;
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a.storage), a.len) < 0) {
        if (errno != EINPROGRESS && errno != EAGAIN) return errno;
        if (errno == EAGAIN && a.family == AF_UNIX) return EAGAIN;
        pollfd pfd{fd.get(), POLLOUT, 0};
        int n = ::poll(&pfd, 1, int(std::max<int64_t>(budget.count(), 1)));
        if (n == 0) return ETIMEDOUT;
        if (n < 0) return errno;
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) return err;
    }
    int fl = ::fcntl(fd.get(), F_GETFL);
    ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
    *out = std::move(fd);
    return 0;
}

}  // namespace

UniqueFd dial(const std::string& address, std::chrono::milliseconds timeout) {
    Address a = parseAddress(address);
    auto start = std::chrono::steady_clock::now();
    auto deadline = start + timeout;
    auto pause = std::chrono::milliseconds(5);
    for (;;) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now());
        UniqueFd fd;
        int err = connectOnce(a, std::max(left, std::chrono::milliseconds(1)), &fd);
        if (err == 0) return fd;
        left = std::chrono::ceil<std::chrono::milliseconds>(deadline -
                                                            std::chrono::steady_clock::now());
        if (!transientConnectError(err) || left.count() <= 0) {
            auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - start);
            std::string msg = SystemError("dial", address, err).what();
            if (transientConnectError(err)) {
                msg += ", gave up after " + std::to_string(waited.count()) + " ms";
            }
            throw Error(transientConnectError(err) ? StatusCode::kUnavailable
                                                   : SystemError("", "", err).code(),
                        msg);
        }
        std::this_thread::sleep_for(std::min(pause, left));
        pause = std::min(pause * 2, std::chrono::milliseconds(100));
    }
}

UniqueFd listenUnix(const std::string& path) {
    Address a = unixAddress(path, path);
    if (path[0] != '@') {
        struct stat st {};
        if (::lstat(path.c_str(), &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                throw Error(
                    StatusCode::kAlreadyExists,
                    "listen on unix socket " + path + ": the path exists and is not a socket");
            }
            // A socket file: in use if someone accepts on it, stale otherwise.
            UniqueFd probe;
            int err = connectOnce(a, std::chrono::milliseconds(100), &probe);
            if (err == 0) {
                throw Error(StatusCode::kAlreadyExists, "listen on unix socket " + path +
                                                            ": another server is listening there");
            }
            if (::unlink(path.c_str()) < 0 && errno != ENOENT) {
                throwErrno("remove stale unix socket", path);
            }
        }
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) throwErrno("create unix socket for", path);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a.storage), a.len) < 0) {
        throwErrno("bind unix socket", path);
    }
    if (::listen(fd.get(), 128) < 0) throwErrno("listen on unix socket", path);
    return fd;
}

UniqueFd listenVsock(uint32_t port) {
    std::string what = "vsock port " + std::to_string(port);
    UniqueFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) throwErrno("create vsock socket for", what);
    sockaddr_vm addr{};
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = VMADDR_CID_ANY;
    addr.svm_port = port;
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0) {
        throwErrno("bind", what);
    }
    if (::listen(fd.get(), 128) < 0) throwErrno("listen on", what);
    return fd;
}

}  // namespace kata::ttrpc
