// The agent's ttrpc services: grpc.AgentService, grpc.Health and grpc.Image, as thin
// translations of requests onto the Sandbox and the guest helpers.
#pragma once

#include "kata/agent/service/sandbox.h"
#include "kata/ttrpc/ttrpc.h"

namespace kata::agent {

inline constexpr const char* kAgentServiceName = "grpc.AgentService";
inline constexpr const char* kHealthServiceName = "grpc.Health";
inline constexpr const char* kImageServiceName = "grpc.Image";
// What Health/Version reports as grpc_version (Kata's agent API version).
inline constexpr const char* kAgentApiVersion = "0.0.1";

void registerServices(ttrpc::Server& server, Sandbox& sandbox);

}  // namespace kata::agent
