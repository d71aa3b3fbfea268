// What a container's OCI spec says about the pod it belongs to: its role (from containerd's or
// CRI-O's annotations), the pod's network namespace, hostname and DNS, and whether the pod asks
// for host namespaces a VM cannot give. Pure functions of the spec, unit tested.
#pragma once

#include <string>
#include <vector>

#include "agent/oci.pb.h"
#include "kata/config/config.h"

namespace kata::shim {

// containerd's CRI annotations (the names kubelet-side tooling and users grep for).
inline constexpr const char* kCriContainerType = "io.kubernetes.cri.container-type";
inline constexpr const char* kCriSandboxId = "io.kubernetes.cri.sandbox-id";
inline constexpr const char* kCriSandboxName = "io.kubernetes.cri.sandbox-name";
inline constexpr const char* kCriSandboxNamespace = "io.kubernetes.cri.sandbox-namespace";
inline constexpr const char* kCriContainerName = "io.kubernetes.cri.container-name";
inline constexpr const char* kCriImageName = "io.kubernetes.cri.image-name";
inline constexpr const char* kCriSandboxCpuQuota = "io.kubernetes.cri.sandbox-cpu-quota";
inline constexpr const char* kCriSandboxCpuPeriod = "io.kubernetes.cri.sandbox-cpu-period";
inline constexpr const char* kCriSandboxCpuShares = "io.kubernetes.cri.sandbox-cpu-shares";
inline constexpr const char* kCriSandboxMemory = "io.kubernetes.cri.sandbox-memory";
// CRI-O's.
inline constexpr const char* kCrioContainerType = "io.kubernetes.cri-o.ContainerType";
inline constexpr const char* kCrioSandboxId = "io.kubernetes.cri-o.SandboxID";
inline constexpr const char* kCrioKubeName = "io.kubernetes.cri-o.KubeName";
inline constexpr const char* kCrioNamespace = "io.kubernetes.cri-o.Namespace";
inline constexpr const char* kCrioImageName = "io.kubernetes.cri-o.ImageName";

enum class PodRole {
    kStandalone,  // no CRI annotations (ctr run): the container is its own sandbox
    kSandbox,     // the pod's sandbox (pause) container: it creates the VM
    kContainer,   // a workload container joining an existing sandbox
};

struct PodInfo {
    PodRole role = PodRole::kStandalone;
    std::string sandboxId;  // the VM's id: the sandbox container's id
    std::string podName, podNamespace, containerName, imageName;
    std::string netnsPath;  // linux.namespaces[network].path; empty = a new, empty netns
    std::string hostname;   // the sandbox spec's hostname
    // The container shares the sandbox's pid namespace (shareProcessNamespace).
    bool sharesPodPidns = false;
    // What the pod asks for as a whole (sandbox containers only).
    config::PodResources resources;
};

// Reads the role and the pod facts for container cid. Throws kInvalidArgument naming the
// annotation when a workload container does not say which sandbox it belongs to.
PodInfo podInfoFromSpec(const grpc::Spec& spec, const std::string& cid);

// A pod container (sandbox or workload) that would share the host's network, pid or ipc
// namespace (hostNetwork, hostPID, hostIPC): none of them exists inside a VM. Throws
// kInvalidArgument naming the option.
void refuseHostNamespaces(const grpc::Spec& spec, const PodInfo& pod, const std::string& cid);

// The sandbox's DNS configuration for CreateSandboxRequest.dns: the lines of the resolv.conf
// the spec bind mounts on /etc/resolv.conf (empty when there is none or it cannot be read).
std::vector<std::string> dnsLinesFromSpec(const grpc::Spec& spec);

}  // namespace kata::shim
