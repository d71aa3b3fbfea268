// Boots a real VM under QEMU (TCG here, KVM where it works) with the kernel and initrd that
// osbuilder built around this build's kata-agent, talks to the agent over the virtio-serial
// channel, and runs a busybox container whose rootfs is shared from the host over virtio-9p.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include <google/protobuf/empty.pb.h>
#include "agent/agent.pb.h"
#include "agent/health.pb.h"
#include "kata/common/error.h"
#include "kata/hypervisor/hypervisor.h"
#include "kata/oci/spec.h"
#include "kata/ttrpc/ttrpc.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* kAgent = "grpc.AgentService";
constexpr const char* kGuestShare = "/run/kata-containers/shared/containers";

std::string envOr(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return v && *v ? v : fallback;
}

std::string hostRelease() {
    struct utsname u {};
    uname(&u);
    return u.release;
}

// The OCI spec the guest runs: busybox from the 9p share, fresh namespaces, no host bits.
// linuxExtra: more members of "linux" (resources, devices), each ending in a comma.
std::string containerSpecJson(const std::string& cid, const std::string& cmd,
                              const std::string& linuxExtra = "") {
    return R"({
  "ociVersion": "1.0.2",
  "process": {"terminal": false, "user": {"uid": 0, "gid": 0},
              "args": ["/bin/sh", "-c", )" +
           std::string("\"") + cmd + R"("],
              "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
              "capabilities": {"bounding": ["CAP_CHOWN","CAP_KILL","CAP_SETUID","CAP_SETGID"],
                               "effective": ["CAP_CHOWN","CAP_KILL","CAP_SETUID","CAP_SETGID"],
                               "permitted": ["CAP_CHOWN","CAP_KILL","CAP_SETUID","CAP_SETGID"]},
              "noNewPrivileges": true},
  "root": {"path": ")" +
           std::string(kGuestShare) + "/" + cid + R"(/rootfs", "readonly": false},
  "hostname": "in-vm",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid","strictatime","mode=755","size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid","noexec","nodev","ro"]}
  ],
  "linux": {)" +
           linuxExtra +
           R"("namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]}
})";
}

class VmAgentTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "needs root (9p export of a root-owned rootfs)";
        guestDir_ = envOr("KATA_TEST_GUEST_DIR", "");
        ASSERT_FALSE(guestDir_.empty()) << "KATA_TEST_GUEST_DIR is not set";
        for (auto f : {"vmlinux.container", "kata-containers-initrd.img"}) {
            ASSERT_TRUE(fs::exists(fs::path(guestDir_) / f))
                << guestDir_ << "/" << f << " missing: run the guest-assets.build test first";
        }
        char tmpl[] = "/tmp/kata-vm-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        tmp_ = tmpl;
        sandboxId_ = "vmtest-" + std::to_string(getpid());
        sharedDir_ = tmp_ + "/shared";
        fs::create_directories(sharedDir_ + "/" + cid_);
        std::string mk = envOr("KATA_TEST_BUSYBOX_ROOTFS", "") + " " + sharedDir_ + "/" + cid_ +
                         "/rootfs >/dev/null 2>&1";
        ASSERT_EQ(std::system(mk.c_str()), 0) << "could not build busybox rootfs: " << mk;
    }

    void TearDown() override {
        client_.reset();
        if (vm_) {
            vmPid_ = vm_->pid();
            vm_->stop(10s);
            vm_.reset();
        }
        if (vmPid_ > 0) {
            EXPECT_NE(kill(vmPid_, 0), 0) << "QEMU pid " << vmPid_ << " survived stop";
        }
        if (!runDir_.empty()) {
            EXPECT_FALSE(fs::exists(runDir_)) << runDir_ << " left behind";
        }
        if (!tmp_.empty()) fs::remove_all(tmp_);
    }

    void bootVm() {
        kata::hypervisor::HypervisorConfig cfg;
        cfg.kernel = guestDir_ + "/vmlinux.container";
        cfg.initrd = guestDir_ + "/kata-containers-initrd.img";
        cfg.defaultMemoryMiB = 512;
        cfg.accelerator = "auto";
        cfg.sharedFs = "virtio-9p";
        kata::hypervisor::VmSpec spec;
        spec.sandboxId = sandboxId_;
        runDir_ = tmp_ + "/vm";
        spec.runDir = runDir_;
        spec.sharedDir = sharedDir_;
        vm_ = kata::hypervisor::createHypervisor(cfg, spec);
        vm_->start();
        auto fd = kata::ttrpc::dial(vm_->agentAddress(), 5s);
        client_ = std::make_unique<kata::ttrpc::Client>(std::move(fd));
        // The agent comes up after the guest kernel boots; Check until it answers.
        auto deadline = std::chrono::steady_clock::now() + 90s;
        for (;;) {
            try {
                grpc::CheckRequest req;
                auto resp = client_->call<grpc::CheckRequest, grpc::HealthCheckResponse>(
                    "grpc.Health", "Check", req, 2s);
                ASSERT_EQ(resp.status(), grpc::HealthCheckResponse::SERVING);
                return;
            } catch (const kata::Error& e) {
                if (std::chrono::steady_clock::now() > deadline) {
                    FAIL() << "agent did not answer Check within 90 s: " << e.what()
                           << "\nconsole:\n"
                           << vm_->consoleTail(40);
                }
            }
        }
    }

    void createSandbox() {
        grpc::CreateSandboxRequest sb;
        sb.set_hostname("sandbox");
        sb.set_sandbox_id(sandboxId_);
        auto* st = sb.add_storages();
        st->set_driver("9p");
        st->set_source("kataShared");
        st->set_fstype("9p");
        st->set_mount_point(kGuestShare);
        for (auto o : {"trans=virtio", "version=9p2000.L", "msize=8192", "nodev", "cache=mmap"}) {
            st->add_options(o);
        }
        agent("CreateSandbox", sb);
    }

    // Runs a container to its end; returns (exit status, stdout).
    std::pair<int, std::string> runToEnd(const std::string& cid, const std::string& cmd,
                                         const std::string& linuxExtra) {
        if (!fs::exists(sharedDir_ + "/" + cid + "/rootfs")) {
            fs::create_directories(sharedDir_ + "/" + cid);
            std::string mk = envOr("KATA_TEST_BUSYBOX_ROOTFS", "") + " " + sharedDir_ + "/" + cid +
                             "/rootfs >/dev/null 2>&1";
            EXPECT_EQ(std::system(mk.c_str()), 0) << mk;
        }
        grpc::CreateContainerRequest cc;
        cc.set_container_id(cid);
        cc.set_exec_id(cid);
        *cc.mutable_oci() = kata::oci::specFromJson(containerSpecJson(cid, cmd, linuxExtra));
        agent("CreateContainer", cc);
        grpc::StartContainerRequest sc;
        sc.set_container_id(cid);
        agent("StartContainer", sc);
        std::string out;
        for (;;) {
            grpc::ReadStreamRequest rs;
            rs.set_container_id(cid);
            rs.set_exec_id(cid);
            rs.set_len(4096);
            try {
                out += agent<grpc::ReadStreamRequest, grpc::ReadStreamResponse>("ReadStdout", rs)
                           .data();
            } catch (const kata::Error&) {
                break;
            }
        }
        grpc::WaitProcessRequest wp;
        wp.set_container_id(cid);
        wp.set_exec_id(cid);
        auto status =
            agent<grpc::WaitProcessRequest, grpc::WaitProcessResponse>("WaitProcess", wp, 120s);
        return {status.status(), out};
    }

    void removeContainer(const std::string& cid) {
        grpc::RemoveContainerRequest rc;
        rc.set_container_id(cid);
        agent("RemoveContainer", rc);
    }

    template <class Req, class Resp = google::protobuf::Empty>
    Resp agent(const char* method, const Req& req, std::chrono::milliseconds t = 30s) {
        return client_->call<Req, Resp>(kAgent, method, req, t);
    }

    std::string guestDir_, tmp_, sandboxId_, sharedDir_, runDir_;
    const std::string cid_ = "c1";
    std::unique_ptr<kata::hypervisor::Hypervisor> vm_;
    std::unique_ptr<kata::ttrpc::Client> client_;
    pid_t vmPid_ = -1;
};

TEST_F(VmAgentTest, RunsContainerFromNinePShareAndShutsDownClean) {
    ASSERT_NO_FATAL_FAILURE(bootVm());

    grpc::GuestDetailsRequest gd;
    gd.set_mem_block_size(true);
    auto details =
        agent<grpc::GuestDetailsRequest, grpc::GuestDetailsResponse>("GetGuestDetails", gd);
    std::string version = details.agent_details().version();
    EXPECT_NE(version.find("kernel "), std::string::npos) << version;
    EXPECT_EQ(version.find("kernel " + hostRelease() + ")"), std::string::npos)
        << "the agent reports the host's kernel: " << version;

    grpc::CreateSandboxRequest sb;
    sb.set_hostname("sandbox");
    sb.set_sandbox_id(sandboxId_);
    auto* st = sb.add_storages();
    st->set_driver("9p");
    st->set_source("kataShared");
    st->set_fstype("9p");
    st->set_mount_point(kGuestShare);
    for (auto o : {"trans=virtio", "version=9p2000.L", "msize=8192", "nodev", "cache=mmap"}) {
        st->add_options(o);
    }
    agent("CreateSandbox", sb);

    grpc::CreateContainerRequest cc;
    cc.set_container_id(cid_);
    cc.set_exec_id(cid_);
    *cc.mutable_oci() = kata::oci::specFromJson(
        containerSpecJson(cid_, "uname -r; hostname; echo from-vm; exit 7"));
    agent("CreateContainer", cc);
    grpc::StartContainerRequest sc;
    sc.set_container_id(cid_);
    agent("StartContainer", sc);

    std::string out;
    for (;;) {
        grpc::ReadStreamRequest rs;
        rs.set_container_id(cid_);
        rs.set_exec_id(cid_);
        rs.set_len(4096);
        try {
            out +=
                agent<grpc::ReadStreamRequest, grpc::ReadStreamResponse>("ReadStdout", rs).data();
        } catch (const kata::Error&) {
            break;  // EOF: the agent answers an error once the process's stdout is drained
        }
    }
    grpc::WaitProcessRequest wp;
    wp.set_container_id(cid_);
    wp.set_exec_id(cid_);
    auto status = agent<grpc::WaitProcessRequest, grpc::WaitProcessResponse>("WaitProcess", wp);
    EXPECT_EQ(status.status(), 7);

    std::string release = out.substr(0, out.find('\n'));
    EXPECT_FALSE(release.empty()) << out;
    EXPECT_NE(release, hostRelease()) << "container saw the host kernel";
    EXPECT_NE(version.find(release), std::string::npos) << version << " vs " << release;
    // Containers of a sandbox share its UTS namespace (as in Kata): the sandbox's hostname wins.
    EXPECT_NE(out.find("\nsandbox\n"), std::string::npos) << out;
    EXPECT_NE(out.find("from-vm"), std::string::npos) << out;

    grpc::RemoveContainerRequest rc;
    rc.set_container_id(cid_);
    agent("RemoveContainer", rc);
    agent("DestroySandbox", grpc::DestroySandboxRequest());
    std::cerr << "guest kernel " << release << ", host kernel " << hostRelease() << "\n";
}

// One VM for every cgroup v2 check: the agent mounts only the unified hierarchy in the guest.
TEST_F(VmAgentTest, CgroupV2LimitsMemoryPidsAndDevicesInTheGuest) {
    ASSERT_NO_FATAL_FAILURE(bootVm());
    createSandbox();

    // (a) 32 MiB memory limit; dd (the init) fills a 64 MiB buffer and is OOM-killed.
    {
        SCOPED_TRACE("memory limit and OOM event");
        auto [status, out] =
            runToEnd("oom", "echo started; exec dd if=/dev/zero of=/dev/null bs=67108864 count=1",
                     R"("resources": {"memory": {"limit": 33554432}},)");
        EXPECT_EQ(status, 137) << out;
        EXPECT_NE(out.find("started"), std::string::npos) << out;
        auto oom = agent<grpc::GetOOMEventRequest, grpc::OOMEvent>("GetOOMEvent",
                                                                   grpc::GetOOMEventRequest(), 20s);
        EXPECT_EQ(oom.container_id(), "oom");
        removeContainer("oom");
    }

    // (b) deny every device, allow /dev/null; /dev/mem (c 1:1) is created by linux.devices (its
    // rule grants mknod only, "m": the node is made inside the cgroup) but cannot be opened.
    // /dev/zero stays usable: like runc, the default devices (null, zero, full, random, urandom,
    // tty, console, ptmx, pts) are appended after the spec's rules.
    {
        SCOPED_TRACE("device rules (BPF device program)");
        auto [status, out] =
            runToEnd("devs",
                     "exec 2>&1; echo x > /dev/null && echo null-ok; ls -l /dev/mem; "
                     "head -c 1 /dev/mem > /dev/null || echo mem-denied; "
                     "head -c 1 /dev/zero > /dev/null && echo zero-ok; exit 0",
                     R"("resources": {"devices": [{"allow": false, "access": "rwm"},
                                         {"allow": true, "type": "c", "major": 1, "minor": 3,
                                          "access": "rwm"},
                                         {"allow": true, "type": "c", "major": 1, "minor": 1,
                                          "access": "m"}]},
               "devices": [{"path": "/dev/mem", "type": "c", "major": 1, "minor": 1,
                            "fileMode": 432, "uid": 0, "gid": 0}],)");
        EXPECT_EQ(status, 0) << out;
        EXPECT_NE(out.find("null-ok"), std::string::npos) << out;
        EXPECT_NE(out.find("/dev/mem: Operation not permitted"), std::string::npos) << out;
        EXPECT_NE(out.find("mem-denied"), std::string::npos) << out;
        EXPECT_NE(out.find("zero-ok"), std::string::npos) << "default /dev/zero unusable: " << out;
        removeContainer("devs");
    }

    // (c) pids.max 4: the shell and three children fit, the fourth fork fails.
    {
        SCOPED_TRACE("pids limit");
        auto [status, out] =
            runToEnd("pids",
                     "sleep 1; sleep 9 & echo f1; sleep 9 & echo f2; sleep 9 & echo f3; "
                     "sleep 9 & echo f4; echo all-forked",
                     R"("resources": {"pids": {"limit": 4}},)");
        EXPECT_NE(status, 0) << out;
        EXPECT_NE(out.find("f3"), std::string::npos) << out;
        EXPECT_EQ(out.find("f4"), std::string::npos) << out;
        EXPECT_EQ(out.find("all-forked"), std::string::npos) << out;
        removeContainer("pids");
    }

    agent("DestroySandbox", grpc::DestroySandboxRequest());
}

TEST_F(VmAgentTest, MissingKernelFailsNamingThePathAndLeavesNothing) {
    kata::hypervisor::HypervisorConfig cfg;
    cfg.kernel = tmp_ + "/no-such-vmlinux";
    cfg.initrd = guestDir_ + "/kata-containers-initrd.img";
    cfg.defaultMemoryMiB = 512;
    kata::hypervisor::VmSpec spec;
    spec.sandboxId = sandboxId_ + "-bad";
    runDir_ = tmp_ + "/vm-bad";
    spec.runDir = runDir_;
    spec.sharedDir = sharedDir_;
    auto vm = kata::hypervisor::createHypervisor(cfg, spec);
    try {
        vm->start();
        FAIL() << "start() with a missing kernel succeeded";
    } catch (const kata::Error& e) {
        EXPECT_NE(std::string(e.what()).find(cfg.kernel), std::string::npos) << e.what();
    }
}

}  // namespace
