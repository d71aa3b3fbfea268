#include <linux/neighbour.h>
#include <sys/socket.h>

#include "kata/network/pod_network.h"
#include "rtnl.h"

namespace kata::network {

namespace {

std::string deviceName(const std::vector<detail::LinkInfo>& links, std::optional<uint32_t> index) {
    if (!index) return "";
    const detail::LinkInfo* l = detail::findLink(links, static_cast<int>(*index));
    return l ? l->name : "";
}

std::vector<Route> dumpRoutes(netlink::Socket& nl, const std::vector<detail::LinkInfo>& links,
                              const std::string& netnsPath) {
    netlink::Request req(RTM_GETROUTE, 0);
    req.header<rtmsg>()->rtm_family = AF_UNSPEC;
    std::vector<Route> out;
    for (const auto& m : nl.dump(req, "routes in netns " + netnsPath)) {
        const auto* rt = m.header<rtmsg>();
        if (m.type != RTM_NEWROUTE || !rt || rt->rtm_type != RTN_UNICAST) continue;
        if (rt->rtm_family != AF_INET && rt->rtm_family != AF_INET6) continue;
        netlink::Attrs a = netlink::parseAttrs(m, sizeof(rtmsg));
        // Table ids above 255 only come in RTA_TABLE.
        if (netlink::u32Attr(a, RTA_TABLE).value_or(rt->rtm_table) != RT_TABLE_MAIN) continue;
        Route r;
        r.family = rt->rtm_family;
        if (rt->rtm_dst_len > 0) r.destination = netlink::formatIp(rt->rtm_family, a[RTA_DST]);
        r.prefixLength = rt->rtm_dst_len;
        if (a.count(RTA_GATEWAY)) r.gateway = netlink::formatIp(rt->rtm_family, a[RTA_GATEWAY]);
        if (a.count(RTA_PREFSRC)) r.source = netlink::formatIp(rt->rtm_family, a[RTA_PREFSRC]);
        r.device = deviceName(links, netlink::u32Attr(a, RTA_OIF));
        r.scope = rt->rtm_scope;
        r.protocol = rt->rtm_protocol;
        out.push_back(std::move(r));
    }
    return out;
}

std::vector<Neighbor> dumpNeighbors(netlink::Socket& nl, const std::vector<detail::LinkInfo>& links,
                                    const std::string& netnsPath) {
    std::vector<Neighbor> out;
    // One dump per family: an AF_UNSPEC dump would also bring the bridge FDB entries.
    for (int family : {AF_INET, AF_INET6}) {
        netlink::Request req(RTM_GETNEIGH, 0);
        req.header<ndmsg>()->ndm_family = static_cast<uint8_t>(family);
        for (const auto& m : nl.dump(req, "neighbours in netns " + netnsPath)) {
            const auto* nd = m.header<ndmsg>();
            if (m.type != RTM_NEWNEIGH || !nd || nd->ndm_family != family) continue;
            netlink::Attrs a = netlink::parseAttrs(m, sizeof(ndmsg));
            Neighbor n;
            n.family = family;
            n.ip = netlink::formatIp(family, a[NDA_DST]);
            if (a.count(NDA_LLADDR)) n.mac = netlink::formatMac(a[NDA_LLADDR]);
            n.device = deviceName(links, static_cast<uint32_t>(nd->ndm_ifindex));
            n.state = nd->ndm_state;
            if (!n.ip.empty()) out.push_back(std::move(n));
        }
    }
    return out;
}

}  // namespace

NetnsScan scan(const std::string& netnsPath) {
    NetnsScan result;
    runInNetns(netnsPath, [&] {
        netlink::Socket nl;
        std::vector<detail::LinkInfo> links = detail::dumpLinks(nl, netnsPath);
        result.links = detail::linksWithAddresses(nl, links, netnsPath);
        result.routes = dumpRoutes(nl, links, netnsPath);
        result.neighbors = dumpNeighbors(nl, links, netnsPath);
    });
    return result;
}

}  // namespace kata::network
