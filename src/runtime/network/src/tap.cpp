#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <set>

#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/network/pod_network.h"
#include "rtnl.h"
#include "tc.h"

namespace kata::network {

namespace {

const log::Logger& logger() {
    static const log::Logger l("network");
    return l;
}

constexpr char kTapPrefix[] = "tap";
constexpr char kTapSuffix[] = "_kata";

// Opens /dev/net/tun (in the calling thread's namespace, where the tap is created) and makes the
// tap. IFF_VNET_HDR: QEMU's virtio-net then passes checksum/GSO offload through instead of
// computing checksums per frame; QEMU finds the flag on the fd with TUNGETIFF. IFF_TUN_EXCL: a
// tap of that name left behind is an error, not silently shared.
UniqueFd createTap(const std::string& name, const std::string& what) {
    UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!fd) throwErrno("open /dev/net/tun for tap", what);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    // IFF_TUN_EXCL is 0x8000: the flags fill ifr_flags' 16 bits, which are a (signed) short.
    ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL);
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) throwErrno("create tap", what);
    return fd;
}

bool hasOurFilter(netlink::Socket& nl, int ifindex, const std::string& what) {
    for (const auto& f : tc::ingressFilters(nl, ifindex, what)) {
        if (f.priority == tc::kRedirectPriority && f.protocol == htons(ETH_P_ALL)) return true;
    }
    return false;
}

void deleteOurFilter(netlink::Socket& nl, int ifindex, const std::string& what) {
    tc::IngressFilter f;
    f.priority = tc::kRedirectPriority;
    f.protocol = htons(ETH_P_ALL);
    f.kind = "u32";
    tc::deleteIngressFilter(nl, ifindex, f, what);
}

}  // namespace

std::string tapName(size_t n) { return kTapPrefix + std::to_string(n) + kTapSuffix; }

bool isTapName(const std::string& name) {
    const size_t prefix = sizeof kTapPrefix - 1, suffix = sizeof kTapSuffix - 1;
    if (name.size() <= prefix + suffix || name.rfind(kTapPrefix, 0) != 0) return false;
    if (name.compare(name.size() - suffix, suffix, kTapSuffix) != 0) return false;
    std::string digits = name.substr(prefix, name.size() - prefix - suffix);
    return std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
}

namespace detail {

// What one endpoint made, step by step, so that undoing removes exactly that and can be retried.
struct TapAttachment {
    std::string netnsPath;
    UniqueFd netns;  // keeps the namespace enterable (and alive) even once its path is unmounted
    Link veth;
    std::string tapName;
    int tapIndex = 0;
    UniqueFd tap;
    bool tapLink = false, tapQdisc = false, tapFilter = false;
    bool vethQdisc = false, vethFilter = false;

    std::string onVeth() const { return onDevice(veth.name, netnsPath); }
    std::string onTap() const { return onDevice(tapName, netnsPath); }
    bool anythingLeft() const {
        return tapLink || tapQdisc || tapFilter || vethQdisc || vethFilter || tap.valid();
    }

    // In the namespace: tap first (a half-made endpoint never redirects the veth into nothing),
    // then the veth's qdisc and filter.
    void make(netlink::Socket& nl) {
        tap = createTap(tapName, onTap());
        tapLink = true;
        if (::ioctl(tap.get(), TUNSETPERSIST, 1) != 0) throwErrno("make persistent tap", onTap());
        std::vector<LinkInfo> links = dumpLinks(nl, netnsPath);
        auto it = std::find_if(links.begin(), links.end(),
                               [&](const LinkInfo& l) { return l.name == tapName; });
        if (it == links.end()) {
            throw Error(StatusCode::kInternal, "created tap " + onTap() + " is not listed");
        }
        tapIndex = it->index;
        disableIpv6AddressGeneration(nl, tapIndex, onTap());
        setMtuAndUp(nl, tapIndex, veth.mtu, onTap());
        tc::addIngressQdisc(nl, tapIndex, onTap());
        tapQdisc = true;
        tc::addRedirectFilter(nl, tapIndex, veth.index, onTap());
        tapFilter = true;
        tc::addIngressQdisc(nl, veth.index, onVeth());
        vethQdisc = true;
        tc::addRedirectFilter(nl, veth.index, tapIndex, onVeth());
        vethFilter = true;
    }

    // In the namespace. Every step is tried; a step that fails stays marked for a retry and
    // the first failure is rethrown at the end. Things already gone count as removed.
    void undo(netlink::Socket& nl) {
        std::exception_ptr first;
        auto step = [&](bool& owned, const std::function<void()>& fn) {
            if (!owned) return;
            try {
                fn();
                owned = false;
            } catch (...) {
                if (!first) first = std::current_exception();
            }
        };
        std::vector<LinkInfo> links = dumpLinks(nl, netnsPath);
        // A veth that is gone took its qdisc and filter with it.
        bool vethThere = findLink(links, veth.index) != nullptr;
        step(vethFilter, [&] {
            if (vethThere && tc::hasIngressQdisc(nl, veth.index, onVeth()) &&
                hasOurFilter(nl, veth.index, onVeth())) {
                deleteOurFilter(nl, veth.index, onVeth());
            }
        });
        step(vethQdisc, [&] {
            if (vethThere && tc::hasIngressQdisc(nl, veth.index, onVeth())) {
                tc::deleteIngressQdisc(nl, veth.index, onVeth());
            }
        });
        // tapIndex is 0 when make() failed before the tap was listed; the name is ours then
        // (IFF_TUN_EXCL).
        auto t = std::find_if(links.begin(), links.end(), [&](const LinkInfo& l) {
            return l.name == tapName && (tapIndex == 0 || l.index == tapIndex);
        });
        bool tapThere = t != links.end();
        if (tapThere) tapIndex = t->index;
        step(tapFilter, [&] {
            if (tapThere && hasOurFilter(nl, tapIndex, onTap())) {
                deleteOurFilter(nl, tapIndex, onTap());
            }
        });
        step(tapQdisc, [&] {
            if (tapThere && tc::hasIngressQdisc(nl, tapIndex, onTap())) {
                tc::deleteIngressQdisc(nl, tapIndex, onTap());
            }
        });
        step(tapLink, [&] {
            if (tapThere) deleteLink(nl, tapIndex, onTap());
        });
        if (!tapLink) tap.reset();
        if (first) std::rethrow_exception(first);
    }

    void undoInNetns() {
        runInNetns(netns.get(), netnsPath, [&] {
            netlink::Socket nl;
            undo(nl);
        });
    }

    ~TapAttachment() {
        if (!anythingLeft()) return;
        try {
            undoInNetns();
        } catch (const std::exception& e) {
            logger().error("detaching " + tapName + " from " + veth.name + " failed",
                           {{"netns", netnsPath}, {"error", e.what()}});
        }
    }
};

}  // namespace detail

TapEndpoint::TapEndpoint(std::unique_ptr<detail::TapAttachment> state) : state_(std::move(state)) {}
TapEndpoint::TapEndpoint(TapEndpoint&&) noexcept = default;
TapEndpoint& TapEndpoint::operator=(TapEndpoint&&) noexcept = default;
TapEndpoint::~TapEndpoint() = default;

const Link& TapEndpoint::guestLink() const { return state_->veth; }
const std::string& TapEndpoint::tapName() const { return state_->tapName; }
int TapEndpoint::tapIndex() const { return state_->tapIndex; }
int TapEndpoint::tapFd() const { return state_ ? state_->tap.get() : -1; }
bool TapEndpoint::attached() const { return state_ && state_->anythingLeft(); }

void TapEndpoint::detach() {
    if (!attached()) return;
    state_->undoInNetns();
}

std::vector<TapEndpoint> attach(const std::string& netnsPath) {
    UniqueFd netns = detail::openNetns(netnsPath);
    std::vector<TapEndpoint> endpoints;
    runInNetns(netns.get(), netnsPath, [&] {
        netlink::Socket nl;
        std::vector<Link> links =
            detail::linksWithAddresses(nl, detail::dumpLinks(nl, netnsPath), netnsPath);
        for (size_t i = 0; i < links.size(); ++i) {
            auto state = std::make_unique<detail::TapAttachment>();
            state->netnsPath = netnsPath;
            state->netns.reset(::fcntl(netns.get(), F_DUPFD_CLOEXEC, 0));
            if (!state->netns) throwErrno("dup network namespace fd", netnsPath);
            state->veth = links[i];
            state->tapName = tapName(i);
            try {
                state->make(nl);
            } catch (...) {
                // Already in the namespace: undo here; the destructor retries what is left.
                try {
                    state->undo(nl);
                } catch (const std::exception& e) {
                    logger().warn("undoing a failed attach of " + state->veth.name,
                                  {{"netns", netnsPath}, {"error", e.what()}});
                }
                throw;
            }
            logger().info("attached " + state->tapName + " to " + state->veth.name,
                          {{"netns", netnsPath},
                           {"mac", state->veth.mac},
                           {"mtu", std::to_string(state->veth.mtu)}});
            endpoints.push_back(TapEndpoint(std::move(state)));
        }
    });
    return endpoints;
}

void detachAll(const std::string& netnsPath) {
    runInNetns(netnsPath, [&] {
        netlink::Socket nl;
        std::vector<detail::LinkInfo> links = detail::dumpLinks(nl, netnsPath);
        std::set<int> taps;
        for (const auto& l : links) {
            if (isTapName(l.name)) taps.insert(l.index);
        }
        auto leftover = [&](int target) {
            return taps.count(target) || !detail::findLink(links, target);
        };
        for (const auto& l : links) {
            if (taps.count(l.index)) continue;
            std::string what = detail::onDevice(l.name, netnsPath);
            if (!tc::hasIngressQdisc(nl, l.index, what)) continue;
            std::vector<tc::IngressFilter> filters = tc::ingressFilters(nl, l.index, what);
            size_t removed = 0;
            for (const auto& f : filters) {
                if (f.kind != "u32" || f.otherActions || f.redirectTargets.empty()) continue;
                if (!std::all_of(f.redirectTargets.begin(), f.redirectTargets.end(), leftover)) {
                    continue;
                }
                tc::deleteIngressFilter(nl, l.index, f, what);
                ++removed;
            }
            // An empty ingress qdisc next to a leftover tap: a shim died between adding the
            // qdisc and its filter.
            bool empty = filters.size() == removed;
            if (empty && (removed > 0 || !taps.empty())) tc::deleteIngressQdisc(nl, l.index, what);
        }
        for (int index : taps) {
            const detail::LinkInfo* t = detail::findLink(links, index);
            detail::deleteLink(nl, index, detail::onDevice(t->name, netnsPath));
            logger().info("removed leftover " + t->name, {{"netns", netnsPath}});
        }
    });
}

}  // namespace kata::network
