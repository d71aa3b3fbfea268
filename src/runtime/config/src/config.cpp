// configuration.toml: Kata's lookup order and keys. Every key is read here and nowhere else;
// the rest of the runtime receives typed values.
#include "kata/config/config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "kata/common/error.h"

#ifndef KATA_INSTALL_DEFAULTS_DIR
#define KATA_INSTALL_DEFAULTS_DIR "/opt/kata/share/defaults/kata-containers"
#endif

namespace kata::config {

namespace {

constexpr const char* kEtcDir = "/etc/kata-containers";
constexpr const char* kUsrShareDir = "/usr/share/defaults/kata-containers";
constexpr const char* kOptKataDir = "/opt/kata/share/defaults/kata-containers";
constexpr const char* kShimPrefix = "containerd-shim-kata-";
constexpr const char* kShimSuffix = "-v2";

// Keys Kata's configuration knows that this runtime does not act on yet: accepted, warned.
const std::set<std::string> kUnsupportedQemuKeys = {"rootfs_type",
                                                    "confidential_guest",
                                                    "sev_snp_guest",
                                                    "rootless",
                                                    "enable_annotations",
                                                    "valid_hypervisor_paths",
                                                    "firmware_volume",
                                                    "machine_accelerators",
                                                    "seccompsandbox",
                                                    "default_bridges",
                                                    "default_maxmemory",
                                                    "memory_offset",
                                                    "enable_virtio_mem",
                                                    "disable_block_device_use",
                                                    "valid_virtio_fs_daemon_paths",
                                                    "virtio_fs_cache_size",
                                                    "virtio_fs_queue_size",
                                                    "virtio_fs_extra_args",
                                                    "block_device_aio",
                                                    "block_device_cache_set",
                                                    "block_device_cache_direct",
                                                    "block_device_cache_noflush",
                                                    "enable_iothreads",
                                                    "indep_iothreads",
                                                    "enable_mem_prealloc",
                                                    "enable_hugepages",
                                                    "enable_vhost_user_store",
                                                    "vhost_user_store_path",
                                                    "vhost_user_reconnect_timeout_sec",
                                                    "valid_vhost_user_store_paths",
                                                    "enable_iommu",
                                                    "enable_iommu_platform",
                                                    "file_mem_backend",
                                                    "valid_file_mem_backends",
                                                    "pflashes",
                                                    "disable_image_nvdimm",
                                                    "hotplug_vfio_on_root_bus",
                                                    "pcie_root_port",
                                                    "pcie_switch_port",
                                                    "hot_plug_vfio",
                                                    "cold_plug_vfio",
                                                    "disable_vhost_net",
                                                    "entropy_source",
                                                    "valid_entropy_sources",
                                                    "guest_hook_path",
                                                    "rx_rate_limiter_max_rate",
                                                    "tx_rate_limiter_max_rate",
                                                    "guest_memory_dump_path",
                                                    "guest_memory_dump_paging",
                                                    "enable_guest_swap",
                                                    "use_legacy_serial",
                                                    "disable_selinux",
                                                    "disable_guest_selinux",
                                                    "kernel_verity_params",
                                                    "extra_monitor_socket",
                                                    "reclaim_guest_freed_memory",
                                                    "sgx_epc_size",
                                                    "snp_id_block",
                                                    "snp_id_auth",
                                                    "snp_guest_policy",
                                                    "numa_mapping",
                                                    "ctlpath"};
const std::set<std::string> kUnsupportedAgentKeys = {"cdh_api_timeout", "container_pipe_size",
                                                     "mem_agent"};
const std::set<std::string> kUnsupportedRuntimeKeys = {"enable_tracing",
                                                       "jaeger_endpoint",
                                                       "jaeger_user",
                                                       "jaeger_password",
                                                       "sandbox_bind_mounts",
                                                       "vfio_mode",
                                                       "disable_guest_empty_dir",
                                                       "experimental",
                                                       "enable_pprof",
                                                       "create_container_timeout",
                                                       "dan_conf",
                                                       "enable_vcpus_pinning",
                                                       "guest_selinux_label",
                                                       "emptydir_mode",
                                                       "pod_resource_api_sock"};
const std::set<std::string> kUnsupportedFactoryKeys = {"vm_cache_number", "vm_cache_endpoint"};
const std::set<std::string> kOtherHypervisors = {
    "clh", "firecracker", "dragonball", "stratovirt", "acrn", "remote", "cloud-hypervisor"};

bool fileReadable(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
           ::access(path.c_str(), R_OK) == 0;
}

// Reads one section's keys into typed fields, with messages naming file, line, key and reason.
class Section {
  public:
    Section(const std::string& file, std::string name, const toml::table& table,
            std::vector<std::string>& warnings)
        : file_(file), name_(std::move(name)), table_(table), warnings_(warnings) {}

    [[noreturn]] void fail(const std::string& key, const std::string& reason) const {
        std::string where = file_;
        if (const toml::node* n = table_.get(key)) {
            auto line = n->source().begin.line;
            if (line) where += ":" + std::to_string(line);
        }
        throw Error(StatusCode::kInvalidArgument,
                    "invalid configuration " + where + ": [" + name_ + "] " + key + ": " + reason);
    }

    void string(const std::string& key, std::string& out) {
        known_.insert(key);
        const toml::node* n = table_.get(key);
        if (!n) return;
        auto v = n->value<std::string>();
        if (!n->is_string() || !v) fail(key, "expected a string, got " + typeName(*n));
        out = *v;
    }

    void boolean(const std::string& key, bool& out) {
        known_.insert(key);
        const toml::node* n = table_.get(key);
        if (!n) return;
        if (!n->is_boolean()) fail(key, "expected true or false, got " + typeName(*n));
        out = *n->value<bool>();
    }

    void uint(const std::string& key, uint32_t& out, int64_t min = 0,
              int64_t max = std::numeric_limits<uint32_t>::max()) {
        known_.insert(key);
        const toml::node* n = table_.get(key);
        if (!n) return;
        if (!n->is_integer()) fail(key, "expected an integer, got " + typeName(*n));
        int64_t v = *n->value<int64_t>();
        if (v < min)
            fail(key, "must be at least " + std::to_string(min) + ", got " + std::to_string(v));
        if (v > max)
            fail(key, "must be at most " + std::to_string(max) + ", got " + std::to_string(v));
        out = static_cast<uint32_t>(v);
    }

    void strings(const std::string& key, std::vector<std::string>& out) {
        known_.insert(key);
        const toml::node* n = table_.get(key);
        if (!n) return;
        const toml::array* arr = n->as_array();
        if (!arr) fail(key, "expected an array of strings, got " + typeName(*n));
        out.clear();
        for (const auto& item : *arr) {
            if (!item.is_string())
                fail(key,
                     "expected an array of strings, found an element of type " + typeName(item));
            out.push_back(*item.value<std::string>());
        }
    }

    void oneOf(const std::string& key, const std::string& value,
               std::initializer_list<const char*> allowed) const {
        std::string list;
        for (const char* a : allowed) {
            if (value == a) return;
            list += (list.empty() ? "" : ", ") + std::string(a);
        }
        fail(key, "\"" + value + "\" unknown, expected one of " + list);
    }

    void warn(const std::string& key, const std::string& what) {
        warnings_.push_back(file_ + ": [" + name_ + "] " + key + ": " + what);
    }

    // Every key not read so far is either Kata's but unsupported, or unknown: both warned.
    void finish(const std::set<std::string>& unsupported,
                const std::set<std::string>& subtables = {}) {
        for (const auto& [k, node] : table_) {
            std::string key(k.str());
            if (known_.count(key) || subtables.count(key)) continue;
            if (unsupported.count(key))
                warn(key, "not supported yet, ignored");
            else
                warn(key, "unknown key, ignored");
        }
    }

  private:
    static std::string typeName(const toml::node& n) {
        std::ostringstream out;
        out << n.type();
        return out.str();
    }

    const std::string& file_;
    std::string name_;
    const toml::table& table_;
    std::vector<std::string>& warnings_;
    std::set<std::string> known_;
};

void parseQemu(Section& s, hypervisor::HypervisorConfig& h) {
    s.string("path", h.path);
    s.string("kernel", h.kernel);
    s.string("initrd", h.initrd);
    s.string("image", h.image);
    if (!h.initrd.empty() && !h.image.empty())
        s.fail("image", "both initrd and image are set; set exactly one");
    s.string("kernel_params", h.kernelParams);
    s.string("machine_type", h.machineType);
    s.oneOf("machine_type", h.machineType, {"q35", "microvm"});
    s.string("accelerator", h.accelerator);
    s.oneOf("accelerator", h.accelerator, {"auto", "kvm", "tcg"});
    s.string("firmware", h.firmware);
    s.string("cpu_features", h.cpuFeatures);
    s.uint("default_vcpus", h.defaultVcpus, 1, 255);
    s.uint("default_maxvcpus", h.defaultMaxVcpus, 0, 255);
    if (h.defaultMaxVcpus != 0 && h.defaultMaxVcpus < h.defaultVcpus)
        s.fail("default_maxvcpus", std::to_string(h.defaultMaxVcpus) +
                                       " is less than default_vcpus " +
                                       std::to_string(h.defaultVcpus));
    s.uint("default_memory", h.defaultMemoryMiB, 1);
    s.uint("memory_slots", h.memorySlots, 0, 255);
    s.string("shared_fs", h.sharedFs);
    s.oneOf("shared_fs", h.sharedFs, {"virtio-9p", "virtio-fs", "none"});
    s.string("virtio_fs_daemon", h.virtioFsDaemon);
    s.string("virtio_fs_cache", h.virtioFsCache);
    s.oneOf("virtio_fs_cache", h.virtioFsCache, {"auto", "always", "never", "metadata"});
    s.uint("msize_9p", h.msize9p, 4096, 1048576);
    s.uint("tcg_tb_size", h.tcgTbSizeMiB, 0, 4096);
    s.string("agent_channel", h.agentChannel);
    s.oneOf("agent_channel", h.agentChannel, {"auto", "serial", "vsock"});
    s.string("block_device_driver", h.blockDeviceDriver);
    s.oneOf("block_device_driver", h.blockDeviceDriver,
            {"virtio-blk", "virtio-scsi", "nvdimm", "virtio-blk-pci", "virtio-mmio"});
    if (h.blockDeviceDriver != "virtio-blk") {
        s.warn("block_device_driver",
               "\"" + h.blockDeviceDriver + "\" not supported yet, using virtio-blk");
        h.blockDeviceDriver = "virtio-blk";
    }
    s.boolean("enable_debug", h.enableDebug);
    s.boolean("disable_nesting_checks", h.disableNestingChecks);
    s.strings("extra_args", h.extraArgs);
    s.finish(kUnsupportedQemuKeys);
}

void parseAgent(Section& s, AgentConfig& a) {
    s.boolean("enable_debug", a.enableDebug);
    s.uint("dial_timeout", a.dialTimeoutSec, 1, 3600);
    s.strings("kernel_modules", a.kernelModules);
    s.boolean("debug_console_enabled", a.debugConsoleEnabled);
    s.boolean("enable_tracing", a.enableTracing);
    s.finish(kUnsupportedAgentKeys);
}

void parseRuntime(Section& s, RuntimeSection& r) {
    s.boolean("enable_debug", r.enableDebug);
    s.string("internetworking_model", r.internetworkingModel);
    s.oneOf("internetworking_model", r.internetworkingModel, {"tcfilter", "macvtap", "none"});
    if (r.internetworkingModel == "macvtap") {
        s.warn("internetworking_model", "\"macvtap\" not supported yet, using tcfilter");
        r.internetworkingModel = "tcfilter";
    }
    s.boolean("disable_new_netns", r.disableNewNetns);
    s.boolean("sandbox_cgroup_only", r.sandboxCgroupOnly);
    s.boolean("disable_guest_seccomp", r.disableGuestSeccomp);
    s.boolean("static_sandbox_resource_mgmt", r.staticSandboxResourceMgmt);
    s.uint("static_sandbox_default_workload_mem", r.staticSandboxDefaultWorkloadMemMiB, 0);
    s.uint("static_sandbox_default_workload_vcpus", r.staticSandboxDefaultWorkloadVcpus, 0, 255);
    s.finish(kUnsupportedRuntimeKeys);
}

void parseFactory(Section& s, FactoryConfig& f) {
    s.boolean("enable_template", f.enableTemplate);
    s.string("template_path", f.templatePath);
    s.finish(kUnsupportedFactoryKeys);
}

const toml::table* subtable(const std::string& file, const toml::table& parent,
                            const std::string& key, const std::string& where) {
    const toml::node* n = parent.get(key);
    if (!n) return nullptr;
    if (!n->is_table())
        throw Error(StatusCode::kInvalidArgument, "invalid configuration " + file + ": " + where +
                                                      " must be a table ([" + where + "])");
    return n->as_table();
}

}  // namespace

std::string defaultsDir() { return KATA_INSTALL_DEFAULTS_DIR; }

std::string configFileNameForShim(const std::string& shimName) {
    std::string base = shimName.substr(shimName.find_last_of('/') + 1);
    const std::string prefix = kShimPrefix, suffix = kShimSuffix;
    if (base.size() > prefix.size() + suffix.size() && base.starts_with(prefix) &&
        base.ends_with(suffix)) {
        std::string cls = base.substr(prefix.size(), base.size() - prefix.size() - suffix.size());
        return "configuration-" + cls + ".toml";
    }
    return "configuration.toml";
}

std::vector<std::string> configSearchPaths(const std::string& explicitPath,
                                           const std::string& shimName) {
    // An explicit choice (runtime option ConfigPath, then KATA_CONF_FILE) is the only one tried:
    // falling back silently would run pods with a configuration nobody asked for.
    if (!explicitPath.empty()) return {explicitPath};
    if (const char* env = std::getenv("KATA_CONF_FILE"); env && *env) return {env};
    const std::string name = configFileNameForShim(shimName);
    std::vector<std::string> paths;
    for (const std::string& dir : {std::string(kEtcDir), std::string(kUsrShareDir),
                                   std::string(kOptKataDir), defaultsDir()}) {
        std::string p = dir + "/" + name;
        bool seen = false;
        for (const auto& q : paths) seen = seen || q == p;
        if (!seen) paths.push_back(p);
    }
    return paths;
}

std::string resolveConfigPath(const std::string& explicitPath, const std::string& shimName) {
    const auto paths = configSearchPaths(explicitPath, shimName);
    std::string tried;
    for (const auto& p : paths) {
        if (fileReadable(p)) return p;
        tried += (tried.empty() ? "" : ", ") + p;
    }
    std::string source = !explicitPath.empty() ? " (runtime option ConfigPath)"
                         : (std::getenv("KATA_CONF_FILE") && *std::getenv("KATA_CONF_FILE"))
                             ? " (KATA_CONF_FILE)"
                             : "";
    throw Error(StatusCode::kNotFound,
                "no readable Kata configuration file found; tried " + tried + source);
}

RuntimeConfig parseConfig(const std::string& text, const std::string& path) {
    toml::table root;
    try {
        root = toml::parse(text, path);
    } catch (const toml::parse_error& e) {
        throw Error(StatusCode::kInvalidArgument, "invalid configuration " + path + ":" +
                                                      std::to_string(e.source().begin.line) + ": " +
                                                      std::string(e.description()));
    }

    RuntimeConfig cfg;
    cfg.path = path;

    const toml::table* hv = subtable(path, root, "hypervisor", "hypervisor");
    if (!hv)
        throw Error(StatusCode::kInvalidArgument,
                    "invalid configuration " + path + ": no [hypervisor.qemu] section");
    for (const auto& [k, node] : *hv) {
        std::string name(k.str());
        if (name == "qemu") continue;
        if (kOtherHypervisors.count(name))
            throw Error(StatusCode::kInvalidArgument,
                        "invalid configuration " + path + ": [hypervisor." + name +
                            "]: hypervisor \"" + name + "\" not supported, only qemu");
        cfg.warnings.push_back(path + ": [hypervisor." + name + "]: unknown section, ignored");
    }
    const toml::table* qemu = subtable(path, *hv, "qemu", "hypervisor.qemu");
    if (!qemu)
        throw Error(StatusCode::kInvalidArgument,
                    "invalid configuration " + path + ": no [hypervisor.qemu] section");
    Section qemuSection(path, "hypervisor.qemu", *qemu, cfg.warnings);
    parseQemu(qemuSection, cfg.hypervisor);

    if (const toml::table* agent = subtable(path, root, "agent", "agent")) {
        for (const auto& [k, node] : *agent) {
            std::string name(k.str());
            if (name != "kata")
                cfg.warnings.push_back(path + ": [agent." + name + "]: unknown section, ignored");
        }
        if (const toml::table* kata = subtable(path, *agent, "kata", "agent.kata")) {
            Section s(path, "agent.kata", *kata, cfg.warnings);
            parseAgent(s, cfg.agent);
        }
    }
    if (const toml::table* runtime = subtable(path, root, "runtime", "runtime")) {
        Section s(path, "runtime", *runtime, cfg.warnings);
        parseRuntime(s, cfg.runtime);
    }
    if (const toml::table* factory = subtable(path, root, "factory", "factory")) {
        Section s(path, "factory", *factory, cfg.warnings);
        parseFactory(s, cfg.factory);
    }
    for (const auto& [k, node] : root) {
        std::string name(k.str());
        if (name == "hypervisor" || name == "agent" || name == "runtime" || name == "factory")
            continue;
        if (name == "image")
            cfg.warnings.push_back(path + ": [image]: not supported yet, ignored");
        else
            cfg.warnings.push_back(path + ": " + name + ": unknown top-level key, ignored");
    }
    return cfg;
}

RuntimeConfig loadConfig(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        int err = errno;
        throw Error(
            StatusCode::kInvalidArgument,
            "read configuration " + path + ": " + std::strerror(err) + " (" + errnoName(err) + ")");
    }
    std::ostringstream text;
    text << in.rdbuf();
    return parseConfig(text.str(), path);
}

void applyStaticSandboxSizing(RuntimeConfig& c, const PodResources& pod) {
    if (!c.runtime.staticSandboxResourceMgmt) return;
    uint64_t vcpus = c.runtime.staticSandboxDefaultWorkloadVcpus;
    if (pod.cpuQuota > 0 && pod.cpuPeriod > 0)
        vcpus = static_cast<uint64_t>((pod.cpuQuota + pod.cpuPeriod - 1) / pod.cpuPeriod);
    uint64_t memMiB = c.runtime.staticSandboxDefaultWorkloadMemMiB;
    if (pod.memoryBytes > 0) memMiB = (pod.memoryBytes + (1u << 20) - 1) >> 20;
    auto& h = c.hypervisor;
    h.defaultVcpus = static_cast<uint32_t>(std::min<uint64_t>(h.defaultVcpus + vcpus, 255));
    if (h.defaultMaxVcpus && h.defaultMaxVcpus < h.defaultVcpus) h.defaultMaxVcpus = h.defaultVcpus;
    h.defaultMemoryMiB = static_cast<uint32_t>(
        std::min<uint64_t>(h.defaultMemoryMiB + memMiB, std::numeric_limits<uint32_t>::max()));
}

std::string agentKernelParams(const RuntimeConfig& config) {
    std::string params;
    auto add = [&params](const std::string& p) { params += (params.empty() ? "" : " ") + p; };
    if (config.agent.enableDebug) add("agent.log=debug");
    if (config.agent.debugConsoleEnabled) add("agent.debug_console agent.debug_console_vport=1026");
    if (config.agent.enableTracing) add("agent.trace=true");
    return params;
}

}  // namespace kata::config
