// Process capabilities (all five sets) through libcap.
#pragma once

#include <vector>

#include "agent/oci.pb.h"

namespace kata::jail {

struct CapabilityPlan {
    bool present = false;  // false: leave the capabilities as the user switch leaves them
    std::vector<int> bounding, effective, inheritable, permitted, ambient;
};

// Throws kInvalidArgument naming an unknown capability.
CapabilityPlan planCapabilities(const grpc::Process& process);

// Child side, before the user switch (needs CAP_SETPCAP).
void childDropBounding(int syncFd, const CapabilityPlan& plan);
// Child side, after the user switch.
void childApplyCapabilities(int syncFd, const CapabilityPlan& plan);

}  // namespace kata::jail
