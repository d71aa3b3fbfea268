#include "kata/agent/network.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <optional>

#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/common/log.h"
#include "kata/netlink/netlink.h"

namespace kata::agent::net {

using netlink::Attrs;
using netlink::formatIp;
using netlink::formatMac;

namespace {

const log::Logger& logger() {
    static const log::Logger l("network");
    return l;
}

struct Link {
    int index = 0;
    std::string name;
    unsigned flags = 0;
    uint32_t mtu = 0;
    std::string mac;
    std::string kind;
};

struct Addr {
    int index = 0;
    int family = 0;
    std::string address;
    int prefix = 0;
    int scope = 0;
};

// An IP address in binary form.
struct IpBytes {
    int family = 0;
    unsigned char bytes[16] = {};
    size_t len() const { return family == AF_INET ? 4 : 16; }
};

std::optional<std::vector<unsigned char>> parseMac(const std::string& text) {
    std::vector<unsigned char> out;
    size_t i = 0;
    while (i < text.size()) {
        if (i + 2 > text.size() || !std::isxdigit(static_cast<unsigned char>(text[i])) ||
            !std::isxdigit(static_cast<unsigned char>(text[i + 1])))
            return std::nullopt;
        out.push_back(static_cast<unsigned char>(std::stoul(text.substr(i, 2), nullptr, 16)));
        i += 2;
        if (i < text.size()) {
            if (text[i] != ':' && text[i] != '-') return std::nullopt;
            ++i;
            if (i == text.size()) return std::nullopt;
        }
    }
    if (out.empty()) return std::nullopt;
    return out;
}

std::optional<IpBytes> parseIp(const std::string& text) {
    IpBytes ip;
    if (::inet_pton(AF_INET, text.c_str(), ip.bytes) == 1) {
        ip.family = AF_INET;
        return ip;
    }
    if (::inet_pton(AF_INET6, text.c_str(), ip.bytes) == 1) {
        ip.family = AF_INET6;
        return ip;
    }
    return std::nullopt;
}

// "24", or a dotted IPv4 mask "255.255.255.0".
std::optional<int> parsePrefix(const std::string& mask, int family) {
    if (mask.empty()) return std::nullopt;
    if (mask.find_first_not_of("0123456789") == std::string::npos && mask.size() <= 3) {
        int p = std::stoi(mask);
        if (p > (family == AF_INET ? 32 : 128)) return std::nullopt;
        return p;
    }
    in_addr a{};
    if (family == AF_INET && ::inet_pton(AF_INET, mask.c_str(), &a) == 1) {
        uint32_t m = ntohl(a.s_addr);
        int p = __builtin_popcount(m);
        if (p != 32 && (m << p) != 0) return std::nullopt;  // not contiguous
        return p;
    }
    return std::nullopt;
}

std::vector<Link> listLinks(netlink::Socket& nl) {
    netlink::Request req(RTM_GETLINK, 0);
    req.header<ifinfomsg>()->ifi_family = AF_UNSPEC;
    std::vector<Link> links;
    for (const auto& m : nl.dump(req, "links")) {
        if (m.type != RTM_NEWLINK) continue;
        auto* ifi = m.header<ifinfomsg>();
        if (!ifi) continue;
        Attrs a = netlink::parseAttrs(m, sizeof(ifinfomsg));
        Link l;
        l.index = ifi->ifi_index;
        l.flags = ifi->ifi_flags;
        if (a.count(IFLA_IFNAME)) l.name = std::string(a[IFLA_IFNAME].data());
        if (a.count(IFLA_MTU) && a[IFLA_MTU].size() >= 4) {
            std::memcpy(&l.mtu, a[IFLA_MTU].data(), 4);
        }
        if (a.count(IFLA_ADDRESS)) l.mac = formatMac(a[IFLA_ADDRESS]);
        if (a.count(IFLA_LINKINFO)) {
            Attrs info = netlink::parseAttrs(a[IFLA_LINKINFO].data(), a[IFLA_LINKINFO].size());
            if (info.count(IFLA_INFO_KIND)) l.kind = std::string(info[IFLA_INFO_KIND].data());
        }
        links.push_back(std::move(l));
    }
    return links;
}

std::vector<Addr> listAddrs(netlink::Socket& nl) {
    netlink::Request req(RTM_GETADDR, 0);
    req.header<ifaddrmsg>()->ifa_family = AF_UNSPEC;
    std::vector<Addr> addrs;
    for (const auto& m : nl.dump(req, "addresses")) {
        if (m.type != RTM_NEWADDR) continue;
        auto* ifa = m.header<ifaddrmsg>();
        if (!ifa) continue;
        Attrs a = netlink::parseAttrs(m, sizeof(ifaddrmsg));
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on p2p links.
        std::string_view raw = a.count(IFA_LOCAL) ? a[IFA_LOCAL] : a[IFA_ADDRESS];
        if (raw.empty()) continue;
        Addr addr;
        addr.index = static_cast<int>(ifa->ifa_index);
        addr.family = ifa->ifa_family;
        addr.address = formatIp(ifa->ifa_family, raw);
        addr.prefix = ifa->ifa_prefixlen;
        addr.scope = ifa->ifa_scope;
        addrs.push_back(std::move(addr));
    }
    return addrs;
}

const Link* findLink(const std::vector<Link>& links, const std::string& name) {
    for (const auto& l : links) {
        if (l.name == name) return &l;
    }
    return nullptr;
}

int linkIndex(netlink::Socket& nl, const std::string& name, const std::string& op) {
    auto links = listLinks(nl);
    if (const Link* l = findLink(links, name)) return l->index;
    throw Error(StatusCode::kNotFound, op + ": no link named \"" + name + "\"");
}

void setLink(netlink::Socket& nl, int index, const std::string& what, unsigned flags,
             unsigned change, const std::string& newName, uint32_t mtu) {
    netlink::Request req(RTM_NEWLINK, 0);
    auto* ifi = req.header<ifinfomsg>();
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = index;
    ifi->ifi_flags = flags;
    ifi->ifi_change = change;
    if (!newName.empty()) req.putString(IFLA_IFNAME, newName);
    if (mtu) req.putU32(IFLA_MTU, mtu);
    std::string op = !newName.empty()   ? "rename link"
                     : mtu              ? "set mtu " + std::to_string(mtu) + " on link"
                     : (flags & IFF_UP) ? "set link up"
                                        : "set link down";
    nl.request(req, op, what);
}

types::IPFamily toFamily(int family) { return family == AF_INET6 ? types::v6 : types::v4; }

types::Interface toInterface(const Link& l, const std::vector<Addr>& addrs) {
    types::Interface i;
    i.set_device(l.name);
    i.set_name(l.name);
    i.set_mtu(l.mtu);
    i.set_hwaddr(l.mac);
    i.set_type(l.kind);
    i.set_raw_flags(l.flags);
    for (const auto& a : addrs) {
        if (a.index != l.index) continue;
        auto* ip = i.add_ipaddresses();
        ip->set_family(toFamily(a.family));
        ip->set_address(a.address);
        ip->set_mask(std::to_string(a.prefix));
    }
    return i;
}

// Dumped routes of the main table that this module manages (unicast).
std::vector<netlink::Message> mainRoutes(netlink::Socket& nl) {
    netlink::Request req(RTM_GETROUTE, 0);
    req.header<rtmsg>()->rtm_family = AF_UNSPEC;
    std::vector<netlink::Message> out;
    for (auto& m : nl.dump(req, "routes")) {
        if (m.type != RTM_NEWROUTE) continue;
        auto* rt = m.header<rtmsg>();
        if (!rt || rt->rtm_type != RTN_UNICAST) continue;
        Attrs a = netlink::parseAttrs(m, sizeof(rtmsg));
        uint32_t table = rt->rtm_table;
        if (a.count(RTA_TABLE) && a[RTA_TABLE].size() >= 4)
            std::memcpy(&table, a[RTA_TABLE].data(), 4);
        if (table != RT_TABLE_MAIN) continue;
        out.push_back(std::move(m));
    }
    return out;
}

types::Route toRoute(const netlink::Message& m, const std::vector<Link>& links) {
    auto* rt = m.header<rtmsg>();
    Attrs a = netlink::parseAttrs(m, sizeof(rtmsg));
    types::Route r;
    if (a.count(RTA_DST)) {
        r.set_dest(formatIp(rt->rtm_family, a[RTA_DST]) + "/" + std::to_string(rt->rtm_dst_len));
    }
    if (a.count(RTA_GATEWAY)) r.set_gateway(formatIp(rt->rtm_family, a[RTA_GATEWAY]));
    if (a.count(RTA_PREFSRC)) r.set_source(formatIp(rt->rtm_family, a[RTA_PREFSRC]));
    if (a.count(RTA_OIF) && a[RTA_OIF].size() >= 4) {
        int oif = 0;
        std::memcpy(&oif, a[RTA_OIF].data(), 4);
        for (const auto& l : links) {
            if (l.index == oif) r.set_device(l.name);
        }
    }
    r.set_scope(rt->rtm_scope);
    r.set_family(toFamily(rt->rtm_family));
    r.set_flags(rt->rtm_flags);
    return r;
}

bool isIpv6LinkLocalRoute(const netlink::Message& m) {
    auto* rt = m.header<rtmsg>();
    if (rt->rtm_family != AF_INET6) return false;
    Attrs a = netlink::parseAttrs(m, sizeof(rtmsg));
    if (!a.count(RTA_DST) || a[RTA_DST].size() < 2) return false;
    auto b0 = static_cast<unsigned char>(a[RTA_DST][0]);
    auto b1 = static_cast<unsigned char>(a[RTA_DST][1]);
    return b0 == 0xfe && (b1 & 0xc0) == 0x80;
}

std::string describeRoute(const types::Route& r) {
    std::string s = r.dest().empty() ? "default" : r.dest();
    if (!r.gateway().empty()) s += " via " + r.gateway();
    if (!r.device().empty()) s += " dev " + r.device();
    if (!r.source().empty()) s += " src " + r.source();
    return s;
}

void addRoute(netlink::Socket& nl, const types::Route& r, const std::vector<Link>& links) {
    std::string what = describeRoute(r);
    auto bad = [&](const std::string& why) {
        throw Error(StatusCode::kInvalidArgument, "add route " + what + ": " + why);
    };
    std::optional<IpBytes> dst, gw, src;
    int dstLen = 0;
    if (!r.dest().empty() && r.dest() != "default") {
        auto slash = r.dest().find('/');
        dst = parseIp(r.dest().substr(0, slash));
        if (!dst) bad("bad destination");
        if (slash == std::string::npos) {
            dstLen = dst->family == AF_INET ? 32 : 128;
        } else {
            auto p = parsePrefix(r.dest().substr(slash + 1), dst->family);
            if (!p) bad("bad destination prefix");
            dstLen = *p;
        }
    }
    if (!r.gateway().empty() && !(gw = parseIp(r.gateway()))) bad("bad gateway");
    if (!r.source().empty() && !(src = parseIp(r.source()))) bad("bad source");
    int family = dst                       ? dst->family
                 : gw                      ? gw->family
                 : src                     ? src->family
                 : r.family() == types::v6 ? AF_INET6
                                           : AF_INET;
    for (const auto& ip : {dst, gw, src}) {
        if (ip && ip->family != family) bad("mixes IPv4 and IPv6 addresses");
    }
    int oif = 0;
    if (!r.device().empty()) {
        const Link* l = findLink(links, r.device());
        if (!l)
            throw Error(StatusCode::kNotFound,
                        "add route " + what + ": no link named \"" + r.device() + "\"");
        oif = l->index;
    } else if (!gw) {
        bad("needs a device or a gateway");
    }

    netlink::Request req(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
    auto* rt = req.header<rtmsg>();
    rt->rtm_family = static_cast<unsigned char>(family);
    rt->rtm_dst_len = static_cast<unsigned char>(dstLen);
    rt->rtm_table = RT_TABLE_MAIN;
    rt->rtm_protocol = RTPROT_BOOT;
    // IPv6 routes are always universe scope; a link route without a scope gets link scope.
    unsigned scope = r.scope();
    if (family == AF_INET6) {
        scope = RT_SCOPE_UNIVERSE;
    } else if (scope == RT_SCOPE_UNIVERSE && !gw && oif) {
        scope = RT_SCOPE_LINK;
    }
    rt->rtm_scope = static_cast<unsigned char>(scope);
    rt->rtm_type = RTN_UNICAST;
    if (dst) req.put(RTA_DST, dst->bytes, dst->len());
    if (gw) req.put(RTA_GATEWAY, gw->bytes, gw->len());
    if (src) req.put(RTA_PREFSRC, src->bytes, src->len());
    if (oif) req.putU32(RTA_OIF, static_cast<uint32_t>(oif));
    nl.request(req, "add route", what);
}

}  // namespace

Interfaces listInterfaces() {
    netlink::Socket nl;
    auto links = listLinks(nl);
    auto addrs = listAddrs(nl);
    Interfaces out;
    for (const auto& l : links) *out.add_interfaces() = toInterface(l, addrs);
    return out;
}

Routes listRoutes() {
    netlink::Socket nl;
    auto links = listLinks(nl);
    Routes out;
    for (const auto& m : mainRoutes(nl)) *out.add_routes() = toRoute(m, links);
    return out;
}

types::Interface updateInterface(const types::Interface& iface) {
    std::string what = "interface " + (iface.name().empty() ? iface.device() : iface.name()) +
                       (iface.hwaddr().empty() ? "" : " (hwaddr " + iface.hwaddr() + ")");
    netlink::Socket nl;
    auto links = listLinks(nl);
    const Link* link = nullptr;
    if (!iface.hwaddr().empty()) {
        auto want = parseMac(iface.hwaddr());
        if (!want) {
            throw Error(StatusCode::kInvalidArgument, "update " + what + ": bad hardware address");
        }
        std::string wantText =
            formatMac(std::string_view(reinterpret_cast<const char*>(want->data()), want->size()));
        for (const auto& l : links) {
            if (l.mac == wantText) {
                link = &l;
                break;
            }
        }
    } else {
        link = findLink(links, iface.device().empty() ? iface.name() : iface.device());
        if (!link) link = findLink(links, iface.name());
    }
    if (!link) {
        throw Error(StatusCode::kNotFound,
                    "update " + what + ": no link with that " +
                        (iface.hwaddr().empty() ? "name" : "hardware address"));
    }
    const int index = link->index;
    std::string linkName = link->name;

    struct Wanted {
        IpBytes ip;
        int prefix;
        std::string text;
    };
    std::vector<Wanted> wanted;
    for (const auto& a : iface.ipaddresses()) {
        std::string addr = a.address();
        std::string mask = a.mask();
        if (auto slash = addr.find('/'); slash != std::string::npos) {
            if (mask.empty()) mask = addr.substr(slash + 1);
            addr = addr.substr(0, slash);
        }
        auto ip = parseIp(addr);
        if (!ip) {
            throw Error(StatusCode::kInvalidArgument,
                        "update " + what + ": bad address \"" + a.address() + "\"");
        }
        auto prefix = mask.empty() ? std::optional<int>(ip->family == AF_INET ? 32 : 128)
                                   : parsePrefix(mask, ip->family);
        if (!prefix) {
            throw Error(StatusCode::kInvalidArgument,
                        "update " + what + ": bad mask \"" + a.mask() + "\" for " + addr);
        }
        wanted.push_back({*ip, *prefix, addr + "/" + std::to_string(*prefix)});
    }

    if (!iface.name().empty() && iface.name() != linkName) {
        // A link must be down to be renamed.
        setLink(nl, index, linkName, 0, IFF_UP, "", 0);
        setLink(nl, index, linkName + " to " + iface.name(), 0, 0, iface.name(), 0);
        linkName = iface.name();
    }
    if (iface.mtu() != 0 && iface.mtu() != link->mtu) {
        setLink(nl, index, linkName, 0, 0, "", static_cast<uint32_t>(iface.mtu()));
    }

    // Replace the addresses; IPv6 link-local ones belong to the link, not to the config.
    for (const auto& a : listAddrs(nl)) {
        if (a.index != index) continue;
        if (a.family == AF_INET6 && a.scope == RT_SCOPE_LINK) continue;
        auto ip = parseIp(a.address);
        if (!ip) continue;
        netlink::Request req(RTM_DELADDR, 0);
        auto* ifa = req.header<ifaddrmsg>();
        ifa->ifa_family = static_cast<unsigned char>(a.family);
        ifa->ifa_prefixlen = static_cast<unsigned char>(a.prefix);
        ifa->ifa_index = static_cast<unsigned>(index);
        req.put(IFA_LOCAL, ip->bytes, ip->len());
        try {
            nl.request(req, "delete address",
                       a.address + "/" + std::to_string(a.prefix) + " from " + linkName);
        } catch (const SystemError& e) {
            // Deleting a primary IPv4 address also drops its secondaries.
            if (e.err() != EADDRNOTAVAIL) throw;
        }
    }
    for (const auto& w : wanted) {
        netlink::Request req(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
        auto* ifa = req.header<ifaddrmsg>();
        ifa->ifa_family = static_cast<unsigned char>(w.ip.family);
        ifa->ifa_prefixlen = static_cast<unsigned char>(w.prefix);
        ifa->ifa_index = static_cast<unsigned>(index);
        req.put(IFA_LOCAL, w.ip.bytes, w.ip.len());
        req.put(IFA_ADDRESS, w.ip.bytes, w.ip.len());
        if (w.ip.family == AF_INET && w.prefix < 31) {
            IpBytes brd = w.ip;
            uint32_t host = w.prefix == 0 ? 0xffffffffu : (0xffffffffu >> w.prefix);
            uint32_t v;
            std::memcpy(&v, brd.bytes, 4);
            v = htonl(ntohl(v) | host);
            std::memcpy(brd.bytes, &v, 4);
            req.put(IFA_BROADCAST, brd.bytes, 4);
        }
        nl.request(req, "add address", w.text + " to " + linkName);
    }
    setLink(nl, index, linkName, IFF_UP, IFF_UP, "", 0);

    auto after = listLinks(nl);
    auto addrs = listAddrs(nl);
    for (const auto& l : after) {
        if (l.index == index) {
            logger().with("interface", l.name).with("hwaddr", l.mac).info("interface updated");
            return toInterface(l, addrs);
        }
    }
    throw Error(StatusCode::kInternal, "update " + what + ": link vanished");
}

Routes updateRoutes(const Routes& routes) {
    netlink::Socket nl;
    auto links = listLinks(nl);
    for (const auto& m : mainRoutes(nl)) {
        if (isIpv6LinkLocalRoute(m)) continue;
        // The kernel's own routes for the interfaces' addresses stay: the shim does not send
        // them (they are protocol kernel on the host too), and gateways need them.
        if (m.header<rtmsg>()->rtm_protocol == RTPROT_KERNEL) continue;
        // The dumped message describes the route exactly: send it back as a delete.
        netlink::Request req(RTM_DELROUTE, 0);
        auto* rt = req.header<rtmsg>();
        *rt = *m.header<rtmsg>();
        Attrs a = netlink::parseAttrs(m, sizeof(rtmsg));
        for (uint16_t t : {RTA_DST, RTA_GATEWAY, RTA_OIF, RTA_PREFSRC, RTA_PRIORITY, RTA_TABLE}) {
            if (a.count(t)) req.put(t, a[t].data(), a[t].size());
        }
        try {
            nl.request(req, "delete route", describeRoute(toRoute(m, links)));
        } catch (const SystemError& e) {
            if (e.err() != ESRCH) throw;  // already gone with the one before it
        }
    }
    // Gateways must be reachable when their routes are added: link routes go first.
    std::vector<const types::Route*> ordered;
    for (const auto& r : routes.routes()) {
        if (r.gateway().empty()) ordered.push_back(&r);
    }
    for (const auto& r : routes.routes()) {
        if (!r.gateway().empty()) ordered.push_back(&r);
    }
    for (const auto* r : ordered) addRoute(nl, *r, links);
    logger().with("count", std::to_string(ordered.size())).info("routes updated");
    return listRoutes();
}

void addArpNeighbors(const ARPNeighbors& neighbors) {
    netlink::Socket nl;
    auto links = listLinks(nl);
    for (const auto& n : neighbors.arpneighbors()) {
        std::string what =
            n.toipaddress().address() + " lladdr " + n.lladdr() + " dev " + n.device();
        auto ip = parseIp(n.toipaddress().address());
        if (!ip)
            throw Error(StatusCode::kInvalidArgument, "add neighbor " + what + ": bad address");
        auto mac = parseMac(n.lladdr());
        if (!n.lladdr().empty() && !mac) {
            throw Error(StatusCode::kInvalidArgument, "add neighbor " + what + ": bad lladdr");
        }
        const Link* l = findLink(links, n.device());
        if (!l) {
            throw Error(StatusCode::kNotFound,
                        "add neighbor " + what + ": no link named \"" + n.device() + "\"");
        }
        netlink::Request req(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
        auto* nd = req.header<ndmsg>();
        nd->ndm_family = static_cast<unsigned char>(ip->family);
        nd->ndm_ifindex = l->index;
        nd->ndm_state = static_cast<uint16_t>(n.state() ? n.state() : NUD_PERMANENT);
        nd->ndm_flags = static_cast<uint8_t>(n.flags());
        nd->ndm_type = RTN_UNICAST;
        req.put(NDA_DST, ip->bytes, ip->len());
        if (mac) req.put(NDA_LLADDR, mac->data(), mac->size());
        nl.request(req, "add neighbor", what);
    }
}

void setupLoopback() {
    netlink::Socket nl;
    int index = linkIndex(nl, "lo", "set up loopback");
    setLink(nl, index, "lo", IFF_UP, IFF_UP, "", 0);
}

void setDns(const std::vector<std::string>& servers, const std::string& resolvConfPath) {
    static const char* kKeywords[] = {"nameserver", "search", "options", "domain", "sortlist"};
    std::string content;
    for (const auto& s : servers) {
        if (s.find_first_of("\r\n") != std::string::npos) {
            throw Error(StatusCode::kInvalidArgument,
                        "write " + resolvConfPath + ": DNS entry contains a newline");
        }
        std::string first = s.substr(0, s.find_first_of(" \t"));
        bool keyword = std::any_of(std::begin(kKeywords), std::end(kKeywords),
                                   [&](const char* k) { return first == k; });
        if (!keyword && !parseIp(s)) {
            throw Error(StatusCode::kInvalidArgument,
                        "write " + resolvConfPath + ": bad DNS entry \"" + s + "\"");
        }
        content += (keyword ? s : "nameserver " + s) + "\n";
    }
    // Written in place: resolv.conf is often a bind mount that a rename would not replace.
    UniqueFd fd(::open(resolvConfPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) throwErrno("open", resolvConfPath);
    size_t done = 0;
    while (done < content.size()) {
        ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            throwErrno("write", resolvConfPath);
        }
        done += static_cast<size_t>(n);
    }
}

}  // namespace kata::agent::net
