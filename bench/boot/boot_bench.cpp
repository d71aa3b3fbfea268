// kata-bench-boot: boot-to-agent-ready time of a kata-cpp VM against the floor measured in the
// same run. The floor is the same QEMU command line (kata_hypervisor builds both), kernel and
// machine booting an initrd whose /init powers the VM off at once (osbuilder.sh floor-initrd):
// QEMU start until QEMU exits. The agent run boots our initrd and counts from QEMU start until
// kata-agent answers grpc.Health/Check over the agent channel. Rounds alternate the order of the
// two, so background load hits both alike; figures are medians with min/max over the rounds.
// With --template, a VM restored from a saved template (VmSpec::templateState) is timed too.
// Not a test: run by hand through bench/boot/run.sh, which builds the guest assets.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/health.pb.h"
#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/hypervisor/hypervisor.h"
#include "kata/ttrpc/ttrpc.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

std::atomic<bool> gInterrupted{false};

// Thrown when Ctrl-C (or SIGTERM/SIGHUP) arrives, so every RAII owner on the way out runs.
struct Interrupted : std::runtime_error {
    Interrupted() : std::runtime_error("interrupted") {}
};

void checkInterrupted() {
    if (gInterrupted) throw Interrupted();
}

// Signals are blocked in every thread (QEMU watcher threads included) and taken by this one
// thread with sigwait, so no blocking call is interrupted half-way and cleanup stays ordinary.
void startSignalThread() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread([set] {
        int sig = 0;
        while (sigwait(&set, &sig) == 0) {
            if (!gInterrupted.exchange(true)) {
                std::cerr << "kata-bench-boot: signal " << sig
                          << ", stopping the VM and cleaning up\n";
            }
        }
    }).detach();
}

class TempDir {
  public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "kata-bench-boot-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) kata::throwErrno("mkdtemp", tmpl);
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

// Stops the VM on every way out of a scope (stop() is idempotent).
class VmGuard {
  public:
    explicit VmGuard(std::unique_ptr<kata::hypervisor::Hypervisor> vm) : vm_(std::move(vm)) {}
    ~VmGuard() {
        if (!vm_) return;
        try {
            vm_->stop(10s);
        } catch (const std::exception& e) {
            std::cerr << "kata-bench-boot: stopping QEMU: " << e.what() << "\n";
        }
    }
    VmGuard(const VmGuard&) = delete;
    VmGuard& operator=(const VmGuard&) = delete;
    kata::hypervisor::Hypervisor* operator->() const { return vm_.get(); }
    kata::hypervisor::Hypervisor& operator*() const { return *vm_; }

  private:
    std::unique_ptr<kata::hypervisor::Hypervisor> vm_;
};

struct Options {
    std::string qemu = "/usr/bin/qemu-system-x86_64";
    std::string kernel, floorInitrd, agentInitrd, firmware, label;
    std::string compareInitrd;  // a second agent initrd (variant B), booted in every round too
    int runs = 5;
    uint32_t memoryMiB = 0;  // 0: the hypervisor config's default (Kata's default_memory)
    bool templ = false;
    bool verbose = false;    // -v: every failed Check attempt and the console of each agent VM
    bool floorOnly = false;  // bench/ctr: only the floor, one "floor_seconds=" line per run
    int timeoutSec = 180;
};

struct Memory {
    double rssMiB = 0, pssMiB = 0;
};

std::string fmt(double v, int prec = 3);

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Rss and Pss of a process from /proc/<pid>/smaps_rollup (values in kB).
Memory readMemory(pid_t pid) {
    std::string path = "/proc/" + std::to_string(pid) + "/smaps_rollup";
    std::ifstream in(path);
    if (!in) throw kata::Error("read " + path + ": cannot open (is the process gone?)");
    Memory m;
    bool rss = false, pss = false;
    for (std::string line; std::getline(in, line);) {
        std::istringstream ls(line);
        std::string key;
        double kb = 0;
        ls >> key >> kb;
        if (key == "Rss:") m.rssMiB = kb / 1024, rss = true;
        if (key == "Pss:") m.pssMiB = kb / 1024, pss = true;
    }
    if (!rss || !pss) throw kata::Error("read " + path + ": no Rss:/Pss: lines");
    return m;
}

kata::hypervisor::HypervisorConfig baseConfig(const Options& o, const std::string& initrd) {
    kata::hypervisor::HypervisorConfig cfg;
    cfg.path = o.qemu;
    cfg.kernel = o.kernel;
    cfg.initrd = initrd;
    cfg.firmware = o.firmware;
    cfg.accelerator = "auto";
    cfg.sharedFs = "virtio-9p";
    cfg.agentChannel = "auto";
    // q35 under TCG: microvm is flaky here (docs: ENVIRONMENT.md).
    cfg.machineType = "q35";
    if (o.memoryMiB) cfg.defaultMemoryMiB = o.memoryMiB;
    return cfg;
}

// Both VMs get the same devices: an (empty) 9p share, as a sandbox VM has one.
kata::hypervisor::VmSpec makeSpec(const TempDir& tmp, const std::string& name) {
    kata::hypervisor::VmSpec spec;
    spec.sandboxId = "bench-" + name;
    spec.runDir = tmp.path() + "/" + name;
    spec.sharedDir = tmp.path() + "/shared";
    fs::create_directories(spec.sharedDir);
    return spec;
}

// QEMU start until QEMU exits by itself (the floor's /init powers off).
double runFloor(const Options& o, const TempDir& tmp, int round) {
    auto spec = makeSpec(tmp, "floor-" + std::to_string(round));
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Clock::time_point> exitedAt;
    std::string exitReason;
    auto vm = kata::hypervisor::createHypervisor(baseConfig(o, o.floorInitrd), spec);
    vm->setExitCallback([&](const std::string& reason) {
        std::lock_guard lk(mu);
        exitedAt = Clock::now();
        exitReason = reason;
        cv.notify_all();
    });
    auto t0 = Clock::now();
    VmGuard guard(std::move(vm));
    guard->start();
    std::unique_lock lk(mu);
    auto deadline = t0 + std::chrono::seconds(o.timeoutSec);
    while (!exitedAt) {
        checkInterrupted();
        if (Clock::now() > deadline) {
            throw kata::Error(kata::StatusCode::kDeadlineExceeded,
                              "floor VM (initrd " + o.floorInitrd + ") did not power off within " +
                                  std::to_string(o.timeoutSec) + " s; console:\n" +
                                  guard->consoleTail(20));
        }
        cv.wait_for(lk, 200ms);
    }
    return seconds(*exitedAt - t0);
}

struct AgentRun {
    double seconds = 0;
    Memory memory;
};

// Dials the agent and repeats Check until it answers SERVING. A request sent before the guest
// opened its port waits in the channel, so the answer comes as soon as the agent serves.
void waitAgentReady(kata::hypervisor::Hypervisor& vm, const Options& o, Clock::time_point t0) {
    auto deadline = t0 + std::chrono::seconds(o.timeoutSec);
    std::string lastError;
    while (Clock::now() < deadline) {
        checkInterrupted();
        try {
            kata::ttrpc::Client client(kata::ttrpc::dial(vm.agentAddress(), 5s), vm.agentAddress());
            while (Clock::now() < deadline) {
                checkInterrupted();
                grpc::CheckRequest req;
                auto resp = client.call<grpc::CheckRequest, grpc::HealthCheckResponse>(
                    "grpc.Health", "Check", req, 1s);
                if (resp.status() == grpc::HealthCheckResponse::SERVING) return;
                lastError = "Check answered status " + std::to_string(resp.status());
            }
        } catch (const kata::Error& e) {
            lastError = e.what();
            if (o.verbose) {
                std::cerr << "  [" << fmt(seconds(Clock::now() - t0)) << " s] " << lastError
                          << "\n";
            }
            if (e.code() != kata::StatusCode::kDeadlineExceeded) std::this_thread::sleep_for(50ms);
        }
    }
    throw kata::Error(kata::StatusCode::kDeadlineExceeded,
                      "kata-agent at " + vm.agentAddress() +
                          " did not answer grpc.Health/Check within " +
                          std::to_string(o.timeoutSec) + " s (last: " + lastError +
                          "); console:\n" + vm.consoleTail(30));
}

// QEMU start until kata-agent answers Check; memory of QEMU at that moment.
AgentRun runAgent(const Options& o, const TempDir& tmp, const std::string& name,
                  const std::string& initrd, const std::string& templateState = "") {
    auto spec = makeSpec(tmp, name);
    spec.templateState = templateState;
    auto t0 = Clock::now();
    VmGuard vm(kata::hypervisor::createHypervisor(baseConfig(o, initrd), spec));
    vm->start();
    waitAgentReady(*vm, o, t0);
    AgentRun r;
    r.seconds = seconds(Clock::now() - t0);
    r.memory = readMemory(vm->pid());
    if (o.verbose) std::cerr << "  console of " << name << ":\n" << vm->consoleTail(40) << "\n";
    return r;
}

// Boots a VM to agent-ready and saves it as a template.
void makeTemplate(const Options& o, const TempDir& tmp, const std::string& statePath) {
    auto spec = makeSpec(tmp, "template");
    auto t0 = Clock::now();
    VmGuard vm(kata::hypervisor::createHypervisor(baseConfig(o, o.agentInitrd), spec));
    vm->start();
    waitAgentReady(*vm, o, t0);
    vm->saveTemplate(statePath);
}

struct Stats {
    double median = 0, min = 0, max = 0;
};

Stats stats(std::vector<double> v) {
    Stats s;
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    s.min = v.front();
    s.max = v.back();
    return s;
}

std::string fmt(double v, int prec) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", prec, v);
    return buf;
}

std::string line(const std::string& what, const std::vector<double>& v, const std::string& unit,
                 int prec = 3) {
    Stats s = stats(v);
    char buf[256];
    std::snprintf(buf, sizeof buf, "%-44s median %s %s  (min %s, max %s, n=%zu)", what.c_str(),
                  fmt(s.median, prec).c_str(), unit.c_str(), fmt(s.min, prec).c_str(),
                  fmt(s.max, prec).c_str(), v.size());
    return buf;
}

std::string commandOutput(const std::string& cmd) {
    std::string out;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
        char buf[512];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        ::pclose(p);
    }
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

void usage(std::ostream& os) {
    os << "usage: kata-bench-boot --kernel VMLINUX --floor-initrd FILE --agent-initrd FILE\n"
          "                       [-n RUNS] [--firmware FILE] [--memory MIB] [--template]\n"
          "                       [--qemu PATH] [--timeout SEC] [--label TEXT]\n"
          "                       [--compare-initrd FILE] [-v]\n"
          "       kata-bench-boot --floor-only --kernel VMLINUX --floor-initrd FILE [-n RUNS] ...\n"
          "Boots the floor initrd and the kata-agent initrd RUNS times each, alternating, and\n"
          "prints median/min/max of the boot times, the ratio agent/floor, and QEMU's RSS/PSS\n"
          "once the agent answers. --template also times VMs restored from a saved template.\n"
          "Usually run through bench/boot/run.sh, which builds the initrds.\n";
}

// A whole non-negative number, or an error naming the option.
unsigned long number(const std::string& option, const std::string& text) {
    size_t used = 0;
    unsigned long v = 0;
    try {
        v = std::stoul(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (text.empty() || used != text.size() || text[0] == '-') {
        throw kata::Error(kata::StatusCode::kInvalidArgument,
                          option + " " + text + ": expected a whole number");
    }
    return v;
}

Options parseArgs(int argc, char** argv) {
    Options o;
    auto need = [&](int& i) -> std::string {
        if (i + 1 >= argc)
            throw kata::Error(kata::StatusCode::kInvalidArgument,
                              std::string(argv[i]) + " needs a value");
        return argv[++i];
    };
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "-n" || a == "--runs")
            o.runs = static_cast<int>(number(a, need(i)));
        else if (a == "--kernel")
            o.kernel = need(i);
        else if (a == "--floor-initrd")
            o.floorInitrd = need(i);
        else if (a == "--agent-initrd")
            o.agentInitrd = need(i);
        else if (a == "--firmware")
            o.firmware = need(i);
        else if (a == "--memory")
            o.memoryMiB = static_cast<uint32_t>(number(a, need(i)));
        else if (a == "--qemu")
            o.qemu = need(i);
        else if (a == "--timeout")
            o.timeoutSec = static_cast<int>(number(a, need(i)));
        else if (a == "--label")
            o.label = need(i);
        else if (a == "--compare-initrd")
            o.compareInitrd = need(i);
        else if (a == "--template")
            o.templ = true;
        else if (a == "--floor-only")
            o.floorOnly = true;
        else if (a == "-v" || a == "--verbose")
            o.verbose = true;
        else if (a == "-h" || a == "--help") {
            usage(std::cout);
            std::exit(0);
        } else {
            usage(std::cerr);
            throw kata::Error(kata::StatusCode::kInvalidArgument, "unknown argument " + a);
        }
    }
    if (o.runs < 1) throw kata::Error(kata::StatusCode::kInvalidArgument, "-n must be >= 1");
    for (auto [key, path] : {std::pair{"--kernel", o.kernel},
                             {"--floor-initrd", o.floorInitrd},
                             {"--agent-initrd", o.agentInitrd}}) {
        if (o.floorOnly && std::string(key) == "--agent-initrd") continue;
        if (path.empty()) {
            usage(std::cerr);
            throw kata::Error(kata::StatusCode::kInvalidArgument,
                              std::string(key) + " is required");
        }
        if (!fs::is_regular_file(path)) {
            throw kata::Error(kata::StatusCode::kNotFound,
                              std::string(key) + " " + path + ": no such file");
        }
    }
    if (!o.compareInitrd.empty() && !fs::is_regular_file(o.compareInitrd)) {
        throw kata::Error(kata::StatusCode::kNotFound,
                          "--compare-initrd " + o.compareInitrd + ": no such file");
    }
    if (!o.firmware.empty() && !fs::is_regular_file(o.firmware)) {
        throw kata::Error(kata::StatusCode::kNotFound,
                          "--firmware " + o.firmware + ": no such file");
    }
    if (::access(o.qemu.c_str(), X_OK) != 0) {
        throw kata::Error(kata::StatusCode::kNotFound,
                          "QEMU " + o.qemu + ": not executable (apt-get install qemu-system-x86)");
    }
    return o;
}

// For bench/ctr: floor boots only, machine-readable.
int runFloorOnly(const Options& o) {
    TempDir tmp;
    for (int r = 0; r < o.runs; ++r) {
        std::cout << "floor_seconds=" << fmt(runFloor(o, tmp, r)) << "\n" << std::flush;
    }
    return 0;
}

int run(const Options& o) {
    if (o.floorOnly) return runFloorOnly(o);
    std::string warning;
    std::string accel = kata::hypervisor::resolveAccelerator("auto", &warning);
    kata::hypervisor::HypervisorConfig shown = baseConfig(o, o.agentInitrd);
    std::cout << "kata-bench-boot " << (o.label.empty() ? "" : o.label + " ") << "on "
              << commandOutput("uname -r") << ", " << commandOutput(o.qemu + " --version | head -1")
              << "\n"
              << "  accelerator " << accel << (warning.empty() ? "" : " (" + warning + ")")
              << ", machine " << shown.machineType << ", memory " << shown.defaultMemoryMiB
              << " MiB, " << shown.defaultVcpus << " vCPU, firmware "
              << (o.firmware.empty() ? "QEMU default (SeaBIOS)" : o.firmware) << "\n"
              << "  kernel " << o.kernel << "\n  floor  " << o.floorInitrd << "\n  agent  "
              << o.agentInitrd << "\n"
              << (o.compareInitrd.empty() ? "" : "  B      " + o.compareInitrd + "\n")
              << std::flush;

    TempDir tmp;
    std::string statePath = tmp.path() + "/template.state";
    if (o.templ) {
        auto t0 = Clock::now();
        makeTemplate(o, tmp, statePath);
        std::cout << "  template saved in " << fmt(seconds(Clock::now() - t0)) << " s ("
                  << fs::file_size(statePath) / (1024 * 1024) << " MiB state)\n";
    }

    std::vector<double> floorT, agentT, ratios, rss, pss, restoreT, restoreRss, restorePss;
    std::vector<double> bT, bRatios, bOverA, bRss;
    for (int r = 0; r < o.runs; ++r) {
        double f = 0;
        AgentRun a, b, t;
        std::string n = std::to_string(r);
        auto runB = [&] {
            if (!o.compareInitrd.empty()) b = runAgent(o, tmp, "b-" + n, o.compareInitrd);
        };
        // Odd rounds boot the agent first, so a load trend does not favour one side.
        if (r % 2 == 0) {
            f = runFloor(o, tmp, r);
            a = runAgent(o, tmp, "agent-" + n, o.agentInitrd);
            runB();
        } else {
            runB();
            a = runAgent(o, tmp, "agent-" + n, o.agentInitrd);
            f = runFloor(o, tmp, r);
        }
        if (o.templ) t = runAgent(o, tmp, "restore-" + n, o.agentInitrd, statePath);
        if (!o.compareInitrd.empty()) {
            bT.push_back(b.seconds);
            bRatios.push_back(b.seconds / f);
            bOverA.push_back(b.seconds / a.seconds);
            bRss.push_back(b.memory.rssMiB);
        }
        floorT.push_back(f);
        agentT.push_back(a.seconds);
        ratios.push_back(a.seconds / f);
        rss.push_back(a.memory.rssMiB);
        pss.push_back(a.memory.pssMiB);
        std::cout << "  round " << r + 1 << "/" << o.runs << ": floor " << fmt(f) << " s, agent "
                  << fmt(a.seconds) << " s (x" << fmt(a.seconds / f) << "), QEMU RSS "
                  << fmt(a.memory.rssMiB, 1) << " MiB PSS " << fmt(a.memory.pssMiB, 1) << " MiB";
        if (!o.compareInitrd.empty()) {
            std::cout << ", B " << fmt(b.seconds) << " s (x" << fmt(b.seconds / f) << ", RSS "
                      << fmt(b.memory.rssMiB, 1) << " MiB)";
        }
        if (o.templ) {
            restoreT.push_back(t.seconds);
            restoreRss.push_back(t.memory.rssMiB);
            restorePss.push_back(t.memory.pssMiB);
            std::cout << ", restore " << fmt(t.seconds) << " s (RSS " << fmt(t.memory.rssMiB, 1)
                      << " MiB)";
        }
        std::cout << "\n" << std::flush;
    }

    Stats ratio = stats(ratios);
    std::cout << line("floor: QEMU start -> QEMU exit (poweroff)", floorT, "s") << "\n"
              << line("agent: QEMU start -> Health/Check answered", agentT, "s") << "\n"
              << line("ratio agent/floor (per round)", ratios, "") << "\n"
              << "  overhead of the agent over the floor: " << fmt((ratio.median - 1) * 100, 1)
              << " % (target < 10 %: " << (ratio.median < 1.10 ? "met" : "NOT met") << ")\n"
              << line("QEMU RSS, agent ready", rss, "MiB", 1) << "\n"
              << line("QEMU PSS, agent ready", pss, "MiB", 1) << "\n";
    if (!o.compareInitrd.empty()) {
        std::cout << line("B: QEMU start -> Health/Check answered", bT, "s") << "\n"
                  << line("ratio B/floor (per round)", bRatios, "") << "\n"
                  << line("ratio B/agent (per round)", bOverA, "") << "\n"
                  << line("QEMU RSS, B ready", bRss, "MiB", 1) << "\n";
    }
    if (o.templ) {
        std::vector<double> speedup;
        for (size_t i = 0; i < restoreT.size(); ++i) speedup.push_back(agentT[i] / restoreT[i]);
        std::cout << line("restore: QEMU start -> Health/Check answered", restoreT, "s") << "\n"
                  << line("speed-up boot/restore (per round)", speedup, "") << "\n"
                  << line("QEMU RSS, restored, agent ready", restoreRss, "MiB", 1) << "\n"
                  << line("QEMU PSS, restored, agent ready", restorePss, "MiB", 1) << "\n";
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    // The hypervisor layer logs a floor VM powering off as an unexpected exit; errors reach the
    // user as exceptions instead.
    kata::log::init("kata-bench-boot", "bench", kata::log::Level::kFatal);
    // Output piped to tee that died on Ctrl-C must not kill us before the VMs are stopped.
    ::signal(SIGPIPE, SIG_IGN);
    startSignalThread();
    try {
        return run(parseArgs(argc, argv));
    } catch (const Interrupted&) {
        std::cerr << "kata-bench-boot: interrupted; VMs stopped, temp dir removed\n";
        return 130;
    } catch (const std::exception& e) {
        std::cerr << "kata-bench-boot: error: " << e.what() << "\n";
        return 1;
    }
}
