// Shared fixture for the jail tests: a busybox rootfs per test, a spec like containerd's default,
// and checks that a container leaves no process, cgroup or mount behind.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "kata/jail/container.h"
#include "kata/jail/reaper.h"
#include "spec_test_util.h"

namespace kata::jail::test {

inline std::string readAllFd(int fd, int timeoutMs = 20000) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) break;
        struct pollfd p = {fd, POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(left));
        if (r <= 0) break;
        char buf[4096];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;  // EOF, or EIO on a pty whose slave is gone
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

inline std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// The directory of our own cgroup in a v1 hierarchy (the test process's place in it).
inline std::string selfCgroupDir(const std::string& controller) {
    std::ifstream f("/proc/self/cgroup");
    std::string line;
    while (std::getline(f, line)) {
        auto a = line.find(':');
        auto b = line.find(':', a + 1);
        if (line.substr(a + 1, b - a - 1) == controller)
            return "/sys/fs/cgroup/" + controller + line.substr(b + 1);
    }
    return "";
}

// The shared "kata_jail_test" parent of the tests' cgroups: whoever finishes last removes it
// (rmdir fails harmlessly while another test still has a cgroup below it).
inline void removeTestCgroupParents() {
    for (const char* c :
         {"memory", "pids", "cpu", "cpuacct", "cpuset", "freezer", "devices", "blkio", "hugetlb",
          "net_cls", "net_prio", "perf_event", "rdma", "misc"}) {
        std::string d = selfCgroupDir(c);
        if (!d.empty()) ::rmdir((d + "/kata_jail_test").c_str());
    }
    for (const char* root : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"})
        ::rmdir((std::string(root) + "/kata_jail_test").c_str());
}

inline bool hostHasV1(const std::string& controller) {
    return !selfCgroupDir(controller).empty() &&
           std::filesystem::exists("/sys/fs/cgroup/" + controller + "/cgroup.procs");
}

// std::system()/waitpid cannot be used once the reaper runs: it collects every child first.
inline int runCommand(std::vector<std::string> args) {
    Reaper::instance().start();
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    if (pid < 0) return -1;
    int status = Reaper::instance().waitFor(pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

class JailTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "container tests need root";
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        id_ = std::string("jt-") + info->name() + "-" + std::to_string(::getpid());
        for (auto& c : id_)
            if (c == '/' || c == '_') c = '-';
        char tmpl[] = "/tmp/jail-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        rootfs_ = dir_ + "/rootfs";
        std::string script =
            std::string(KATA_SOURCE_DIR) + "/tests/fixtures/make-busybox-rootfs.sh";
        ASSERT_EQ(runCommand({"/bin/sh", "-c", script + " " + rootfs_ + " 2>/dev/null"}), 0);
    }

    void TearDown() override {
        if (dir_.empty()) return;
        for (auto& c : containers_) {
            pid_t pid = c->initProcess()->pid();
            try {
                c->destroy();
            } catch (const std::exception& e) {
                ADD_FAILURE() << "destroy: " << e.what();
            }
            expectGone(c->id(), pid);
        }
        containers_.clear();
        removeTestCgroupParents();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    grpc::Spec baseSpec(std::vector<std::string> args) {
        grpc::Spec s;
        s.set_version("1.0.2");
        auto* p = s.mutable_process();
        for (auto& a : args) p->add_args(a);
        p->add_env("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        p->set_cwd("/");
        s.mutable_root()->set_path(rootfs_);
        s.set_hostname("jailtest");
        addMount(&s, "/proc", "proc", "proc", {"nosuid", "noexec", "nodev"});
        addDefaultDevAndSysMounts(&s);
        auto* l = s.mutable_linux();
        for (const char* ns : {"pid", "ipc", "uts", "mount", "network"})
            l->add_namespaces()->set_type(ns);
        l->set_cgroupspath("kata_jail_test/" + id_);
        l->add_maskedpaths("/proc/kcore");
        l->add_maskedpaths("/proc/acpi");
        l->add_readonlypaths("/proc/sys");
        l->add_readonlypaths("/proc/sysrq-trigger");
        // Deny every device but the defaults, as containerd's spec does.
        auto* deny = l->mutable_resources()->add_devices();
        deny->set_allow(false);
        deny->set_access("rwm");
        return s;
    }

    Container* create(const grpc::Spec& spec, const std::string& id = "") {
        auto c = Container::create(id.empty() ? id_ : id, spec, CreateOptions{dir_, ""});
        containers_.push_back(std::move(c));
        return containers_.back().get();
    }

    // Runs a container to completion; returns {exit code, stdout, stderr}.
    struct Result {
        int code;
        std::string out, err;
    };
    Result run(const grpc::Spec& spec) {
        Container* c = create(spec);
        c->start();
        auto init = c->initProcess();
        Result r;
        r.out = readAllFd(init->io().stdoutReader.get());
        r.err = readAllFd(init->io().stderrReader.get());
        auto code = init->waitFor(20000);
        r.code = code ? *code : -1;
        return r;
    }

    std::vector<std::string> cgroupDirs(const std::string& id) {
        std::vector<std::string> out;
        for (const char* c : {"memory", "pids", "cpu", "freezer", "devices", "cpuset"})
            if (hostHasV1(c)) out.push_back(selfCgroupDir(c) + "/kata_jail_test/" + id);
        return out;
    }

    void expectGone(const std::string& id, pid_t initPid) {
        for (const auto& d : cgroupDirs(id)) EXPECT_FALSE(std::filesystem::exists(d)) << d;
        if (initPid > 0) {
            errno = 0;
            EXPECT_TRUE(::kill(initPid, 0) != 0 && errno == ESRCH)
                << "init pid " << initPid << " still exists";
        }
        EXPECT_EQ(slurp("/proc/self/mountinfo").find(rootfs_), std::string::npos)
            << "a mount of the rootfs leaked into the agent's namespace";
    }

    std::string id_, dir_, rootfs_;
    std::vector<std::unique_ptr<Container>> containers_;
};

}  // namespace kata::jail::test
