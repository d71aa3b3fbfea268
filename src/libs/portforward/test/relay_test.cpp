// Both ends of the port-forward channel in one process, over a socketpair, relaying real TCP
// connections on loopback: the test's "guest services" listen on 127.0.0.1 and the host end is
// handed connections as the shim's listener would.
#include "kata/portforward/relay.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

namespace kata::portforward {
namespace {

using namespace std::chrono_literals;

struct Listener {
    UniqueFd fd;
    uint16_t port = 0;
};

Listener listenOn(int family, int rcvbuf = 0) {
    Listener l;
    l.fd = UniqueFd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!l.fd) return l;
    int one = 1;
    ::setsockopt(l.fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (rcvbuf) ::setsockopt(l.fd.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    } else {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        int v6only = 1;
        ::setsockopt(l.fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
        len = sizeof *a;
    }
    if (::bind(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
        ::listen(l.fd.get(), 16) != 0) {
        l.fd.reset();
        return l;
    }
    len = sizeof ss;
    ::getsockname(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    l.port = family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port)
                               : ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    return l;
}

void setTimeouts(int fd, std::chrono::milliseconds t) {
    timeval tv{long(t.count() / 1000), long(t.count() % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

UniqueFd connectTo(uint16_t port) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fd.reset();
    return fd;
}

// A connected TCP pair on loopback: {the test's end, the end the host relay is handed}.
std::pair<UniqueFd, UniqueFd> tcpPair() {
    Listener l = listenOn(AF_INET);
    UniqueFd c = connectTo(l.port);
    UniqueFd s(::accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    setTimeouts(c.get(), 10s);
    return {std::move(c), std::move(s)};
}

void writeAll(int fd, const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        ASSERT_GT(n, 0) << std::strerror(errno);
        off += size_t(n);
    }
}

// Reads until EOF; *err is the errno that ended it instead (ECONNRESET), or 0.
std::string readAll(int fd, int* err = nullptr) {
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            out.append(buf, size_t(n));
            continue;
        }
        if (err) *err = n == 0 ? 0 : errno;
        return out;
    }
}

// Runs a "guest service" on the listener for each accepted connection, on a thread of its own.
class Service {
  public:
    Service(Listener l, std::function<void(UniqueFd)> handle) : l_(std::move(l)) {
        thread_ = std::thread([this, handle] {
            for (;;) {
                UniqueFd c(::accept4(l_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
                if (!c || stop_.load()) return;
                setTimeouts(c.get(), 10s);
                workers_.emplace_back(handle, std::move(c));
            }
        });
    }
    ~Service() {
        stop_.store(true);
        ::shutdown(l_.fd.get(), SHUT_RDWR);
        thread_.join();
        for (auto& w : workers_) w.join();
    }
    uint16_t port() const { return l_.port; }

  private:
    Listener l_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::vector<std::thread> workers_;
};

void echo(UniqueFd c) {
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(c.get(), buf, sizeof buf, 0);
        if (n <= 0) return;
        if (::send(c.get(), buf, size_t(n), MSG_NOSIGNAL) != n) return;
    }
}

bool waitUntil(const std::function<bool()>& cond, std::chrono::milliseconds t = 10s) {
    auto deadline = std::chrono::steady_clock::now() + t;
    while (std::chrono::steady_clock::now() < deadline) {
        if (cond()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return cond();
}

class RelayTest : public ::testing::Test {
  protected:
    static RelayOptions smallWindows() {
        RelayOptions o;
        o.window = 64 * 1024;
        o.maxData = 16 * 1024;
        o.channelHighWater = 64 * 1024;
        return o;
    }
    void makeChannel() {
        int sv[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        hostEnd_ = UniqueFd(sv[0]);
        guestEnd_ = UniqueFd(sv[1]);
    }
    void startHost(RelayOptions o = smallWindows()) {
        host_ = std::make_unique<Relay>(Role::kHost, std::move(hostEnd_), "test host end", o);
        host_->start();
    }
    void startGuest(RelayOptions o = smallWindows()) {
        guest_ = std::make_unique<Relay>(Role::kGuest, std::move(guestEnd_), "test guest end", o);
        guest_->start();
    }
    void startBoth(RelayOptions o = smallWindows()) {
        makeChannel();
        startHost(o);
        startGuest(o);
    }
    // A connection the host relays to `port` in the "guest"; returns the dialing side's end.
    UniqueFd forward(uint16_t port) {
        auto [client, accepted] = tcpPair();
        host_->addConnection(std::move(accepted), port);
        return std::move(client);
    }

    UniqueFd hostEnd_, guestEnd_;
    std::unique_ptr<Relay> host_, guest_;
};

TEST_F(RelayTest, RelaysAConnectionBothWaysAndHalfClosesEachWay) {
    Service svc(listenOn(AF_INET), [](UniqueFd c) {
        // Reads the whole request (until the client's half-close), then answers and closes.
        std::string req = readAll(c.get());
        writeAll(c.get(), "got " + std::to_string(req.size()) + " bytes: " + req.substr(0, 5));
    });
    startBoth();
    UniqueFd c = forward(svc.port());
    writeAll(c.get(), "hello" + std::string(300000, 'x'));
    ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
    int err = -1;
    EXPECT_EQ(readAll(c.get(), &err), "got 300005 bytes: hello");
    EXPECT_EQ(err, 0) << "the service's FIN arrives as a FIN, not a reset";
    EXPECT_TRUE(waitUntil([&] { return host_->stats().streams == 0; }));
    EXPECT_TRUE(waitUntil([&] { return guest_->stats().streams == 0; }));
    EXPECT_EQ(host_->stats().streamsOpened, 1u);
}

TEST_F(RelayTest, ANonListeningGuestPortResetsTheConnection) {
    // Bound but not listening: nothing else can take the port while the test runs.
    UniqueFd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(holder.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(holder.get(), reinterpret_cast<sockaddr*>(&a), &len);
    startBoth();
    UniqueFd c = forward(ntohs(a.sin_port));
    int err = 0;
    EXPECT_EQ(readAll(c.get(), &err), "");
    EXPECT_EQ(err, ECONNRESET);
    EXPECT_TRUE(waitUntil([&] { return host_->stats().streamsFailed == 1; }));
    EXPECT_TRUE(waitUntil([&] { return guest_->stats().streamsFailed == 1; }));
    EXPECT_EQ(host_->stats().streams, 0u);
}

TEST_F(RelayTest, AResetOnEitherSideResetsTheOtherSide) {
    std::atomic<int> serviceErr{-1};
    Service svc(listenOn(AF_INET), [&](UniqueFd c) {
        char b[16];
        ssize_t n = ::recv(c.get(), b, sizeof b, 0);
        if (n < 0) {  // reset before the client's byte got through
            serviceErr.store(errno);
            return;
        }
        if (n == 5 && std::string(b, 5) == "reset") {
            linger l{1, 0};  // the service aborts its connection
            ::setsockopt(c.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
            return;
        }
        int err = 0;
        readAll(c.get(), &err);
        serviceErr.store(err);
    });
    startBoth();
    UniqueFd a = forward(svc.port());
    writeAll(a.get(), "reset");
    int err = 0;
    EXPECT_EQ(readAll(a.get(), &err), "");
    EXPECT_EQ(err, ECONNRESET) << "the guest service's reset reaches the client";

    UniqueFd b = forward(svc.port());
    writeAll(b.get(), "x");
    ASSERT_TRUE(waitUntil([&] { return guest_->stats().streams == 1; }));
    linger l{1, 0};  // now the client aborts
    ::setsockopt(b.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    b.reset();
    EXPECT_TRUE(waitUntil([&] { return serviceErr.load() == ECONNRESET; }))
        << "the client's reset reaches the guest service, errno " << serviceErr.load();
    EXPECT_TRUE(waitUntil([&] { return guest_->stats().streams == 0; }));
}

TEST_F(RelayTest, AStalledReaderStopsOnlyItsOwnStreamAndBuffersAtMostItsWindow) {
    const RelayOptions o = smallWindows();
    std::atomic<bool> release{false};
    // Guest service that never reads (tiny receive buffer, so it fills at once) ...
    Service sink(listenOn(AF_INET, 4096), [&](UniqueFd c) {
        while (!release.load()) std::this_thread::sleep_for(10ms);
    });
    // ... one that writes without end to a client that never reads ...
    Service source(listenOn(AF_INET), [&](UniqueFd c) {
        std::string chunk(65536, 's');
        int fl = ::fcntl(c.get(), F_GETFL);
        ::fcntl(c.get(), F_SETFL, fl | O_NONBLOCK);
        while (!release.load()) {
            if (::send(c.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL) < 0 && errno != EAGAIN)
                return;
            std::this_thread::sleep_for(1ms);
        }
    });
    // ... and an echo service that must keep flowing next to them.
    Service echoSvc(listenOn(AF_INET), echo);
    startBoth(o);

    UniqueFd toSink = forward(sink.port());
    UniqueFd fromSource = forward(source.port());
    int rcv = 4096;
    ::setsockopt(fromSource.get(), SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    ::fcntl(toSink.get(), F_SETFL, ::fcntl(toSink.get(), F_GETFL) | O_NONBLOCK);
    size_t pushed = 0;
    std::string chunk(65536, 'p');
    auto until = std::chrono::steady_clock::now() + 1500ms;
    while (std::chrono::steady_clock::now() < until) {
        ssize_t n = ::send(toSink.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (n > 0) pushed += size_t(n);
        std::this_thread::sleep_for(1ms);
    }
    // Socket buffers on the way take some; the relays take no more than their windows.
    EXPECT_LT(pushed, 16u << 20) << "the stalled stream kept taking data";

    UniqueFd e = forward(echoSvc.port());
    const std::string payload(2 << 20, 'e');
    std::thread writer([&] { writeAll(e.get(), payload); });
    std::string echoed;
    char buf[65536];
    while (echoed.size() < payload.size()) {
        ssize_t n = ::recv(e.get(), buf, sizeof buf, 0);
        ASSERT_GT(n, 0) << "echo stream stalled after " << echoed.size()
                        << " bytes: " << std::strerror(errno);
        echoed.append(buf, size_t(n));
    }
    writer.join();
    EXPECT_EQ(echoed, payload);

    for (Relay* r : {host_.get(), guest_.get()}) {
        RelayStats st = r->stats();
        EXPECT_EQ(st.streams, 3u);
        EXPECT_LE(st.peakStreamBuffered, o.window) << "a stream held more than its window";
        EXPECT_LE(st.channelQueued, o.channelHighWater + o.window);
    }
    release.store(true);
}

TEST_F(RelayTest, ConnectionsWaitForTheGuestToGreetAndTimeOutWithoutIt) {
    Service svc(listenOn(AF_INET), echo);
    RelayOptions o = smallWindows();
    o.readyTimeout = 300ms;
    makeChannel();
    startHost(o);
    UniqueFd lost = forward(svc.port());
    int err = 0;
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(readAll(lost.get(), &err), "");
    EXPECT_EQ(err, ECONNRESET);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);

    o.readyTimeout = 10s;
    host_.reset();
    makeChannel();
    startHost(o);
    UniqueFd early = forward(svc.port());
    writeAll(early.get(), "ping");
    std::this_thread::sleep_for(200ms);
    startGuest(o);
    char b[4];
    ASSERT_EQ(::recv(early.get(), b, 4, MSG_WAITALL), 4) << std::strerror(errno);
    EXPECT_EQ(std::string(b, 4), "ping");
}

TEST_F(RelayTest, LosingTheChannelResetsEveryConnectionAndRefusesNewOnes) {
    Service svc(listenOn(AF_INET), echo);
    startBoth();
    UniqueFd c = forward(svc.port());
    writeAll(c.get(), "ping");
    char b[4];
    ASSERT_EQ(::recv(c.get(), b, 4, MSG_WAITALL), 4);
    guest_.reset();  // the VM went away: its end of the channel is closed
    int err = 0;
    readAll(c.get(), &err);
    EXPECT_EQ(err, ECONNRESET);
    EXPECT_TRUE(waitUntil([&] { return !host_->stats().channelOpen; }));
    UniqueFd late = forward(svc.port());
    readAll(late.get(), &err);
    EXPECT_EQ(err, ECONNRESET);
}

TEST_F(RelayTest, AGuestOnASocketChannelEndsWithItsSession) {
    makeChannel();
    startHost();
    Relay guest(Role::kGuest, std::move(guestEnd_), "test guest end", smallWindows());
    std::atomic<bool> returned{false};
    std::thread t([&] {
        guest.run();
        returned.store(true);
    });
    EXPECT_TRUE(waitUntil([&] { return host_->stats().ready; }));
    host_.reset();
    EXPECT_TRUE(waitUntil([&] { return returned.load(); }, 5s)) << "run() still serving";
    guest.stop();
    t.join();
}

TEST_F(RelayTest, FallsBackToIpv6LoopbackAsContainerdDoes) {
    Listener l6 = listenOn(AF_INET6);
    if (!l6.fd) GTEST_SKIP() << "no IPv6 loopback here: " << std::strerror(errno);
    Service svc(std::move(l6), echo);
    startBoth();
    UniqueFd c = forward(svc.port());
    writeAll(c.get(), "six!");
    char b[4];
    ASSERT_EQ(::recv(c.get(), b, 4, MSG_WAITALL), 4) << std::strerror(errno);
    EXPECT_EQ(std::string(b, 4), "six!");
}

}  // namespace
}  // namespace kata::portforward
