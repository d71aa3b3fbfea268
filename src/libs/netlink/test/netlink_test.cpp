// The request encoding is checked byte by byte against the rtnetlink layout; the socket is
// checked against the kernel of the test's own network namespace (a dump works unprivileged, a
// rejected request must carry the errno and the kernel's reason).
#include "kata/netlink/netlink.h"

#include <gtest/gtest.h>
#include <linux/if_link.h>
#include <linux/pkt_sched.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <thread>

#include "kata/common/error.h"

namespace kata::netlink {
namespace {

const rtattr* attrAt(const Request& req, size_t off) {
    return reinterpret_cast<const rtattr*>(req.bytes().data() + off);
}

TEST(NetlinkRequest, HeaderThenAlignedAttributes) {
    Request req(RTM_NEWLINK, NLM_F_CREATE);
    req.header<ifinfomsg>()->ifi_index = 7;
    req.putString(IFLA_IFNAME, "eth0");  // 5 bytes, padded to 8
    req.putU32(IFLA_MTU, 1400);
    const size_t attrs = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(ifinfomsg));
    ASSERT_EQ(req.bytes().size(), attrs + RTA_SPACE(5) + RTA_SPACE(4));
    EXPECT_EQ(req.hdr()->nlmsg_len, req.bytes().size());
    EXPECT_EQ(req.hdr()->nlmsg_type, RTM_NEWLINK);
    EXPECT_EQ(req.hdr()->nlmsg_flags, NLM_F_CREATE | NLM_F_REQUEST);
    EXPECT_EQ(attrAt(req, attrs)->rta_len, RTA_LENGTH(5));
    EXPECT_EQ(attrAt(req, attrs + RTA_SPACE(5))->rta_type, IFLA_MTU);
}

TEST(NetlinkRequest, NestsCoverTheirChildrenAndAreFlagged) {
    Request req(RTM_NEWTFILTER, 0);
    req.header<tcmsg>();
    const size_t outerOff = req.bytes().size();
    size_t outer = req.beginNest(TCA_OPTIONS);
    req.putU32(1, 0xabcd);
    size_t inner = req.beginNest(2);
    req.putU8(3, 9);
    req.endNest(inner);
    req.endNest(outer);
    req.putString(TCA_KIND, "u32");

    EXPECT_EQ(outer, outerOff);
    const rtattr* o = attrAt(req, outer);
    EXPECT_EQ(o->rta_type, TCA_OPTIONS | NLA_F_NESTED);
    // outer header + u32 attribute + inner (header + u8 padded to 4).
    EXPECT_EQ(o->rta_len, RTA_LENGTH(RTA_SPACE(4) + RTA_SPACE(RTA_SPACE(1))));
    EXPECT_EQ(attrAt(req, inner)->rta_len, RTA_LENGTH(RTA_SPACE(1)));

    Attrs top = parseAttrs(req.bytes().data() + outerOff, req.bytes().size() - outerOff);
    EXPECT_EQ(stringAttr(top, TCA_KIND), "u32");
    ASSERT_TRUE(top.count(TCA_OPTIONS));  // the NLA_F_NESTED bit is masked off
    Attrs opts = parseAttrs(top[TCA_OPTIONS]);
    EXPECT_EQ(u32Attr(opts, 1), 0xabcdu);
    Attrs in = parseAttrs(opts[2]);
    ASSERT_EQ(in[3].size(), 1u);
    EXPECT_EQ(in[3][0], 9);
}

TEST(NetlinkRequest, AttrListKeepsOrderAndDuplicates) {
    Request req(RTM_NEWTFILTER, 0);
    const size_t start = req.bytes().size();
    req.putU32(1, 10);
    req.putU32(2, 20);
    req.putU32(1, 30);
    auto list = attrList(std::string_view(req.bytes().data() + start, req.bytes().size() - start));
    ASSERT_EQ(list.size(), 3u);
    EXPECT_EQ(list[0].first, 1);
    EXPECT_EQ(list[2].first, 1);
    uint32_t last = 0;
    ASSERT_EQ(list[2].second.size(), sizeof last);
    std::memcpy(&last, list[2].second.data(), sizeof last);
    EXPECT_EQ(last, 30u);
}

TEST(NetlinkFormat, MacAndIp) {
    EXPECT_EQ(formatMac(std::string_view("\x02\x00\x0a\xff\x01\x10", 6)), "02:00:0a:ff:01:10");
    EXPECT_EQ(formatIp(AF_INET, std::string_view("\x0a\x7b\x00\x02", 4)), "10.123.0.2");
    EXPECT_EQ(formatIp(AF_INET, std::string_view("\x0a", 1)), "");
    std::string v6(16, '\0');
    v6[0] = '\xfd';
    v6[15] = '\x02';
    EXPECT_EQ(formatIp(AF_INET6, v6), "fd00::2");
}

TEST(NetlinkSocket, DumpListsLoopback) {
    Socket nl;
    Request req(RTM_GETLINK, 0);
    req.header<ifinfomsg>()->ifi_family = AF_UNSPEC;
    bool sawLo = false;
    for (const auto& m : nl.dump(req, "links")) {
        ASSERT_EQ(m.type, RTM_NEWLINK);
        if (stringAttr(parseAttrs(m, sizeof(ifinfomsg)), IFLA_IFNAME) == "lo") sawLo = true;
    }
    EXPECT_TRUE(sawLo);
}

TEST(NetlinkSocket, RejectedRequestNamesOperationAndReason) {
    Socket nl;
    Request req(RTM_DELLINK, 0);
    req.header<ifinfomsg>()->ifi_index = 0x7ffffff0;  // no such link
    try {
        nl.request(req, "delete link", "#2147483632");
        FAIL() << "expected an error";
    } catch (const SystemError& e) {
        // Unprivileged the kernel refuses before it looks the link up.
        int want = ::geteuid() == 0 ? ENODEV : EPERM;
        EXPECT_EQ(e.err(), want) << e.what();
        EXPECT_EQ(std::string(e.what()).rfind("delete link #2147483632", 0), 0u) << e.what();
    }
}

TEST(NetlinkSocket, ExtendedAckTextIsPartOfTheError) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root for a network namespace of its own";
    std::string what;
    int err = 0;
    // A private, empty network namespace on a thread of its own: only lo, no qdisc on it.
    std::thread t([&] {
        if (::unshare(CLONE_NEWNET) != 0) {
            what = "unshare: " + errnoName(errno);
            return;
        }
        try {
            Socket nl;
            Request req(RTM_DELQDISC, 0);
            auto* tc = req.header<tcmsg>();
            tc->tcm_ifindex = static_cast<int>(::if_nametoindex("lo"));
            tc->tcm_parent = TC_H_INGRESS;
            tc->tcm_handle = TC_H_MAKE(TC_H_INGRESS, 0);
            req.putString(TCA_KIND, "ingress");
            nl.request(req, "delete qdisc", "ingress dev lo");
            what = "no error";
        } catch (const SystemError& e) {
            what = e.what();
            err = e.err();
        }
    });
    t.join();
    EXPECT_EQ(err, ENOENT) << what;
    EXPECT_EQ(what.rfind("delete qdisc ingress dev lo (kernel: ", 0), 0u) << what;
    EXPECT_NE(what.find("): No such file or directory (ENOENT)"), std::string::npos) << what;
}

}  // namespace
}  // namespace kata::netlink
