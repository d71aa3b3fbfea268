// The sandbox's view of the pod network (Kata's tcfilter model): what is plugged into the VM and
// what the agent is told. A seam: unit tests give a fake; TcFilterNetwork (kata_pod_network, tap
// + tc mirred in the pod's netns) is the implementation that ships.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/agent.pb.h"
#include "agent/types.pb.h"
#include "kata/hypervisor/hypervisor.h"

namespace kata::shim {

// The guest's side of the pod network, in the order the agent gets it: UpdateInterface for each
// interface, then UpdateRoutes, then AddARPNeighbors.
struct GuestNetwork {
    std::vector<hypervisor::NetDevice> nics;  // cold-plugged into the VM (tap fds stay owned)
    std::vector<types::Interface> interfaces;
    grpc::Routes routes;           // without the kernel's own (protocol kernel) routes
    grpc::ARPNeighbors neighbors;  // permanent entries only
};

// Owns what was made in the pod's netns; destroying it removes it again (taps, qdiscs, filters).
class PodNetwork {
  public:
    virtual ~PodNetwork() = default;
    virtual const GuestNetwork& guest() const = 0;
};

// Returns the attached network (never null) or throws naming the netns and the device.
using AttachNetworkFn = std::function<std::unique_ptr<PodNetwork>(const std::string& netnsPath)>;

// The shipped implementation: every link of netnsPath that has addresses gets a tap and tc
// mirred filters both ways. Throws naming the netns and the device.
std::unique_ptr<PodNetwork> attachTcFilterNetwork(const std::string& netnsPath);

}  // namespace kata::shim
