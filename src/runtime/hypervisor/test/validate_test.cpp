// Bad input is refused before anything is started: no QEMU process, no run dir.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <filesystem>
#include <fstream>

#include "kata/common/error.h"
#include "kata/hypervisor/hypervisor.h"
#include "kata/hypervisor/qemu_cmdline.h"

namespace fs = std::filesystem;

namespace {

class ValidateTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/kata-hv-validate.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        // A stand-in "QEMU" that leaves a trace if anything ever runs it.
        marker_ = dir_ + "/qemu-was-run";
        config_.path = dir_ + "/fake-qemu";
        std::ofstream(config_.path) << "#!/bin/sh\ntouch " << marker_ << "\nsleep 30\n";
        fs::permissions(config_.path, fs::perms::owner_all);
        config_.kernel = dir_ + "/vmlinux";
        config_.initrd = dir_ + "/initrd.img";
        std::ofstream(config_.kernel) << "kernel";
        std::ofstream(config_.initrd) << "initrd";
        config_.defaultMemoryMiB = 256;
        config_.accelerator = "tcg";
        config_.agentChannel = "serial";
        spec_.sandboxId = "validate";
        spec_.runDir = dir_ + "/run/validate";
    }
    void TearDown() override { fs::remove_all(dir_); }

    // start() must throw kInvalidArgument mentioning every `parts`, and leave nothing behind.
    void expectRejected(std::initializer_list<std::string> parts) {
        auto vm = kata::hypervisor::createHypervisor(config_, spec_);
        try {
            vm->start();
            vm->stop(std::chrono::seconds(1));
            ADD_FAILURE() << "start succeeded";
        } catch (const kata::Error& e) {
            EXPECT_EQ(e.code(), kata::StatusCode::kInvalidArgument) << e.what();
            for (const auto& p : parts)
                EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
                    << "\"" << p << "\" not in: " << e.what();
        }
        EXPECT_FALSE(fs::exists(spec_.runDir));
        EXPECT_FALSE(fs::exists(marker_)) << "QEMU was started despite invalid input";
    }

    std::string dir_, marker_;
    kata::hypervisor::HypervisorConfig config_;
    kata::hypervisor::VmSpec spec_;
};

TEST_F(ValidateTest, MissingKernel) {
    config_.kernel = dir_ + "/no-such-vmlinux";
    expectRejected({"kernel", config_.kernel, "ENOENT"});
}

TEST_F(ValidateTest, MissingQemuBinary) {
    config_.path = dir_ + "/no-such-qemu";
    expectRejected({"path", config_.path, "ENOENT"});
}

TEST_F(ValidateTest, QemuNotExecutable) {
    fs::permissions(config_.path, fs::perms::owner_read | fs::perms::owner_write);
    if (::access(config_.path.c_str(), X_OK) == 0) GTEST_SKIP() << "root can execute anything here";
    expectRejected({"path", config_.path});
}

TEST_F(ValidateTest, MissingInitrd) {
    config_.initrd = dir_ + "/no-such-initrd";
    expectRejected({"initrd", config_.initrd, "ENOENT"});
}

TEST_F(ValidateTest, NeitherOrBothInitrdAndImage) {
    config_.initrd.clear();
    expectRejected({"initrd", "one of initrd or image"});
    config_.initrd = dir_ + "/initrd.img";
    config_.image = config_.initrd;
    expectRejected({"image", "both set"});
}

TEST_F(ValidateTest, MemoryZeroOrMoreThanTheHost) {
    config_.defaultMemoryMiB = 0;
    expectRejected({"default_memory", "\"0\""});
    uint64_t host = kata::hypervisor::hostMemoryMiB();
    ASSERT_GT(host, 0u);
    config_.defaultMemoryMiB = static_cast<uint32_t>(host + 1);
    expectRejected({"default_memory", std::to_string(host + 1), "host"});
}

TEST_F(ValidateTest, ZeroVcpusAndMaxBelowBoot) {
    config_.defaultVcpus = 0;
    expectRejected({"default_vcpus", "\"0\""});
    config_.defaultVcpus = 2;
    config_.defaultMaxVcpus = 1;
    expectRejected({"default_maxvcpus", "\"1\""});
}

TEST_F(ValidateTest, UnknownEnumerations) {
    config_.machineType = "pc";
    expectRejected({"machine_type", "\"pc\""});
    config_.machineType = "q35";
    config_.sharedFs = "nfs";
    expectRejected({"shared_fs", "\"nfs\""});
}

TEST_F(ValidateTest, MissingSharedDirAndMissingVirtiofsd) {
    spec_.sharedDir = dir_ + "/no-such-share";
    expectRejected({"shared dir", spec_.sharedDir});
    fs::create_directory(dir_ + "/share");
    spec_.sharedDir = dir_ + "/share";
    config_.sharedFs = "virtio-fs";
    config_.virtioFsDaemon = dir_ + "/no-virtiofsd";
    expectRejected({"virtio_fs_daemon", config_.virtioFsDaemon});
}

TEST_F(ValidateTest, MissingTemplateState) {
    spec_.templateState = dir_ + "/no-such-template";
    expectRejected({"template state", spec_.templateState, "ENOENT"});
}

TEST_F(ValidateTest, RelativeRunDir) {
    spec_.runDir = "relative/run";
    expectRejected({"run dir", "absolute"});
}

TEST_F(ValidateTest, ValidInputPassesValidation) {
    EXPECT_NO_THROW(kata::hypervisor::validateConfig(config_, spec_, 4096));
}

TEST_F(ValidateTest, StopWithoutStartIsHarmless) {
    auto vm = kata::hypervisor::createHypervisor(config_, spec_);
    EXPECT_NO_THROW(vm->stop(std::chrono::milliseconds(100)));
    EXPECT_THROW(vm->pause(), kata::Error);
}

}  // namespace

TEST_F(ValidateTest, BadNicsAreRejectedNamingTheNic) {
    kata::hypervisor::NetDevice nic;
    nic.id = "net0";
    nic.mac = "02:42:0a:58:00:07";
    nic.tapFd = 0;
    nic.mac = "02:42:0a:58:00";
    spec_.nics = {nic};
    expectRejected({"nic net0 mac", "02:42:0a:58:00"});
    nic.mac = "02:42:0a:58:00:07";
    nic.tapFd = -1;
    spec_.nics = {nic};
    expectRejected({"nic net0 tap fd", "not open"});
    nic.tapFd = 0;
    nic.mtu = 20;
    spec_.nics = {nic};
    expectRejected({"nic net0 mtu", "20"});
}
