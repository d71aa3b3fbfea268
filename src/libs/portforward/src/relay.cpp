#include "kata/portforward/relay.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "kata/common/error.h"
#include "kata/portforward/protocol.h"

namespace kata::portforward {

namespace {

using Clock = std::chrono::steady_clock;

// While the guest's serial port reports a hangup (no host), look again this often.
constexpr std::chrono::milliseconds kPeerPoll{100};

void setNonBlocking(int fd) {
    int fl = ::fcntl(fd, F_GETFL);
    if (fl >= 0) ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

// Closes with RST instead of FIN: the connection's other end learns it was cut, not finished.
void closeWithReset(UniqueFd& fd) {
    if (!fd) return;
    linger l{1, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    fd.reset();
}

std::string describe(int err) {
    return std::strerror(err) + std::string(" (") + errnoName(err) + ")";
}

// The port a connection was dialed on: the local port of the accepted socket.
int localPort(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    return -1;
}

}  // namespace

struct Relay::Impl {
    struct Stream {
        enum class State {
            kWaitReady,   // host: accepted before the guest greeted us
            kOpening,     // host: OPEN sent, waiting for OPEN_OK / OPEN_FAIL
            kConnecting,  // guest: non-blocking connect in progress
            kOpen,
        };
        uint32_t id = 0;
        uint16_t port = 0;
        UniqueFd sock;
        State state = State::kOpen;
        Clock::time_point deadline{};
        int attempt = 0;  // guest: 0 = 127.0.0.1, 1 = [::1]
        int firstErr = 0;
        std::string firstErrText;
        bool hup = false;  // the socket reported POLLHUP
        // Peer -> socket.
        std::string toSock;
        size_t toSockOff = 0;
        uint32_t recvLeft = 0;  // DATA bytes the peer may still send before our next CREDIT
        uint32_t owed = 0;      // written to the socket, not credited yet
        bool peerClosed = false;
        bool sockWriteShut = false;
        // Socket -> peer.
        uint64_t sendWindow = 0;
        bool sockEof = false;
        bool closeSent = false;

        size_t buffered() const { return toSock.size() - toSockOff; }
    };

    Role role;
    UniqueFd channel;
    std::string channelName;
    RelayOptions opts;
    log::Logger log{"portforward"};
    bool channelIsSocket = false;
    UniqueFd wake;
    std::atomic<bool> stopping{false};
    std::thread thread;

    // Shared with other threads.
    mutable std::mutex mu;
    std::vector<UniqueFd> newListeners;
    std::vector<std::pair<UniqueFd, uint16_t>> newConns;
    RelayStats published;

    // Loop state (loop thread only).
    std::vector<UniqueFd> listeners;
    std::map<uint32_t, std::unique_ptr<Stream>> streams;
    uint32_t nextId = 1;
    bool ready = false;
    bool channelLost = false;
    bool peerAbsent = false;
    bool warnedNotReady = false;
    std::string out;
    size_t outOff = 0;
    FrameDecoder decoder;
    RelayStats stats;

    size_t outQueued() const { return out.size() - outOff; }

    void queue(uint32_t id, FrameType t, std::string_view payload = {}) {
        if (channelLost || peerAbsent) return;
        if (outOff > 0 && outOff == out.size()) {
            out.clear();
            outOff = 0;
        }
        appendFrame(out, id, t, payload);
    }

    void loop();
    void takeNew();
    void flushChannel();
    void readChannel();
    void loseChannel(const std::string& why);
    void dispatch(const Frame& f);
    void becomeReady();
    // keepUnsent: streams the peer never heard of (waiting for its greeting) stay.
    void resetAll(const std::string& why, bool keepUnsent = false);
    void accept(int lfd);
    void addHostStream(UniqueFd sock, uint16_t port);
    void sendOpen(Stream& s);
    void handleOpen(uint32_t id, const std::string& payload);
    void startConnect(Stream& s);
    void connectDone(Stream& s, int err);
    void readSocket(Stream& s);
    void writeSocket(Stream& s);
    void reset(Stream& s, const std::string& why);  // tells the peer, then drops it
    void drop(uint32_t id);                         // RST and forget
    void maybeFinish(Stream& s);
    void publish();
    Stream* find(uint32_t id) {
        auto it = streams.find(id);
        return it == streams.end() ? nullptr : it->second.get();
    }
};

Relay::Relay(Role role, UniqueFd channel, std::string channelName, RelayOptions opts,
             const log::Logger& log)
    : impl_(std::make_unique<Impl>()) {
    impl_->role = role;
    impl_->channel = std::move(channel);
    impl_->channelName = std::move(channelName);
    impl_->opts = opts;
    impl_->log = log.with("channel", impl_->channelName);
    impl_->wake = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!impl_->wake) throwErrno("eventfd for port-forward relay", impl_->channelName);
    if (!impl_->channel) {
        throw Error(StatusCode::kInvalidArgument,
                    "port-forward relay on " + impl_->channelName + ": channel not open");
    }
    setNonBlocking(impl_->channel.get());
    struct stat st {};
    impl_->channelIsSocket = ::fstat(impl_->channel.get(), &st) == 0 && S_ISSOCK(st.st_mode);
}

Relay::~Relay() { stop(); }

void Relay::addListener(UniqueFd listener) {
    setNonBlocking(listener.get());
    {
        std::lock_guard<std::mutex> lk(impl_->mu);
        impl_->newListeners.push_back(std::move(listener));
    }
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(impl_->wake.get(), &one, sizeof one);
}

void Relay::addConnection(UniqueFd conn, uint16_t port) {
    {
        std::lock_guard<std::mutex> lk(impl_->mu);
        impl_->newConns.emplace_back(std::move(conn), port);
    }
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(impl_->wake.get(), &one, sizeof one);
}

void Relay::start() {
    impl_->thread = std::thread([this] { run(); });
}

void Relay::run() {
    try {
        impl_->loop();
    } catch (const std::exception& e) {
        impl_->log.error("port-forward relay stopped", {{"error", e.what()}});
    }
    // Whatever is still relayed is cut: its peers must not wait for data that never comes.
    for (auto& [id, s] : impl_->streams) closeWithReset(s->sock);
    impl_->streams.clear();
    impl_->listeners.clear();
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->newConns.clear();
    impl_->newListeners.clear();
    impl_->published.streams = 0;
}

void Relay::stop() {
    if (!impl_) return;
    impl_->stopping.store(true);
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(impl_->wake.get(), &one, sizeof one);
    if (impl_->thread.joinable() && impl_->thread.get_id() != std::this_thread::get_id())
        impl_->thread.join();
}

RelayStats Relay::stats() const {
    std::lock_guard<std::mutex> lk(impl_->mu);
    return impl_->published;
}

void Relay::Impl::publish() {
    stats.ready = ready;
    stats.channelOpen = !channelLost;
    stats.streams = streams.size();
    stats.maxStreamBuffered = 0;
    for (const auto& [id, s] : streams)
        stats.maxStreamBuffered = std::max(stats.maxStreamBuffered, s->buffered());
    stats.peakStreamBuffered = std::max(stats.peakStreamBuffered, stats.maxStreamBuffered);
    stats.channelQueued = outQueued();
    std::lock_guard<std::mutex> lk(mu);
    published = stats;
}

void Relay::Impl::takeNew() {
    std::vector<UniqueFd> ls;
    std::vector<std::pair<UniqueFd, uint16_t>> cs;
    {
        std::lock_guard<std::mutex> lk(mu);
        ls.swap(newListeners);
        cs.swap(newConns);
    }
    for (auto& l : ls) listeners.push_back(std::move(l));
    for (auto& [fd, port] : cs) addHostStream(std::move(fd), port);
}

void Relay::Impl::loop() {
    if (opts.waitForPeer) {
        peerAbsent = true;  // greeted once the port shows a host
    } else {
        queue(0, FrameType::kHello, encodeU32(kProtocolVersion));
    }
    std::vector<pollfd> pfds;
    std::vector<uint32_t> pfdStream;  // stream id per pollfd; 0 for the fixed ones
    while (!stopping.load()) {
        takeNew();
        const auto now = Clock::now();
        int timeout = -1;
        std::vector<uint32_t> expired;
        for (auto& [id, s] : streams) {
            if (s->state != Stream::State::kWaitReady) continue;
            if (s->deadline <= now) {
                expired.push_back(id);
                continue;
            }
            auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(s->deadline - now);
            timeout = timeout < 0 ? int(ms.count()) + 1 : std::min(timeout, int(ms.count()) + 1);
        }
        if (!expired.empty()) {
            if (!warnedNotReady) {
                log.warn("the guest did not answer on the port-forward channel within " +
                         std::to_string(opts.readyTimeout.count()) +
                         "ms: forwarded connections are reset");
                warnedNotReady = true;
            }
            for (uint32_t id : expired) drop(id);
        }
        if (peerAbsent) {
            pollfd p{channel.get(), POLLOUT, 0};
            int r = ::poll(&p, 1, 0);
            if (r == 0 || (r == 1 && !(p.revents & POLLHUP))) {
                // The host connected: start a session.
                peerAbsent = false;
                decoder = FrameDecoder();
                log.info("host connected to the port-forward channel");
                queue(0, FrameType::kHello, encodeU32(kProtocolVersion));
            } else {
                timeout = timeout < 0 ? int(kPeerPoll.count())
                                      : std::min(timeout, int(kPeerPoll.count()));
            }
        }

        pfds.clear();
        pfdStream.clear();
        pfds.push_back({wake.get(), POLLIN, 0});
        pfdStream.push_back(0);
        const bool channelUp = !channelLost && !peerAbsent;
        pfds.push_back(
            {channelUp ? channel.get() : -1, short(POLLIN | (outQueued() ? POLLOUT : 0)), 0});
        pfdStream.push_back(0);
        const size_t firstListener = pfds.size();
        for (const auto& l : listeners) {
            pfds.push_back({streams.size() < opts.maxStreams ? l.get() : -1, POLLIN, 0});
            pfdStream.push_back(0);
        }
        const size_t firstStream = pfds.size();
        const bool channelRoom = outQueued() < opts.channelHighWater;
        for (auto& [id, s] : streams) {
            short ev = 0;
            if (s->state == Stream::State::kConnecting) {
                ev = POLLOUT;
            } else if (s->state == Stream::State::kOpen) {
                if (!s->sockEof && s->sendWindow > 0 && channelRoom && channelUp) ev |= POLLIN;
                if (s->buffered() > 0) ev |= POLLOUT;
            }
            // Nothing to read before the guest answered; and a socket that hung up reports it
            // whatever is asked, so it stays out until there is something to do with it.
            int fd = s->sock.get();
            if (s->state == Stream::State::kWaitReady || s->state == Stream::State::kOpening ||
                (ev == 0 && s->hup))
                fd = -1;
            pfds.push_back({fd, ev, 0});
            pfdStream.push_back(id);
        }

        int n = ::poll(pfds.data(), pfds.size(), timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            throwErrno("poll", "port-forward relay on " + channelName);
        }
        if (pfds[0].revents) {
            uint64_t v;
            [[maybe_unused]] ssize_t r = ::read(wake.get(), &v, sizeof v);
        }
        if (stopping.load()) break;
        if (pfds[1].revents & (POLLIN | POLLHUP | POLLERR)) readChannel();
        for (size_t i = firstListener; i < firstStream; ++i) {
            if (pfds[i].revents & POLLIN) accept(pfds[i].fd);
        }
        for (size_t i = firstStream; i < pfds.size(); ++i) {
            if (!pfds[i].revents) continue;
            Stream* s = find(pfdStream[i]);
            if (!s || s->sock.get() != pfds[i].fd) continue;  // gone while handling others
            const short re = pfds[i].revents;
            if (s->state == Stream::State::kConnecting) {
                int err = 0;
                socklen_t len = sizeof err;
                if (::getsockopt(s->sock.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
                connectDone(*s, err);
                continue;
            }
            if (re & POLLHUP) s->hup = true;
            if (re & POLLERR) {
                int err = 0;
                socklen_t len = sizeof err;
                ::getsockopt(s->sock.get(), SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) {
                    reset(*s,
                          "connection to port " + std::to_string(s->port) + ": " + describe(err));
                    continue;
                }
            }
            const uint32_t id = s->id;
            if (re & POLLOUT) writeSocket(*s);
            if ((s = find(id)) && (re & (POLLIN | POLLHUP))) readSocket(*s);
        }
        flushChannel();
        publish();
    }
}

void Relay::Impl::flushChannel() {
    while (outQueued() > 0 && !channelLost && !peerAbsent) {
        ssize_t w = channelIsSocket
                        ? ::send(channel.get(), out.data() + outOff, outQueued(), MSG_NOSIGNAL)
                        : ::write(channel.get(), out.data() + outOff, outQueued());
        if (w > 0) {
            outOff += size_t(w);
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) return;
        loseChannel("write: " + describe(w < 0 ? errno : EIO));
        return;
    }
    if (outOff == out.size()) {
        out.clear();
        outOff = 0;
    }
}

void Relay::Impl::readChannel() {
    char buf[64 * 1024];
    for (int round = 0; round < 4; ++round) {
        ssize_t n = ::read(channel.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            pollfd p{channel.get(), POLLIN, 0};
            if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) &&
                !(p.revents & POLLIN)) {
                loseChannel("the other side hung up");
            }
            return;
        }
        if (n <= 0) {
            loseChannel(n == 0 ? "end of stream" : "read: " + describe(errno));
            return;
        }
        decoder.feed(buf, size_t(n));
        Frame f;
        for (;;) {
            auto r = decoder.next(&f);
            if (r == FrameDecoder::Result::kNeedMore) break;
            if (r == FrameDecoder::Result::kOversized) {
                loseChannel("frame of " + std::to_string(decoder.oversizedLength()) +
                            " bytes exceeds the maximum of " + std::to_string(kMaxPayload) +
                            " (not a port-forward peer?)");
                return;
            }
            dispatch(f);
            if (channelLost || peerAbsent) return;
        }
        if (size_t(n) < sizeof buf) return;
    }
}

void Relay::Impl::loseChannel(const std::string& why) {
    resetAll("port-forward channel " + channelName + " lost: " + why);
    ready = false;
    out.clear();
    outOff = 0;
    decoder = FrameDecoder();
    if (opts.waitForPeer) {
        log.info("host left the port-forward channel, waiting for it", {{"reason", why}});
        peerAbsent = true;
        return;
    }
    channelLost = true;
    if (role == Role::kGuest) {
        // A socket channel (vsock) is one session: the caller accepts the next one.
        log.info("port-forward channel closed", {{"reason", why}});
        stopping.store(true);
        return;
    }
    log.warn("port-forward channel closed; forwarded connections are reset from now on",
             {{"reason", why}});
}

void Relay::Impl::resetAll(const std::string& why, bool keepUnsent) {
    size_t n = 0;
    for (auto it = streams.begin(); it != streams.end();) {
        if (keepUnsent && it->second->state == Stream::State::kWaitReady) {
            ++it;
            continue;
        }
        closeWithReset(it->second->sock);
        it = streams.erase(it);
        ++n;
    }
    if (n) log.info("reset " + std::to_string(n) + " forwarded connections", {{"reason", why}});
}

void Relay::Impl::becomeReady() {
    if (!ready) log.debug("port-forward channel ready");
    ready = true;
    warnedNotReady = false;
    for (auto& [id, s] : streams) {
        if (s->state == Stream::State::kWaitReady) sendOpen(*s);
    }
}

void Relay::Impl::dispatch(const Frame& f) {
    const uint32_t id = f.header.streamId;
    switch (f.header.type) {
        case FrameType::kHello: {
            uint32_t version = 0;
            parseU32(f.payload, &version);
            if (version != kProtocolVersion)
                log.warn("peer speaks port-forward protocol version " + std::to_string(version) +
                         ", this side " + std::to_string(kProtocolVersion));
            // The peer started a new session: what we relayed in the old one is gone there.
            resetAll("the peer restarted the port-forward session", true);
            queue(0, FrameType::kHelloAck, encodeU32(kProtocolVersion));
            becomeReady();
            return;
        }
        case FrameType::kHelloAck:
            becomeReady();
            return;
        case FrameType::kOpen:
            if (role == Role::kGuest) {
                handleOpen(id, f.payload);
            } else {
                queue(id, FrameType::kOpenFail,
                      encodeOpenFail(EPERM, "the host side of port forwarding opens no streams"));
            }
            return;
        default:
            break;
    }
    Stream* s = find(id);
    // Frames for a stream this side already reset are still on their way: ignore them.
    if (!s) return;
    switch (f.header.type) {
        case FrameType::kOpenOk: {
            uint32_t window = 0;
            if (role != Role::kHost || s->state != Stream::State::kOpening ||
                !parseU32(f.payload, &window)) {
                reset(*s, "unexpected OPEN_OK");
                return;
            }
            s->sendWindow = window;
            s->state = Stream::State::kOpen;
            ++stats.streamsOpened;
            log.debug("forwarding to guest port " + std::to_string(s->port),
                      {{"stream", std::to_string(id)}});
            return;
        }
        case FrameType::kOpenFail: {
            uint32_t err = 0;
            std::string text;
            parseOpenFail(f.payload, &err, &text);
            ++stats.streamsFailed;
            log.info("port forward to guest port " + std::to_string(s->port) + " failed",
                     {{"error", text}});
            drop(id);
            return;
        }
        case FrameType::kData: {
            if (s->peerClosed) {
                reset(*s, "DATA after CLOSE");
                return;
            }
            if (f.payload.size() > s->recvLeft) {
                reset(*s, "flow control: " + std::to_string(f.payload.size()) +
                              " bytes of DATA with a window of " + std::to_string(s->recvLeft) +
                              " left");
                return;
            }
            s->recvLeft -= uint32_t(f.payload.size());
            if (s->toSockOff == s->toSock.size()) {
                s->toSock.clear();
                s->toSockOff = 0;
            }
            s->toSock += f.payload;
            if (s->state == Stream::State::kOpen) writeSocket(*s);
            return;
        }
        case FrameType::kCredit: {
            uint32_t n = 0;
            if (parseU32(f.payload, &n)) s->sendWindow += n;
            return;
        }
        case FrameType::kClose:
            s->peerClosed = true;
            if (s->state == Stream::State::kOpen) writeSocket(*s);
            return;
        case FrameType::kReset:
            log.debug("forwarded connection reset by the peer",
                      {{"port", std::to_string(s->port)}, {"reason", f.payload}});
            drop(id);
            return;
        default:
            // Unknown frame types are left for newer peers.
            return;
    }
}

void Relay::Impl::accept(int lfd) {
    for (int i = 0; i < 16; ++i) {
        UniqueFd c(::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!c) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log.warn("accept a connection to forward: " + describe(errno));
            return;
        }
        int port = localPort(c.get());
        if (port <= 0) {
            log.warn("forwarded connection without a local port: " + describe(errno));
            closeWithReset(c);
            continue;
        }
        addHostStream(std::move(c), uint16_t(port));
    }
}

void Relay::Impl::addHostStream(UniqueFd sock, uint16_t port) {
    if (channelLost) {
        log.debug("port-forward channel closed: connection to port " + std::to_string(port) +
                  " reset");
        closeWithReset(sock);
        return;
    }
    if (streams.size() >= opts.maxStreams) {
        log.warn("too many forwarded connections (" + std::to_string(streams.size()) +
                 "): connection to port " + std::to_string(port) + " reset");
        closeWithReset(sock);
        return;
    }
    setNonBlocking(sock.get());
    int one = 1;
    ::setsockopt(sock.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto s = std::make_unique<Stream>();
    s->id = nextId++;
    if (nextId == 0) nextId = 1;
    s->port = port;
    s->sock = std::move(sock);
    s->recvLeft = opts.window;
    Stream& ref = *s;
    streams[ref.id] = std::move(s);
    if (ready) {
        sendOpen(ref);
    } else {
        ref.state = Stream::State::kWaitReady;
        ref.deadline = Clock::now() + opts.readyTimeout;
    }
}

void Relay::Impl::sendOpen(Stream& s) {
    s.state = Stream::State::kOpening;
    queue(s.id, FrameType::kOpen, encodeOpen(s.port, opts.window));
}

void Relay::Impl::handleOpen(uint32_t id, const std::string& payload) {
    uint16_t port = 0;
    uint32_t window = 0;
    if (find(id)) {
        queue(id, FrameType::kReset, "stream id " + std::to_string(id) + " is already open");
        drop(id);
        return;
    }
    if (!parseOpen(payload, &port, &window)) {
        queue(id, FrameType::kOpenFail, encodeOpenFail(EINVAL, "malformed OPEN frame"));
        ++stats.streamsFailed;
        return;
    }
    if (streams.size() >= opts.maxStreams) {
        queue(id, FrameType::kOpenFail,
              encodeOpenFail(EMFILE, "forward to port " + std::to_string(port) + ": " +
                                         std::to_string(streams.size()) +
                                         " forwarded connections are open already"));
        ++stats.streamsFailed;
        return;
    }
    auto s = std::make_unique<Stream>();
    s->id = id;
    s->port = port;
    s->sendWindow = window;
    s->recvLeft = opts.window;
    Stream& ref = *s;
    streams[id] = std::move(s);
    startConnect(ref);
}

void Relay::Impl::startConnect(Stream& s) {
    const bool v6 = s.attempt == 1;
    UniqueFd fd(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        connectDone(s, errno);
        return;
    }
    int rc;
    if (v6) {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(s.port);
        a.sin6_addr = in6addr_loopback;
        rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(s.port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    int err = rc == 0 ? 0 : errno;
    s.sock = std::move(fd);
    if (err == EINPROGRESS) {
        s.state = Stream::State::kConnecting;
        return;
    }
    connectDone(s, err);
}

void Relay::Impl::connectDone(Stream& s, int err) {
    if (err == 0) {
        int one = 1;
        ::setsockopt(s.sock.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s.state = Stream::State::kOpen;
        ++stats.streamsOpened;
        queue(s.id, FrameType::kOpenOk, encodeU32(opts.window));
        if (s.buffered() > 0 || s.peerClosed) writeSocket(s);
        return;
    }
    const std::string addr =
        (s.attempt == 1 ? "[::1]:" : "127.0.0.1:") + std::to_string(s.port) + " in the guest";
    const std::string text = SystemError("connect", addr, err).what();
    s.sock.reset();
    if (s.attempt == 0) {
        // As containerd does on a runc host: localhost over IPv4, then over IPv6.
        s.firstErr = err;
        s.firstErrText = text;
        s.attempt = 1;
        startConnect(s);
        return;
    }
    std::string why = s.firstErrText;
    // A guest without IPv6 says so on every attempt; the IPv4 reason is the one that matters.
    if (err != EAFNOSUPPORT && err != EADDRNOTAVAIL) why += "; " + text;
    ++stats.streamsFailed;
    queue(s.id, FrameType::kOpenFail, encodeOpenFail(uint32_t(s.firstErr), why));
    log.debug("forward to port " + std::to_string(s.port) + " refused", {{"error", why}});
    streams.erase(s.id);
}

void Relay::Impl::readSocket(Stream& s) {
    if (s.state != Stream::State::kOpen || s.sockEof || s.sendWindow == 0 || channelLost ||
        peerAbsent)
        return;
    char buf[64 * 1024];
    size_t want = std::min<uint64_t>({sizeof buf, opts.maxData, s.sendWindow});
    ssize_t n = ::recv(s.sock.get(), buf, want, MSG_DONTWAIT);
    if (n > 0) {
        s.sendWindow -= uint64_t(n);
        queue(s.id, FrameType::kData, std::string_view(buf, size_t(n)));
        return;
    }
    if (n == 0) {
        s.sockEof = true;
        s.closeSent = true;
        queue(s.id, FrameType::kClose);
        maybeFinish(s);
        return;
    }
    if (errno == EAGAIN || errno == EINTR) return;
    reset(s, "read from the connection to port " + std::to_string(s.port) + ": " + describe(errno));
}

void Relay::Impl::writeSocket(Stream& s) {
    while (s.buffered() > 0) {
        ssize_t n = ::send(s.sock.get(), s.toSock.data() + s.toSockOff, s.buffered(),
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            s.toSockOff += size_t(n);
            s.owed += uint32_t(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        reset(s, "write to the connection to port " + std::to_string(s.port) + ": " +
                     describe(n < 0 ? errno : EIO));
        return;
    }
    if (s.buffered() == 0) {
        s.toSock.clear();
        s.toSockOff = 0;
    }
    // Credit back what the socket took: at once when all is written, else in quarter windows.
    if (s.owed > 0 && (s.buffered() == 0 || s.owed >= opts.window / 4)) {
        queue(s.id, FrameType::kCredit, encodeU32(s.owed));
        s.recvLeft += s.owed;
        s.owed = 0;
    }
    if (s.buffered() == 0 && s.peerClosed && !s.sockWriteShut) {
        ::shutdown(s.sock.get(), SHUT_WR);
        s.sockWriteShut = true;
        maybeFinish(s);
    }
}

void Relay::Impl::maybeFinish(Stream& s) {
    if (s.closeSent && s.sockWriteShut) streams.erase(s.id);  // both ways finished: FIN, no RST
}

void Relay::Impl::reset(Stream& s, const std::string& why) {
    log.debug("forwarded connection reset", {{"port", std::to_string(s.port)}, {"reason", why}});
    if (s.state != Stream::State::kWaitReady) queue(s.id, FrameType::kReset, why);
    drop(s.id);
}

void Relay::Impl::drop(uint32_t id) {
    auto it = streams.find(id);
    if (it == streams.end()) return;
    closeWithReset(it->second->sock);
    streams.erase(it);
}

}  // namespace kata::portforward
