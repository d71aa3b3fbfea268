#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <list>
#include <map>
#include <set>
#include <thread>

#include "channel.h"
#include "kata/common/log.h"
#include "kata/ttrpc/ttrpc.h"
#include "worker_pool.h"

namespace kata::ttrpc {

namespace {

struct Method {
    RawHandler unary;
    StreamHandler stream;
    bool clientStreams = false;
    bool serverStreams = false;
};

wire::Status statusFromCurrentException(const std::string& where) {
    wire::Status st;
    try {
        throw;
    } catch (const Error& e) {
        st.code = int32_t(e.code());
        st.message = e.what();
    } catch (const std::exception& e) {
        st.code = int32_t(StatusCode::kUnknown);
        st.message = e.what();
    } catch (...) {
        st.code = int32_t(StatusCode::kUnknown);
        st.message = where + " failed with a non-standard exception";
    }
    if (st.code == 0) st.code = int32_t(StatusCode::kUnknown);  // an error is never OK
    return st;
}

class ServerStreamImpl;

struct ServerConn {
    ServerConn(UniqueFd fd, std::string what) : ch(std::move(fd), std::move(what)) {}
    Channel ch;
    std::mutex mu;
    std::map<uint32_t, std::shared_ptr<ServerStreamImpl>> streams;
    uint32_t lastStreamId = 0;
};

class ServerStreamImpl : public ServerStream {
  public:
    ServerStreamImpl(std::shared_ptr<ServerConn> conn, uint32_t id, bool remoteClosed)
        : conn_(std::move(conn)), id_(id), remoteClosed_(remoteClosed) {}

    bool recv(std::string* msg) override {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return !in_.empty() || remoteClosed_ || gone_; });
        if (in_.empty()) return false;
        *msg = std::move(in_.front());
        in_.pop_front();
        return true;
    }

    void send(const std::string& msg) override {
        conn_->ch.writeFrame(id_, wire::kTypeData, 0, msg);
    }

    void deliver(std::string msg) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!remoteClosed_) in_.push_back(std::move(msg));
        cv_.notify_all();
    }
    void remoteClose() {
        std::lock_guard<std::mutex> lock(mu_);
        remoteClosed_ = true;
        cv_.notify_all();
    }
    void connectionGone() {
        std::lock_guard<std::mutex> lock(mu_);
        gone_ = true;
        cv_.notify_all();
    }

  private:
    std::shared_ptr<ServerConn> conn_;
    uint32_t id_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::string> in_;
    bool remoteClosed_;
    bool gone_ = false;
};

void sendResponse(ServerConn& conn, uint32_t id, const wire::Response& resp) {
    try {
        try {
            conn.ch.writeFrame(id, wire::kTypeResponse, 0, wire::encodeResponse(resp));
        } catch (const Error& e) {
            if (e.code() != StatusCode::kResourceExhausted) throw;
            // The handler's answer does not fit in a frame: tell the client instead.
            wire::Response err;
            err.hasStatus = true;
            err.status.code = int32_t(StatusCode::kResourceExhausted);
            err.status.message = e.what();
            conn.ch.writeFrame(id, wire::kTypeResponse, 0, wire::encodeResponse(err));
        }
    } catch (const Error& e) {
        // The client went away; nobody is left to tell.
        log::Logger("ttrpc")
            .with("peer", conn.ch.what())
            .debug("response not delivered", {{"error", e.what()}});
    }
}

void sendStatus(ServerConn& conn, uint32_t id, StatusCode code, const std::string& message) {
    wire::Response resp;
    resp.hasStatus = true;
    resp.status.code = int32_t(code);
    resp.status.message = message;
    sendResponse(conn, id, resp);
}

}  // namespace

struct Server::Impl {
    log::Logger log{"ttrpc"};
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::pair<std::string, std::string>, Method> methods;
    std::atomic<bool> stopping{false};
    UniqueFd stopEvent;
    std::set<std::shared_ptr<ServerConn>> conns;
    std::list<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> connThreads;
    int activeServes = 0;
    uint64_t connCounter = 0;
    // Last member: destroyed first, so it waits for running handlers while the rest still exists.
    WorkerPool pool;

    // Serves one byte stream until the peer goes away or shutdown; returns the bytes received.
    size_t serveSession(UniqueFd fd, const std::string& what);
    // false when the frame breaks the protocol and the connection must be dropped.
    bool handleFrame(const std::shared_ptr<ServerConn>& conn, wire::Frame& frame);
    void dispatchRequest(const std::shared_ptr<ServerConn>& conn, uint32_t id, uint8_t flags,
                         wire::Request req);
    // Waits up to d; false once shutdown() was called.
    bool sleepUnlessStopping(std::chrono::milliseconds d);
    void joinConnThreads(bool onlyFinished);

    struct ServeGuard {
        Impl& impl;
        explicit ServeGuard(Impl& i) : impl(i) {
            std::lock_guard<std::mutex> lock(impl.mu);
            ++impl.activeServes;
        }
        ~ServeGuard() {
            std::lock_guard<std::mutex> lock(impl.mu);
            --impl.activeServes;
            impl.cv.notify_all();
        }
    };
};

Server::Server() : impl_(std::make_unique<Impl>()) {
    impl_->stopEvent = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!impl_->stopEvent) throwErrno("eventfd for ttrpc server");
}

Server::~Server() {
    shutdown();
    {
        // serve* calls still running in other threads return promptly after shutdown().
        std::unique_lock<std::mutex> lock(impl_->mu);
        impl_->cv.wait(lock, [&] { return impl_->activeServes == 0; });
    }
    impl_->joinConnThreads(false);
}

void Server::registerRaw(const std::string& service, const std::string& method, RawHandler h) {
    Method m;
    m.unary = std::move(h);
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->methods[{service, method}] = std::move(m);
}

void Server::registerStream(const std::string& service, const std::string& method, StreamHandler h,
                            bool clientStreams, bool serverStreams) {
    Method m;
    m.stream = std::move(h);
    m.clientStreams = clientStreams;
    m.serverStreams = serverStreams;
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->methods[{service, method}] = std::move(m);
}

void Server::shutdown() {
    if (impl_->stopping.exchange(true)) return;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(impl_->stopEvent.get(), &one, sizeof one);
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (auto& c : impl_->conns) c->ch.close();
}

bool Server::Impl::sleepUnlessStopping(std::chrono::milliseconds d) {
    pollfd pfd{stopEvent.get(), POLLIN, 0};
    int n = ::poll(&pfd, 1, int(d.count()));
    (void)n;
    return !stopping.load();
}

void Server::Impl::joinConnThreads(bool onlyFinished) {
    std::list<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> toJoin;
    {
        std::lock_guard<std::mutex> lock(mu);
        for (auto it = connThreads.begin(); it != connThreads.end();) {
            auto next = std::next(it);
            if (!onlyFinished || it->second->load()) toJoin.splice(toJoin.end(), connThreads, it);
            it = next;
        }
    }
    for (auto& [t, done] : toJoin) t.join();
}

size_t Server::Impl::serveSession(UniqueFd fd, const std::string& what) {
    std::shared_ptr<ServerConn> conn;
    try {
        conn = std::make_shared<ServerConn>(std::move(fd), what);
    } catch (const std::exception& e) {
        log.with("peer", what).error("cannot serve connection", {{"error", e.what()}});
        return 0;
    }
    {
        std::lock_guard<std::mutex> lock(mu);
        if (stopping.load()) return 0;
        conns.insert(conn);
    }
    auto plog = log.with("peer", what);
    for (;;) {
        wire::Frame frame;
        Channel::ReadResult r;
        try {
            r = conn->ch.readFrame(&frame);
        } catch (const std::exception& e) {
            plog.warn("dropping connection", {{"error", e.what()}});
            break;
        }
        if (r == Channel::ReadResult::kFrame) {
            if (!handleFrame(conn, frame)) break;
            continue;
        }
        if (r == Channel::ReadResult::kOversized) {
            plog.warn("dropping connection: frame of " +
                      std::to_string(conn->ch.oversizedLength()) +
                      " bytes exceeds the maximum of " + std::to_string(kMaxMessageSize));
        } else if (r == Channel::ReadResult::kEof) {
            plog.debug("peer went away");
        }
        break;
    }
    conn->ch.close();
    {
        std::lock_guard<std::mutex> lock(conn->mu);
        for (auto& [id, s] : conn->streams) s->connectionGone();
    }
    {
        std::lock_guard<std::mutex> lock(mu);
        conns.erase(conn);
    }
    return conn->ch.bytesRead();
}

bool Server::Impl::handleFrame(const std::shared_ptr<ServerConn>& conn, wire::Frame& frame) {
    const auto& h = frame.header;
    auto plog = log.with("peer", conn->ch.what());
    if (h.type == wire::kTypeRequest) {
        if (h.streamId % 2 != 1) {
            sendStatus(*conn, h.streamId, StatusCode::kInvalidArgument,
                       "ttrpc request on stream " + std::to_string(h.streamId) +
                           ": client-initiated stream ids must be odd");
            return true;
        }
        {
            std::lock_guard<std::mutex> lock(conn->mu);
            if (h.streamId <= conn->lastStreamId) {
                sendStatus(*conn, h.streamId, StatusCode::kInvalidArgument,
                           "ttrpc request on stream " + std::to_string(h.streamId) +
                               ": stream id not above the last one used (" +
                               std::to_string(conn->lastStreamId) + ")");
                return true;
            }
            conn->lastStreamId = h.streamId;
        }
        wire::Request req;
        if (!wire::decodeRequest(frame.payload, &req)) {
            sendStatus(*conn, h.streamId, StatusCode::kInvalidArgument,
                       "ttrpc request on stream " + std::to_string(h.streamId) +
                           ": undecodable ttrpc.Request (" + std::to_string(frame.payload.size()) +
                           " bytes)");
            return true;
        }
        dispatchRequest(conn, h.streamId, h.flags, std::move(req));
        return true;
    }
    if (h.type == wire::kTypeData) {
        std::shared_ptr<ServerStreamImpl> s;
        {
            std::lock_guard<std::mutex> lock(conn->mu);
            auto it = conn->streams.find(h.streamId);
            if (it != conn->streams.end()) s = it->second;
        }
        if (!s) {
            // Late data for a finished stream is harmless; say so once and go on.
            plog.debug("data for inactive stream " + std::to_string(h.streamId) + " ignored");
            return true;
        }
        if (!(h.flags & wire::kFlagNoData)) s->deliver(std::move(frame.payload));
        if (h.flags & wire::kFlagRemoteClosed) s->remoteClose();
        return true;
    }
    plog.warn("dropping connection: unexpected ttrpc frame type " + std::to_string(h.type) +
              " on stream " + std::to_string(h.streamId));
    return false;
}

void Server::Impl::dispatchRequest(const std::shared_ptr<ServerConn>& conn, uint32_t id,
                                   uint8_t flags, wire::Request req) {
    Method m;
    bool knownService = false;
    bool found = false;
    {
        std::lock_guard<std::mutex> lock(mu);
        auto it = methods.find({req.service, req.method});
        if (it != methods.end()) {
            m = it->second;
            found = true;
        } else {
            auto lb = methods.lower_bound({req.service, std::string()});
            knownService = lb != methods.end() && lb->first.first == req.service;
        }
    }
    if (!found) {
        std::string msg =
            knownService ? "ttrpc: unknown method " + req.method + " of service " + req.service
                         : "ttrpc: unknown service " + req.service + " (method " + req.method + ")";
        sendStatus(*conn, id, StatusCode::kUnimplemented, msg);
        return;
    }

    auto ctx = std::make_shared<CallContext>();
    ctx->service = std::move(req.service);
    ctx->method = std::move(req.method);
    ctx->metadata = std::move(req.metadata);
    ctx->timeout = std::chrono::nanoseconds(req.timeoutNano > 0 ? req.timeoutNano : 0);
    if (req.timeoutNano > 0) {
        auto now = std::chrono::steady_clock::now();
        auto left = std::chrono::steady_clock::time_point::max() - now;
        ctx->deadline = ctx->timeout < left
                            ? now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                        ctx->timeout)
                            : std::chrono::steady_clock::time_point::max();
    }
    auto payload = std::make_shared<std::string>(std::move(req.payload));

    if (m.unary) {
        pool.submit([conn, id, ctx, payload, h = std::move(m.unary)] {
            wire::Response resp;
            try {
                resp.payload = h(*ctx, *payload);
            } catch (...) {
                resp.hasStatus = true;
                resp.status = statusFromCurrentException(ctx->service + "/" + ctx->method);
            }
            sendResponse(*conn, id, resp);
        });
        return;
    }

    // A streaming method. Without "remote open" the client sends nothing after the request.
    bool clientOpen = (flags & wire::kFlagRemoteOpen) && !(flags & wire::kFlagRemoteClosed);
    auto stream = std::make_shared<ServerStreamImpl>(conn, id, !clientOpen);
    {
        std::lock_guard<std::mutex> lock(conn->mu);
        conn->streams[id] = stream;
    }
    pool.submit([conn, id, ctx, payload, stream, h = std::move(m.stream)] {
        wire::Response resp;
        try {
            resp.payload = h(*ctx, *payload, *stream);
        } catch (...) {
            resp.hasStatus = true;
            resp.status = statusFromCurrentException(ctx->service + "/" + ctx->method);
        }
        {
            std::lock_guard<std::mutex> lock(conn->mu);
            conn->streams.erase(id);
        }
        sendResponse(*conn, id, resp);
    });
}

void Server::serveConnection(UniqueFd fd) {
    Impl::ServeGuard guard(*impl_);
    std::string what;
    {
        std::lock_guard<std::mutex> lock(impl_->mu);
        what = "connection #" + std::to_string(++impl_->connCounter);
    }
    impl_->serveSession(std::move(fd), what);
}

void Server::serveListener(UniqueFd listenFd) {
    Impl::ServeGuard guard(*impl_);
    int fl = ::fcntl(listenFd.get(), F_GETFL);
    if (fl < 0 || ::fcntl(listenFd.get(), F_SETFL, fl | O_NONBLOCK) < 0) {
        throwErrno("set O_NONBLOCK on ttrpc listener");
    }
    while (!impl_->stopping.load()) {
        pollfd fds[2] = {{listenFd.get(), POLLIN, 0}, {impl_->stopEvent.get(), POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            throwErrno("poll ttrpc listener");
        }
        if (fds[1].revents) break;
        UniqueFd conn(::accept4(listenFd.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!conn) {
            int err = errno;
            if (err == EAGAIN || err == EINTR || err == ECONNABORTED) continue;
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                impl_->log.warn("accept failed, retrying",
                                {{"error", SystemError("accept", "ttrpc connection", err).what()}});
                impl_->sleepUnlessStopping(std::chrono::milliseconds(100));
                continue;
            }
            throw SystemError("accept", "ttrpc connection", err);
        }
        impl_->joinConnThreads(true);
        auto done = std::make_shared<std::atomic<bool>>(false);
        std::string what;
        {
            std::lock_guard<std::mutex> lock(impl_->mu);
            what = "connection #" + std::to_string(++impl_->connCounter);
        }
        std::thread t([this, done, what, fd = std::move(conn)]() mutable {
            impl_->serveSession(std::move(fd), what);
            done->store(true);
        });
        std::lock_guard<std::mutex> lock(impl_->mu);
        impl_->connThreads.emplace_back(std::move(t), std::move(done));
    }
    // shutdown() closed every connection, so their threads finish now.
    impl_->joinConnThreads(false);
}

void Server::serveReopening(const std::function<UniqueFd()>& open, const std::string& what) {
    Impl::ServeGuard guard(*impl_);
    constexpr auto kMinPause = std::chrono::milliseconds(10);
    constexpr auto kMaxPause = std::chrono::milliseconds(100);
    auto pause = kMinPause;
    std::string lastError;
    while (!impl_->stopping.load()) {
        UniqueFd fd;
        try {
            fd = open();
        } catch (const std::exception& e) {
            if (e.what() != lastError) {
                impl_->log.with("port", what).warn("cannot open, retrying", {{"error", e.what()}});
                lastError = e.what();
            }
        }
        if (fd) {
            lastError.clear();
            if (impl_->serveSession(std::move(fd), what) > 0) {
                pause = kMinPause;  // a peer was there: try again at once
                continue;
            }
        }
        // Nobody on the other side yet (or the device is missing): wait without spinning.
        if (!impl_->sleepUnlessStopping(pause)) break;
        pause = std::min(pause * 2, kMaxPause);
    }
}

void Server::serveSerial(const std::string& devicePath) {
    Impl::ServeGuard guard(*impl_);
    constexpr auto kMinPause = std::chrono::milliseconds(10);
    constexpr auto kMaxPause = std::chrono::milliseconds(100);
    auto pause = kMinPause;
    auto plog = impl_->log.with("port", devicePath);
    std::string lastError;
    UniqueFd port;
    struct stat portStat {};
    while (!impl_->stopping.load()) {
        if (!port) {
            try {
                port = UniqueFd(
                    ::open(devicePath.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
                if (!port) throwErrno("open ttrpc serial port", devicePath);
                if (::fstat(port.get(), &portStat) < 0) throwErrno("stat", devicePath);
                if (::isatty(port.get())) {
                    // A console-type port: no echo, no line editing, bytes as they are.
                    termios t{};
                    if (::tcgetattr(port.get(), &t) == 0) {
                        ::cfmakeraw(&t);
                        ::tcsetattr(port.get(), TCSANOW, &t);
                    }
                }
                lastError.clear();
            } catch (const std::exception& e) {
                port.reset();
                if (e.what() != lastError) {
                    plog.warn("cannot open serial port, retrying", {{"error", e.what()}});
                    lastError = e.what();
                }
                if (!impl_->sleepUnlessStopping(pause)) break;
                pause = std::min(pause * 2, kMaxPause);
                continue;
            }
        }
        // The port stays open between sessions: closing it would drop bytes the host may already
        // have sent; each session reads through its own duplicate of the descriptor.
        UniqueFd session(::fcntl(port.get(), F_DUPFD_CLOEXEC, 0));
        if (!session) throwErrno("dup serial port", devicePath);
        if (impl_->serveSession(std::move(session), devicePath) > 0) {
            // The host was there and left: start the next session on a freshly opened port.
            plog.info("host side closed the serial port, reopening");
            port.reset();
            pause = kMinPause;
            continue;
        }
        // No host connected (the port reports hangup): poll again after a pause. If the path now
        // names another device (hot-unplugged and replugged), reopen it.
        if (!impl_->sleepUnlessStopping(pause)) break;
        pause = std::min(pause * 2, kMaxPause);
        struct stat now {};
        if (::stat(devicePath.c_str(), &now) < 0 || now.st_dev != portStat.st_dev ||
            now.st_ino != portStat.st_ino || now.st_rdev != portStat.st_rdev) {
            port.reset();
        }
    }
}

}  // namespace kata::ttrpc
