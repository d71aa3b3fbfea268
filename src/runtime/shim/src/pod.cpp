#include "pod.h"

#include <fstream>

#include "kata/common/error.h"

namespace kata::shim {

namespace {

std::string annotation(const grpc::Spec& spec, const char* key) {
    auto it = spec.annotations().find(key);
    return it == spec.annotations().end() ? "" : it->second;
}

const grpc::LinuxNamespace* findNamespace(const grpc::Spec& spec, const std::string& type) {
    if (!spec.has_linux()) return nullptr;
    for (const auto& ns : spec.linux().namespaces())
        if (ns.type() == type) return &ns;
    return nullptr;
}

// A number annotation; absent is 0, anything but a number is refused naming it.
template <typename T>
T numberAnnotation(const grpc::Spec& spec, const char* key, const std::string& cid) {
    std::string v = annotation(spec, key);
    if (v.empty()) return 0;
    try {
        size_t used = 0;
        long long n = std::stoll(v, &used);
        // A negative quota (-1) means "no limit": nothing asked.
        if (used == v.size()) return n < 0 ? 0 : static_cast<T>(n);
    } catch (const std::exception&) {
    }
    throw Error(StatusCode::kInvalidArgument, "create container " + cid + ": annotation " + key +
                                                  "=\"" + v + "\" is not a number");
}

}  // namespace

PodInfo podInfoFromSpec(const grpc::Spec& spec, const std::string& cid) {
    PodInfo pod;
    std::string type = annotation(spec, kCriContainerType);
    const char* idKey = kCriSandboxId;
    if (!type.empty()) {
        pod.podName = annotation(spec, kCriSandboxName);
        pod.podNamespace = annotation(spec, kCriSandboxNamespace);
        pod.containerName = annotation(spec, kCriContainerName);
        pod.imageName = annotation(spec, kCriImageName);
    } else if (!(type = annotation(spec, kCrioContainerType)).empty()) {
        idKey = kCrioSandboxId;
        pod.podName = annotation(spec, kCrioKubeName);
        pod.podNamespace = annotation(spec, kCrioNamespace);
        pod.imageName = annotation(spec, kCrioImageName);
    }
    if (type == "sandbox") {
        pod.role = PodRole::kSandbox;
        pod.sandboxId = cid;
        pod.resources.cpuQuota = numberAnnotation<int64_t>(spec, kCriSandboxCpuQuota, cid);
        pod.resources.cpuPeriod = numberAnnotation<int64_t>(spec, kCriSandboxCpuPeriod, cid);
        pod.resources.cpuShares = numberAnnotation<uint64_t>(spec, kCriSandboxCpuShares, cid);
        pod.resources.memoryBytes = numberAnnotation<uint64_t>(spec, kCriSandboxMemory, cid);
    } else if (type == "container") {
        pod.role = PodRole::kContainer;
        pod.sandboxId = annotation(spec, idKey);
        if (pod.sandboxId.empty()) {
            throw Error(StatusCode::kInvalidArgument,
                        "create container " + cid + ": annotation " +
                            (idKey == kCriSandboxId ? std::string(kCriContainerType)
                                                    : std::string(kCrioContainerType)) +
                            "=container without " + idKey);
        }
    } else if (type.empty()) {
        pod.role = PodRole::kStandalone;
        pod.sandboxId = cid;
    } else {
        throw Error(StatusCode::kInvalidArgument, "create container " + cid +
                                                      ": unknown container type \"" + type +
                                                      "\" (expected sandbox or container)");
    }
    if (const auto* ns = findNamespace(spec, "network")) pod.netnsPath = ns->path();
    if (const auto* ns = findNamespace(spec, "pid"))
        pod.sharesPodPidns = pod.role == PodRole::kContainer && !ns->path().empty();
    pod.hostname = spec.hostname();
    return pod;
}

void refuseHostNamespaces(const grpc::Spec& spec, const PodInfo& pod, const std::string& cid) {
    if (pod.role == PodRole::kStandalone) return;
    auto refuse = [&](const char* option, const char* ns) {
        throw Error(
            StatusCode::kInvalidArgument,
            "create container " + cid + " of pod " +
                (pod.podName.empty() ? pod.sandboxId : pod.podNamespace + "/" + pod.podName) +
                ": " + option +
                " is not supported by kata (the pod runs in a VM, which has no access to the "
                "host's " +
                ns + " namespace)");
    };
    // containerd and CRI-O leave a namespace out of the spec when the pod shares the host's.
    if (!findNamespace(spec, "network")) refuse("hostNetwork", "network");
    if (!findNamespace(spec, "pid")) refuse("hostPID", "pid");
    if (!findNamespace(spec, "ipc")) refuse("hostIPC", "ipc");
}

std::vector<std::string> dnsLinesFromSpec(const grpc::Spec& spec) {
    std::vector<std::string> lines;
    for (const auto& m : spec.mounts()) {
        if (m.destination() != "/etc/resolv.conf" || m.source().empty()) continue;
        std::ifstream in(m.source());
        std::string line;
        while (std::getline(in, line)) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.empty() || line[0] == '#' || line[0] == ';') continue;
            lines.push_back(line);
        }
    }
    return lines;
}

}  // namespace kata::shim
