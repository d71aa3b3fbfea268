// Takes every TCP connection made to 127.0.0.1 or [::1] inside a network namespace, whatever
// its port, onto one listening socket per family: an eBPF program of type
// BPF_PROG_TYPE_SK_LOOKUP, attached to the namespace with a BPF link, picks the socket from a
// SOCKMAP for each incoming SYN whose destination is the loopback address (bpf_sk_assign). The
// accepted socket's local address (getsockname) is the address and port that were dialed.
// Connections to any other address of the namespace (the pod IP, what CNI's portmap DNATs to)
// are left to the kernel's own lookup.
//
// It is how the shim serves CRI PortForward for a VM: containerd dials localhost:<port> in the
// pod's netns, where nothing else listens, and the shim relays what it accepts into the guest.
// Needs Linux >= 5.9 and CAP_BPF/CAP_NET_ADMIN (root); attach() says which part the kernel
// refused. The program is raw BPF instructions loaded through bpf(2): no library.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kata/common/fd.h"

namespace kata::network {

class LoopbackIntercept {
  public:
    // Creates the listening sockets inside the namespace (127.0.0.1:<ephemeral>, and
    // [::1]:<ephemeral> when the namespace has IPv6), puts them in a SOCKMAP and attaches the
    // program. Throws kata::Error with code kUnavailable when the kernel refuses BPF or
    // sk_lookup ("load BPF_PROG_TYPE_SK_LOOKUP program: Invalid argument (EINVAL); verifier:
    // ..."), other codes for other failures; nothing is left behind then.
    static std::unique_ptr<LoopbackIntercept> attach(const std::string& netnsPath);
    // Closing the link detaches the program from the namespace.
    ~LoopbackIntercept() = default;
    LoopbackIntercept(const LoopbackIntercept&) = delete;
    LoopbackIntercept& operator=(const LoopbackIntercept&) = delete;

    // The listening sockets (non-blocking), for whoever accepts. Closing one takes it out of
    // the SOCKMAP: its family's connections are then refused again.
    std::vector<UniqueFd> takeListeners();

  private:
    LoopbackIntercept() = default;
    UniqueFd link_;  // the only reference that keeps the program (and its map) attached
    std::vector<UniqueFd> listeners_;
};

}  // namespace kata::network
