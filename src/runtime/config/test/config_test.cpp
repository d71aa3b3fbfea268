#include "kata/config/config.h"

#include <unistd.h>

#include <gtest/gtest.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "kata/common/error.h"

namespace fs = std::filesystem;
using kata::config::loadConfig;
using kata::config::parseConfig;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

bool anyWarningContains(const kata::config::RuntimeConfig& c, const std::string& a,
                        const std::string& b = "") {
    for (const auto& w : c.warnings)
        if (contains(w, a) && contains(w, b)) return true;
    return false;
}

// Expects parsing `text` to fail with kInvalidArgument naming each of `parts`.
void expectInvalid(const std::string& text, std::initializer_list<std::string> parts) {
    try {
        parseConfig(text, "/etc/kata-containers/test.toml");
        ADD_FAILURE() << "accepted:\n" << text;
    } catch (const kata::Error& e) {
        EXPECT_EQ(e.code(), kata::StatusCode::kInvalidArgument);
        EXPECT_TRUE(contains(e.what(), "/etc/kata-containers/test.toml")) << e.what();
        for (const auto& p : parts)
            EXPECT_TRUE(contains(e.what(), p)) << p << " not in: " << e.what();
    }
}

class EnvGuard {
  public:
    explicit EnvGuard(const char* name) : name_(name) {
        if (const char* v = std::getenv(name)) old_ = v;
        ::unsetenv(name);
    }
    ~EnvGuard() {
        if (old_)
            ::setenv(name_, old_->c_str(), 1);
        else
            ::unsetenv(name_);
    }

  private:
    const char* name_;
    std::optional<std::string> old_;
};

class TempDir {
  public:
    TempDir() {
        char tmpl[] = "/tmp/kata-config-test.XXXXXX";
        if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
        path_ = tmpl;
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string write(const std::string& name, const std::string& text) const {
        std::string p = path_ + "/" + name;
        std::ofstream(p) << text;
        return p;
    }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

const char* const kFullConfig = R"(
[hypervisor.qemu]
path = "/opt/kata/bin/qemu-system-x86_64"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
image = "/opt/kata/share/kata-containers/kata-containers.img"
machine_type = "microvm"
accelerator = "tcg"
kernel_params = "agent.container_policy_file=/etc/policy.json"
firmware = "/usr/share/qemu/qboot.rom"
cpu_features = "pmu=off"
default_vcpus = 2
default_maxvcpus = 4
default_memory = 1024
memory_slots = 4
shared_fs = "virtio-fs"
virtio_fs_daemon = "/usr/libexec/virtiofsd"
virtio_fs_cache = "never"
msize_9p = 16384
tcg_tb_size = 64
agent_channel = "serial"
block_device_driver = "virtio-blk"
enable_debug = true
disable_nesting_checks = true
extra_args = ["-device", "x"]

[agent.kata]
enable_debug = true
dial_timeout = 90
kernel_modules = ["e1000e InterruptThrottleRate=3000", "i915"]
debug_console_enabled = true
enable_tracing = true

[runtime]
enable_debug = true
internetworking_model = "none"
disable_new_netns = true
sandbox_cgroup_only = true
disable_guest_seccomp = false

[factory]
enable_template = true
template_path = "/run/vc/vm/tmpl"
)";

TEST(Config, ParsesEveryImplementedKey) {
    auto c = parseConfig(kFullConfig, "/x.toml");
    EXPECT_EQ(c.path, "/x.toml");
    EXPECT_EQ(c.hypervisorName, "qemu");
    const auto& h = c.hypervisor;
    EXPECT_EQ(h.path, "/opt/kata/bin/qemu-system-x86_64");
    EXPECT_EQ(h.kernel, "/opt/kata/share/kata-containers/vmlinux.container");
    EXPECT_EQ(h.image, "/opt/kata/share/kata-containers/kata-containers.img");
    EXPECT_EQ(h.initrd, "");
    EXPECT_EQ(h.machineType, "microvm");
    EXPECT_EQ(h.accelerator, "tcg");
    EXPECT_EQ(h.kernelParams, "agent.container_policy_file=/etc/policy.json");
    EXPECT_EQ(h.firmware, "/usr/share/qemu/qboot.rom");
    EXPECT_EQ(h.cpuFeatures, "pmu=off");
    EXPECT_EQ(h.defaultVcpus, 2u);
    EXPECT_EQ(h.defaultMaxVcpus, 4u);
    EXPECT_EQ(h.defaultMemoryMiB, 1024u);
    EXPECT_EQ(h.memorySlots, 4u);
    EXPECT_EQ(h.sharedFs, "virtio-fs");
    EXPECT_EQ(h.virtioFsDaemon, "/usr/libexec/virtiofsd");
    EXPECT_EQ(h.virtioFsCache, "never");
    EXPECT_EQ(h.msize9p, 16384u);
    EXPECT_EQ(h.tcgTbSizeMiB, 64u);
    EXPECT_EQ(h.agentChannel, "serial");
    EXPECT_TRUE(h.enableDebug);
    EXPECT_TRUE(h.disableNestingChecks);
    EXPECT_EQ(h.extraArgs, (std::vector<std::string>{"-device", "x"}));
    EXPECT_TRUE(c.agent.enableDebug);
    EXPECT_EQ(c.agent.dialTimeoutSec, 90u);
    EXPECT_EQ(c.agent.kernelModules.size(), 2u);
    EXPECT_EQ(c.agent.kernelModules[0], "e1000e InterruptThrottleRate=3000");
    EXPECT_TRUE(c.agent.debugConsoleEnabled);
    EXPECT_TRUE(c.agent.enableTracing);
    EXPECT_TRUE(c.runtime.enableDebug);
    EXPECT_EQ(c.runtime.internetworkingModel, "none");
    EXPECT_TRUE(c.runtime.disableNewNetns);
    EXPECT_TRUE(c.runtime.sandboxCgroupOnly);
    EXPECT_FALSE(c.runtime.disableGuestSeccomp);
    EXPECT_TRUE(c.factory.enableTemplate);
    EXPECT_EQ(c.factory.templatePath, "/run/vc/vm/tmpl");
    EXPECT_TRUE(c.warnings.empty()) << c.warnings[0];
}

TEST(Config, DefaultsApplyForAbsentKeys) {
    auto c = parseConfig("[hypervisor.qemu]\nkernel = \"/k\"\ninitrd = \"/i\"\n", "/x.toml");
    kata::hypervisor::HypervisorConfig d;
    EXPECT_EQ(c.hypervisor.path, d.path);
    EXPECT_EQ(c.hypervisor.defaultMemoryMiB, d.defaultMemoryMiB);
    EXPECT_EQ(c.hypervisor.machineType, "q35");
    EXPECT_EQ(c.hypervisor.sharedFs, "virtio-9p");
    EXPECT_EQ(c.agent.dialTimeoutSec, 45u);
    EXPECT_EQ(c.runtime.internetworkingModel, "tcfilter");
    EXPECT_FALSE(c.runtime.disableGuestSeccomp) << "guest seccomp is on unless disabled";
    EXPECT_FALSE(c.factory.enableTemplate);
}

TEST(Config, ShippedConfigurationParsesCleanlyWithPrefixSubstituted) {
    auto c = loadConfig(KATA_CONFIG_GENERATED);
    EXPECT_TRUE(c.warnings.empty()) << c.warnings[0];
    EXPECT_EQ(c.hypervisor.defaultMemoryMiB, 512u);
    EXPECT_EQ(c.hypervisor.machineType, "q35");
    EXPECT_TRUE(c.hypervisor.kernel.ends_with("/share/kata-containers/vmlinux.container"));
    EXPECT_TRUE(c.hypervisor.initrd.ends_with("/share/kata-containers/kata-containers-initrd.img"));
    EXPECT_EQ(c.hypervisor.image, "");
    EXPECT_FALSE(contains(c.hypervisor.kernel, "@PREFIX@"));
    std::ifstream in(KATA_CONFIG_TEMPLATE);
    std::string tmpl((std::istreambuf_iterator<char>(in)), {});
    EXPECT_TRUE(contains(tmpl, "@PREFIX@/share/kata-containers/vmlinux.container"));
}

TEST(Config, UnknownKeysAndSectionsAreWarnedAbout) {
    auto c = parseConfig(R"(
bogus_top = 1
[hypervisor.qemu]
kernel = "/k"
initrd = "/i"
no_such_key = true
[agent.kata]
another_unknown = "x"
[agent.other]
x = 1
[runtime]
typo_key = 3
)",
                         "/x.toml");
    EXPECT_TRUE(anyWarningContains(c, "[hypervisor.qemu] no_such_key", "unknown key"));
    EXPECT_TRUE(anyWarningContains(c, "[agent.kata] another_unknown", "unknown key"));
    EXPECT_TRUE(anyWarningContains(c, "[agent.other]", "unknown section"));
    EXPECT_TRUE(anyWarningContains(c, "[runtime] typo_key", "unknown key"));
    EXPECT_TRUE(anyWarningContains(c, "bogus_top", "unknown"));
    EXPECT_TRUE(anyWarningContains(c, "/x.toml"));
}

TEST(Config, KataKeysNotImplementedYetAreAcceptedWithANotSupportedWarning) {
    auto c = parseConfig(R"(
[hypervisor.qemu]
kernel = "/k"
initrd = "/i"
enable_iothreads = true
default_bridges = 1
valid_hypervisor_paths = ["/usr/bin/qemu-system-x86_64"]
block_device_driver = "virtio-scsi"
[runtime]
enable_pprof = false
[factory]
vm_cache_number = 0
)",
                         "/x.toml");
    EXPECT_TRUE(anyWarningContains(c, "enable_iothreads", "not supported yet"));
    EXPECT_TRUE(anyWarningContains(c, "default_bridges", "not supported yet"));
    EXPECT_TRUE(anyWarningContains(c, "valid_hypervisor_paths", "not supported yet"));
    EXPECT_TRUE(anyWarningContains(c, "enable_pprof", "not supported yet"));
    EXPECT_TRUE(anyWarningContains(c, "vm_cache_number", "not supported yet"));
    EXPECT_TRUE(anyWarningContains(c, "block_device_driver", "virtio-scsi"));
    EXPECT_EQ(c.hypervisor.blockDeviceDriver, "virtio-blk");
}

TEST(Config, InvalidValuesNameFileLineKeyAndReason) {
    expectInvalid("[hypervisor.qemu]\ndefault_memory = 0\n",
                  {"test.toml:2", "[hypervisor.qemu] default_memory", "at least 1, got 0"});
    expectInvalid("[hypervisor.qemu]\ndefault_vcpus = \"2\"\n",
                  {"default_vcpus", "expected an integer", "string"});
    expectInvalid("[hypervisor.qemu]\ndefault_vcpus = 0\n", {"default_vcpus", "at least 1"});
    expectInvalid("[hypervisor.qemu]\nshared_fs = \"nfs\"\n",
                  {"shared_fs", "\"nfs\" unknown", "virtio-9p"});
    expectInvalid("[hypervisor.qemu]\nmachine_type = \"pc\"\n", {"machine_type", "\"pc\""});
    expectInvalid("[hypervisor.qemu]\nenable_debug = \"yes\"\n",
                  {"enable_debug", "expected true or false"});
    expectInvalid("[hypervisor.qemu]\nkernel = 5\n", {"kernel", "expected a string"});
    expectInvalid("[hypervisor.qemu]\nextra_args = [1]\n", {"extra_args", "array of strings"});
    expectInvalid("[hypervisor.qemu]\ninitrd = \"/i\"\nimage = \"/m\"\n", {"image", "both"});
    expectInvalid("[hypervisor.qemu]\ndefault_vcpus = 4\ndefault_maxvcpus = 2\n",
                  {"default_maxvcpus", "less than default_vcpus"});
    expectInvalid("[hypervisor.qemu]\nmsize_9p = 10\n", {"msize_9p"});
    expectInvalid("[hypervisor.qemu]\n[agent.kata]\ndial_timeout = -1\n",
                  {"[agent.kata] dial_timeout"});
    expectInvalid("[hypervisor.qemu]\n[runtime]\ninternetworking_model = \"bridged\"\n",
                  {"internetworking_model", "bridged"});
    expectInvalid("[runtime]\nenable_debug = true\n", {"no [hypervisor.qemu] section"});
    expectInvalid("[hypervisor.clh]\npath = \"/x\"\n", {"clh", "not supported"});
    expectInvalid("[hypervisor.qemu\nkernel = 1\n", {"test.toml:1"});
}

TEST(Config, LoadNamesAMissingFile) {
    try {
        loadConfig("/nonexistent/configuration.toml");
        FAIL();
    } catch (const kata::Error& e) {
        EXPECT_TRUE(contains(e.what(), "/nonexistent/configuration.toml")) << e.what();
        EXPECT_TRUE(contains(e.what(), "ENOENT")) << e.what();
    }
}

TEST(ConfigLookup, ShimNameSelectsTheClassFile) {
    using kata::config::configFileNameForShim;
    EXPECT_EQ(configFileNameForShim("containerd-shim-kata-v2"), "configuration.toml");
    EXPECT_EQ(configFileNameForShim("containerd-shim-kata-qemu-v2"), "configuration-qemu.toml");
    EXPECT_EQ(configFileNameForShim("/opt/kata/bin/containerd-shim-kata-qemu-sev-v2"),
              "configuration-qemu-sev.toml");
    EXPECT_EQ(configFileNameForShim("kata-runtime"), "configuration.toml");
    EXPECT_EQ(configFileNameForShim(""), "configuration.toml");
}

TEST(ConfigLookup, DefaultOrderIsEtcThenUsrShareThenOptKata) {
    EnvGuard env("KATA_CONF_FILE");
    auto paths = kata::config::configSearchPaths("", "containerd-shim-kata-qemu-v2");
    ASSERT_GE(paths.size(), 3u);
    EXPECT_EQ(paths[0], "/etc/kata-containers/configuration-qemu.toml");
    EXPECT_EQ(paths[1], "/usr/share/defaults/kata-containers/configuration-qemu.toml");
    EXPECT_EQ(paths[2], "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml");
    EXPECT_EQ(paths.back(), kata::config::defaultsDir() + "/configuration-qemu.toml");
}

TEST(ConfigLookup, ExplicitPathWinsOverKataConfFile) {
    EnvGuard env("KATA_CONF_FILE");
    TempDir dir;
    std::string a = dir.write("a.toml", "[hypervisor.qemu]\n");
    std::string b = dir.write("b.toml", "[hypervisor.qemu]\n");
    ::setenv("KATA_CONF_FILE", b.c_str(), 1);
    EXPECT_EQ(kata::config::resolveConfigPath(a, "containerd-shim-kata-v2"), a);
    EXPECT_EQ(kata::config::resolveConfigPath("", "containerd-shim-kata-v2"), b);
}

TEST(ConfigLookup, AnExplicitChoiceThatIsMissingIsAnErrorNotAFallback) {
    EnvGuard env("KATA_CONF_FILE");
    TempDir dir;
    std::string missing = dir.path() + "/missing.toml";
    try {
        kata::config::resolveConfigPath(missing, "containerd-shim-kata-v2");
        FAIL();
    } catch (const kata::Error& e) {
        EXPECT_TRUE(contains(e.what(), missing)) << e.what();
        EXPECT_TRUE(contains(e.what(), "ConfigPath")) << e.what();
    }
    ::setenv("KATA_CONF_FILE", missing.c_str(), 1);
    try {
        kata::config::resolveConfigPath("", "containerd-shim-kata-v2");
        FAIL();
    } catch (const kata::Error& e) {
        EXPECT_TRUE(contains(e.what(), missing)) << e.what();
        EXPECT_TRUE(contains(e.what(), "KATA_CONF_FILE")) << e.what();
    }
}

TEST(ConfigLookup, NothingFoundNamesEveryPathTried) {
    EnvGuard env("KATA_CONF_FILE");
    const std::string shim =
        "containerd-shim-kata-nosuchclass" + std::to_string(::getpid()) + "-v2";
    try {
        kata::config::resolveConfigPath("", shim);
        FAIL();
    } catch (const kata::Error& e) {
        EXPECT_EQ(e.code(), kata::StatusCode::kNotFound);
        for (const auto& p : kata::config::configSearchPaths("", shim))
            EXPECT_TRUE(contains(e.what(), p)) << p << " not in " << e.what();
    }
}

TEST(Config, AgentSettingsBecomeKernelParameters) {
    kata::config::RuntimeConfig c;
    EXPECT_EQ(kata::config::agentKernelParams(c), "");
    c.agent.enableDebug = true;
    c.agent.debugConsoleEnabled = true;
    std::string p = kata::config::agentKernelParams(c);
    EXPECT_TRUE(contains(p, "agent.log=debug"));
    EXPECT_TRUE(contains(p, "agent.debug_console"));
}

}  // namespace
