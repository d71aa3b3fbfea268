// The guest end of CRI PortForward: the agent serves the port-forward channel (virtio-serial
// port kata.portforward.0, docs/CONTRACTS.md) and connects each stream the shim opens to
// 127.0.0.1:<port> (then [::1]:<port>) in its own network namespace, which the pod's
// containers share (the shim drops the spec's network namespace).
#pragma once

#include "kata/agent/service/config.h"

namespace kata::agent {

// Starts a thread that finds the port (it is on the agent channel's controller, so it is
// there by the time the agent channel is) and relays for as long as the agent runs. A VM
// without the port (no pod netns on the host) is logged once and left alone.
void startPortForwardService(const AgentConfig& cfg);

}  // namespace kata::agent
