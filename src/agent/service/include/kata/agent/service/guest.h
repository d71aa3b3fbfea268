// Guest-wide operations of the AgentService that do not concern one container: details of the
// guest, clock, entropy, CPU/memory hotplug, file copies into the guest, metrics.
#pragma once

#include <string>

#include "agent/agent.pb.h"
#include "kata/agent/service/config.h"

namespace kata::agent {

class Sandbox;

// `uname -r` of the running kernel.
std::string kernelRelease();

grpc::GuestDetailsResponse guestDetails(const grpc::GuestDetailsRequest& req,
                                        const AgentConfig& cfg);
void setGuestDateTime(int64_t sec, int64_t usec);
void reseedRandomDev(const std::string& data);
// Onlines offline CPUs (up to nbCpus, 0 = all) and, unless cpuOnly, offline memory blocks.
void onlineCpuMem(uint32_t nbCpus, bool cpuOnly, const std::string& sysfsRoot = "/sys");
void memHotplugByProbe(const google::protobuf::RepeatedField<uint64_t>& addrs);
// Kata's CopyFile: only below cfg.runDir; written to <path>.tmp and renamed once complete.
void copyFile(const grpc::CopyFileRequest& req, const AgentConfig& cfg);
// Prometheus text exposition of the agent's own metrics.
std::string agentMetrics(Sandbox& sandbox);

}  // namespace kata::agent
