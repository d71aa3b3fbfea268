#include "pod.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "kata/common/error.h"
#include "kata/oci/spec.h"

using namespace kata;
using namespace kata::shim;

namespace {

grpc::Spec spec(const std::string& json) { return oci::specFromJson(json); }

std::string podSpec(const std::string& annotations, const std::string& namespaces) {
    return R"({"ociVersion": "1.0.2", "hostname": "web-0", "process": {"args": ["x"], "cwd": "/"},
               "linux": {"namespaces": )" +
           namespaces + R"(}, "annotations": {)" + annotations + "}}";
}

const char* kAllNs =
    R"([{"type": "network", "path": "/var/run/netns/cni-9"}, {"type": "pid"}, {"type": "ipc"},
        {"type": "uts"}, {"type": "mount"}])";

}  // namespace

TEST(PodInfo, ContainerdSandboxContainerIsTheSandbox) {
    auto p = podInfoFromSpec(spec(podSpec(R"("io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-name": "web", "io.kubernetes.cri.sandbox-namespace": "prod")",
                                          kAllNs)),
                             "abc");
    EXPECT_EQ(p.role, PodRole::kSandbox);
    EXPECT_EQ(p.sandboxId, "abc");
    EXPECT_EQ(p.podName, "web");
    EXPECT_EQ(p.podNamespace, "prod");
    EXPECT_EQ(p.netnsPath, "/var/run/netns/cni-9");
    EXPECT_EQ(p.hostname, "web-0");
}

TEST(PodInfo, WorkloadContainerNamesItsSandboxAndMaySharePidns) {
    auto p = podInfoFromSpec(spec(podSpec(R"("io.kubernetes.cri.container-type": "container",
                        "io.kubernetes.cri.sandbox-id": "abc",
                        "io.kubernetes.cri.container-name": "app",
                        "io.kubernetes.cri.image-name": "docker.io/library/busybox:latest")",
                                          R"([{"type": "network", "path": "/proc/7/ns/net"},
                         {"type": "pid", "path": "/proc/7/ns/pid"}, {"type": "ipc"}])")),
                             "def");
    EXPECT_EQ(p.role, PodRole::kContainer);
    EXPECT_EQ(p.sandboxId, "abc");
    EXPECT_EQ(p.containerName, "app");
    EXPECT_EQ(p.imageName, "docker.io/library/busybox:latest");
    EXPECT_TRUE(p.sharesPodPidns);
}

TEST(PodInfo, CrioAnnotations) {
    auto p = podInfoFromSpec(spec(podSpec(R"("io.kubernetes.cri-o.ContainerType": "container",
                                             "io.kubernetes.cri-o.SandboxID": "sb1",
                                             "io.kubernetes.cri-o.KubeName": "web")",
                                          kAllNs)),
                             "c1");
    EXPECT_EQ(p.role, PodRole::kContainer);
    EXPECT_EQ(p.sandboxId, "sb1");
    EXPECT_EQ(p.podName, "web");
}

TEST(PodInfo, NoAnnotationsIsAStandaloneContainer) {
    auto p = podInfoFromSpec(spec(podSpec("", R"([{"type": "network"}])")), "c1");
    EXPECT_EQ(p.role, PodRole::kStandalone);
    EXPECT_EQ(p.sandboxId, "c1");
    EXPECT_EQ(p.netnsPath, "");
    // ctr run --net-host etc. is not a pod: nothing to refuse.
    EXPECT_NO_THROW(refuseHostNamespaces(spec(podSpec("", "[]")), p, "c1"));
}

TEST(PodInfo, BadAnnotationsAreRefusedNamingThem) {
    try {
        podInfoFromSpec(spec(podSpec(R"("io.kubernetes.cri.container-type": "container")", kAllNs)),
                        "c1");
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), StatusCode::kInvalidArgument);
        EXPECT_NE(std::string(e.what()).find("io.kubernetes.cri.sandbox-id"), std::string::npos);
    }
    try {
        podInfoFromSpec(spec(podSpec(R"("io.kubernetes.cri.container-type": "podman")", kAllNs)),
                        "c1");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("\"podman\""), std::string::npos);
    }
}

TEST(PodInfo, HostNamespacesAreRefusedNamingTheOption) {
    const std::string sb = R"("io.kubernetes.cri.container-type": "sandbox")";
    auto check = [&](const std::string& ns, const std::string& option) {
        auto s = spec(podSpec(sb, ns));
        try {
            refuseHostNamespaces(s, podInfoFromSpec(s, "p1"), "p1");
            ADD_FAILURE() << option;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(option), std::string::npos) << e.what();
        }
    };
    check(R"([{"type": "pid"}, {"type": "ipc"}])", "hostNetwork");
    check(R"([{"type": "network"}, {"type": "ipc"}])", "hostPID");
    check(R"([{"type": "network"}, {"type": "pid"}])", "hostIPC");
    auto ok = spec(podSpec(sb, kAllNs));
    EXPECT_NO_THROW(refuseHostNamespaces(ok, podInfoFromSpec(ok, "p1"), "p1"));
}

TEST(PodInfo, DnsLinesComeFromTheResolvConfMount) {
    char path[] = "/tmp/pod-resolv-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ::close(fd);
    std::ofstream(path) << "# generated\nnameserver 10.96.0.10\nsearch default.svc.cluster.local\n"
                           "\noptions ndots:5\n";
    auto s =
        spec(std::string(R"({"ociVersion": "1.0.2", "mounts": [{"destination": "/etc/resolv.conf",
        "type": "bind", "source": ")") +
             path + R"(", "options": ["rbind", "ro"]}]})");
    EXPECT_EQ(dnsLinesFromSpec(s),
              (std::vector<std::string>{"nameserver 10.96.0.10", "search default.svc.cluster.local",
                                        "options ndots:5"}));
    std::remove(path);
    EXPECT_TRUE(dnsLinesFromSpec(spec(R"({"ociVersion": "1.0.2"})")).empty());
}

TEST(PodInfo, SandboxSizingAnnotations) {
    auto p = podInfoFromSpec(spec(podSpec(R"("io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-cpu-quota": "150000", "io.kubernetes.cri.sandbox-cpu-period": "100000",
        "io.kubernetes.cri.sandbox-cpu-shares": "1536", "io.kubernetes.cri.sandbox-memory": "268435456")",
                                          kAllNs)),
                             "p1");
    EXPECT_EQ(p.resources.cpuQuota, 150000);
    EXPECT_EQ(p.resources.cpuPeriod, 100000);
    EXPECT_EQ(p.resources.cpuShares, 1536u);
    EXPECT_EQ(p.resources.memoryBytes, 268435456u);

    config::RuntimeConfig c;
    c.hypervisor.defaultVcpus = 1;
    c.hypervisor.defaultMemoryMiB = 256;
    config::applyStaticSandboxSizing(c, p.resources);
    EXPECT_EQ(c.hypervisor.defaultVcpus, 1u) << "off by default: the VM is not resized";
    c.runtime.staticSandboxResourceMgmt = true;
    config::applyStaticSandboxSizing(c, p.resources);
    EXPECT_EQ(c.hypervisor.defaultVcpus, 3u) << "1 + ceil(1.5)";
    EXPECT_EQ(c.hypervisor.defaultMemoryMiB, 512u) << "256 + 256";

    config::RuntimeConfig d;
    d.runtime.staticSandboxResourceMgmt = true;
    d.runtime.staticSandboxDefaultWorkloadMemMiB = 128;
    d.runtime.staticSandboxDefaultWorkloadVcpus = 1;
    d.hypervisor.defaultMemoryMiB = 256;
    config::applyStaticSandboxSizing(d, {});
    EXPECT_EQ(d.hypervisor.defaultVcpus, 2u) << "a pod that asks nothing gets the defaults";
    EXPECT_EQ(d.hypervisor.defaultMemoryMiB, 384u);

    try {
        podInfoFromSpec(spec(podSpec(R"("io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-memory": "lots")",
                                     kAllNs)),
                        "p1");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("io.kubernetes.cri.sandbox-memory=\"lots\""),
                  std::string::npos)
            << e.what();
    }
}
