// Link and address queries and link changes over the shared rtnetlink client, for the calling
// thread's namespace; netnsPath only goes into error messages.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kata/netlink/netlink.h"
#include "kata/network/pod_network.h"

namespace kata::network::detail {

// Opens a network namespace (O_RDONLY | O_CLOEXEC): "open network namespace <path>: ..." on error.
UniqueFd openNetns(const std::string& netnsPath);

// "eth0 in netns /run/netns/x": the <what> of every error about a device.
std::string onDevice(const std::string& device, const std::string& netnsPath);

struct LinkInfo {
    int index = 0;
    std::string name;
    unsigned flags = 0;  // IFF_*
    uint32_t mtu = 0;
    std::string mac;
};

std::vector<LinkInfo> dumpLinks(netlink::Socket& nl, const std::string& netnsPath);
// scan()'s links: lo, our taps and links without addresses left out; by ifindex.
std::vector<Link> linksWithAddresses(netlink::Socket& nl, const std::vector<LinkInfo>& links,
                                     const std::string& netnsPath);
const LinkInfo* findLink(const std::vector<LinkInfo>& links, int index);

// Sets the MTU and brings the link up.
void setMtuAndUp(netlink::Socket& nl, int index, uint32_t mtu, const std::string& what);
// Stops the kernel from giving the link an IPv6 link-local address (so it sends no NDP/MLD of
// its own into the guest). Best effort: a kernel without IPv6 has nothing to stop.
void disableIpv6AddressGeneration(netlink::Socket& nl, int index, const std::string& what);
void deleteLink(netlink::Socket& nl, int index, const std::string& what);

}  // namespace kata::network::detail
