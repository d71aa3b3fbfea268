// The agent's cgroup statistics of a container as containerd's Task.Stats answer
// (io.containerd.cgroups.v1.Metrics, what `ctr task metrics` and the CRI read).
#pragma once

#include <google/protobuf/any.pb.h>

#include "agent/agent.pb.h"
#include "containerd/cgroups/stats/v1/metrics.pb.h"

namespace kata::shim {

io::containerd::cgroups::v1::Metrics metricsFromAgentStats(const grpc::StatsContainerResponse& s);
// type_url "io.containerd.cgroups.v1.Metrics".
google::protobuf::Any packMetrics(const io::containerd::cgroups::v1::Metrics& m);

}  // namespace kata::shim
