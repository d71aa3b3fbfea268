// The sk_lookup intercept for real, in a pod netns the test builds (root): connections to
// 127.0.0.1 / [::1] on random ports land on the intercept's listeners with the dialed port as
// their local port; the pod IP is left alone; closing the link leaves nothing attached.
#include "kata/network/loopback_intercept.h"

#include <arpa/inet.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <cstring>
#include <random>
#include <set>

#include "kata/common/error.h"
#include "kata/network/pod_network.h"
#include "pod_netns_fixture.h"

namespace kata::network {
namespace {

sockaddr_storage address(int family, const char* ip, uint16_t port, socklen_t* len) {
    sockaddr_storage ss{};
    if (family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        ::inet_pton(AF_INET, ip, &a->sin_addr);
        *len = sizeof *a;
    } else {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        ::inet_pton(AF_INET6, ip, &a->sin6_addr);
        *len = sizeof *a;
    }
    return ss;
}

// Connects from inside netnsPath; returns 0 or the errno of connect. *out keeps the socket.
int dialIn(const std::string& netnsPath, int family, const char* ip, uint16_t port, UniqueFd* out) {
    int err = 0;
    runInNetns(netnsPath, [&] {
        UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd) throwErrno("socket");
        timeval tv{3, 0};
        ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        socklen_t len;
        sockaddr_storage ss = address(family, ip, port, &len);
        err = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0 ? 0 : errno;
        *out = std::move(fd);
    });
    return err;
}

UniqueFd acceptWithin(int listener, int ms) {
    pollfd p{listener, POLLIN, 0};
    if (::poll(&p, 1, ms) != 1) return UniqueFd();
    return UniqueFd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
}

int localPort(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    return ss.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port)
                                   : ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

// BPF links attached to the namespace with this inode, found through the kernel's link ids.
int linksOnNetns(ino_t ino) {
    int count = 0;
    uint32_t id = 0;
    for (;;) {
        bpf_attr a{};
        a.start_id = id;
        if (::syscall(__NR_bpf, BPF_LINK_GET_NEXT_ID, &a, sizeof a) != 0) break;
        id = a.next_id;
        bpf_attr g{};
        g.link_id = id;
        UniqueFd link(int(::syscall(__NR_bpf, BPF_LINK_GET_FD_BY_ID, &g, sizeof g)));
        if (!link) continue;
        bpf_link_info info{};
        bpf_attr q{};
        q.info.bpf_fd = uint32_t(link.get());
        q.info.info_len = sizeof info;
        q.info.info = reinterpret_cast<uintptr_t>(&info);
        if (::syscall(__NR_bpf, BPF_OBJ_GET_INFO_BY_FD, &q, sizeof q) != 0) continue;
        if (info.type == BPF_LINK_TYPE_NETNS && info.netns.netns_ino == ino) ++count;
    }
    return count;
}

class LoopbackInterceptTest : public testing::PodNetnsTest {
  protected:
    std::unique_ptr<LoopbackIntercept> attachOrSkip() {
        try {
            return LoopbackIntercept::attach(podPath());
        } catch (const Error& e) {
            if (e.code() == StatusCode::kUnavailable) {
                skipped_ = e.what();
                return nullptr;
            }
            throw;
        }
    }
    std::string skipped_;
};

TEST_F(LoopbackInterceptTest, TakesLoopbackConnectionsOnAnyPortAndLeavesThePodIpAlone) {
    auto li = attachOrSkip();
    if (!li) GTEST_SKIP() << "the kernel refuses sk_lookup: " << skipped_;
    struct stat ns {};
    ASSERT_EQ(::stat(podPath().c_str(), &ns), 0);
    EXPECT_EQ(linksOnNetns(ns.st_ino), 1);
    std::vector<UniqueFd> listeners = li->takeListeners();
    ASSERT_FALSE(listeners.empty());
    const bool hasIpv6Loopback = pod("-6 addr show dev lo").find("::1/128") != std::string::npos;
    EXPECT_EQ(listeners.size(), hasIpv6Loopback ? 2u : 1u) << "a listener for [::1] too";

    std::mt19937 rng(std::random_device{}());
    std::uniform_int_distribution<int> anyPort(1024, 65000);
    std::set<uint16_t> ports;
    while (ports.size() < 5) ports.insert(uint16_t(anyPort(rng)));
    for (uint16_t port : ports) {
        UniqueFd c;
        ASSERT_EQ(dialIn(podPath(), AF_INET, "127.0.0.1", port, &c), 0) << "127.0.0.1:" << port;
        UniqueFd s = acceptWithin(listeners[0].get(), 3000);
        ASSERT_TRUE(s) << "no connection to 127.0.0.1:" << port << " on the intercept";
        EXPECT_EQ(localPort(s.get()), port) << "getsockname names the dialed port";
        ASSERT_EQ(::send(c.get(), "hi", 2, MSG_NOSIGNAL), 2);
        char b[2];
        ASSERT_EQ(::recv(s.get(), b, 2, MSG_WAITALL), 2);
    }
    if (listeners.size() > 1) {
        uint16_t port = *ports.begin();
        UniqueFd c;
        ASSERT_EQ(dialIn(podPath(), AF_INET6, "::1", port, &c), 0);
        UniqueFd s = acceptWithin(listeners[1].get(), 3000);
        ASSERT_TRUE(s) << "no connection to [::1]:" << port << " on the intercept";
        EXPECT_EQ(localPort(s.get()), port);
    }

    // The pod IP, from inside the namespace and from the peer outside: not taken.
    const uint16_t port = *ports.rbegin();
    UniqueFd c;
    EXPECT_EQ(dialIn(podPath(), AF_INET, "10.123.0.2", port, &c), ECONNREFUSED);
    EXPECT_EQ(dialIn(outsidePath(), AF_INET, "10.123.0.2", port, &c), ECONNREFUSED);
    // A real listener on the pod IP still gets its connections.
    UniqueFd podListener;
    runInNetns(podPath(), [&] {
        podListener = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        socklen_t len;
        sockaddr_storage ss = address(AF_INET, "10.123.0.2", port, &len);
        if (::bind(podListener.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
            ::listen(podListener.get(), 4) != 0)
            throwErrno("listen on 10.123.0.2");
    });
    EXPECT_EQ(dialIn(outsidePath(), AF_INET, "10.123.0.2", port, &c), 0);
    EXPECT_TRUE(acceptWithin(podListener.get(), 3000));
    for (const auto& l : listeners) EXPECT_FALSE(acceptWithin(l.get(), 0)) << "pod IP taken";

    // Closing the link detaches the program: loopback ports are refused again, no link is left.
    li.reset();
    EXPECT_EQ(linksOnNetns(ns.st_ino), 0);
    EXPECT_EQ(dialIn(podPath(), AF_INET, "127.0.0.1", port, &c), ECONNREFUSED);
}

TEST_F(LoopbackInterceptTest, AMissingNamespaceIsNamedInTheError) {
    try {
        LoopbackIntercept::attach("/run/netns/kata-no-such-netns");
        FAIL() << "attached to a missing netns";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/run/netns/kata-no-such-netns"), std::string::npos)
            << e.what();
    }
}

}  // namespace
}  // namespace kata::network
