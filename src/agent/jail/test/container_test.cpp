// End-to-end tests of the container library: real namespaces, mounts, cgroups and processes,
// each container in its own busybox rootfs. Run as root.
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <set>

#include "jail_test_util.h"
#include "kata/common/error.h"

namespace kata::jail::test {
namespace {

TEST_F(JailTest, EchoHelloReachesStdout) {
    auto r = run(baseSpec({"echo", "hello"}));
    EXPECT_EQ(r.code, 0);
    EXPECT_EQ(r.out, "hello\n");
}

TEST_F(JailTest, ExitCodesAndSignalDeaths) {
    auto r = run(baseSpec({"sh", "-c", "echo oops >&2; exit 7"}));
    EXPECT_EQ(r.code, 7);
    EXPECT_EQ(r.err, "oops\n");

    Container* c = create(baseSpec({"sleep", "100"}), id_ + "-b");
    c->start();
    EXPECT_EQ(c->state(), Container::State::kRunning);
    c->kill(SIGKILL, false);
    EXPECT_EQ(c->initProcess()->waitFor(10000), 128 + SIGKILL);
    EXPECT_EQ(c->state(), Container::State::kStopped);
}

TEST_F(JailTest, StateBeforeStartIsCreatedAndProcessWaits) {
    Container* c = create(baseSpec({"echo", "started"}));
    EXPECT_EQ(c->state(), Container::State::kCreated);
    EXPECT_FALSE(c->initProcess()->exitCode());
    EXPECT_EQ(c->pids().size(), 1u);
    EXPECT_EQ(c->pids()[0], c->initProcess()->pid());
    c->start();
    EXPECT_EQ(readAllFd(c->initProcess()->io().stdoutReader.get()), "started\n");
    EXPECT_EQ(c->initProcess()->waitFor(10000), 0);
}

TEST_F(JailTest, PidNamespaceMakesInitPidOne) {
    // The trailing "true" keeps sh from exec'ing ps in its place.
    auto r = run(baseSpec({"sh", "-c", "echo $$; ps -o pid,comm; true"}));
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out.substr(0, 2), "1\n") << r.out;
    EXPECT_NE(r.out.find("    1 sh"), std::string::npos) << r.out;
}

TEST_F(JailTest, NoPivotRootMovesAndChroots) {
    auto spec = baseSpec(
        {"sh", "-c",
         "ls /bin/busybox && cat /etc/group | head -1 && ls -d /work || echo no-agent-tree"});
    spec.mutable_root()->set_readonly(true);
    auto c = Container::create(id_, spec, CreateOptions{dir_, "", true});
    c->start();
    std::string out = readAllFd(c->initProcess()->io().stdoutReader.get());
    EXPECT_EQ(c->initProcess()->waitFor(10000), 0);
    EXPECT_EQ(out, "/bin/busybox\nroot:x:0:\nno-agent-tree\n");
    pid_t pid = c->initProcess()->pid();
    c->destroy();
    expectGone(id_, pid);
}

TEST_F(JailTest, UtsNamespaceHostname) {
    auto r = run(baseSpec({"hostname"}));
    EXPECT_EQ(r.out, "jailtest\n");
}

TEST_F(JailTest, ExecJoinsPidNamespaceHostnameAndCgroup) {
    Container* c = create(baseSpec({"sleep", "100"}));
    c->start();
    grpc::Process p;
    p.add_args("sh");
    p.add_args("-c");
    p.add_args("hostname; echo $$; ps -o pid,comm");
    p.add_env("PATH=/bin:/usr/bin");
    p.set_cwd("/tmp");
    auto proc = c->exec("e1", p);
    std::string out = readAllFd(proc->io().stdoutReader.get());
    EXPECT_EQ(proc->waitFor(10000), 0);
    EXPECT_EQ(out.substr(0, 9), "jailtest\n") << out;
    EXPECT_NE(out.find("    1 sleep"), std::string::npos) << out;
    EXPECT_EQ(c->process("e1"), proc);
    EXPECT_EQ(c->process("nope"), nullptr);
    EXPECT_EQ(c->process(""), c->initProcess());
    EXPECT_THROW(c->exec("e1", p), Error);
}

// The agent's own open fds, by number.
std::set<int> openFds() {
    std::set<int> fds;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
        fds.insert(std::stoi(e.path().filename().string()));
    return fds;
}

TEST_F(JailTest, ForgottenProcessFreesItsExecIdAndItsFds) {
    Container* c = create(baseSpec({"sleep", "100"}));
    c->start();
    grpc::Process p;
    p.add_args("sleep");
    p.add_args("100");
    const std::set<int> before = openFds();
    auto proc = c->exec("e1", p);
    std::weak_ptr<Process> weak = proc;
    const std::set<int> during = openFds();
    for (int fd : {proc->io().stdinWriter.get(), proc->io().stdoutReader.get(),
                   proc->io().stderrReader.get()}) {
        EXPECT_EQ(before.count(fd), 0u) << fd;
        EXPECT_EQ(during.count(fd), 1u) << fd;
    }

    // Neither a running process nor the init can be forgotten; an unknown id is not found.
    auto codeOf = [&](const std::string& execId) {
        try {
            c->forgetProcess(execId);
            return StatusCode::kOk;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(execId), std::string::npos) << e.what();
            return e.code();
        }
    };
    EXPECT_EQ(codeOf("e1"), StatusCode::kFailedPrecondition);
    EXPECT_EQ(c->process("e1"), proc);
    EXPECT_EQ(codeOf(id_), StatusCode::kFailedPrecondition);
    EXPECT_EQ(codeOf("nope"), StatusCode::kNotFound);
    EXPECT_THROW(c->exec("e1", p), Error);

    proc->signal(SIGKILL);
    EXPECT_EQ(proc->waitFor(10000), 128 + SIGKILL);
    EXPECT_EQ(codeOf("e1"), StatusCode::kOk);
    EXPECT_EQ(c->process("e1"), nullptr);
    EXPECT_EQ(codeOf("e1"), StatusCode::kNotFound);
    EXPECT_EQ(c->process(""), c->initProcess());
    proc.reset();  // the caller's reference was the last but the reaper's
    // The reaper's exit callback lets go of the process just after waking the waiters.
    for (int i = 0; i < 100 && !weak.expired(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(weak.expired());
    EXPECT_EQ(openFds(), before);

    // The exec id is free again.
    grpc::Process echo;
    echo.add_args("echo");
    echo.add_args("second");
    auto again = c->exec("e1", echo);
    EXPECT_EQ(readAllFd(again->io().stdoutReader.get()), "second\n");
    EXPECT_EQ(again->waitFor(10000), 0);
    EXPECT_EQ(c->process("e1"), again);
}

TEST_F(JailTest, ExecProcessIsInTheContainersCgroup) {
    Container* c = create(baseSpec({"sleep", "100"}));
    c->start();
    grpc::Process p;
    p.add_args("sleep");
    p.add_args("100");
    auto proc = c->exec("sleeper", p);
    auto pids = c->pids();
    EXPECT_NE(std::find(pids.begin(), pids.end(), proc->pid()), pids.end());
    EXPECT_EQ(pids.size(), 2u);
}

TEST_F(JailTest, SignalsReachExecedProcesses) {
    Container* c = create(baseSpec({"sleep", "100"}));
    c->start();
    grpc::Process p;
    p.add_args("sleep");
    p.add_args("100");
    auto proc = c->exec("s", p);
    EXPECT_FALSE(proc->waitFor(200));
    proc->signal(SIGTERM);
    EXPECT_EQ(proc->waitFor(10000), 128 + SIGTERM);
    proc->signal(SIGTERM);  // after exit: no error
    auto proc2 = c->exec("s2", p);
    c->kill(SIGKILL, true);
    EXPECT_EQ(proc2->waitFor(10000), 128 + SIGKILL);
    EXPECT_EQ(c->initProcess()->waitFor(10000), 128 + SIGKILL);
}

TEST_F(JailTest, StdinIsPiped) {
    Container* c = create(baseSpec({"sh", "-c", "read line; echo got:$line"}));
    c->start();
    auto init = c->initProcess();
    ASSERT_EQ(::write(init->io().stdinWriter.get(), "abc\n", 4), 4);
    init->closeStdin();
    EXPECT_EQ(readAllFd(init->io().stdoutReader.get()), "got:abc\n");
    EXPECT_EQ(init->waitFor(10000), 0);
}

TEST_F(JailTest, ReadonlyRootfs) {
    auto spec = baseSpec({"sh", "-c", "touch /x && echo wrote; touch /dev/shm/y && echo shm-ok"});
    spec.mutable_root()->set_readonly(true);
    auto r = run(spec);
    EXPECT_EQ(r.out, "shm-ok\n");
    EXPECT_NE(r.err.find("Read-only file system"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(rootfs_ + "/x"));
}

TEST_F(JailTest, MaskedAndReadonlyPaths) {
    // /proc/kcore (in the base spec) is checked only where the kernel has it.
    bool kcore = std::filesystem::exists("/proc/kcore");
    auto spec =
        baseSpec({"sh", "-c",
                  std::string(kcore ? "wc -c < /proc/kcore; " : "") +
                      "wc -c < /etc/group; ls /proc/acpi | wc -l; touch /etc/z || echo ro-etc"});
    spec.mutable_linux()->add_maskedpaths("/etc/group");
    spec.mutable_linux()->add_readonlypaths("/etc");
    auto r = run(spec);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, std::string(kcore ? "0\n" : "") + "0\n0\nro-etc\n") << r.err;
    EXPECT_GT(std::filesystem::file_size(rootfs_ + "/etc/group"), 0u);
}

TEST_F(JailTest, CapabilitiesAreDropped) {
    auto spec = baseSpec({"sh", "-c",
                          "grep -E '^Cap(Eff|Bnd|Prm)' /proc/self/status; "
                          "chown 1000 /tmp && echo chown-ok; "
                          "mknod /tmp/n c 1 3 || echo mknod-denied"});
    auto* caps = spec.mutable_process()->mutable_capabilities();
    for (auto* set :
         {caps->mutable_bounding(), caps->mutable_effective(), caps->mutable_permitted()})
        set->Add("CAP_CHOWN");
    auto r = run(spec);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("CapPrm:\t0000000000000001"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("CapEff:\t0000000000000001"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("CapBnd:\t0000000000000001"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("chown-ok"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("mknod-denied"), std::string::npos) << r.out;
}

TEST_F(JailTest, UnknownCapabilityIsRejected) {
    auto spec = baseSpec({"true"});
    spec.mutable_process()->mutable_capabilities()->add_bounding("CAP_NOSUCH");
    try {
        create(spec);
        FAIL() << "create succeeded";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("CAP_NOSUCH"), std::string::npos) << e.what();
    }
    expectGone(id_, 0);
}

TEST_F(JailTest, SeccompDeniesMkdirWithErrno) {
    auto spec =
        baseSpec({"sh", "-c", "mkdir /tmp/d || echo denied; touch /tmp/f && echo touch-ok"});
    auto* sc = spec.mutable_linux()->mutable_seccomp();
    sc->set_defaultaction("SCMP_ACT_ALLOW");
    sc->add_architectures("SCMP_ARCH_X86_64");
    auto* rule = sc->add_syscalls();
    rule->add_names("mkdir");
    rule->add_names("mkdirat");
    rule->set_action("SCMP_ACT_ERRNO");
    rule->set_errnoret(EPERM);
    auto r = run(spec);
    EXPECT_EQ(r.out, "denied\ntouch-ok\n");
    EXPECT_NE(r.err.find("Operation not permitted"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(rootfs_ + "/tmp/d"));
}

TEST_F(JailTest, SeccompArgumentFilter) {
    // Only chmod to mode 0777 is refused, with a distinctive errno.
    auto spec = baseSpec({"sh", "-c",
                          "touch /tmp/f; chmod 755 /tmp/f && echo 755-ok; "
                          "chmod 777 /tmp/f || echo 777-denied"});
    auto* sc = spec.mutable_linux()->mutable_seccomp();
    sc->set_defaultaction("SCMP_ACT_ALLOW");
    for (auto [name, index] : {std::pair{"chmod", 1}, std::pair{"fchmodat", 2}}) {
        auto* rule = sc->add_syscalls();
        rule->add_names(name);
        rule->set_action("SCMP_ACT_ERRNO");
        rule->set_errnoret(EROFS);
        auto* arg = rule->add_args();
        arg->set_index(index);
        arg->set_value(0777);
        arg->set_op("SCMP_CMP_EQ");
    }
    auto r = run(spec);
    EXPECT_EQ(r.out, "755-ok\n777-denied\n") << r.err;
    EXPECT_NE(r.err.find("Read-only file system"), std::string::npos) << r.err;
}

TEST_F(JailTest, UserIdsAndGroupsFromTheRootfs) {
    auto spec = baseSpec({"id"});
    auto* u = spec.mutable_process()->mutable_user();
    u->set_uid(1000);
    u->set_gid(1000);
    u->add_additionalgids(3000);
    auto r = run(spec);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("uid=1000(tester) gid=1000(tester)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("2000(extra)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("3000"), std::string::npos) << r.out;
}

TEST_F(JailTest, UsernameIsResolvedAndHomeSet) {
    auto spec = baseSpec({"sh", "-c", "id -u; id -g; echo $HOME"});
    spec.mutable_process()->mutable_user()->set_username("tester");
    auto r = run(spec);
    EXPECT_EQ(r.out, "1000\n1000\n/tmp\n") << r.err;
    spec.mutable_process()->mutable_user()->set_username("nobodyhere");
    try {
        create(spec, id_ + "-x");
        FAIL() << "unknown user accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("nobodyhere"), std::string::npos) << e.what();
    }
}

TEST_F(JailTest, TerminalGivesPtyMaster) {
    auto spec = baseSpec({"sh", "-c", "tty; echo rows=$(stty size)"});
    spec.mutable_process()->set_terminal(true);
    spec.mutable_process()->mutable_consolesize()->set_height(33);
    spec.mutable_process()->mutable_consolesize()->set_width(99);
    Container* c = create(spec);
    auto init = c->initProcess();
    ASSERT_TRUE(init->io().ptyMaster.valid());
    EXPECT_FALSE(init->io().stdoutReader.valid());
    EXPECT_TRUE(init->terminal());
    c->start();
    std::string out = readAllFd(init->io().ptyMaster.get());
    EXPECT_EQ(init->waitFor(10000), 0);
    EXPECT_NE(out.find("/dev/pts/0"), std::string::npos) << out;
    EXPECT_NE(out.find("rows=33 99"), std::string::npos) << out;
}

TEST_F(JailTest, ExecWithTerminalAndResize) {
    Container* c = create(baseSpec({"sleep", "100"}));
    c->start();
    grpc::Process p;
    p.set_terminal(true);
    p.add_args("sh");
    p.add_args("-c");
    p.add_args("sleep 0.3; tty; stty size");
    auto proc = c->exec("t", p);
    ASSERT_TRUE(proc->io().ptyMaster.valid());
    proc->resizeTty(20, 70);
    std::string out = readAllFd(proc->io().ptyMaster.get());
    EXPECT_EQ(proc->waitFor(10000), 0);
    EXPECT_NE(out.find("/dev/pts/"), std::string::npos) << out;
    EXPECT_NE(out.find("20 70"), std::string::npos) << out;
}

TEST_F(JailTest, MemoryLimitOomKillsAndCallsBack) {
    if (!hostHasV1("memory")) GTEST_SKIP() << "no v1 memory controller on this host";
    auto spec = baseSpec({"sh", "-c", "a=$(head -c 67108864 /dev/zero | tr '\\0' x); echo ${#a}"});
    auto* mem = spec.mutable_linux()->mutable_resources()->mutable_memory();
    mem->set_limit(16 << 20);
    mem->set_swap(16 << 20);
    Container* c = create(spec);
    std::atomic<int> ooms{0};
    c->setOomCallback([&] { ++ooms; });
    std::string dir = selfCgroupDir("memory") + "/kata_jail_test/" + id_;
    EXPECT_EQ(slurp(dir + "/memory.limit_in_bytes"), std::to_string(16 << 20) + "\n");
    c->start();
    readAllFd(c->initProcess()->io().stdoutReader.get());
    EXPECT_EQ(c->initProcess()->waitFor(20000), 128 + SIGKILL);
    for (int i = 0; i < 200 && ooms == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_GE(ooms.load(), 1);
}

TEST_F(JailTest, PidsLimit) {
    if (!hostHasV1("pids")) GTEST_SKIP() << "no v1 pids controller on this host";
    auto spec = baseSpec({"sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; echo done"});
    spec.mutable_linux()->mutable_resources()->mutable_pids()->set_limit(4);
    auto r = run(spec);
    EXPECT_NE(r.err.find("fork"), std::string::npos) << r.err;
}

TEST_F(JailTest, PauseAndResume) {
    if (!hostHasV1("freezer")) GTEST_SKIP() << "no v1 freezer on this host";
    Container* c = create(baseSpec({"sh", "-c", "while true; do echo tick; sleep 0.05; done"}));
    c->start();
    int out = c->initProcess()->io().stdoutReader.get();
    EXPECT_NE(readAllFd(out, 300), "");
    c->pause();
    EXPECT_EQ(c->state(), Container::State::kPaused);
    EXPECT_EQ(slurp(selfCgroupDir("freezer") + "/kata_jail_test/" + id_ + "/freezer.state"),
              "FROZEN\n");
    readAllFd(out, 100);  // what was written before the freeze
    EXPECT_EQ(readAllFd(out, 400), "");
    grpc::Process p;
    p.add_args("true");
    EXPECT_THROW(c->exec("while-paused", p), Error);
    c->resume();
    EXPECT_EQ(c->state(), Container::State::kRunning);
    EXPECT_NE(readAllFd(out, 400), "");
}

TEST_F(JailTest, UpdateAndStats) {
    Container* c = create(baseSpec({"sleep", "100"}));
    c->start();
    grpc::LinuxResources res;
    res.mutable_pids()->set_limit(42);
    res.mutable_cpu()->set_shares(512);
    c->update(res);
    if (hostHasV1("pids")) {
        EXPECT_EQ(slurp(selfCgroupDir("pids") + "/kata_jail_test/" + id_ + "/pids.max"), "42\n");
    }
    if (hostHasV1("cpu")) {
        EXPECT_EQ(slurp(selfCgroupDir("cpu") + "/kata_jail_test/" + id_ + "/cpu.shares"), "512\n");
    }
    auto stats = c->stats();
    EXPECT_EQ(stats.cgroup_stats().pids_stats().current(), 1u);
    EXPECT_EQ(stats.cgroup_stats().pids_stats().limit(), 42u);
    EXPECT_GT(stats.cgroup_stats().memory_stats().usage().usage(), 0u);
    EXPECT_GT(stats.cgroup_stats().cpu_stats().cpu_usage().total_usage(), 0u);
}

TEST_F(JailTest, DeviceCgroupAndSpecDevices) {
    auto spec = baseSpec({"sh", "-c",
                          "ls -l /dev/kmsg /dev/null; head -c1 /dev/kmsg || echo kmsg-denied;"
                          " echo x > /dev/null && echo null-ok"});
    auto* d = spec.mutable_linux()->add_devices();
    d->set_path("/dev/kmsg");
    d->set_type("c");
    d->set_major(1);
    d->set_minor(11);
    d->set_filemode(0644);
    auto r = run(spec);
    EXPECT_NE(r.out.find("crw-r--r--"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("1,  11"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("kmsg-denied"), std::string::npos) << r.out << r.err;
    EXPECT_NE(r.out.find("null-ok"), std::string::npos) << r.out << r.err;
}

TEST_F(JailTest, BindMountWithOptions) {
    std::string shared = dir_ + "/shared";
    std::filesystem::create_directories(shared);
    { std::ofstream(shared + "/file") << "from-host\n"; }
    auto spec = baseSpec({"sh", "-c",
                          "cat /mnt/a/b/file; touch /mnt/a/b/new || echo ro-ok; "
                          "echo data > /mnt/rw/new && echo rw-ok"});
    auto add = [&](const std::string& dest, const std::string& src, std::vector<std::string> opts) {
        auto* m = spec.add_mounts();
        m->set_destination(dest);
        m->set_type("bind");
        m->set_source(src);
        for (auto& o : opts) m->add_options(o);
    };
    add("/mnt/a/b", shared, {"rbind", "ro", "rprivate"});
    add("/mnt/rw", shared, {"bind"});
    auto r = run(spec);
    EXPECT_EQ(r.out, "from-host\nro-ok\nrw-ok\n") << r.err;
    EXPECT_EQ(slurp(shared + "/new"), "data\n");
}

TEST_F(JailTest, MountPointSymlinkCannotEscapeRootfs) {
    std::string outside = dir_ + "/outside";
    std::filesystem::create_directories(outside);
    // A symlink in the image pointing at an absolute host path must resolve inside the rootfs.
    std::filesystem::create_directory_symlink(outside, rootfs_ + "/evil");
    auto spec = baseSpec({"sh", "-c", "ls -d /" + outside.substr(1) + " && echo inside"});
    auto* m = spec.add_mounts();
    m->set_destination("/evil");
    m->set_type("tmpfs");
    m->set_source("tmpfs");
    auto r = run(spec);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("inside"), std::string::npos);
    EXPECT_TRUE(std::filesystem::exists(rootfs_ + outside))
        << "mount point not made inside the rootfs";
}

TEST_F(JailTest, EnvCwdRlimitsAndNoNewPrivileges) {
    auto spec =
        baseSpec({"sh", "-c", "pwd; echo $FOO; ulimit -n; grep NoNewPrivs /proc/self/status"});
    auto* p = spec.mutable_process();
    p->add_env("FOO=bar");
    p->set_cwd("/tmp");
    p->set_nonewprivileges(true);
    auto* rl = p->add_rlimits();
    rl->set_type("RLIMIT_NOFILE");
    rl->set_soft(123);
    rl->set_hard(456);
    auto r = run(spec);
    EXPECT_EQ(r.out, "/tmp\nbar\n123\nNoNewPrivs:\t1\n") << r.err;
}

TEST_F(JailTest, CgroupAndMqueueMountsShowTheContainersOwnCgroup) {
    if (!hostHasV1("pids")) GTEST_SKIP() << "no v1 pids controller on this host";
    auto spec =
        baseSpec({"sh", "-c",
                  "cat /sys/fs/cgroup/pids/pids.max; touch /sys/fs/cgroup/pids/x || echo ro;"
                  " grep -c mqueue /proc/mounts; ls -l /dev/stdout /dev/fd | wc -l;"
                  " cat /proc/self/oom_score_adj"});
    spec.mutable_linux()->mutable_resources()->mutable_pids()->set_limit(77);
    spec.mutable_process()->set_oomscoreadj(500);
    auto add = [&](const char* dest, const char* type, std::vector<std::string> opts) {
        auto* m = spec.add_mounts();
        m->set_destination(dest);
        m->set_type(type);
        m->set_source(type);
        for (auto& o : opts) m->add_options(o);
    };
    add("/sys/fs/cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"});
    add("/dev/mqueue", "mqueue", {"nosuid", "noexec", "nodev"});
    auto r = run(spec);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "77\nro\n1\n2\n500\n") << r.err;
}

TEST_F(JailTest, Sysctl) {
    auto spec = baseSpec({"cat", "/proc/sys/net/ipv4/ip_forward"});
    (*spec.mutable_linux()->mutable_sysctl())["net.ipv4.ip_forward"] = "1";
    auto r = run(spec);
    EXPECT_EQ(r.out, "1\n") << r.err;
}

TEST_F(JailTest, UserNamespaceMapsRoot) {
    auto spec = baseSpec({"sh", "-c", "id -u; cat /proc/self/uid_map"});
    auto* l = spec.mutable_linux();
    l->add_namespaces()->set_type("user");
    for (auto* maps : {l->mutable_uidmappings(), l->mutable_gidmappings()}) {
        auto* m = maps->Add();
        m->set_containerid(0);
        m->set_hostid(100000);
        m->set_size(65536);
    }
    // sysfs needs a network namespace owned by the user namespace; drop it for simplicity.
    for (int i = 0; i < spec.mounts_size(); ++i)
        if (spec.mounts(i).destination() == "/sys") spec.mutable_mounts()->DeleteSubrange(i, 1);
    std::filesystem::permissions(dir_, std::filesystem::perms::others_exec,
                                 std::filesystem::perm_options::add);
    auto r = run(spec);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("0\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("100000"), std::string::npos) << r.out;
}

TEST_F(JailTest, HooksGetStateOnStdin) {
    std::string log = dir_ + "/hooks.log";
    auto spec = baseSpec({"true"});
    auto hook = [&](google::protobuf::RepeatedPtrField<grpc::Hook>* list, const std::string& name) {
        auto* h = list->Add();
        h->set_path("/bin/sh");
        h->add_args("sh");
        h->add_args("-c");
        h->add_args("echo " + name + " $(cat) >> " + log);
        h->set_timeout(10);
    };
    auto* hooks = spec.mutable_hooks();
    hook(hooks->mutable_prestart(), "prestart");
    hook(hooks->mutable_createruntime(), "createRuntime");
    hook(hooks->mutable_poststart(), "poststart");
    hook(hooks->mutable_poststop(), "poststop");
    Container* c = create(spec);
    c->start();
    c->initProcess()->waitFor(10000);
    c->destroy();
    std::string text = slurp(log);
    EXPECT_NE(text.find("prestart {"), std::string::npos) << text;
    EXPECT_NE(text.find("prestart {\"annotations\":{},\"bundle\":\"" + dir_ + "\",\"id\":\"" + id_ +
                        "\",\"ociVersion\":\"1.0.2\",\"pid\":"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("\"status\":\"creating\""), std::string::npos) << text;
    EXPECT_NE(text.find("\"status\":\"running\""), std::string::npos) << text;
    EXPECT_NE(text.find("\"status\":\"stopped\""), std::string::npos) << text;
    EXPECT_NE(text.find("\"id\":\"" + id_ + "\""), std::string::npos) << text;
    EXPECT_NE(text.find("createRuntime"), std::string::npos) << text;
    EXPECT_NE(text.find("poststart"), std::string::npos) << text;
    EXPECT_NE(text.find("poststop"), std::string::npos) << text;
}

TEST_F(JailTest, CreateAndStartContainerHooksRunInsideTheContainer) {
    auto spec = baseSpec({"true"});
    auto hook = [&](google::protobuf::RepeatedPtrField<grpc::Hook>* list, const std::string& out) {
        auto* h = list->Add();
        h->set_path("/bin/sh");
        h->add_args("sh");
        h->add_args("-c");
        h->add_args("echo $(hostname) $$ $(cat) > " + out);
    };
    // createContainer runs in the container's namespaces before pivot_root: the agent's paths
    // (and its /bin/sh) still resolve. startContainer runs with the container's root.
    hook(spec.mutable_hooks()->mutable_createcontainer(), rootfs_ + "/createContainer.out");
    hook(spec.mutable_hooks()->mutable_startcontainer(), "/startContainer.out");
    Container* c = create(spec);
    std::string created = slurp(rootfs_ + "/createContainer.out");
    EXPECT_EQ(created.rfind("jailtest ", 0), 0u) << created;
    EXPECT_NE(created.find("\"id\":\"" + id_ + "\""), std::string::npos) << created;
    EXPECT_LT(std::stoi(created.substr(9)), 100)
        << "not in the container's pid namespace: " << created;
    EXPECT_FALSE(std::filesystem::exists(rootfs_ + "/startContainer.out"));
    c->start();
    std::string started = slurp(rootfs_ + "/startContainer.out");
    EXPECT_EQ(started.rfind("jailtest ", 0), 0u) << started;
    EXPECT_LT(std::stoi(started.substr(9)), 100) << started;
}

TEST_F(JailTest, FailingHookFailsCreateAndCleansUp) {
    auto spec = baseSpec({"true"});
    auto* h = spec.mutable_hooks()->add_createruntime();
    h->set_path("/bin/sh");
    h->add_args("sh");
    h->add_args("-c");
    h->add_args("echo hook-broke >&2; exit 3");
    try {
        create(spec);
        FAIL() << "create succeeded";
    } catch (const Error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("createRuntime hook /bin/sh exited with status 3: hook-broke"),
                  std::string::npos)
            << msg;
    }
    expectGone(id_, 0);
}

TEST_F(JailTest, MissingRootfsIsAClearError) {
    auto spec = baseSpec({"true"});
    spec.mutable_root()->set_path(dir_ + "/nosuch");
    try {
        create(spec);
        FAIL() << "create succeeded";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), "create container " + id_ + ": rootfs " + dir_ +
                                             "/nosuch: No such file or directory (ENOENT)");
    }
    expectGone(id_, 0);
}

TEST_F(JailTest, MissingCommandIsAClearErrorAndLeavesNothing) {
    auto spec = baseSpec({"/bin/nosuch"});
    try {
        create(spec);
        FAIL() << "create succeeded";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), "exec \"/bin/nosuch\" in container " + id_ +
                                             ": No such file or directory (ENOENT)");
        EXPECT_EQ(e.code(), StatusCode::kNotFound);
    }
    expectGone(id_, 0);
    // Not on PATH either.
    spec.mutable_process()->set_args(0, "nosuch");
    EXPECT_THROW(create(spec, id_ + "-2"), Error);
    expectGone(id_ + "-2", 0);
}

TEST_F(JailTest, ExecOfMissingCommandFailsAndContainerLivesOn) {
    Container* c = create(baseSpec({"sleep", "100"}));
    c->start();
    grpc::Process p;
    p.add_args("nosuch");
    try {
        c->exec("bad", p);
        FAIL() << "exec succeeded";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "exec \"nosuch\" in container " + id_ + ": No such file or directory (ENOENT)");
    }
    EXPECT_EQ(c->process("bad"), nullptr);
    EXPECT_EQ(c->state(), Container::State::kRunning);
    p.set_args(0, "true");
    EXPECT_EQ(c->exec("good", p)->waitFor(10000), 0);
}

TEST_F(JailTest, BadMountTypeIsAClearErrorAndLeavesNothing) {
    auto spec = baseSpec({"true"});
    auto* m = spec.add_mounts();
    m->set_destination("/mnt/x");
    m->set_type("nosuchfs");
    m->set_source("none");
    try {
        create(spec);
        FAIL() << "create succeeded";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), "mount nosuchfs \"none\" on /mnt/x in container " + id_ +
                                             ": No such device (ENODEV)");
    }
    expectGone(id_, 0);
}

TEST_F(JailTest, DestroyIsIdempotentAndCleansEverything) {
    Container* c = create(baseSpec({"sleep", "100"}));
    c->start();
    grpc::Process p;
    p.add_args("sleep");
    p.add_args("100");
    auto e = c->exec("x", p);
    pid_t initPid = c->initProcess()->pid();
    c->destroy();
    c->destroy();
    EXPECT_EQ(c->state(), Container::State::kStopped);
    EXPECT_TRUE(e->exitCode().has_value());
    expectGone(id_, initPid);
    errno = 0;
    EXPECT_TRUE(::kill(e->pid(), 0) != 0 && errno == ESRCH);
}

TEST_F(JailTest, ConcurrentContainersFromManyThreads) {
    // Forks from several threads at once: each sync channel must reach EOF only through its
    // own process, never be held open by a sibling's child.
    constexpr int kThreads = 4, kEach = 3;
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    std::vector<std::string> errors(kThreads);
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            try {
                for (int i = 0; i < kEach; ++i) {
                    std::string id = id_ + "-t" + std::to_string(t) + "-" + std::to_string(i);
                    auto spec = baseSpec({"sh", "-c", "echo " + id});
                    spec.mutable_linux()->set_cgroupspath("kata_jail_test/" + id);
                    auto c = Container::create(id, spec, CreateOptions{dir_, ""});
                    // Hold the container a moment so sibling threads fork meanwhile.
                    std::this_thread::sleep_for(std::chrono::milliseconds(20));
                    c->start();
                    std::string out = readAllFd(c->initProcess()->io().stdoutReader.get(), 10000);
                    if (c->initProcess()->waitFor(10000) == 0 && out == id + "\n") ++ok;
                    pid_t pid = c->initProcess()->pid();
                    c->destroy();
                    if (::kill(pid, 0) == 0)
                        errors[t] += "init " + std::to_string(pid) + " alive; ";
                }
            } catch (const std::exception& e) {
                errors[t] += e.what();
            }
        });
    }
    for (auto& th : threads) th.join();
    for (const auto& e : errors) EXPECT_EQ(e, "");
    EXPECT_EQ(ok.load(), kThreads * kEach);
    for (int t = 0; t < kThreads; ++t)
        for (int i = 0; i < kEach; ++i)
            for (const auto& d :
                 cgroupDirs(id_ + "-t" + std::to_string(t) + "-" + std::to_string(i)))
                EXPECT_FALSE(std::filesystem::exists(d)) << d;
}

TEST_F(JailTest, DestroyBeforeStart) {
    Container* c = create(baseSpec({"sleep", "100"}));
    pid_t pid = c->initProcess()->pid();
    c->destroy();
    expectGone(id_, pid);
}

}  // namespace
}  // namespace kata::jail::test
