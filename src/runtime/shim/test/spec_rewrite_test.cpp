#include <gtest/gtest.h>

#include "kata/oci/spec.h"
#include "spec_rewrite.h"

using namespace kata::shim;

namespace {
// The shape of what `ctr run` writes (trimmed), plus a volume, a CRI /dev/shm and hooks.
const char* kSpec = R"({
  "ociVersion": "1.0.2-dev",
  "process": {"user": {"uid": 0, "gid": 0}, "args": ["uname", "-r"], "env": ["PATH=/bin"],
              "cwd": "/", "selinuxLabel": "system_u:system_r:container_t:s0"},
  "root": {"path": "rootfs"},
  "hostname": "t",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
    {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "ro"]},
    {"destination": "/etc/hosts", "source": "/var/lib/x/hosts", "options": ["bind", "rw"]},
    {"destination": "/dev/shm", "type": "bind", "source": "/run/x/shm", "options": ["rbind"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs"}
  ],
  "hooks": {"prestart": [{"path": "/usr/bin/hook"}]},
  "annotations": {"a": "b"},
  "linux": {
    "resources": {
      "devices": [{"allow": false, "access": "rwm"}],
      "memory": {"limit": 134217728},
      "cpu": {"shares": 512, "cpus": "0-3", "mems": "0"},
      "pids": {"limit": 100},
      "blockIO": {"weight": 10}
    },
    "cgroupsPath": "system.slice:cri-containerd:abc",
    "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                   {"type": "network", "path": "/var/run/netns/cni-1"}, {"type": "cgroup"}],
    "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
    "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"},
    "mountLabel": "system_u:object_r:container_file_t:s0",
    "maskedPaths": ["/proc/kcore"]
  }
})";
}  // namespace

TEST(SpecRewrite, HostBindMountsSkipSystemDestinations) {
    grpc::Spec spec = kata::oci::specFromJson(kSpec);
    auto binds = hostBindMounts(spec, "c1");
    ASSERT_EQ(binds.size(), 2u);
    EXPECT_EQ(binds[0].index, 2);
    EXPECT_EQ(binds[0].hostSource, "/srv/data");
    EXPECT_EQ(binds[0].shareName, "c1-2-data");
    EXPECT_TRUE(binds[0].readonly);
    EXPECT_EQ(binds[1].hostSource, "/var/lib/x/hosts");
    EXPECT_EQ(binds[1].shareName, "c1-3-hosts");
    EXPECT_FALSE(binds[1].readonly);
}

TEST(SpecRewrite, RewritesForTheGuest) {
    grpc::Spec spec = kata::oci::specFromJson(kSpec);
    auto binds = hostBindMounts(spec, "c1");
    GuestSpecOptions noGuestSeccomp;
    noGuestSeccomp.disableGuestSeccomp = true;  // disable_guest_seccomp = true drops the profile
    rewriteSpecForGuest(spec, "c1", binds, noGuestSeccomp);

    EXPECT_EQ(spec.root().path(), "/run/kata-containers/shared/containers/c1/rootfs");
    EXPECT_FALSE(spec.has_hooks());
    EXPECT_EQ(spec.mounts(2).source(), "/run/kata-containers/shared/containers/c1-2-data");
    EXPECT_EQ(spec.mounts(2).destination(), "/data");
    EXPECT_EQ(spec.mounts(3).source(), "/run/kata-containers/shared/containers/c1-3-hosts");
    EXPECT_EQ(spec.mounts(4).type(), "tmpfs");   // /dev/shm: the guest's own
    EXPECT_EQ(spec.mounts(0).source(), "proc");  // untouched

    EXPECT_EQ(spec.process().selinuxlabel(), "");
    EXPECT_EQ(spec.process().args(0), "uname");
    EXPECT_EQ(spec.hostname(), "t");
    EXPECT_EQ(spec.annotations().at("a"), "b");

    const auto& lx = spec.linux();
    EXPECT_EQ(lx.mountlabel(), "");
    EXPECT_FALSE(lx.has_seccomp());
    ASSERT_EQ(lx.namespaces_size(), 4);
    for (const auto& ns : lx.namespaces()) {
        EXPECT_NE(ns.type(), "network");
        EXPECT_NE(ns.type(), "cgroup");
        EXPECT_EQ(ns.path(), "");
    }
    EXPECT_EQ(lx.devices_size(), 0);
    EXPECT_EQ(lx.resources().devices_size(), 0);
    EXPECT_FALSE(lx.resources().has_blockio());
    EXPECT_EQ(lx.resources().memory().limit(), 134217728);
    EXPECT_EQ(lx.resources().cpu().shares(), 512u);
    EXPECT_EQ(lx.resources().cpu().cpus(), "");
    EXPECT_EQ(lx.resources().pids().limit(), 100);
    EXPECT_EQ(lx.cgroupspath(), "/cri-containerd/abc");
    EXPECT_EQ(lx.maskedpaths(0), "/proc/kcore");
}

TEST(SpecRewrite, KeepsSeccompWhenTheGuestEnforcesIt) {
    grpc::Spec spec = kata::oci::specFromJson(kSpec);
    GuestSpecOptions o;
    o.disableGuestSeccomp = false;
    rewriteSpecForGuest(spec, "c1", {}, o);
    EXPECT_EQ(spec.linux().seccomp().defaultaction(), "SCMP_ACT_ERRNO");
}

TEST(SpecRewrite, KeepsCgroupfsPath) {
    grpc::Spec spec = kata::oci::specFromJson(R"({"root": {"path": "/abs/rootfs"},
        "linux": {"cgroupsPath": "/default/c1"}})");
    rewriteSpecForGuest(spec, "c1", {}, GuestSpecOptions{});
    EXPECT_EQ(spec.linux().cgroupspath(), "/default/c1");
    EXPECT_EQ(spec.root().path(), "/run/kata-containers/shared/containers/c1/rootfs");
}

TEST(SpecRewrite, EmptyDirsBecomeGuestLocalOrEphemeralStorageNotShares) {
    grpc::Spec spec = kata::oci::specFromJson(R"({"ociVersion": "1.0.2", "mounts": [
      {"destination": "/cache", "type": "bind", "options": ["rbind", "rw"],
       "source": "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache"},
      {"destination": "/scratch", "type": "bind", "options": ["rbind", "rw"],
       "source": "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/scratch"},
      {"destination": "/again", "type": "bind", "options": ["rbind"],
       "source": "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache"},
      {"destination": "/cfg", "type": "bind", "options": ["rbind", "ro"], "source": "/srv/cfg"}]})");
    // emptyDirs are not shared over 9p: only /srv/cfg is.
    auto binds = hostBindMounts(spec, "c1");
    ASSERT_EQ(binds.size(), 1u);
    EXPECT_EQ(binds[0].hostSource, "/srv/cfg");

    auto storages = rewriteEmptyDirs(
        spec, [](const std::string& p) { return p.find("scratch") != std::string::npos; });
    ASSERT_EQ(storages.size(), 2u) << "one storage per volume, however often it is mounted";
    EXPECT_EQ(storages[0].driver(), "local");
    EXPECT_EQ(storages[0].mount_point(), "/run/kata-containers/sandbox/local/cache");
    EXPECT_EQ(storages[1].driver(), "ephemeral");
    EXPECT_EQ(storages[1].fstype(), "tmpfs");
    EXPECT_EQ(storages[1].mount_point(), "/run/kata-containers/sandbox/ephemeral/scratch");
    EXPECT_EQ(spec.mounts(0).source(), "/run/kata-containers/sandbox/local/cache");
    EXPECT_EQ(spec.mounts(1).source(), "/run/kata-containers/sandbox/ephemeral/scratch");
    EXPECT_EQ(spec.mounts(2).source(), "/run/kata-containers/sandbox/local/cache");
    EXPECT_EQ(spec.mounts(3).source(), "/srv/cfg");
}
