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
