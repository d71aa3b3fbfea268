// Runs the kata-runtime binary the way a user does and checks what it prints and returns.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace {

constexpr const char* kQemu = "/usr/bin/qemu-system-x86_64";

struct Result {
    int status = -1;
    std::string out, err;
};

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

class CliTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/kata-runtime-cli.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        kernel_ = dir_ + "/vmlinux";
        initrd_ = dir_ + "/initrd.img";
        std::ofstream(kernel_) << "k";
        std::ofstream(initrd_) << "i";
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::string writeConfig(const std::string& body) {
        std::string path = dir_ + "/configuration.toml";
        std::ofstream(path) << body;
        return path;
    }
    std::string validConfig(const std::string& kernel) {
        return writeConfig("[hypervisor.qemu]\npath = \"" + std::string(kQemu) + "\"\nkernel = \"" +
                           kernel + "\"\ninitrd = \"" + initrd_ +
                           "\"\ndefault_memory = 256\nkernel_params = \"agent.test=1\"\n"
                           "[agent.kata]\nenable_debug = true\n");
    }

    // args are shell-quoted by the caller where needed; env is "K=V " prefixes.
    Result run(const std::string& args, const std::string& env = "") {
        Result r;
        std::string out = dir_ + "/stdout", err = dir_ + "/stderr";
        std::string cmd = "env -u KATA_CONF_FILE " + env + " '" + KATA_RUNTIME_BIN + "' " + args +
                          " >'" + out + "' 2>'" + err + "'";
        int rc = std::system(cmd.c_str());
        r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
        r.out = slurp(out);
        r.err = slurp(err);
        return r;
    }

    std::string dir_, kernel_, initrd_;
};

TEST_F(CliTest, CheckPassesWhenQemuKernelAndInitrdArePresent) {
    if (::access(kQemu, X_OK) != 0) GTEST_SKIP() << kQemu << " is not installed";
    std::string cfg = validConfig(kernel_);
    Result r = run("--config '" + cfg + "' check");
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("[ ok ] QEMU binary " + std::string(kQemu)), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("guest kernel " + kernel_), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("guest initrd " + initrd_), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("accelerator: "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("agent channel: "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("System is capable of running Kata Containers"), std::string::npos);
    if (fs::exists("/sys/module/kvm_pvm") && !fs::exists("/sys/module/kvm_intel") &&
        !fs::exists("/sys/module/kvm_amd")) {
        EXPECT_NE(r.out.find("[warn] accelerator: tcg: falling back"), std::string::npos) << r.out;
    }
}

TEST_F(CliTest, CheckFailsNamingAMissingKernel) {
    std::string missing = dir_ + "/no-such-vmlinux";
    Result r = run("--config '" + validConfig(missing) + "' check");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.out.find("[FAIL] guest kernel " + missing + ": No such file or directory"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("not capable"), std::string::npos) << r.out;
}

TEST_F(CliTest, EnvJsonShowsTheResolvedConfiguration) {
    std::string cfg = validConfig(kernel_);
    Result r = run("env --json", "KATA_CONF_FILE='" + cfg + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["Runtime"]["Config"]["Path"], cfg);
    EXPECT_EQ(j["Hypervisor"]["Path"], kQemu);
    EXPECT_EQ(j["Hypervisor"]["DefaultMemoryMiB"], 256);
    std::string accel = j["Hypervisor"]["Accelerator"]["Resolved"];
    EXPECT_TRUE(accel == "kvm" || accel == "tcg") << accel;
    EXPECT_EQ(j["Kernel"]["Path"], kernel_);
    std::string params = j["Kernel"]["Parameters"];
    EXPECT_NE(params.find("console=ttyS0"), std::string::npos) << params;
    EXPECT_NE(params.find("agent.test=1"), std::string::npos) << params;
    EXPECT_NE(params.find("agent.log=debug"), std::string::npos) << params;
    EXPECT_EQ(j["Agent"]["Debug"], true);
    EXPECT_EQ(j["Initrd"]["Path"], initrd_);
}

TEST_F(CliTest, EnvTomlHasKataSections) {
    Result r = run("--config '" + validConfig(kernel_) + "' env");
    ASSERT_EQ(r.status, 0) << r.err;
    for (const char* s : {"[Runtime]", "[Hypervisor]", "[Kernel]", "[Agent]", "[Host]"})
        EXPECT_NE(r.out.find(s), std::string::npos) << s;
}

TEST_F(CliTest, InvalidConfigurationIsReportedWithKeyAndFile) {
    std::string cfg = writeConfig("[hypervisor.qemu]\ndefault_memory = 0\n");
    Result r = run("--config '" + cfg + "' env");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find(cfg), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("default_memory"), std::string::npos) << r.err;
}

TEST_F(CliTest, MissingExplicitConfigNamesThePath) {
    Result r = run("--config '" + dir_ + "/nope.toml' check");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find(dir_ + "/nope.toml"), std::string::npos) << r.err;
}

TEST_F(CliTest, VersionAndNotImplementedCommands) {
    Result v = run("--version");
    EXPECT_EQ(v.status, 0);
    EXPECT_NE(v.out.find("kata-runtime"), std::string::npos) << v.out;
    Result e = run("exec sandbox-id");
    EXPECT_NE(e.status, 0);
    EXPECT_NE(e.err.find("not implemented"), std::string::npos) << e.err;
}

}  // namespace
