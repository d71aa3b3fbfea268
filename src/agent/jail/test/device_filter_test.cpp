// The cgroup v2 device filter: the BPF program a rule set compiles to, and the program at work on
// the host's v2 hierarchy (a forked child in a fresh child cgroup opening device nodes).
#include "device_filter.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <string>

#include "cgroup.h"
#include "kata/common/error.h"
#include "kata/jail/reaper.h"

namespace kata::jail {
namespace {

namespace fs = std::filesystem;

struct Insn {
    uint8_t code, dst, src;
    int16_t off;
    int32_t imm;
    bool operator==(const Insn&) const = default;
};
std::ostream& operator<<(std::ostream& o, const Insn& i) {
    return o << "{0x" << std::hex << int(i.code) << std::dec << " r" << int(i.dst) << " r"
             << int(i.src) << " off " << i.off << " imm " << i.imm << "}";
}
std::vector<Insn> plain(const std::vector<bpf_insn>& p) {
    std::vector<Insn> out;
    for (const auto& i : p) out.push_back({i.code, i.dst_reg, i.src_reg, i.off, i.imm});
    return out;
}

const std::vector<Insn> kPrologue = {
    {0x61, 2, 1, 0, 0},  {0x54, 2, 0, 0, 0xffff}, {0x61, 3, 1, 0, 0},
    {0x74, 3, 0, 0, 16}, {0x61, 4, 1, 4, 0},      {0x61, 5, 1, 8, 0},
};

TEST(DeviceFilterProgram, DenyAllThenAllowOneChecksTheLastRuleFirst) {
    auto p = plain(deviceFilterProgram({{false, 'a', -1, -1, "rwm"}, {true, 'c', 1, 3, "rwm"}}));
    std::vector<Insn> want = kPrologue;
    // allow c 1:3 rwm: type, major, minor, then return 1.
    want.insert(want.end(), {{0x55, 2, 0, 4, BPF_DEVCG_DEV_CHAR},
                             {0x55, 4, 0, 3, 1},
                             {0x55, 5, 0, 2, 3},
                             {0xb7, 0, 0, 0, 1},
                             {0x95, 0, 0, 0, 0}});
    // deny a: matches everything, so it ends the program.
    want.insert(want.end(), {{0xb7, 0, 0, 0, 0}, {0x95, 0, 0, 0, 0}});
    EXPECT_EQ(p, want);
}

TEST(DeviceFilterProgram, PartialAccessWildcardsAndDefaultDeny) {
    // deny b *:7 w ; allow c 136:* r  -> no catch-all, so the program ends denying.
    auto p = plain(deviceFilterProgram({{false, 'b', -1, 7, "w"}, {true, 'c', 136, -1, "r"}}));
    std::vector<Insn> want = kPrologue;
    want.insert(want.end(), {{0x55, 2, 0, 6, BPF_DEVCG_DEV_CHAR},
                             {0xbc, 1, 3, 0, 0},
                             {0x54, 1, 0, 0, static_cast<int32_t>(~uint32_t(BPF_DEVCG_ACC_READ))},
                             {0x55, 1, 0, 3, 0},
                             {0x55, 4, 0, 2, 136},
                             {0xb7, 0, 0, 0, 1},
                             {0x95, 0, 0, 0, 0}});
    want.insert(want.end(), {{0x55, 2, 0, 6, BPF_DEVCG_DEV_BLOCK},
                             {0xbc, 1, 3, 0, 0},
                             {0x54, 1, 0, 0, static_cast<int32_t>(~uint32_t(BPF_DEVCG_ACC_WRITE))},
                             {0x55, 1, 0, 3, 0},
                             {0x55, 5, 0, 2, 7},
                             {0xb7, 0, 0, 0, 0},
                             {0x95, 0, 0, 0, 0}});
    want.insert(want.end(), {{0xb7, 0, 0, 0, 0}, {0x95, 0, 0, 0, 0}});
    EXPECT_EQ(p, want);
}

TEST(DeviceFilterProgram, SpecRulesComeBeforeTheDefaultDevices) {
    grpc::LinuxResources r;
    auto* d = r.add_devices();
    d->set_allow(false);
    d->set_access("rwm");
    d->set_major(-1);
    d->set_minor(-1);
    auto rules = deviceRules(r);
    ASSERT_GT(rules.size(), 1u);
    EXPECT_FALSE(rules[0].allow);
    EXPECT_EQ(rules[0].type, 'a');
    bool null = false;
    for (size_t i = 1; i < rules.size(); ++i)
        null |=
            rules[i].allow && rules[i].type == 'c' && rules[i].major == 1 && rules[i].minor == 3;
    EXPECT_TRUE(null) << "/dev/null is not among the default devices";
    d->set_access("rwx");
    EXPECT_THROW(deviceFilterProgram(deviceRules(r)), Error);
}

TEST(DeviceRules, CgroupV1TextForTheSameRules) {
    EXPECT_EQ(cgroupV1DeviceRule({true, 'c', 1, 3, "rwm"}), "c 1:3 rwm");
    EXPECT_EQ(cgroupV1DeviceRule({false, 'b', 8, -1, "r"}), "b 8:* r");
    EXPECT_EQ(cgroupV1DeviceRule({false, 'a', -1, -1, "rwm"}), "a");
    grpc::LinuxResources r;
    auto* d = r.add_devices();
    d->set_allow(false);
    d->set_access("rwm");
    auto rules = deviceRules(r);
    EXPECT_EQ(cgroupV1DeviceRule(rules.front()), "a");
    EXPECT_EQ(cgroupV1DeviceRule(rules.back()), "c 136:* rwm");  // the pty slaves, last default
}

// A child cgroup of the host's v2 hierarchy, removed (with anything left in it killed) at the end.
class HostV2Cgroup : public ::testing::Test {
  protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "needs root (cgroup and BPF)";
        std::string root = "/sys/fs/cgroup/unified";
        if (!fs::exists(root + "/cgroup.procs")) root = "/sys/fs/cgroup";
        if (!fs::exists(root + "/cgroup.controllers"))
            GTEST_SKIP() << "no cgroup v2 hierarchy at /sys/fs/cgroup/unified or /sys/fs/cgroup";
        dir_ = root + "/kata-devfilter-test-" + std::to_string(getpid());
        ASSERT_EQ(mkdir(dir_.c_str(), 0755), 0) << dir_ << ": " << strerror(errno);
        char tmpl[] = "/dev/kata-devfilter-XXXXXX";  // /dev is never nodev
        ASSERT_NE(mkdtemp(tmpl), nullptr) << strerror(errno);
        nodes_ = tmpl;
        ASSERT_EQ(mknod((nodes_ + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
        ASSERT_EQ(mknod((nodes_ + "/zero").c_str(), S_IFCHR | 0666, makedev(1, 5)), 0);
        ASSERT_EQ(mknod((nodes_ + "/kmsg").c_str(), S_IFCHR | 0644, makedev(1, 11)), 0);
        Reaper::instance().start();
    }
    void TearDown() override {
        if (!nodes_.empty()) fs::remove_all(nodes_);
        if (!dir_.empty()) rmdir(dir_.c_str());
    }

    // Forks a child into the cgroup; it opens path read-write and exits with the errno (0: ok).
    int openInCgroup(const std::string& path, std::string procs = "", int flags = O_RDWR) {
        if (procs.empty()) procs = dir_ + "/cgroup.procs";
        pid_t pid = fork();
        if (pid == 0) {
            int fd = open(procs.c_str(), O_WRONLY);
            if (fd < 0 || write(fd, "0", 1) != 1) _exit(200);
            close(fd);
            fd = open(path.c_str(), flags);
            _exit(fd < 0 ? errno : 0);
        }
        return exitCode(pid);
    }

    static int exitCode(pid_t pid) {
        int status = Reaper::instance().waitFor(pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
    }

    std::string dir_, nodes_;
};

TEST_F(HostV2Cgroup, AttachedProgramDeniesAndAllowsAndIsReplacedAndDetached) {
    DeviceFilter filter(dir_);
    try {
        filter.replace(
            deviceFilterProgram({{false, 'a', -1, -1, "rwm"}, {true, 'c', 1, 3, "rwm"}}));
    } catch (const SystemError& e) {
        if (e.err() == EPERM || isBpfUnsupported(e.err()))
            GTEST_SKIP() << "host kernel refuses a cgroup device program: " << e.what();
        throw;
    }
    EXPECT_EQ(openInCgroup(nodes_ + "/null"), 0);
    EXPECT_EQ(openInCgroup(nodes_ + "/zero"), EPERM);

    // Update: only read access to /dev/zero, write still denied.
    filter.replace(deviceFilterProgram(
        {{false, 'a', -1, -1, "rwm"}, {true, 'c', 1, 3, "rwm"}, {true, 'c', 1, 5, "r"}}));
    EXPECT_EQ(openInCgroup(nodes_ + "/zero"), EPERM) << "rw open with only r granted";
    int fdErr = [&] {
        std::string procs = dir_ + "/cgroup.procs", zero = nodes_ + "/zero";
        pid_t pid = fork();
        if (pid == 0) {
            int fd = open(procs.c_str(), O_WRONLY);
            if (fd < 0 || write(fd, "0", 1) != 1) _exit(200);
            close(fd);
            _exit(open(zero.c_str(), O_RDONLY) < 0 ? errno : 0);
        }
        return exitCode(pid);
    }();
    EXPECT_EQ(fdErr, 0) << "read-only open of /dev/zero denied after the update";

    filter.detach();
    EXPECT_FALSE(filter.attached());
    EXPECT_EQ(openInCgroup(nodes_ + "/zero"), 0) << "still filtered after detach";
}

// The v2 backend applies the spec's rules (defaults appended), replaces them on update and
// drops them with the cgroup.
TEST_F(HostV2Cgroup, BackendAppliesSpecRulesAndUpdatesThem) {
    std::string root = dir_.substr(0, dir_.rfind('/'));
    auto cg = makeCgroupV2(root, dir_.substr(root.size()) + "/c");
    struct Cleanup {
        Cgroup* cg;
        ~Cleanup() { cg->destroy(); }
    } cleanup{cg.get()};
    std::string procs = cg->procsFiles().at(0);

    grpc::LinuxResources r;
    auto* all = r.add_devices();
    all->set_allow(false);
    all->set_major(-1);
    all->set_minor(-1);
    all->set_access("rwm");
    try {
        cg->apply(r, true);
    } catch (const SystemError& e) {
        if (e.err() == EPERM)
            GTEST_SKIP() << "host kernel refuses a cgroup device program: " << e.what();
        throw;
    }
    EXPECT_EQ(openInCgroup(nodes_ + "/null", procs), 0) << "default device denied";
    EXPECT_EQ(openInCgroup(nodes_ + "/kmsg", procs, O_RDONLY), EPERM);

    auto* kmsg = r.add_devices();
    kmsg->set_allow(true);
    kmsg->set_type("c");
    kmsg->set_major(1);
    kmsg->set_minor(11);
    kmsg->set_access("r");
    cg->apply(r, false);
    EXPECT_EQ(openInCgroup(nodes_ + "/kmsg", procs, O_RDONLY), 0) << "update not applied";
    EXPECT_EQ(openInCgroup(nodes_ + "/kmsg", procs, O_WRONLY), EPERM);
    cg->destroy();
    EXPECT_FALSE(fs::exists(dir_ + "/c"));
}

}  // namespace
}  // namespace kata::jail
