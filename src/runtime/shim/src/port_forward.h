// CRI PortForward for a pod whose containers run in a VM. containerd serves PortForward by
// dialing localhost:<port> inside the pod's network namespace on the host, where nothing of the
// pod listens. The shim takes every TCP connection to 127.0.0.1 / [::1] there, whatever the
// port (kata::network::LoopbackIntercept: an sk_lookup BPF program), and relays each over the
// VM's port-forward channel (virtio-serial port kata.portforward.0) to the agent, which
// connects to the same port on the guest's loopback, where the pod's containers listen.
#pragma once

#include <memory>
#include <string>

namespace kata::network {
class LoopbackIntercept;
}
namespace kata::portforward {
class Relay;
}

namespace kata::shim {

class PortForward {
  public:
    // Never throws: when the kernel refuses the intercept or the channel cannot be reached it
    // logs once why PortForward is unavailable for the pod and returns null; the pod runs on.
    // channelAddress: Hypervisor::portForwardAddress() ("unix://..."; "vsock://cid:port" once
    // the agent serves one); empty = the VM has no channel.
    static std::unique_ptr<PortForward> start(const std::string& sandboxId,
                                              const std::string& netnsPath,
                                              const std::string& channelAddress);
    // Detaches the BPF program, then resets every relayed connection and closes the channel.
    ~PortForward();
    PortForward(const PortForward&) = delete;
    PortForward& operator=(const PortForward&) = delete;

  private:
    PortForward() = default;
    std::unique_ptr<network::LoopbackIntercept> intercept_;
    std::unique_ptr<portforward::Relay> relay_;
};

}  // namespace kata::shim
