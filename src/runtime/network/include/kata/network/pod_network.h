// The host side of Kata's `tcfilter` pod networking. In the pod's network namespace (where CNI
// put a veth with addresses) each link that has addresses gets a tap, `ingress` qdiscs on both,
// and on each a u32 match-all filter whose action is `mirred egress redirect` to the other: what
// arrives on the veth leaves through the tap (to QEMU's virtio-net), what QEMU writes into the
// tap leaves through the veth. The guest NIC takes the veth's MAC and MTU; scan() reads what the
// guest agent is sent (addresses, routes, neighbours).
//
// Every call here runs its netlink work on a short-lived thread that entered the namespace, so
// the calling thread (and every other thread of the shim) never changes namespace. Errors are
// kata::Error / kata::SystemError naming the operation, the device, the netns path and the
// reason: "add ingress qdisc on eth0 in netns /run/netns/cni-1 (kernel: ...): File exists
// (EEXIST)".
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kata/common/fd.h"

namespace kata::network {

namespace detail {
struct TapAttachment;
}

// Enters a network namespace on the calling thread (setns) and returns the thread to the
// namespace it had before on destruction. Only this thread moves. Destroy it on the thread that
// created it; if the way back fails the process aborts, since a thread silently left in a pod's
// namespace would misdirect whatever it does next.
class NetnsGuard {
  public:
    explicit NetnsGuard(const std::string& netnsPath);
    // Enters an already opened namespace; netnsPath is only used in error messages.
    NetnsGuard(int netnsFd, const std::string& netnsPath);
    ~NetnsGuard();
    NetnsGuard(const NetnsGuard&) = delete;
    NetnsGuard& operator=(const NetnsGuard&) = delete;

  private:
    void enter(int netnsFd);
    std::string path_;
    UniqueFd original_;
};

// Runs fn on a new thread that entered the namespace and waits for it; rethrows what fn throws.
void runInNetns(const std::string& netnsPath, const std::function<void()>& fn);
void runInNetns(int netnsFd, const std::string& netnsPath, const std::function<void()>& fn);

struct IpAddress {
    int family = 0;        // AF_INET or AF_INET6
    std::string address;   // "10.123.0.2", "fd00::2"
    int prefixLength = 0;  // 24
    bool operator==(const IpAddress&) const = default;
};

struct Link {
    std::string name;  // "eth0"
    int index = 0;     // ifindex in its netns
    std::string mac;   // "02:00:0a:7b:00:02", lowercase
    uint32_t mtu = 0;
    // Every address but IPv6 link-local ones (the guest makes its own from the MAC).
    std::vector<IpAddress> addresses;
};

// A unicast route of the main table.
struct Route {
    int family = 0;
    std::string destination;  // network address; "" for a default route
    int prefixLength = 0;     // 0 for a default route
    std::string gateway;      // "" when on-link
    std::string source;       // preferred source (RTA_PREFSRC), "" when unset
    std::string device;       // output link; "" when the route has none (multipath)
    int scope = 0;            // RT_SCOPE_UNIVERSE (0), RT_SCOPE_LINK (253), ...
    int protocol = 0;         // RTPROT_KERNEL (2), RTPROT_BOOT (3), RTPROT_STATIC (4), ...
};

// An IPv4 (ARP) or IPv6 (NDP) neighbour entry.
struct Neighbor {
    int family = 0;
    std::string ip;
    std::string mac;  // "" while unresolved
    std::string device;
    uint16_t state = 0;  // NUD_PERMANENT (0x80), NUD_REACHABLE (0x02), ... (linux/neighbour.h)
};

struct NetnsScan {
    // Links with at least one address (see Link::addresses), by ifindex; never lo, never one of
    // our taps.
    std::vector<Link> links;
    // Every route and neighbour of the namespace, unfiltered: the caller decides what the guest
    // gets (Kata leaves out protocol-kernel routes and sends only permanent neighbours).
    std::vector<Route> routes;
    std::vector<Neighbor> neighbors;
};

NetnsScan scan(const std::string& netnsPath);

// "tap<n>_kata": the tap of the n-th link with addresses, the name detachAll recognises.
std::string tapName(size_t n);
bool isTapName(const std::string& name);

// One attached link: owns the tap (and its open fd), both ingress qdiscs and both filters.
// Destroying it detaches (errors are logged); a moved-from endpoint owns nothing and only
// attached() and tapFd() may be asked. One owner: calls on one endpoint are not synchronised.
class TapEndpoint {
  public:
    TapEndpoint(TapEndpoint&&) noexcept;
    TapEndpoint& operator=(TapEndpoint&&) noexcept;
    ~TapEndpoint();

    // The veth as it was when attached: what the guest NIC takes (name, MAC, MTU, addresses).
    const Link& guestLink() const;
    const std::string& tapName() const;
    int tapIndex() const;
    // The tap's queue, opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and O_CLOEXEC: every
    // frame read or written carries a struct virtio_net_hdr (10 bytes until someone sets
    // TUNSETVNETHDRSZ). QEMU takes it as `-netdev tap,id=<id>,fd=<N>` (it detects the vnet header
    // itself; vnet_hdr= is not allowed with fd=). The caller dup2()s it into QEMU; -1 once
    // detached.
    int tapFd() const;
    bool attached() const;

    // Removes the veth's filter and qdisc, then the tap's, then the tap, and closes the fd: the
    // namespace is as CNI left it. Idempotent; what fails is thrown and retried by the
    // destructor.
    void detach();

  private:
    explicit TapEndpoint(std::unique_ptr<detail::TapAttachment> state);
    friend std::vector<TapEndpoint> attach(const std::string& netnsPath);
    std::unique_ptr<detail::TapAttachment> state_;
};

// Attaches every link of scan(netnsPath).links, the n-th one to tapName(n), whose MTU is the
// link's, up. All or nothing: on failure whatever was made is removed again before the error is
// thrown. A tap name that already exists fails with EBUSY (run detachAll first), a link that
// already has an ingress qdisc with EEXIST. No link with addresses: an empty vector.
std::vector<TapEndpoint> attach(const std::string& netnsPath);

// Cleans up after a shim that died while attached: deletes every tap<n>_kata link and, on every
// other link, the u32 ingress filters whose mirred redirects all go to one of those taps (or to
// a device that no longer exists), and that link's ingress qdisc once no filter is left on it
// (an empty one too when a leftover tap shows a shim died between adding qdisc and filter).
// Other qdiscs and filters are left alone. Idempotent.
void detachAll(const std::string& netnsPath);

}  // namespace kata::network
