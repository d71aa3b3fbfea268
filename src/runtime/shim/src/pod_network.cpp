#include "pod_network.h"

#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include "kata/network/pod_network.h"

namespace kata::shim {

namespace {

types::IPFamily familyOf(int af) { return af == AF_INET6 ? types::v6 : types::v4; }

// Kata's tcfilter endpoints: the taps live in the pod's netns; the guest NIC is the veth's twin.
class TcFilterNetwork : public PodNetwork {
  public:
    explicit TcFilterNetwork(const std::string& netnsPath) {
        network::NetnsScan scan = network::scan(netnsPath);
        endpoints_ = network::attach(netnsPath);
        for (size_t i = 0; i < endpoints_.size(); ++i) {
            const network::Link& link = endpoints_[i].guestLink();
            hypervisor::NetDevice nic;
            nic.id = "net" + std::to_string(i);
            nic.mac = link.mac;
            nic.mtu = link.mtu;
            nic.tapFd = endpoints_[i].tapFd();
            guest_.nics.push_back(nic);

            types::Interface iface;
            iface.set_device(link.name);
            iface.set_name(link.name);
            iface.set_hwaddr(link.mac);
            iface.set_mtu(link.mtu);
            for (const auto& a : link.addresses) {
                types::IPAddress* ip = iface.add_ipaddresses();
                ip->set_family(familyOf(a.family));
                ip->set_address(a.address);
                ip->set_mask(std::to_string(a.prefixLength));
            }
            guest_.interfaces.push_back(iface);
        }
        for (const auto& r : scan.routes) {
            // The kernel makes its own routes for the guest's addresses.
            if (r.protocol == RTPROT_KERNEL) continue;
            if (!hasGuestLink(r.device)) continue;
            types::Route* out = guest_.routes.add_routes();
            if (!r.destination.empty())
                out->set_dest(r.destination + "/" + std::to_string(r.prefixLength));
            out->set_gateway(r.gateway);
            out->set_device(r.device);
            out->set_source(r.source);
            out->set_scope(static_cast<uint32_t>(r.scope));
            out->set_family(familyOf(r.family));
        }
        for (const auto& n : scan.neighbors) {
            if (!(n.state & NUD_PERMANENT) || n.mac.empty() || !hasGuestLink(n.device)) continue;
            types::ARPNeighbor* out = guest_.neighbors.add_arpneighbors();
            out->mutable_toipaddress()->set_family(familyOf(n.family));
            out->mutable_toipaddress()->set_address(n.ip);
            out->set_device(n.device);
            out->set_lladdr(n.mac);
            out->set_state(n.state);
        }
    }
    const GuestNetwork& guest() const override { return guest_; }

  private:
    bool hasGuestLink(const std::string& name) const {
        for (const auto& ep : endpoints_)
            if (ep.guestLink().name == name) return true;
        return false;
    }
    std::vector<network::TapEndpoint> endpoints_;  // detached when destroyed
    GuestNetwork guest_;
};

}  // namespace

std::unique_ptr<PodNetwork> attachTcFilterNetwork(const std::string& netnsPath) {
    return std::make_unique<TcFilterNetwork>(netnsPath);
}

}  // namespace kata::shim
