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
std::string containerSpecJson(const std::string& cid, const std::string& cmd) {
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
  "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
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
