// A pod network namespace as CNI leaves it, built fresh for every test: "pod" holds eth0
// (02:00:0a:7b:00:02, MTU 1400, 10.123.0.2/24 and fd00:7b::2/64, default route via 10.123.0.1,
// a permanent neighbour 10.123.0.9), whose veth peer veth-out (10.123.0.1/24) sits in a second
// namespace "outside". Both namespaces belong to the test and are deleted in TearDown, whatever
// the test left in them. Checks use the ip and tc tools, not the code under test.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kata::network::testing {

using nlohmann::json;

inline std::string run(const std::string& cmd, int* status = nullptr) {
    std::string out;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int st = ::pclose(p);
    if (status) *status = st;
    return out;
}

constexpr char kPodMac[] = "02:00:0a:7b:00:02";
constexpr unsigned kPodMtu = 1400;

class PodNetnsTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "pod network tests need root";
        if (::access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/net/tun";
        static std::atomic<int> counter{0};
        std::string id = std::to_string(::getpid()) + "-" + std::to_string(counter++);
        pod_ = "kata-pod-" + id;
        outside_ = "kata-out-" + id;
        int st = 0;
        std::string out = run("ip netns add " + pod_, &st);
        if (st != 0) GTEST_SKIP() << "cannot create a network namespace: " << out;
        podCreated_ = true;
        ASSERT_EQ(run("ip netns add " + outside_, &st), "");
        outsideCreated_ = true;
        pod("link set lo up");
        pod(std::string("link add eth0 address ") + kPodMac + " mtu " + std::to_string(kPodMtu) +
            " type veth peer name veth-out netns " + outside_);
        outside("link set lo up");
        outside("link set veth-out mtu " + std::to_string(kPodMtu));
        outside("addr add 10.123.0.1/24 dev veth-out");
        outside("link set veth-out up");
        pod("addr add 10.123.0.2/24 dev eth0");
        pod("addr add fd00:7b::2/64 dev eth0 nodad");
        pod("link set eth0 up");
        waitForCarrier("eth0");
        pod("route add default via 10.123.0.1");
        pod("neigh add 10.123.0.9 lladdr 02:00:00:00:00:09 dev eth0 nud permanent");
        asCniLeftIt_ = snapshot();
    }

    void TearDown() override {
        if (podCreated_) run("ip netns del " + pod_);
        if (outsideCreated_) run("ip netns del " + outside_);
    }

    std::string podPath() const { return "/run/netns/" + pod_; }
    std::string outsidePath() const { return "/run/netns/" + outside_; }

    // `ip -n <ns> <args>`; a failure fails the test.
    std::string pod(const std::string& args) { return ipIn(pod_, args); }
    std::string outside(const std::string& args) { return ipIn(outside_, args); }
    std::string tcPod(const std::string& args) { return checked("tc -n " + pod_ + " " + args); }
    json podJson(const std::string& args) { return json::parse(pod("-j " + args)); }
    json tcPodJson(const std::string& args) { return json::parse(tcPod("-j " + args)); }

    // A second veth into outside, with or without an address.
    void addSecondLink(const std::string& address = "") {
        pod("link add eth1 type veth peer name veth-out1 netns " + outside_);
        if (!address.empty()) pod("addr add " + address + " dev eth1");
        outside("link set veth-out1 up");
        pod("link set eth1 up");
        waitForCarrier("eth1");
        asCniLeftIt_ = snapshot();
    }

    // Until the kernel's linkwatch has seen the carrier (routes lose "linkdown" then).
    void waitForCarrier(const std::string& dev) {
        for (int i = 0; i < 100; ++i) {
            if (podJson("link show dev " + dev)[0]["operstate"] == "UP") return;
            ::usleep(50 * 1000);
        }
        ADD_FAILURE() << dev << " has no carrier after 5s";
    }

    bool hasLink(const std::string& name) {
        for (const auto& l : podJson("link show")) {
            if (l["ifname"] == name) return true;
        }
        return false;
    }
    bool hasIngressQdisc(const std::string& dev) {
        for (const auto& q : tcPodJson("qdisc show dev " + dev)) {
            if (q["kind"] == "ingress") return true;
        }
        return false;
    }
    // "<kind> pref <n>: <action> <action> ..." for each filter node with actions, e.g.
    // "u32 pref 1: mirred egress redirect tap0_kata stolen".
    std::vector<std::string> ingressFilters(const std::string& dev) {
        std::vector<std::string> out;
        for (const auto& f : tcPodJson("filter show dev " + dev + " ingress")) {
            if (!f.contains("options") || !f["options"].contains("actions")) continue;
            std::string line = f["kind"].get<std::string>() + " pref " +
                               std::to_string(f["pref"].get<int>()) + ":";
            for (const auto& a : f["options"]["actions"]) {
                line += " " + a["kind"].get<std::string>();
                if (a["kind"] == "mirred") {
                    line += " " + a["direction"].get<std::string>() + " " +
                            a["mirred_action"].get<std::string>() + " " +
                            a["to_dev"].get<std::string>() + " " +
                            a["control_action"]["type"].get<std::string>();
                }
            }
            out.push_back(line);
        }
        return out;
    }

    // Links (name, MAC, MTU, up), addresses and routes: what attach must leave as it found it.
    std::vector<std::string> snapshot() {
        std::vector<std::string> out;
        for (const auto& l : podJson("addr show")) {
            // Admin state only: carrier and operstate follow the kernel's linkwatch, later.
            bool up = std::find(l["flags"].begin(), l["flags"].end(), "UP") != l["flags"].end();
            std::string line = l["ifname"].get<std::string>() + " " +
                               l.value("address", std::string()) + " mtu " +
                               std::to_string(l["mtu"].get<int>()) + (up ? " up" : " down");
            for (const auto& a : l["addr_info"]) {
                line += " " + a["local"].get<std::string>() + "/" +
                        std::to_string(a["prefixlen"].get<int>());
            }
            out.push_back(line);
        }
        for (const char* family : {"-4", "-6"}) {
            for (const auto& r : json::parse(pod(std::string(family) + " -j route show"))) {
                out.push_back("route " + r.dump());
            }
        }
        std::sort(out.begin(), out.end());
        return out;
    }

    // No tap, no ingress qdisc, no filter; links, addresses and routes as they were.
    void expectAsCniLeftIt() {
        for (const auto& l : podJson("link show")) {
            std::string name = l["ifname"];
            EXPECT_EQ(name.find("_kata"), std::string::npos) << "left behind: " << name;
            EXPECT_FALSE(hasIngressQdisc(name)) << "ingress qdisc left on " << name;
            EXPECT_EQ(ingressFilters(name), std::vector<std::string>()) << name;
        }
        EXPECT_EQ(snapshot(), asCniLeftIt_);
    }

    std::string pod_, outside_;

  private:
    std::string checked(const std::string& cmd) {
        int st = 0;
        std::string out = run(cmd, &st);
        EXPECT_EQ(st, 0) << cmd << ": " << out;
        return out;
    }
    std::string ipIn(const std::string& ns, const std::string& args) {
        return checked("ip -n " + ns + " " + args);
    }

    bool podCreated_ = false, outsideCreated_ = false;
    std::vector<std::string> asCniLeftIt_;
};

}  // namespace kata::network::testing
