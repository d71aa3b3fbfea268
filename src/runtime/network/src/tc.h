// The tc pieces of tcfilter over rtnetlink: the ingress qdisc (handle ffff:) and the u32
// match-all filter whose single action is `mirred egress redirect` to another device.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kata/netlink/netlink.h"

namespace kata::network::tc {

// The preference our filters get (`tc filter show` prints it as "pref 1").
constexpr uint16_t kRedirectPriority = 1;

void addIngressQdisc(netlink::Socket& nl, int ifindex, const std::string& what);
bool hasIngressQdisc(netlink::Socket& nl, int ifindex, const std::string& what);
void deleteIngressQdisc(netlink::Socket& nl, int ifindex, const std::string& what);

// A u32 filter on ingress, all protocols, matching every frame: mirred egress redirect to
// targetIfindex, then stolen (the frame does not continue up this device's stack).
void addRedirectFilter(netlink::Socket& nl, int ifindex, int targetIfindex,
                       const std::string& what);

// One (priority, protocol) group of ingress filters, as dumped.
struct IngressFilter {
    uint16_t priority = 0;
    uint16_t protocol = 0;  // network byte order, as in tcm_info (ETH_P_ALL = htons(3))
    std::string kind;       // "u32"
    // Targets of the mirred egress-redirect actions; 0 when the target device is gone.
    std::vector<int> redirectTargets;
    bool otherActions = false;  // any action that is not a mirred egress redirect
};

// The ingress filters of a device; empty when it has no ingress qdisc.
std::vector<IngressFilter> ingressFilters(netlink::Socket& nl, int ifindex,
                                          const std::string& what);
void deleteIngressFilter(netlink::Socket& nl, int ifindex, const IngressFilter& filter,
                         const std::string& what);

}  // namespace kata::network::tc
