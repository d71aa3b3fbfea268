// Every test runs the functions inside a network namespace of its own (ip netns add), entered
// on a dedicated thread with setns, and checks the result with `ip -n <ns> -j ...`.
#include "kata/agent/network.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "kata/common/error.h"

namespace kata::agent::net {
namespace {

using nlohmann::json;

std::string run(const std::string& cmd, int* status = nullptr) {
    std::string out;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int st = ::pclose(p);
    if (status) *status = st;
    return out;
}

class NetnsTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "network namespace tests need root";
        static std::atomic<int> counter{0};
        name_ = "kata-nettest-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
        int st = 0;
        std::string out = run("ip netns add " + name_, &st);
        if (st != 0) GTEST_SKIP() << "cannot create a network namespace: " << out;
        created_ = true;
    }
    void TearDown() override {
        if (created_) run("ip netns del " + name_);
    }
    // Runs a shell command inside the namespace; fails the test when it fails.
    std::string ip(const std::string& args) {
        int st = 0;
        std::string out = run("ip -n " + name_ + " " + args, &st);
        EXPECT_EQ(st, 0) << "ip " << args << ": " << out;
        return out;
    }
    // A veth pair (the host has no dummy driver) whose peer is up, so the link has carrier
    // once it is up itself.
    void addVeth(const std::string& dev, const std::string& attrs = "") {
        ip("link add " + dev + " " + attrs + " type veth peer name " + dev + "-p");
        ip("link set " + dev + "-p up");
    }
    json ipJson(const std::string& args) { return json::parse(ip("-j " + args)); }
    // Runs fn on a thread that has entered the namespace; rethrows what it throws.
    void inNetns(const std::function<void()>& fn) {
        std::exception_ptr error;
        std::thread t([&] {
            try {
                int fd = ::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
                if (fd < 0) throwErrno("open", "/run/netns/" + name_);
                int rc = ::setns(fd, CLONE_NEWNET);
                ::close(fd);
                if (rc != 0) throwErrno("setns", name_);
                fn();
            } catch (...) {
                error = std::current_exception();
            }
        });
        t.join();
        if (error) std::rethrow_exception(error);
    }
    json linkJson(const std::string& dev) {
        json j = ipJson("addr show dev " + dev);
        return j.empty() ? json() : j[0];
    }
    std::vector<std::string> addrsOf(const json& link) {
        std::vector<std::string> out;
        for (const auto& a : link["addr_info"]) {
            if (a["family"] == "inet6" && a["scope"] == "link") continue;
            out.push_back(a["local"].get<std::string>() + "/" +
                          std::to_string(a["prefixlen"].get<int>()));
        }
        std::sort(out.begin(), out.end());
        return out;
    }
    static bool hasFlag(const json& link, const std::string& flag) {
        for (const auto& f : link["flags"]) {
            if (f == flag) return true;
        }
        return false;
    }

    std::string name_;
    bool created_ = false;
};

TEST_F(NetnsTest, ListInterfacesReportsLinksAndAddresses) {
    addVeth("veth0", "address 02:00:00:00:01:01 mtu 1400");
    ip("addr add 10.1.0.2/24 dev veth0");
    ip("addr add fd00::2/64 dev veth0 nodad");
    ip("link set veth0 up");
    Interfaces ifaces;
    inNetns([&] { ifaces = listInterfaces(); });
    const types::Interface* d = nullptr;
    for (const auto& i : ifaces.interfaces()) {
        if (i.name() == "veth0") d = &i;
    }
    ASSERT_NE(d, nullptr) << ifaces.DebugString();
    EXPECT_EQ(d->hwaddr(), "02:00:00:00:01:01");
    EXPECT_EQ(d->mtu(), 1400u);
    EXPECT_EQ(d->type(), "veth");
    std::vector<std::string> addrs;
    for (const auto& a : d->ipaddresses()) {
        if (a.address().rfind("fe80", 0) == 0) continue;
        addrs.push_back(a.address() + "/" + a.mask() + (a.family() == types::v6 ? " v6" : " v4"));
    }
    std::sort(addrs.begin(), addrs.end());
    EXPECT_EQ(addrs, (std::vector<std::string>{"10.1.0.2/24 v4", "fd00::2/64 v6"}));
    bool sawLo = false;
    for (const auto& i : ifaces.interfaces()) sawLo |= i.name() == "lo";
    EXPECT_TRUE(sawLo);
}

TEST_F(NetnsTest, UpdateInterfaceByMacRenamesSetsMtuReplacesAddressesAndUp) {
    ip("link add veth-a address 02:00:00:00:00:aa type veth peer name veth-b");
    ip("addr add 10.9.9.9/24 dev veth-a");
    types::Interface want;
    want.set_name("eth0");
    want.set_hwaddr("02:00:00:00:00:AA");  // case does not matter
    want.set_mtu(1450);
    auto* v4 = want.add_ipaddresses();
    v4->set_family(types::v4);
    v4->set_address("10.88.0.5");
    v4->set_mask("16");
    auto* v6 = want.add_ipaddresses();
    v6->set_family(types::v6);
    v6->set_address("fd00:1::5");
    v6->set_mask("64");

    types::Interface got;
    inNetns([&] { got = updateInterface(want); });
    EXPECT_EQ(got.name(), "eth0");
    EXPECT_EQ(got.mtu(), 1450u);

    json link = linkJson("eth0");
    ASSERT_FALSE(link.is_null());
    EXPECT_EQ(link["address"], "02:00:00:00:00:aa");
    EXPECT_EQ(link["mtu"], 1450);
    EXPECT_TRUE(hasFlag(link, "UP")) << link.dump();
    EXPECT_EQ(addrsOf(link), (std::vector<std::string>{"10.88.0.5/16", "fd00:1::5/64"}));
    EXPECT_NE(ip("link show"), "");
    EXPECT_EQ(run("ip -n " + name_ + " link show veth-a 2>&1").find("veth-a:"), std::string::npos);

    // Applying it again is idempotent.
    inNetns([&] { got = updateInterface(want); });
    EXPECT_EQ(addrsOf(linkJson("eth0")),
              (std::vector<std::string>{"10.88.0.5/16", "fd00:1::5/64"}));
}

TEST_F(NetnsTest, UpdateInterfaceWithUnknownMacNamesIt) {
    addVeth("veth0", "address 02:00:00:00:01:01");
    types::Interface want;
    want.set_name("eth0");
    want.set_hwaddr("02:00:00:00:99:99");
    try {
        inNetns([&] { updateInterface(want); });
        ADD_FAILURE() << "updated a link that does not exist";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), StatusCode::kNotFound);
        EXPECT_NE(std::string(e.what()).find("02:00:00:00:99:99"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(linkJson("veth0").is_null());  // nothing renamed
}

TEST_F(NetnsTest, UpdateRoutesReplacesRoutesLinkScopeFirst) {
    addVeth("eth0");
    ip("addr add 10.88.0.5/16 dev eth0");
    ip("addr add fd00:1::5/64 dev eth0 nodad");
    ip("link set eth0 up");
    ip("route add 192.168.50.0/24 dev eth0");  // stale: must go

    Routes routes;
    // Gateway routes listed before the link route they depend on: the kernel rejects a gateway
    // it cannot reach, so this only works if link routes are added first.
    auto* def = routes.add_routes();
    def->set_gateway("10.88.0.1");
    def->set_device("eth0");
    auto* net = routes.add_routes();
    net->set_dest("172.16.0.0/12");
    net->set_gateway("10.88.0.1");
    net->set_device("eth0");
    auto* link = routes.add_routes();
    link->set_dest("10.88.0.0/16");
    link->set_device("eth0");
    link->set_source("10.88.0.5");
    link->set_scope(253);
    auto* v6 = routes.add_routes();
    v6->set_dest("fd00:2::/64");
    v6->set_device("eth0");
    v6->set_family(types::v6);

    Routes got;
    inNetns([&] { got = updateRoutes(routes); });

    json v4 = ipJson("route show");
    std::vector<std::string> seen;
    for (const auto& r : v4) {
        std::string s = r["dst"].get<std::string>();
        if (r.contains("gateway")) s += " via " + r["gateway"].get<std::string>();
        s += " dev " + r["dev"].get<std::string>();
        if (r.contains("prefsrc")) s += " src " + r["prefsrc"].get<std::string>();
        seen.push_back(s);
    }
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, (std::vector<std::string>{"10.88.0.0/16 dev eth0 src 10.88.0.5",
                                              "172.16.0.0/12 via 10.88.0.1 dev eth0",
                                              "default via 10.88.0.1 dev eth0"}))
        << v4.dump();
    json v6routes = ipJson("-6 route show");
    bool sawV6 = false, sawStaleV6 = false;
    for (const auto& r : v6routes) {
        sawV6 |= r["dst"] == "fd00:2::/64";
        sawStaleV6 |= r["dst"] == "fd00:1::/64";  // the kernel's connected route stays
    }
    EXPECT_TRUE(sawV6) << v6routes.dump();
    EXPECT_TRUE(sawStaleV6) << "the kernel's own route for an address must stay: "
                            << v6routes.dump();

    // The returned list is what listRoutes sees, with names resolved.
    bool sawDefault = false;
    for (const auto& r : got.routes()) {
        if (r.dest().empty() && r.family() == types::v4) {
            sawDefault = true;
            EXPECT_EQ(r.gateway(), "10.88.0.1");
            EXPECT_EQ(r.device(), "eth0");
        }
    }
    EXPECT_TRUE(sawDefault) << got.DebugString();
}

// The shim sends no protocol-kernel routes (Kata's rule): a gateway on the address's subnet must
// still be reachable through the route the kernel made for the address.
TEST_F(NetnsTest, UpdateRoutesKeepsTheKernelsAddressRoutes) {
    addVeth("eth0");
    ip("addr add 10.211.7.2/24 dev eth0");
    ip("link set eth0 up");
    Routes routes;
    auto* def = routes.add_routes();
    def->set_gateway("10.211.7.1");
    def->set_device("eth0");
    inNetns([&] { updateRoutes(routes); });
    std::string shown;
    for (const auto& r : ipJson("route show")) shown += r.dump() + "\n";
    EXPECT_NE(shown.find("\"10.211.7.0/24\""), std::string::npos) << shown;
    EXPECT_NE(shown.find("\"gateway\":\"10.211.7.1\""), std::string::npos) << shown;
}

TEST_F(NetnsTest, UpdateRoutesWithUnreachableGatewayFailsNamingIt) {
    addVeth("eth0");
    ip("link set eth0 up");
    Routes routes;
    auto* def = routes.add_routes();
    def->set_gateway("10.99.0.1");
    def->set_device("eth0");
    try {
        inNetns([&] { updateRoutes(routes); });
        ADD_FAILURE() << "a route via an unreachable gateway was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("add route default via 10.99.0.1 dev eth0"),
                  std::string::npos)
            << e.what();
    }
}

TEST_F(NetnsTest, ListRoutesSeesKernelAndStaticRoutes) {
    addVeth("eth0");
    ip("addr add 10.5.0.2/24 dev eth0");
    ip("link set eth0 up");
    ip("route add default via 10.5.0.1 dev eth0");
    Routes got;
    inNetns([&] { got = listRoutes(); });
    bool sawDefault = false, sawConnected = false;
    for (const auto& r : got.routes()) {
        if (r.dest().empty() && r.gateway() == "10.5.0.1" && r.device() == "eth0")
            sawDefault = true;
        if (r.dest() == "10.5.0.0/24" && r.device() == "eth0" && r.source() == "10.5.0.2" &&
            r.scope() == 253)
            sawConnected = true;
    }
    EXPECT_TRUE(sawDefault) << got.DebugString();
    EXPECT_TRUE(sawConnected) << got.DebugString();
}

TEST_F(NetnsTest, AddArpNeighborsArePermanent) {
    addVeth("eth0");
    ip("addr add 10.88.0.5/16 dev eth0");
    ip("link set eth0 up");
    ARPNeighbors neighbors;
    auto* n = neighbors.add_arpneighbors();
    n->mutable_toipaddress()->set_address("10.88.0.1");
    n->set_device("eth0");
    n->set_lladdr("02:42:0a:58:00:01");
    inNetns([&] { addArpNeighbors(neighbors); });
    json neigh = ipJson("neigh show dev eth0");
    ASSERT_EQ(neigh.size(), 1u) << neigh.dump();
    EXPECT_EQ(neigh[0]["dst"], "10.88.0.1");
    EXPECT_EQ(neigh[0]["lladdr"], "02:42:0a:58:00:01");
    EXPECT_EQ(neigh[0]["state"][0], "PERMANENT") << neigh.dump();

    n->set_device("nosuch0");
    try {
        inNetns([&] { addArpNeighbors(neighbors); });
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), StatusCode::kNotFound);
        EXPECT_NE(std::string(e.what()).find("nosuch0"), std::string::npos);
    }
}

TEST_F(NetnsTest, SetupLoopbackBringsLoUp) {
    EXPECT_FALSE(hasFlag(linkJson("lo"), "UP"));  // a new namespace starts with lo down
    inNetns([] { setupLoopback(); });
    json lo = linkJson("lo");
    EXPECT_TRUE(hasFlag(lo, "UP")) << lo.dump();
    EXPECT_EQ(addrsOf(lo), (std::vector<std::string>{"127.0.0.1/8", "::1/128"}));
}

TEST(SetDnsTest, WritesResolvConf) {
    std::string dir = std::filesystem::temp_directory_path() / "kata-dns-XXXXXX";
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    struct Cleanup {
        std::string d;
        ~Cleanup() { std::filesystem::remove_all(d); }
    } cleanup{dir};
    std::string path = dir + "/resolv.conf";
    std::ofstream(path) << "nameserver 1.1.1.1\nnameserver 9.9.9.9\nsearch old\n";
    setDns(
        {"nameserver 10.96.0.10", "8.8.8.8", "search default.svc.cluster.local", "options ndots:5"},
        path);
    std::stringstream content;
    content << std::ifstream(path).rdbuf();
    EXPECT_EQ(content.str(),
              "nameserver 10.96.0.10\nnameserver 8.8.8.8\nsearch default.svc.cluster.local\n"
              "options ndots:5\n");
    EXPECT_THROW(setDns({"8.8.8.8\nnameserver 6.6.6.6"}, path), Error);
    EXPECT_THROW(setDns({"not-an-address"}, path), Error);
}

}  // namespace
}  // namespace kata::agent::net
