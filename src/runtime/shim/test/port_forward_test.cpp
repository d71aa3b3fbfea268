// The shim's PortForward end to end without a VM (root): a netns made by the test stands for
// the pod's, a unix socket for QEMU's chardev of kata.portforward.0, and a guest-role Relay on
// its other end for the agent, dialing the host's loopback where the test's service listens.
// A connection dialed to 127.0.0.1:<service port> inside the netns must reach the service.
#include "port_forward.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <thread>

#include "kata/common/error.h"
#include "kata/network/pod_network.h"
#include "kata/portforward/relay.h"
#include "kata/ttrpc/ttrpc.h"

namespace kata::shim {
namespace {

int sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

class PortForwardTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (ip netns, BPF)";
        ns_ = "kata-pf-" + std::to_string(::getpid());
        if (sh("ip netns add " + ns_) != 0) GTEST_SKIP() << "cannot create a network namespace";
        created_ = true;
        ASSERT_EQ(sh("ip -n " + ns_ + " link set lo up"), 0);
        char tmpl[] = "/tmp/kata-pf-test.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        if (created_) sh("ip netns del " + ns_);
        if (!dir_.empty()) sh("rm -rf " + dir_);
    }
    std::string netnsPath() const { return "/run/netns/" + ns_; }

    // Connects to 127.0.0.1:port from inside the test's netns; 0 or connect's errno.
    int dialInNetns(uint16_t port, UniqueFd* out) {
        int err = 0;
        network::runInNetns(netnsPath(), [&] {
            UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(port);
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            err = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 ? 0 : errno;
            timeval tv{10, 0};
            ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            *out = std::move(fd);
        });
        return err;
    }

    std::string ns_, dir_;
    bool created_ = false;
};

TEST_F(PortForwardTest, LoopbackInThePodNetnsReachesTheGuestSideAndNothingStaysAfterStop) {
    // The "container's" service, on the loopback the guest relay dials (here: the host's).
    UniqueFd svc(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(svc.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(svc.get(), 4), 0);
    socklen_t len = sizeof a;
    ::getsockname(svc.get(), reinterpret_cast<sockaddr*>(&a), &len);
    const uint16_t port = ntohs(a.sin_port);
    std::thread server([&] {
        UniqueFd c(::accept4(svc.get(), nullptr, nullptr, SOCK_CLOEXEC));
        char b[5];
        if (!c || ::recv(c.get(), b, 5, MSG_WAITALL) != 5) return;
        std::string reply = "pong:" + std::string(b, 5);
        ::send(c.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
    });

    // QEMU's chardev: a listening unix socket; the agent's relay on the connection it accepts.
    const std::string sock = dir_ + "/portforward.sock";
    UniqueFd chardev = ttrpc::listenUnix(sock);
    std::unique_ptr<portforward::Relay> guest;
    std::thread vm([&] {
        UniqueFd c(::accept4(chardev.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c) return;
        guest = std::make_unique<portforward::Relay>(portforward::Role::kGuest, std::move(c),
                                                     "test guest end");
        guest->start();
    });

    auto pf = PortForward::start("sb-test", netnsPath(), "unix://" + sock);
    vm.join();
    if (!pf) {
        server.detach();
        GTEST_SKIP() << "PortForward unavailable here (see the log above: kernel without BPF "
                        "sk_lookup?)";
    }
    ASSERT_TRUE(guest);

    UniqueFd c;
    ASSERT_EQ(dialInNetns(port, &c), 0) << "127.0.0.1:" << port << " in the pod netns";
    ASSERT_EQ(::send(c.get(), "ping!", 5, MSG_NOSIGNAL), 5);
    char b[10];
    ASSERT_EQ(::recv(c.get(), b, sizeof b, MSG_WAITALL), 10) << std::strerror(errno);
    EXPECT_EQ(std::string(b, 10), "pong:ping!");
    server.join();

    pf.reset();
    EXPECT_EQ(dialInNetns(port, &c), ECONNREFUSED) << "the pod netns' loopback is its own again";
}

TEST_F(PortForwardTest, WithoutAChannelOrANetnsItIsUnavailableNotAnError) {
    EXPECT_EQ(PortForward::start("sb-test", netnsPath(), ""), nullptr);
    EXPECT_EQ(PortForward::start("sb-test", "/run/netns/kata-no-such-netns", "unix:///nonexistent"),
              nullptr);
    // A channel that cannot be reached: what was attached to the netns is undone.
    EXPECT_EQ(PortForward::start("sb-test", netnsPath(), "unix://" + dir_ + "/none.sock"), nullptr);
    UniqueFd c;
    EXPECT_EQ(dialInNetns(9, &c), ECONNREFUSED) << "the netns' loopback is left as it was";
}

}  // namespace
}  // namespace kata::shim
