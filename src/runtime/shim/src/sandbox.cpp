#include "sandbox.h"

#include <linux/magic.h>
#include <sys/random.h>
#include <sys/statfs.h>
#include <sys/time.h>

#include <filesystem>
#include <fstream>

#include "factory.h"
#include "fs_share.h"
#include "kata/common/error.h"
#include "spec_rewrite.h"
#include "timing.h"

namespace kata::shim {

namespace fs = std::filesystem;

namespace {
// The host's node for a block device number: /sys/dev/block/<major>:<minor>/uevent DEVNAME.
std::string hostBlockDevice(int64_t major, int64_t minor) {
    std::ifstream in("/sys/dev/block/" + std::to_string(major) + ":" + std::to_string(minor) +
                     "/uevent");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("DEVNAME=", 0) == 0) return "/dev/" + line.substr(8);
    }
    return "";
}

bool isTmpfsPath(const std::string& path) {
    struct statfs st {};
    return ::statfs(path.c_str(), &st) == 0 && st.f_type == TMPFS_MAGIC;
}
}  // namespace

SandboxDeps realSandboxDeps() {
    SandboxDeps d;
    d.createHypervisor = [](const hypervisor::HypervisorConfig& c, const hypervisor::VmSpec& s) {
        return hypervisor::createHypervisor(c, s);
    };
    d.connectAgent = [](const std::string& address, std::chrono::milliseconds timeout) {
        return connectAgent(address, timeout);
    };
    d.attachNetwork = attachTcFilterNetwork;
    return d;
}

grpc::Storage sharedFsStorage(const config::RuntimeConfig& cfg) {
    grpc::Storage st;
    st.set_source(kShareMountTag);
    st.set_mount_point(std::string(kGuestSharedDir) + "/");
    if (cfg.hypervisor.sharedFs == "virtio-fs") {
        st.set_driver("virtio-fs");
        st.set_fstype("virtiofs");
    } else {
        st.set_driver("9p");
        st.set_fstype("9p");
        st.add_options("trans=virtio");
        st.add_options("version=9p2000.L");
        st.add_options("msize=" + std::to_string(cfg.hypervisor.msize9p));
        st.add_options("nodev");
    }
    return st;
}

Sandbox::Sandbox(std::string id, config::RuntimeConfig cfg, Paths paths, SandboxDeps deps)
    : id_(std::move(id)),
      cfg_(std::move(cfg)),
      paths_(std::move(paths)),
      deps_(std::move(deps)),
      log_(log::Logger("sandbox").with("sandbox", id_)) {}

Sandbox::~Sandbox() {
    try {
        stop();
    } catch (const std::exception& e) {
        log_.error(std::string("stop sandbox: ") + e.what());
    }
}

void Sandbox::setOomHandler(std::function<void(const std::string&)> fn) {
    std::lock_guard<std::mutex> lk(mu_);
    onOom_ = std::move(fn);
}

void Sandbox::setVmExitHandler(std::function<void(const std::string&)> fn) {
    std::lock_guard<std::mutex> lk(mu_);
    onVmExit_ = std::move(fn);
}

bool Sandbox::vmAlive() const {
    std::lock_guard<std::mutex> lk(mu_);
    return vm_ && !vmDead_;
}

std::shared_ptr<AgentClient> Sandbox::agent() const {
    std::lock_guard<std::mutex> lk(mu_);
    if (!agent_) {
        throw Error(StatusCode::kFailedPrecondition, "sandbox " + id_ + ": agent not connected");
    }
    return agent_;
}

pid_t Sandbox::vmPid() const {
    std::lock_guard<std::mutex> lk(mu_);
    return vm_ ? vm_->pid() : 0;
}

std::string Sandbox::consoleTail(size_t lines) const {
    std::lock_guard<std::mutex> lk(mu_);
    return vm_ ? vm_->consoleTail(lines) : "";
}

void Sandbox::start(const SandboxSetup& setup) {
    const std::string shared = sharedDir();
    std::error_code ec;
    fs::create_directories(shared, ec);
    if (ec) throw SystemError("create shared dir", shared, ec.value());

    hypervisor::VmSpec spec;
    spec.sandboxId = id_;
    spec.runDir = vmRunDir();
    spec.sharedDir = cfg_.hypervisor.sharedFs == "none" ? "" : shared;
    spec.extraKernelParams = config::agentKernelParams(cfg_);

    try {
        StepTimer netStep;
        if (!setup.netnsPath.empty() && cfg_.runtime.internetworkingModel != "none") {
            if (cfg_.runtime.internetworkingModel != "tcfilter") {
                throw Error(StatusCode::kInvalidArgument,
                            "internetworking_model \"" + cfg_.runtime.internetworkingModel +
                                "\" is not supported (expected tcfilter or none)");
            }
            if (!deps_.attachNetwork)
                throw Error(StatusCode::kFailedPrecondition, "no pod network support");
            auto net = deps_.attachNetwork(setup.netnsPath);
            spec.nics = net->guest().nics;
            {
                std::lock_guard<std::mutex> lk(mu_);
                network_ = std::move(net);
            }
            netStep.done(
                log_.with("netns", setup.netnsPath).with("nics", std::to_string(spec.nics.size())),
                "network-attach", "pod network attached");
        }
        if (cfg_.factory.enableTemplate && !spec.nics.empty()) {
            log_.warn(
                "enable_template ignored: the pod has a network and NIC hotplug into a "
                "restored VM is not supported yet");
        } else if (cfg_.factory.enableTemplate) {
            std::string why;
            if (templateUsable(cfg_, &why)) {
                // A restored guest keeps the template's kernel command line.
                spec.templateState = ensureTemplate(cfg_, deps_, log_);
            } else {
                log_.warn("enable_template ignored: " + why);
            }
        }
        if (cfg_.runtime.sandboxCgroupOnly && !setup.cgroupsPath.empty()) {
            // Before QEMU is spawned: it (and virtiofsd) inherit the shim's cgroup.
            auto cg = SandboxCgroup::enter(setup.cgroupsPath, cgroupHierarchies(readMountinfo()));
            log_.with("cgroup", setup.cgroupsPath)
                .info("sandbox_cgroup_only: shim and VM in the sandbox's cgroup");
            std::lock_guard<std::mutex> lk(mu_);
            hostCgroup_ = std::move(cg);
        }
        // CRI PortForward dials loopback in the pod netns; a restored VM has no such port.
        spec.portForwardChannel = !setup.netnsPath.empty() && spec.templateState.empty();
        if (!setup.netnsPath.empty() && !spec.portForwardChannel)
            log_.warn(
                "CRI PortForward unavailable for this pod: a VM restored from a template "
                "has no port-forward channel");
        auto vm = deps_.createHypervisor(cfg_.hypervisor, spec);
        vm->setExitCallback([this](const std::string& reason) {
            std::function<void(const std::string&)> cb;
            std::shared_ptr<AgentClient> agent;
            {
                std::lock_guard<std::mutex> lk(mu_);
                vmDead_ = true;
                cb = onVmExit_;
                agent = agent_;
            }
            log_.error("VM exited unexpectedly: " + reason);
            if (agent) agent->close();  // pending waits and reads fail now
            if (cb) cb(reason);
        });
        log_.with("template", spec.templateState).info("starting VM");
        StepTimer total, step;
        vm->start();
        {
            std::lock_guard<std::mutex> lk(mu_);
            vm_ = std::move(vm);
        }
        step.done(log_.with("pid", std::to_string(vmPid())), "vm-start", "VM started");
        step.restart();

        const auto dialTimeout = std::chrono::seconds(cfg_.agent.dialTimeoutSec);
        std::string address, portForwardAddress;
        {
            std::lock_guard<std::mutex> lk(mu_);
            address = vm_->agentAddress();
            portForwardAddress = vm_->portForwardAddress();
        }
        std::shared_ptr<AgentClient> agent;
        try {
            agent = deps_.connectAgent(address, dialTimeout);
        } catch (const Error& e) {
            std::string tail = consoleTail(20);
            throw Error(e.code(),
                        std::string(e.what()) + (tail.empty() ? "" : "; guest console:\n" + tail));
        }
        {
            std::lock_guard<std::mutex> lk(mu_);
            agent_ = agent;
        }
        step.done(log_, "agent-ready", "agent answered");
        step.restart();
        if (!spec.templateState.empty()) {
            // The guest's clock and entropy pool are the template's: set and reseed them.
            timeval now{};
            ::gettimeofday(&now, nullptr);
            agent->setGuestDateTime(now.tv_sec, now.tv_usec);
            std::string seed(64, '\0');
            if (::getrandom(seed.data(), seed.size(), 0) != static_cast<ssize_t>(seed.size()))
                throwErrno("getrandom", "seed for sandbox " + id_);
            agent->reseedRandomDev(seed);
            step.done(log_, "guest-refresh", "guest clock set and RNG reseeded after restore");
            step.restart();
        }

        if (network_) {
            // Kata's order: every interface, then the routes, then the neighbours.
            const GuestNetwork& g = network_->guest();
            for (const auto& iface : g.interfaces) agent->updateInterface(iface);
            if (g.routes.routes_size() > 0) agent->updateRoutes(g.routes);
            if (g.neighbors.arpneighbors_size() > 0) agent->addArpNeighbors(g.neighbors);
            step.done(log_, "guest-network", "guest network configured");
            step.restart();
        }

        grpc::CreateSandboxRequest req;
        req.set_sandbox_id(id_);
        req.set_hostname(setup.hostname);
        for (const auto& line : setup.dns) req.add_dns(line);
        req.set_sandbox_pidns(setup.sandboxPidns);
        if (cfg_.hypervisor.sharedFs != "none") *req.add_storages() = sharedFsStorage(cfg_);
        for (const auto& m : cfg_.agent.kernelModules) {
            // "name param=value ...": Kata's kernel_modules entries.
            grpc::KernelModule* km = req.add_kernel_modules();
            size_t pos = m.find(' ');
            km->set_name(m.substr(0, pos));
            while (pos != std::string::npos) {
                size_t next = m.find(' ', pos + 1);
                std::string p =
                    m.substr(pos + 1, next == std::string::npos ? next : next - pos - 1);
                if (!p.empty()) km->add_parameters(p);
                pos = next;
            }
        }
        agent->createSandbox(req);
        step.done(log_, "create-sandbox", "sandbox created in the guest");
        if (spec.portForwardChannel) {
            auto pf = PortForward::start(id_, setup.netnsPath, portForwardAddress);
            std::lock_guard<std::mutex> lk(mu_);
            portForward_ = std::move(pf);
        }
        oomWatcher_ = std::thread([this, agent] {
            // Ends when the agent connection is closed (stop, or the VM died).
            for (;;) {
                std::string cid;
                try {
                    cid = agent->getOomEvent();
                } catch (const Error& e) {
                    if (e.code() != StatusCode::kUnavailable && e.code() != StatusCode::kCancelled)
                        log_.warn(std::string("OOM event watcher stops: ") + e.what());
                    return;
                }
                std::function<void(const std::string&)> cb;
                {
                    std::lock_guard<std::mutex> lk(mu_);
                    cb = onOom_;
                }
                log_.with("container", cid).warn("OOM kill in the guest");
                if (cb) cb(cid);
            }
        });
        total.done(log_, "sandbox-start", "sandbox started");
    } catch (...) {
        try {
            stop();
        } catch (const std::exception& e) {
            log_.error(std::string("clean up after failed start: ") + e.what());
        }
        throw;
    }
}

std::vector<grpc::Device> Sandbox::plugBlockDevices(const grpc::Spec& spec, const std::string& cid,
                                                    std::vector<std::string>& ids) {
    std::vector<grpc::Device> out;
    if (!spec.has_linux()) return out;
    for (int i = 0; i < spec.linux().devices_size(); ++i) {
        const grpc::LinuxDevice& d = spec.linux().devices(i);
        const std::string field = "linux.devices[" + std::to_string(i) + "] " + d.path();
        if (d.type() != "b") {
            throw Error(StatusCode::kInvalidArgument,
                        "create container " + cid + ": " + field + " (type \"" + d.type() +
                            "\"): only block devices can be passed into the VM");
        }
        std::string host = hostBlockDevice(d.major(), d.minor());
        if (host.empty()) {
            throw Error(StatusCode::kNotFound,
                        "create container " + cid + ": " + field + ": no host block device " +
                            std::to_string(d.major()) + ":" + std::to_string(d.minor()));
        }
        std::string id;
        std::string pciPath;
        {
            std::lock_guard<std::mutex> lk(mu_);
            if (!vm_) throw Error(StatusCode::kFailedPrecondition, "sandbox " + id_ + ": no VM");
            id = "blk" + std::to_string(nextDeviceId_++);
            pciPath = vm_->hotplugBlockDevice(id, host, false);
        }
        ids.push_back(id);
        grpc::Device dev;
        dev.set_id(id);
        dev.set_type("blk");
        dev.set_vm_path(pciPath);
        dev.set_container_path(d.path());
        out.push_back(dev);
        log_.with("container", cid)
            .with("device", host)
            .with("pci-path", pciPath)
            .info("block device hot-plugged");
    }
    return out;
}

void Sandbox::unplugDevices(const std::vector<std::string>& ids) {
    std::lock_guard<std::mutex> lk(mu_);
    if (!vm_ || vmDead_) return;
    for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
        try {
            vm_->unplugDevice(*it);
        } catch (const Error& e) {
            log_.warn("unplug " + *it + ": " + e.what());
        }
    }
}

std::shared_ptr<Container> Sandbox::createContainer(const ContainerSetup& setup) {
    const std::string& cid = setup.id;
    auto agent = this->agent();
    grpc::Spec spec = setup.spec;
    const std::string rootfsHost = paths_.containerRootfsHost(id_, cid);
    const std::string hostDir = fs::path(rootfsHost).parent_path().string();
    auto binds = hostBindMounts(spec, cid);
    std::vector<std::string> sharedPaths;
    MountSet mounts;
    std::vector<std::string> deviceIds;
    std::vector<grpc::Device> devices;
    try {
        mounts = mountRootfs(setup.rootfs, setup.bundle, spec.root().path(), rootfsHost);
        for (const auto& b : binds) {
            std::string target = sharedDir() + "/" + b.shareName;
            sharedPaths.push_back(target);
            bindMount(b.hostSource, target, b.readonly, mounts);
        }
        devices = plugBlockDevices(spec, cid, deviceIds);
    } catch (...) {
        unplugDevices(deviceIds);
        mounts.unmountAll();
        std::error_code ec;
        for (const auto& p : sharedPaths) fs::remove(p, ec);
        fs::remove_all(hostDir, ec);
        throw;
    }
    // From here on the container owns what was made; destroying it undoes a failed create.
    auto container = std::make_shared<Container>(
        cid, setup.bundle, agent, std::move(mounts), std::move(sharedPaths), hostDir,
        deviceIds.empty() ? std::function<void()>{} : [self = weak_from_this(), deviceIds] {
            // After the sandbox stopped, the VM and its devices are gone.
            if (auto sb = self.lock()) sb->unplugDevices(deviceIds);
        });
    try {
        // The agent maps each device to its guest node (major:minor) in linux.devices and the
        // device cgroup rules, in one pass; keep what it needs of them for that.
        google::protobuf::RepeatedPtrField<grpc::LinuxDevice> keptDevices;
        google::protobuf::RepeatedPtrField<grpc::LinuxDeviceCgroup> keptRules;
        if (!devices.empty()) {
            keptDevices = spec.linux().devices();
            for (const auto& r : spec.linux().resources().devices()) {
                for (const auto& d : keptDevices) {
                    if (r.allow() && r.type() == "b" && r.major() == d.major() &&
                        r.minor() == d.minor())
                        *keptRules.Add() = r;
                }
            }
        }
        GuestSpecOptions gopts;
        gopts.disableGuestSeccomp = cfg_.runtime.disableGuestSeccomp;
        rewriteSpecForGuest(spec, cid, binds, gopts);
        if (!devices.empty()) {
            *spec.mutable_linux()->mutable_devices() = keptDevices;
            *spec.mutable_linux()->mutable_resources()->mutable_devices() = keptRules;
        }
        grpc::CreateContainerRequest req;
        for (const auto& d : devices) *req.add_devices() = d;
        for (auto& st : rewriteEmptyDirs(spec, isTmpfsPath)) *req.add_storages() = std::move(st);
        req.set_container_id(cid);
        req.set_exec_id(cid);
        req.set_sandbox_pidns(setup.sharesPodPidns);
        *req.mutable_oci() = spec;
        StepTimer step;
        agent->createContainer(req);
        step.done(log_.with("container", cid), "create-container",
                  "container created in the guest");
    } catch (...) {
        container->destroy(false);
        throw;
    }
    return container;
}

void Sandbox::stop() {
    std::unique_ptr<hypervisor::Hypervisor> vm;
    std::shared_ptr<AgentClient> agent;
    std::unique_ptr<PodNetwork> network;
    std::unique_ptr<SandboxCgroup> hostCgroup;
    std::unique_ptr<PortForward> portForward;
    bool dead;
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (stopped_) return;
        stopped_ = true;
        portForward = std::move(portForward_);
        vm = std::move(vm_);
        agent = std::move(agent_);
        network = std::move(network_);
        hostCgroup = std::move(hostCgroup_);
        dead = vmDead_;
    }
    StepTimer total, step;
    portForward.reset();  // the pod netns' loopback is the kernel's again
    if (agent) {
        if (!dead) {
            try {
                agent->destroySandbox();
            } catch (const Error& e) {
                log_.warn(std::string("destroy sandbox in the guest: ") + e.what());
            }
        }
        agent->close();
        if (!dead) step.done(log_, "destroy-sandbox", "sandbox destroyed in the guest");
    }
    if (oomWatcher_.joinable()) oomWatcher_.join();
    if (vm) {
        log_.info("stopping VM");
        step.restart();
        vm->stop(std::chrono::seconds(5));
        step.done(log_, "vm-stop", "VM stopped");
    }
    hostCgroup.reset();  // the VM is gone: the shim leaves, the sandbox cgroup is removed
    if (network) {
        step.restart();
        network.reset();  // taps, qdiscs and filters leave the pod's netns
        step.done(log_, "network-detach", "pod network detached");
    }
    std::string problem = cleanupTree(paths_.sandboxShareRoot(id_));
    if (!problem.empty()) log_.warn("clean up shared dir: " + problem);
    total.done(log_, "sandbox-stop", "sandbox stopped");
}

void Sandbox::pauseVm() {
    std::lock_guard<std::mutex> lk(mu_);
    if (vm_) vm_->pause();
}

void Sandbox::resumeVm() {
    std::lock_guard<std::mutex> lk(mu_);
    if (vm_) vm_->resume();
}

}  // namespace kata::shim
