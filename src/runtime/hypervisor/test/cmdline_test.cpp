#include "kata/hypervisor/qemu_cmdline.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace {

using kata::hypervisor::buildKernelCommandLine;
using kata::hypervisor::buildQemuCommandLine;
using kata::hypervisor::HypervisorConfig;
using kata::hypervisor::QemuLaunchParams;
using kata::hypervisor::VmSpec;

std::vector<std::string> valuesOf(const std::vector<std::string>& args, const std::string& flag) {
    std::vector<std::string> out;
    for (size_t i = 0; i + 1 < args.size(); ++i)
        if (args[i] == flag) out.push_back(args[i + 1]);
    return out;
}

bool hasValue(const std::vector<std::string>& args, const std::string& flag,
              const std::string& value) {
    auto v = valuesOf(args, flag);
    return std::find(v.begin(), v.end(), value) != v.end();
}

bool anyValueContains(const std::vector<std::string>& args, const std::string& flag,
                      const std::string& part) {
    for (const auto& v : valuesOf(args, flag))
        if (v.find(part) != std::string::npos) return true;
    return false;
}

bool hasFlag(const std::vector<std::string>& args, const std::string& flag) {
    return std::find(args.begin(), args.end(), flag) != args.end();
}

class CmdlineTest : public ::testing::Test {
  protected:
    void SetUp() override {
        config_.kernel = "/k/vmlinux";
        config_.initrd = "/k/initrd.img";
        config_.defaultMemoryMiB = 512;
        spec_.sandboxId = "sb1";
        spec_.runDir = "/run/vc/vm/sb1";
        spec_.sharedDir = "/run/kata-containers/shared/sandboxes/sb1/shared";
        launch_.accelerator = "tcg";
        launch_.agentChannel = "serial";
        launch_.hostMemoryMiB = 4096;
        launch_.hostCpus = 4;
    }
    std::vector<std::string> build() { return buildQemuCommandLine(config_, spec_, launch_); }

    HypervisorConfig config_;
    VmSpec spec_;
    QemuLaunchParams launch_;
};

TEST_F(CmdlineTest, TcgTbSizeZeroLeavesQemusDefault) {
    config_.tcgTbSizeMiB = 0;
    auto args = build();
    EXPECT_TRUE(hasValue(args, "-machine", "q35,accel=tcg"));
    EXPECT_EQ(std::find(args.begin(), args.end(), "-accel"), args.end());
}

TEST_F(CmdlineTest, DefaultIsQ35UnderTcgWithSerialAgentChannel9pShareQmpAndConsoleFile) {
    auto args = build();
    EXPECT_EQ(args[0], "/usr/bin/qemu-system-x86_64");
    EXPECT_TRUE(hasValue(args, "-machine", "q35"));
    EXPECT_TRUE(hasValue(args, "-accel", "tcg,tb-size=16"));
    EXPECT_TRUE(hasValue(args, "-cpu", "max"));
    EXPECT_TRUE(hasValue(args, "-smp", "1,maxcpus=4"));
    EXPECT_TRUE(hasValue(args, "-m", "512M,slots=10,maxmem=4096M"));
    EXPECT_TRUE(hasValue(args, "-kernel", "/k/vmlinux"));
    EXPECT_TRUE(hasValue(args, "-initrd", "/k/initrd.img"));
    EXPECT_FALSE(hasFlag(args, "-bios"));
    EXPECT_FALSE(hasFlag(args, "-drive"));
    for (const char* f : {"-nographic", "-nodefaults", "-no-user-config", "-no-reboot"})
        EXPECT_TRUE(hasFlag(args, f)) << f;
    EXPECT_FALSE(hasFlag(args, "-daemonize"));

    EXPECT_TRUE(hasValue(args, "-chardev",
                         "socket,id=qmp,path=/run/vc/vm/sb1/qmp.sock,server=on,wait=off"));
    EXPECT_TRUE(hasValue(args, "-mon", "chardev=qmp,mode=control"));
    EXPECT_TRUE(hasValue(args, "-chardev", "file,id=console,path=/run/vc/vm/sb1/console.log"));
    EXPECT_TRUE(hasValue(args, "-serial", "chardev:console"));

    EXPECT_TRUE(hasValue(args, "-device", "virtio-serial-pci,id=serial0"));
    EXPECT_TRUE(hasValue(args, "-chardev",
                         "socket,id=agentch,path=/run/vc/vm/sb1/agent.sock,server=on,wait=off"));
    EXPECT_TRUE(hasValue(args, "-device",
                         "virtserialport,bus=serial0.0,chardev=agentch,name=agent.channel.0"));
    EXPECT_FALSE(anyValueContains(args, "-device", "vsock"));

    EXPECT_TRUE(hasValue(args, "-fsdev",
                         "local,id=extra-9p-kataShared,path=" + spec_.sharedDir +
                             ",security_model=none,multidevs=remap"));
    EXPECT_TRUE(
        hasValue(args, "-device", "virtio-9p-pci,fsdev=extra-9p-kataShared,mount_tag=kataShared"));
    EXPECT_TRUE(hasValue(args, "-device",
                         "pci-bridge,bus=pcie.0,id=pci-bridge-0,chassis_nr=1,"
                         "shpc=off,addr=2,io-reserve=4k,mem-reserve=1m,pref64-reserve=1m"));
}

TEST_F(CmdlineTest, KvmUsesHostCpuWithConfiguredFeatures) {
    launch_.accelerator = "kvm";
    config_.cpuFeatures = "pmu=off";
    auto args = build();
    EXPECT_TRUE(hasValue(args, "-machine", "q35,accel=kvm"));
    EXPECT_TRUE(hasValue(args, "-cpu", "host,pmu=off"));
}

TEST_F(CmdlineTest, VcpusAndMaxVcpus) {
    config_.defaultVcpus = 2;
    config_.defaultMaxVcpus = 3;
    EXPECT_TRUE(hasValue(build(), "-smp", "2,maxcpus=3"));
    config_.defaultMaxVcpus = 0;  // as many as the host has
    EXPECT_TRUE(hasValue(build(), "-smp", "2,maxcpus=4"));
    config_.defaultVcpus = 6;  // never below the boot count
    EXPECT_TRUE(hasValue(build(), "-smp", "6,maxcpus=6"));
}

TEST_F(CmdlineTest, NoMemoryHotplugWithoutSlots) {
    config_.memorySlots = 0;
    EXPECT_TRUE(hasValue(build(), "-m", "512M"));
}

TEST_F(CmdlineTest, FirmwareBecomesBios) {
    config_.firmware = "/usr/share/qemu/qboot.rom";
    EXPECT_TRUE(hasValue(build(), "-bios", "/usr/share/qemu/qboot.rom"));
}

TEST_F(CmdlineTest, ImageIsAReadOnlyVirtioBlkRootDisk) {
    config_.initrd.clear();
    config_.image = "/k/kata.img";
    auto args = build();
    EXPECT_FALSE(hasFlag(args, "-initrd"));
    EXPECT_TRUE(
        anyValueContains(args, "-drive", "file=/k/kata.img,format=raw,if=none,readonly=on"));
    EXPECT_TRUE(hasValue(args, "-device", "virtio-blk-pci,drive=image,serial=image"));
    auto append = valuesOf(args, "-append");
    ASSERT_EQ(append.size(), 1u);
    EXPECT_NE(append[0].find("root=/dev/vda"), std::string::npos);
}

TEST_F(CmdlineTest, MicrovmUsesMmioDevicesAndNoPciBridgeOrDimmSlots) {
    config_.machineType = "microvm";
    auto args = build();
    EXPECT_TRUE(hasValue(args, "-machine", "microvm,accel=tcg,isa-serial=on,rtc=on"));
    EXPECT_TRUE(hasValue(args, "-device", "virtio-serial-device,id=serial0"));
    EXPECT_TRUE(anyValueContains(args, "-device", "virtio-9p-device,"));
    EXPECT_FALSE(anyValueContains(args, "-device", "-pci"));
    EXPECT_FALSE(anyValueContains(args, "-device", "pci-bridge"));
    EXPECT_TRUE(hasValue(args, "-m", "512M"));
    EXPECT_EQ(buildKernelCommandLine(config_, spec_, launch_).find("pci=lastbus=0"),
              std::string::npos);
}

TEST_F(CmdlineTest, VsockChannelUsesVhostVsockWithGuestCidAndNoSerialPort) {
    launch_.agentChannel = "vsock";
    launch_.vsockCid = 42;
    launch_.vhostFd = 3;
    auto args = build();
    EXPECT_TRUE(hasValue(args, "-device", "vhost-vsock-pci,id=vsock,guest-cid=42,vhostfd=3"));
    EXPECT_FALSE(anyValueContains(args, "-device", "virtserialport"));
    EXPECT_NE(buildKernelCommandLine(config_, spec_, launch_).find("agent.channel=vsock"),
              std::string::npos);
}

TEST_F(CmdlineTest, SharedFsNoneOrNoDirMeansNoShare) {
    config_.sharedFs = "none";
    EXPECT_FALSE(hasFlag(build(), "-fsdev"));
    config_.sharedFs = "virtio-9p";
    spec_.sharedDir.clear();
    EXPECT_FALSE(hasFlag(build(), "-fsdev"));
}

TEST_F(CmdlineTest, VirtioFsUsesVhostUserFsAndSharedMemory) {
    config_.sharedFs = "virtio-fs";
    auto args = build();
    EXPECT_FALSE(hasFlag(args, "-fsdev"));
    EXPECT_TRUE(
        hasValue(args, "-chardev", "socket,id=char-virtiofs,path=/run/vc/vm/sb1/vhost-fs.sock"));
    EXPECT_TRUE(
        hasValue(args, "-device", "vhost-user-fs-pci,chardev=char-virtiofs,tag=kataShared"));
    EXPECT_TRUE(anyValueContains(args, "-object", "memory-backend-file,id=dimm1,size=512M"));
    EXPECT_TRUE(anyValueContains(args, "-object", "share=on"));
    EXPECT_TRUE(hasValue(args, "-numa", "node,memdev=dimm1"));
}

TEST_F(CmdlineTest, ExtraArgsComeLast) {
    config_.extraArgs = {"-device", "my-device,x=1"};
    auto args = build();
    ASSERT_GE(args.size(), 2u);
    EXPECT_EQ(args[args.size() - 2], "-device");
    EXPECT_EQ(args.back(), "my-device,x=1");
}

TEST_F(CmdlineTest, KernelCommandLineHasKataBaseParamsThenConfigThenSpecExtras) {
    config_.kernelParams = "agent.container_policy_file=/etc/policy.json";
    spec_.extraKernelParams = "agent.log=debug";
    std::string cmdline = buildKernelCommandLine(config_, spec_, launch_);
    for (const char* p :
         {"tsc=reliable", "no_timer_check", "rcupdate.rcu_expedited=1", "i8042.direct=1",
          "i8042.noaux=1", "reboot=k", "cryptomgr.notests", "net.ifnames=0", "pci=lastbus=0",
          "console=ttyS0", "panic=1", "quiet", "agent.channel=serial"})
        EXPECT_NE(cmdline.find(p), std::string::npos) << p << " missing in " << cmdline;
    size_t cfg = cmdline.find("agent.container_policy_file=/etc/policy.json");
    size_t extra = cmdline.find("agent.log=debug");
    ASSERT_NE(cfg, std::string::npos);
    ASSERT_NE(extra, std::string::npos);
    EXPECT_LT(cfg, extra);
    EXPECT_GT(cfg, cmdline.find("panic=1"));
    EXPECT_EQ(cmdline.find("root="), std::string::npos);  // initrd boot
    EXPECT_EQ(cmdline.find("  "), std::string::npos);

    auto append = valuesOf(build(), "-append");
    ASSERT_EQ(append.size(), 1u);
    EXPECT_EQ(append[0], cmdline);
}

TEST_F(CmdlineTest, TemplateStateIsRestoredWithIncoming) {
    EXPECT_FALSE(hasFlag(build(), "-incoming"));
    spec_.templateState = "/run/vc/vm/template/state";
    EXPECT_TRUE(hasValue(build(), "-incoming", "exec:cat '/run/vc/vm/template/state'"));
}

TEST_F(CmdlineTest, DebugDropsQuiet) {
    config_.enableDebug = true;
    EXPECT_EQ(buildKernelCommandLine(config_, spec_, launch_).find("quiet"), std::string::npos);
}

}  // namespace

TEST_F(CmdlineTest, NicsAreTapNetdevsOnInheritedFdsWithTheVethsMacAndMtu) {
    kata::hypervisor::NetDevice nic;
    nic.id = "net0";
    nic.mac = "02:42:0a:58:00:07";
    nic.mtu = 1450;
    nic.tapFd = 17;  // the shim's fd; QEMU sees it as launch_.nicFds[0]
    spec_.nics.push_back(nic);
    nic.id = "net1";
    nic.mac = "02:42:0a:58:01:07";
    nic.mtu = 0;
    spec_.nics.push_back(nic);
    launch_.nicFds = {4, 5};
    auto args = build();
    EXPECT_TRUE(hasValue(args, "-netdev", "tap,id=net0,fd=4"));
    EXPECT_TRUE(hasValue(args, "-netdev", "tap,id=net1,fd=5"));
    EXPECT_TRUE(hasValue(args, "-device",
                         "virtio-net-pci,netdev=net0,mac=02:42:0a:58:00:07,host_mtu=1450"));
    EXPECT_TRUE(hasValue(args, "-device", "virtio-net-pci,netdev=net1,mac=02:42:0a:58:01:07"));

    config_.machineType = "microvm";
    EXPECT_TRUE(anyValueContains(build(), "-device", "virtio-net-device,netdev=net0"));
}

TEST_F(CmdlineTest, NoNicsNoNetdev) { EXPECT_FALSE(hasFlag(build(), "-netdev")); }

TEST(PortForwardCmdlineTest, ThePortForwardChannelIsASecondSerialPortOnTheAgentsController) {
    HypervisorConfig config;
    VmSpec spec;
    spec.sandboxId = "sb1";
    spec.runDir = "/run/vc/vm/sb1";
    QemuLaunchParams launch;
    launch.agentChannel = "serial";
    EXPECT_FALSE(anyValueContains(buildQemuCommandLine(config, spec, launch), "-device",
                                  "kata.portforward.0"));
    spec.portForwardChannel = true;
    auto args = buildQemuCommandLine(config, spec, launch);
    EXPECT_TRUE(
        hasValue(args, "-chardev",
                 "socket,id=portfwd,path=/run/vc/vm/sb1/portforward.sock,server=on,wait=off"));
    EXPECT_TRUE(hasValue(args, "-device",
                         "virtserialport,bus=serial0.0,chardev=portfwd,name=kata.portforward.0"));
    auto serialControllers = [](const std::vector<std::string>& a) {
        auto d = valuesOf(a, "-device");
        return std::count(d.begin(), d.end(), "virtio-serial-pci,id=serial0");
    };
    EXPECT_EQ(serialControllers(args), 1);
    // A vsock agent channel has no serial controller: the port brings its own.
    launch.agentChannel = "vsock";
    launch.vsockCid = 3;
    args = buildQemuCommandLine(config, spec, launch);
    EXPECT_EQ(serialControllers(args), 1);
    EXPECT_TRUE(hasValue(args, "-device",
                         "virtserialport,bus=serial0.0,chardev=portfwd,name=kata.portforward.0"));
}
