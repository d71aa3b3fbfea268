// scan, attach, detach and detachAll against real namespaces (see pod_netns_fixture.h); the
// state they leave is read back with ip and tc.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <future>
#include <stdexcept>
#include <thread>

#include "kata/common/error.h"
#include "kata/network/pod_network.h"
#include "pod_netns_fixture.h"

namespace kata::network {
namespace {

using testing::json;
using testing::kPodMac;
using testing::kPodMtu;
using testing::PodNetnsTest;

ino_t netnsInode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_ino;
}

std::string missingNetns() { return "/run/netns/kata-no-such-netns-" + std::to_string(::getpid()); }

TEST_F(PodNetnsTest, NetnsGuardMovesOnlyTheCallingThread) {
    const ino_t mine = netnsInode("/proc/thread-self/ns/net");
    const ino_t podNs = netnsInode(podPath());
    ASSERT_NE(mine, podNs);
    std::promise<void> entered, release;
    ino_t inside = 0, afterwards = 0;
    std::thread t([&] {
        {
            NetnsGuard guard(podPath());
            inside = netnsInode("/proc/thread-self/ns/net");
            entered.set_value();
            release.get_future().wait();
        }
        afterwards = netnsInode("/proc/thread-self/ns/net");
    });
    entered.get_future().wait();
    EXPECT_EQ(netnsInode("/proc/thread-self/ns/net"), mine);  // while the other thread is in
    release.set_value();
    t.join();
    EXPECT_EQ(inside, podNs);
    EXPECT_EQ(afterwards, mine);
}

TEST_F(PodNetnsTest, RunInNetnsRunsElsewhereAndRethrows) {
    ino_t seen = 0;
    runInNetns(podPath(), [&] { seen = netnsInode("/proc/thread-self/ns/net"); });
    EXPECT_EQ(seen, netnsInode(podPath()));
    EXPECT_THROW(runInNetns(podPath(), [] { throw Error(StatusCode::kAborted, "x"); }), Error);
}

TEST_F(PodNetnsTest, AMissingNamespaceIsNamedInTheError) {
    const std::string path = missingNetns();
    const std::string want = "open network namespace " + path + ": No such file or directory";
    auto expectNotFound = [&](const std::function<void()>& fn) {
        try {
            fn();
            ADD_FAILURE() << "no error";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), StatusCode::kNotFound);
            EXPECT_EQ(std::string(e.what()).rfind(want, 0), 0u) << e.what();
        }
    };
    expectNotFound([&] { NetnsGuard guard(path); });
    expectNotFound([&] { scan(path); });
    expectNotFound([&] { attach(path); });
    expectNotFound([&] { detachAll(path); });
}

TEST_F(PodNetnsTest, ScanReportsTheVethItsRoutesAndNeighbours) {
    NetnsScan s = scan(podPath());
    ASSERT_EQ(s.links.size(), 1u);  // not lo
    const Link& eth0 = s.links[0];
    EXPECT_EQ(eth0.name, "eth0");
    EXPECT_EQ(eth0.mac, kPodMac);
    EXPECT_EQ(eth0.mtu, kPodMtu);
    EXPECT_EQ(eth0.index, podJson("link show dev eth0")[0]["ifindex"].get<int>());
    // The IPv6 link-local address is left out.
    EXPECT_EQ(eth0.addresses,
              (std::vector<IpAddress>{{AF_INET, "10.123.0.2", 24}, {AF_INET6, "fd00:7b::2", 64}}));

    auto findRoute = [&](int family, const std::string& dst) -> const Route* {
        for (const auto& r : s.routes) {
            if (r.family == family && r.destination == dst) return &r;
        }
        return nullptr;
    };
    const Route* def = findRoute(AF_INET, "");
    ASSERT_NE(def, nullptr);
    EXPECT_EQ(def->prefixLength, 0);
    EXPECT_EQ(def->gateway, "10.123.0.1");
    EXPECT_EQ(def->device, "eth0");
    EXPECT_EQ(def->scope, RT_SCOPE_UNIVERSE);
    EXPECT_EQ(def->protocol, RTPROT_BOOT);  // what `ip route add` uses
    const Route* subnet = findRoute(AF_INET, "10.123.0.0");
    ASSERT_NE(subnet, nullptr);
    EXPECT_EQ(subnet->prefixLength, 24);
    EXPECT_EQ(subnet->gateway, "");
    EXPECT_EQ(subnet->source, "10.123.0.2");
    EXPECT_EQ(subnet->device, "eth0");
    EXPECT_EQ(subnet->scope, RT_SCOPE_LINK);
    EXPECT_EQ(subnet->protocol, RTPROT_KERNEL);
    const Route* v6 = findRoute(AF_INET6, "fd00:7b::");
    ASSERT_NE(v6, nullptr);
    EXPECT_EQ(v6->prefixLength, 64);
    EXPECT_EQ(v6->protocol, RTPROT_KERNEL);
    for (const auto& r : s.routes) EXPECT_NE(r.device, "lo") << r.destination;  // local table

    const Neighbor* perm = nullptr;
    for (const auto& n : s.neighbors) {
        if (n.ip == "10.123.0.9") perm = &n;
    }
    ASSERT_NE(perm, nullptr);
    EXPECT_EQ(perm->family, AF_INET);
    EXPECT_EQ(perm->mac, "02:00:00:00:00:09");
    EXPECT_EQ(perm->device, "eth0");
    EXPECT_EQ(perm->state, NUD_PERMANENT);
}

TEST_F(PodNetnsTest, ScanLeavesOutLinksWithoutAddresses) {
    addSecondLink();  // eth1, up, no address (only an IPv6 link-local one)
    NetnsScan s = scan(podPath());
    ASSERT_EQ(s.links.size(), 1u);
    EXPECT_EQ(s.links[0].name, "eth0");
}

TEST_F(PodNetnsTest, AttachMakesATapAndTwoRedirectFilters) {
    std::vector<TapEndpoint> eps = attach(podPath());
    ASSERT_EQ(eps.size(), 1u);
    TapEndpoint& ep = eps[0];
    EXPECT_TRUE(ep.attached());
    EXPECT_EQ(ep.tapName(), "tap0_kata");
    EXPECT_EQ(ep.guestLink().name, "eth0");
    EXPECT_EQ(ep.guestLink().mac, kPodMac);
    EXPECT_EQ(ep.guestLink().mtu, kPodMtu);
    EXPECT_EQ(ep.guestLink().addresses.size(), 2u);

    auto tap = podJson("addr show dev tap0_kata")[0];
    EXPECT_EQ(tap["ifindex"].get<int>(), ep.tapIndex());
    EXPECT_EQ(tap["mtu"].get<unsigned>(), kPodMtu);
    EXPECT_NE(std::find(tap["flags"].begin(), tap["flags"].end(), "UP"), tap["flags"].end());
    EXPECT_TRUE(tap["addr_info"].empty()) << tap.dump();  // no IPv6 link-local of its own
    auto details = podJson("-d link show dev tap0_kata")[0];
    EXPECT_EQ(details["linkinfo"]["info_kind"], "tun");
    EXPECT_EQ(details["linkinfo"]["info_data"],
              json::parse(R"({"type":"tap","pi":false,"vnet_hdr":true,"multi_queue":false,)"
                          R"("persist":true})"));
    EXPECT_EQ(details["inet6_addr_gen_mode"], "none");
    EXPECT_TRUE(hasIngressQdisc("eth0"));
    EXPECT_TRUE(hasIngressQdisc("tap0_kata"));
    EXPECT_EQ(ingressFilters("eth0"),
              std::vector<std::string>{"u32 pref 1: mirred egress redirect tap0_kata stolen"});
    EXPECT_EQ(ingressFilters("tap0_kata"),
              std::vector<std::string>{"u32 pref 1: mirred egress redirect eth0 stolen"});

    // The fd QEMU gets: a tap queue with a vnet header and no packet info, close-on-exec.
    int fd = ep.tapFd();
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
    ifreq ifr{};
    ASSERT_EQ(::ioctl(fd, TUNGETIFF, &ifr), 0);
    EXPECT_STREQ(ifr.ifr_name, "tap0_kata");
    EXPECT_EQ(ifr.ifr_flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR),
              IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);

    // Moving keeps one owner.
    std::vector<TapEndpoint> moved;
    moved.push_back(std::move(ep));
    EXPECT_FALSE(ep.attached());
    EXPECT_EQ(moved[0].tapFd(), fd);

    moved[0].detach();
    EXPECT_FALSE(moved[0].attached());
    EXPECT_EQ(moved[0].tapFd(), -1);
    EXPECT_FALSE(hasLink("tap0_kata"));
    expectAsCniLeftIt();
    moved[0].detach();  // idempotent
}

TEST_F(PodNetnsTest, EveryLinkWithAddressesGetsItsOwnTap) {
    addSecondLink("10.124.0.2/24");
    {
        std::vector<TapEndpoint> eps = attach(podPath());
        ASSERT_EQ(eps.size(), 2u);
        EXPECT_EQ(eps[0].guestLink().name, "eth0");
        EXPECT_EQ(eps[0].tapName(), "tap0_kata");
        EXPECT_EQ(eps[1].guestLink().name, "eth1");
        EXPECT_EQ(eps[1].tapName(), "tap1_kata");
        EXPECT_EQ(ingressFilters("eth1"),
                  std::vector<std::string>{"u32 pref 1: mirred egress redirect tap1_kata stolen"});
        // scan() never lists our taps, even attached.
        NetnsScan s = scan(podPath());
        EXPECT_EQ(s.links.size(), 2u);
    }  // the destructors detach
    expectAsCniLeftIt();
}

TEST_F(PodNetnsTest, AnExceptionAfterAttachStillDetaches) {
    EXPECT_THROW(
        {
            auto eps = attach(podPath());
            ASSERT_TRUE(hasLink("tap0_kata"));
            throw std::runtime_error("the shim fails later");
        },
        std::runtime_error);
    expectAsCniLeftIt();
}

TEST_F(PodNetnsTest, AFailedAttachRemovesWhatItMadeAndNothingElse) {
    // eth1 comes second and already has an ingress qdisc (as if CNI had put one there).
    addSecondLink("10.124.0.2/24");
    tcPod("qdisc add dev eth1 ingress");
    try {
        attach(podPath());
        FAIL() << "attach succeeded";
    } catch (const SystemError& e) {
        EXPECT_EQ(e.code(), StatusCode::kAlreadyExists);
        std::string what = e.what();
        EXPECT_EQ(what.rfind("add ingress qdisc on eth1 in netns " + podPath(), 0), 0u) << what;
        EXPECT_NE(what.find("(kernel: Exclusivity flag on"), std::string::npos) << what;
        EXPECT_NE(what.find("File exists (EEXIST)"), std::string::npos) << what;
    }
    // eth0's finished endpoint and eth1's half-made one are gone; eth1's own qdisc stays.
    EXPECT_FALSE(hasLink("tap0_kata"));
    EXPECT_FALSE(hasLink("tap1_kata"));
    EXPECT_FALSE(hasIngressQdisc("eth0"));
    EXPECT_EQ(ingressFilters("eth0"), std::vector<std::string>());
    EXPECT_TRUE(hasIngressQdisc("eth1"));
    EXPECT_EQ(ingressFilters("eth1"), std::vector<std::string>());
}

TEST_F(PodNetnsTest, ALeftoverTapNameIsRefused) {
    pod("tuntap add tap0_kata mode tap");
    try {
        attach(podPath());
        FAIL() << "attach succeeded";
    } catch (const SystemError& e) {
        EXPECT_EQ(e.err(), EBUSY) << e.what();
        EXPECT_EQ(std::string(e.what()).rfind("create tap tap0_kata in netns " + podPath(), 0), 0u)
            << e.what();
    }
    EXPECT_TRUE(hasLink("tap0_kata"));  // not ours to remove here: detachAll's job
    EXPECT_FALSE(hasIngressQdisc("eth0"));
}

TEST_F(PodNetnsTest, DetachAfterCniDeletedTheVeth) {
    auto eps = attach(podPath());
    ASSERT_EQ(eps.size(), 1u);
    pod("link del eth0");
    eps[0].detach();
    EXPECT_FALSE(hasLink("tap0_kata"));
}

TEST_F(PodNetnsTest, DetachAllCleansUpAfterAShimThatDied) {
    // A shim that dies attached: its fds close, its destructors never run.
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        try {
            auto eps = attach(podPath());
            ::_exit(eps.size() == 1 ? 0 : 2);
        } catch (...) {
            ::_exit(3);
        }
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    ASSERT_TRUE(hasLink("tap0_kata"));  // persistent: it outlives its fd
    ASSERT_EQ(ingressFilters("eth0"),
              std::vector<std::string>{"u32 pref 1: mirred egress redirect tap0_kata stolen"});

    // Someone else's ingress filter on another link, redirecting to a device that is not one of
    // our taps, is none of detachAll's business.
    addSecondLink("10.124.0.2/24");
    tcPod("qdisc add dev eth1 ingress");
    tcPod(
        "filter add dev eth1 ingress prio 5 protocol all u32 match u32 0 0 action mirred egress "
        "redirect dev eth0");

    detachAll(podPath());
    EXPECT_FALSE(hasLink("tap0_kata"));
    EXPECT_FALSE(hasIngressQdisc("eth0"));
    EXPECT_EQ(ingressFilters("eth0"), std::vector<std::string>());
    EXPECT_TRUE(hasIngressQdisc("eth1"));
    EXPECT_EQ(ingressFilters("eth1"),
              std::vector<std::string>{"u32 pref 5: mirred egress redirect eth0 stolen"});
    detachAll(podPath());  // idempotent

    // And, once eth1's owner took its qdisc away, the namespace can be attached again.
    tcPod("qdisc del dev eth1 ingress");
    auto eps = attach(podPath());
    EXPECT_EQ(eps.size(), 2u);
}

TEST_F(PodNetnsTest, DetachAllRemovesAFilterWhoseTapIsAlreadyGone) {
    // The state after a tap was deleted by hand: the redirect points nowhere ("to_dev *").
    pod("tuntap add tap0_kata mode tap");
    tcPod("qdisc add dev eth0 ingress");
    tcPod(
        "filter add dev eth0 ingress prio 1 protocol all u32 match u32 0 0 action mirred egress "
        "redirect dev tap0_kata");
    pod("link del tap0_kata");
    detachAll(podPath());
    expectAsCniLeftIt();
}

}  // namespace
}  // namespace kata::network
