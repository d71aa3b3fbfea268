// Measures kata-agent on the host (outside a VM): its RSS idle and with 10 running containers,
// and the latency of create+start+wait+remove of `true`, against `runc run` of the same bundle.
// Prints one line per figure; run as root. Usage: agent_bench [iterations]
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <google/protobuf/empty.pb.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent.pb.h"
#include "kata/oci/spec.h"
#include "kata/ttrpc/ttrpc.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Empty = google::protobuf::Empty;

namespace {

long rssKiB(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
}

int run(const std::string& cmd) { return std::system(cmd.c_str()); }

grpc::Spec makeSpec(const std::string& rootfs, const std::string& cid,
                    std::vector<std::string> args) {
    grpc::Spec spec;
    spec.set_version("1.0.2");
    auto* p = spec.mutable_process();
    for (auto& a : args) p->add_args(a);
    p->add_env("PATH=/usr/sbin:/usr/bin:/sbin:/bin");
    p->set_cwd("/");
    spec.mutable_root()->set_path(rootfs);
    auto* m = spec.add_mounts();
    m->set_destination("/proc");
    m->set_type("proc");
    m->set_source("proc");
    auto* linux = spec.mutable_linux();
    for (const char* ns : {"pid", "ipc", "uts", "mount"}) linux->add_namespaces()->set_type(ns);
    linux->set_cgroupspath("/kata-agent-bench-" + cid);
    return spec;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    int iterations = argc > 1 ? std::atoi(argv[1]) : 20;
    if (::geteuid() != 0) {
        std::cerr << "agent_bench: needs root" << std::endl;
        return 2;
    }
    char tmpl[] = "/tmp/kata-agent-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) return 1;
    const std::string dir = tmpl, rootfs = dir + "/rootfs", runDir = dir + "/run",
                      sock = dir + "/agent.sock";
    fs::create_directories(runDir);
    if (run(std::string(KATA_BUSYBOX_ROOTFS_SCRIPT) + " " + rootfs + " 2>/dev/null") != 0) return 1;

    pid_t agent = ::fork();
    if (agent == 0) {
        int fd = ::open((dir + "/agent.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        ::dup2(fd, 2);
        std::string addr = "unix://" + sock;
        ::execl(KATA_AGENT_BINARY, "kata-agent", "--server-addr", addr.c_str(), "--run-dir",
                runDir.c_str(), "--log-level", "warn", nullptr);
        _exit(127);
    }
    int status = 0;
    try {
        kata::ttrpc::Client client(kata::ttrpc::dial("unix://" + sock, 10s));
        auto call = [&](const char* method, const auto& req) {
            using Req = std::decay_t<decltype(req)>;
            return client.call<Req, Empty>("grpc.AgentService", method, req, 60s);
        };
        std::this_thread::sleep_for(300ms);
        std::printf("agent_rss_idle_kib %ld\n", rssKiB(agent));

        // 10 running containers.
        for (int i = 0; i < 10; ++i) {
            grpc::CreateContainerRequest c;
            c.set_container_id("idle" + std::to_string(i));
            *c.mutable_oci() = makeSpec(rootfs, c.container_id(), {"/bin/sleep", "600"});
            call("CreateContainer", c);
            grpc::StartContainerRequest s;
            s.set_container_id(c.container_id());
            call("StartContainer", s);
        }
        std::this_thread::sleep_for(300ms);
        std::printf("agent_rss_10_containers_kib %ld\n", rssKiB(agent));
        for (int i = 0; i < 10; ++i) {
            grpc::RemoveContainerRequest r;
            r.set_container_id("idle" + std::to_string(i));
            r.set_timeout(30);
            call("RemoveContainer", r);
        }

        // create+start+wait+remove of `true` through the agent.
        std::vector<double> agentMs, runcMs;
        for (int i = 0; i < iterations; ++i) {
            auto t0 = Clock::now();
            grpc::CreateContainerRequest c;
            c.set_container_id("t" + std::to_string(i));
            *c.mutable_oci() = makeSpec(rootfs, c.container_id(), {"/bin/true"});
            call("CreateContainer", c);
            grpc::StartContainerRequest s;
            s.set_container_id(c.container_id());
            call("StartContainer", s);
            grpc::WaitProcessRequest w;
            w.set_container_id(c.container_id());
            client.call<grpc::WaitProcessRequest, grpc::WaitProcessResponse>("grpc.AgentService",
                                                                             "WaitProcess", w, 60s);
            grpc::RemoveContainerRequest r;
            r.set_container_id(c.container_id());
            call("RemoveContainer", r);
            agentMs.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        }

        // The same with runc: `runc run` creates, starts, waits and deletes.
        const std::string bundle = dir + "/runc-bundle";
        fs::create_directories(bundle);
        grpc::Spec spec = makeSpec(rootfs, "runc", {"/bin/true"});
        spec.mutable_linux()->clear_cgroupspath();
        kata::oci::saveSpecFile(spec, bundle + "/config.json");
        for (int i = 0; i < iterations; ++i) {
            std::string id =
                "kata-agent-bench-runc-" + std::to_string(::getpid()) + "-" + std::to_string(i);
            auto t0 = Clock::now();
            int rc = run("runc --root " + dir + "/runc-state run -b " + bundle + " " + id +
                         " </dev/null >/dev/null 2>>" + dir + "/runc.log");
            runcMs.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
            if (rc != 0) {
                std::cerr << "runc run failed; see " << dir << "/runc.log" << std::endl;
                status = 1;
                break;
            }
        }
        double a = median(agentMs), r = median(runcMs);
        std::printf("agent_true_create_start_wait_remove_ms_median %.1f\n", a);
        std::printf("runc_true_run_ms_median %.1f\n", r);
        if (r > 0) std::printf("agent_over_runc_ratio %.2f\n", a / r);
        std::printf("iterations %d\n", iterations);
    } catch (const std::exception& e) {
        std::cerr << "agent_bench: " << e.what() << std::endl;
        status = 1;
    }
    ::kill(agent, SIGTERM);
    ::waitpid(agent, nullptr, 0);
    std::error_code ec;
    if (status == 0) fs::remove_all(dir, ec);
    return status;
}
