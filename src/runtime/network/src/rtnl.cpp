#include "rtnl.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <sys/socket.h>

#include <algorithm>
#include <map>

#include "kata/common/error.h"

namespace kata::network::detail {

UniqueFd openNetns(const std::string& netnsPath) {
    UniqueFd fd(::open(netnsPath.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throwErrno("open network namespace", netnsPath);
    return fd;
}

std::string onDevice(const std::string& device, const std::string& netnsPath) {
    return device + " in netns " + netnsPath;
}

std::vector<LinkInfo> dumpLinks(netlink::Socket& nl, const std::string& netnsPath) {
    netlink::Request req(RTM_GETLINK, 0);
    req.header<ifinfomsg>()->ifi_family = AF_UNSPEC;
    std::vector<LinkInfo> links;
    for (const auto& m : nl.dump(req, "links in netns " + netnsPath)) {
        const auto* ifi = m.header<ifinfomsg>();
        if (m.type != RTM_NEWLINK || !ifi) continue;
        netlink::Attrs a = netlink::parseAttrs(m, sizeof(ifinfomsg));
        LinkInfo l;
        l.index = ifi->ifi_index;
        l.flags = ifi->ifi_flags;
        l.name = netlink::stringAttr(a, IFLA_IFNAME);
        l.mtu = netlink::u32Attr(a, IFLA_MTU).value_or(0);
        if (a.count(IFLA_ADDRESS)) l.mac = netlink::formatMac(a[IFLA_ADDRESS]);
        links.push_back(std::move(l));
    }
    std::sort(links.begin(), links.end(),
              [](const LinkInfo& x, const LinkInfo& y) { return x.index < y.index; });
    return links;
}

const LinkInfo* findLink(const std::vector<LinkInfo>& links, int index) {
    for (const auto& l : links) {
        if (l.index == index) return &l;
    }
    return nullptr;
}

namespace {

bool isIpv6LinkLocal(const ifaddrmsg& ifa, std::string_view raw) {
    return ifa.ifa_family == AF_INET6 && raw.size() >= 2 &&
           static_cast<unsigned char>(raw[0]) == 0xfe &&
           (static_cast<unsigned char>(raw[1]) & 0xc0) == 0x80;
}

// The addresses of every link, by ifindex.
std::map<int, std::vector<IpAddress>> dumpAddresses(netlink::Socket& nl,
                                                    const std::string& netnsPath) {
    netlink::Request req(RTM_GETADDR, 0);
    req.header<ifaddrmsg>()->ifa_family = AF_UNSPEC;
    std::map<int, std::vector<IpAddress>> out;
    for (const auto& m : nl.dump(req, "addresses in netns " + netnsPath)) {
        const auto* ifa = m.header<ifaddrmsg>();
        if (m.type != RTM_NEWADDR || !ifa) continue;
        if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6) continue;
        netlink::Attrs a = netlink::parseAttrs(m, sizeof(ifaddrmsg));
        // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point links.
        std::string_view raw = a.count(IFA_LOCAL) ? a[IFA_LOCAL] : a[IFA_ADDRESS];
        if (raw.empty() || isIpv6LinkLocal(*ifa, raw)) continue;
        IpAddress ip;
        ip.family = ifa->ifa_family;
        ip.address = netlink::formatIp(ifa->ifa_family, raw);
        ip.prefixLength = ifa->ifa_prefixlen;
        if (!ip.address.empty()) out[static_cast<int>(ifa->ifa_index)].push_back(std::move(ip));
    }
    return out;
}

}  // namespace

std::vector<Link> linksWithAddresses(netlink::Socket& nl, const std::vector<LinkInfo>& links,
                                     const std::string& netnsPath) {
    std::map<int, std::vector<IpAddress>> addrs = dumpAddresses(nl, netnsPath);
    std::vector<Link> out;
    for (const auto& l : links) {
        if ((l.flags & IFF_LOOPBACK) || isTapName(l.name)) continue;
        auto it = addrs.find(l.index);
        if (it == addrs.end() || it->second.empty()) continue;
        out.push_back(Link{l.name, l.index, l.mac, l.mtu, std::move(it->second)});
    }
    return out;
}

void setMtuAndUp(netlink::Socket& nl, int index, uint32_t mtu, const std::string& what) {
    netlink::Request req(RTM_NEWLINK, 0);
    auto* ifi = req.header<ifinfomsg>();
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = index;
    ifi->ifi_flags = IFF_UP;
    ifi->ifi_change = IFF_UP;
    if (mtu) req.putU32(IFLA_MTU, mtu);
    nl.request(req, "set mtu " + std::to_string(mtu) + " and up on", what);
}

void disableIpv6AddressGeneration(netlink::Socket& nl, int index, const std::string& what) {
    netlink::Request req(RTM_NEWLINK, 0);
    auto* ifi = req.header<ifinfomsg>();
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = index;
    size_t spec = req.beginNest(IFLA_AF_SPEC);
    size_t inet6 = req.beginNest(AF_INET6);
    req.putU8(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE);
    req.endNest(inet6);
    req.endNest(spec);
    try {
        nl.request(req, "disable IPv6 address generation on", what);
    } catch (const SystemError& e) {
        if (e.err() != EAFNOSUPPORT && e.err() != EOPNOTSUPP) throw;
    }
}

void deleteLink(netlink::Socket& nl, int index, const std::string& what) {
    netlink::Request req(RTM_DELLINK, 0);
    auto* ifi = req.header<ifinfomsg>();
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = index;
    nl.request(req, "delete link", what);
}

}  // namespace kata::network::detail
