#include "kata/agent/devices.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
// The macros would shadow the protobuf accessors major()/minor().
#undef major
#undef minor
#include <unistd.h>

#include <cctype>
#include <thread>
#include <tuple>
#include <vector>

#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/common/log.h"

namespace kata::agent {

namespace {

const log::Logger& logger() {
    static const log::Logger l("device");
    return l;
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

std::vector<std::string> listDir(const std::string& dir) {
    std::vector<std::string> names;
    DIR* d = ::opendir(dir.c_str());
    if (!d) return names;
    while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    return names;
}

std::vector<std::string> splitOn(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t i = 0;
    while (true) {
        size_t j = s.find(sep, i);
        out.push_back(s.substr(i, j == std::string::npos ? std::string::npos : j - i));
        if (j == std::string::npos) break;
        i = j + 1;
    }
    return out;
}

bool isHexByte(const std::string& s) {
    return s.size() == 2 && std::isxdigit(static_cast<unsigned char>(s[0])) &&
           std::isxdigit(static_cast<unsigned char>(s[1]));
}

bool looksLikePciPath(const std::string& s) {
    if (s.empty()) return false;
    for (const auto& p : splitOn(s, '/')) {
        if (!isHexByte(p)) return false;
    }
    return true;
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// Finds "<dir>/.../block/<name>" up to a few levels down (virtio devices put it below virtioN).
std::string findBlockName(const std::string& dir, int depth) {
    for (const auto& n : listDir(dir + "/block")) return n;
    if (depth == 0) return "";
    for (const auto& n : listDir(dir)) {
        if (n == "subsystem" || n == "driver" || n == "firmware_node" || n == "block") continue;
        std::string sub = dir + "/" + n;
        struct stat st {};
        // Only real directories: sysfs symlinks point back up the tree.
        if (::lstat(sub.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        std::string found = findBlockName(sub, depth - 1);
        if (!found.empty()) return found;
    }
    return "";
}

// Polls until probe returns a non-empty string or the timeout passes.
template <typename Probe>
std::string waitFor(const DeviceEnvironment& env, const std::string& what, Probe probe) {
    auto deadline = std::chrono::steady_clock::now() + env.timeout;
    std::string lastError;
    while (true) {
        try {
            std::string r = probe();
            if (!r.empty()) return r;
        } catch (const Error& e) {
            if (e.code() == StatusCode::kInvalidArgument) throw;
            lastError = e.what();
        }
        if (std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(env.pollInterval);
    }
    throw Error(StatusCode::kDeadlineExceeded,
                "wait for " + what + ": timed out after " + std::to_string(env.timeout.count()) +
                    " ms" + (lastError.empty() ? "" : " (" + lastError + ")"));
}

std::string devNodePath(const std::string& path, const DeviceEnvironment& env) {
    if (path.rfind("/dev/", 0) == 0 && env.devRoot != "/dev") return env.devRoot + path.substr(4);
    return path;
}

DeviceNode statDeviceNode(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throwErrno("stat device", path);
    DeviceNode node;
    if (S_ISBLK(st.st_mode)) {
        node.type = 'b';
    } else if (S_ISCHR(st.st_mode)) {
        node.type = 'c';
    } else {
        throw Error(StatusCode::kInvalidArgument, "stat device " + path + ": not a device node");
    }
    node.major = gnu_dev_major(st.st_rdev);
    node.minor = gnu_dev_minor(st.st_rdev);
    return node;
}

std::string describe(const grpc::Device& d) {
    std::string s = "device " + (d.id().empty() ? std::string("\"\"") : "\"" + d.id() + "\"") +
                    " (type " + (d.type().empty() ? "\"\"" : d.type());
    if (!d.vm_path().empty()) s += ", vm path " + d.vm_path();
    if (!d.container_path().empty()) s += ", container path " + d.container_path();
    return s + ")";
}

std::string baseName(const std::string& path) { return path.substr(path.rfind('/') + 1); }

void handleVfio(const grpc::Device& device, const DeviceEnvironment& env, DeviceUpdate* update);

}  // namespace

std::string pciPathToSysfs(const std::string& pciPath, const DeviceEnvironment& env) {
    if (!looksLikePciPath(pciPath)) {
        throw Error(StatusCode::kInvalidArgument,
                    "PCI path \"" + pciPath + "\": expected slots like \"02/00\"");
    }
    std::string bus = "0000:00";
    std::string dir = env.sysRoot + "/devices/pci0000:00";
    auto slots = splitOn(pciPath, '/');
    for (size_t i = 0; i < slots.size(); ++i) {
        std::string devDir = dir + "/" + bus + ":" + lower(slots[i]) + ".0";
        if (!exists(devDir)) {
            throw Error(StatusCode::kNotFound, "PCI path \"" + pciPath + "\": no device " + devDir);
        }
        dir = devDir;
        if (i + 1 == slots.size()) break;
        auto buses = listDir(devDir + "/pci_bus");
        if (buses.empty()) {
            throw Error(StatusCode::kNotFound,
                        "PCI path \"" + pciPath + "\": " + devDir + " is not a bridge");
        }
        bus = buses.front();
    }
    return dir;
}

std::string waitForPciBlockDevice(const std::string& pciPath, const DeviceEnvironment& env) {
    return waitFor(env, "block device at PCI path \"" + pciPath + "\"", [&]() -> std::string {
        std::string dir = pciPathToSysfs(pciPath, env);
        std::string name = findBlockName(dir, 2);
        if (name.empty()) return "";
        std::string node = env.devRoot + "/" + name;
        return exists(node) ? node : "";
    });
}

std::string waitForScsiBlockDevice(const std::string& scsiAddr, const DeviceEnvironment& env) {
    auto parts = splitOn(scsiAddr, ':');
    auto numeric = [](const std::string& s) {
        return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
    };
    if (parts.size() != 2 || !numeric(parts[0]) || !numeric(parts[1])) {
        throw Error(StatusCode::kInvalidArgument,
                    "SCSI address \"" + scsiAddr + "\": expected \"<target>:<lun>\"");
    }
    // Ask every SCSI host to scan for the hot-plugged target (best effort).
    std::string hosts = env.sysRoot + "/class/scsi_host";
    for (const auto& h : listDir(hosts)) {
        UniqueFd fd(::open((hosts + "/" + h + "/scan").c_str(), O_WRONLY | O_CLOEXEC));
        if (!fd) continue;
        std::string req = "0 " + parts[0] + " " + parts[1];
        [[maybe_unused]] auto n = ::write(fd.get(), req.data(), req.size());
    }
    std::string devDir = env.sysRoot + "/bus/scsi/devices/0:0:" + scsiAddr;
    return waitFor(env, "SCSI block device \"" + scsiAddr + "\"", [&]() -> std::string {
        auto names = listDir(devDir + "/block");
        if (names.empty()) return "";
        std::string node = env.devRoot + "/" + names.front();
        return exists(node) ? node : "";
    });
}

std::string waitForDeviceNode(const std::string& path, const DeviceEnvironment& env) {
    std::string node = devNodePath(path, env);
    return waitFor(env, "device node " + path,
                   [&]() -> std::string { return exists(node) ? node : ""; });
}

namespace {

void handleVfio(const grpc::Device& device, const DeviceEnvironment& env, DeviceUpdate* update) {
    const bool guestKernel = device.type() == kDeviceVfioGk || device.type() == kDeviceVfioPciGk;
    if (device.options().empty()) {
        throw Error(StatusCode::kInvalidArgument, "no \"<host BDF>=<guest PCI path>\" options");
    }
    std::string group;
    for (const auto& opt : device.options()) {
        auto eq = opt.find('=');
        if (eq == std::string::npos || eq == 0) {
            throw Error(StatusCode::kInvalidArgument,
                        "option \"" + opt + "\": expected \"<host BDF>=<guest PCI path>\"");
        }
        std::string hostBdf = opt.substr(0, eq);
        std::string pciPath = opt.substr(eq + 1);
        std::string dir = waitFor(env, "PCI device at PCI path \"" + pciPath + "\"",
                                  [&] { return pciPathToSysfs(pciPath, env); });
        update->pciAddresses[hostBdf] = baseName(dir);
        if (guestKernel) continue;
        char target[4096];
        ssize_t n = ::readlink((dir + "/iommu_group").c_str(), target, sizeof target - 1);
        if (n < 0) throwErrno("read IOMMU group of", dir);
        std::string g = baseName(std::string(target, static_cast<size_t>(n)));
        if (!group.empty() && g != group) {
            throw Error(StatusCode::kInvalidArgument, "PCI devices are in different IOMMU groups " +
                                                          group + " and " + g + " in the guest");
        }
        group = g;
    }
    if (!guestKernel && !device.container_path().empty()) {
        update->guestPath = waitForDeviceNode(env.devRoot + "/vfio/" + group, env);
    }
}

}  // namespace

DeviceUpdate handleDevice(const grpc::Device& device, const DeviceEnvironment& env) {
    DeviceUpdate update;
    update.containerPath = device.container_path();
    try {
        const std::string& type = device.type();
        if (type == kDeviceBlk || type == kDeviceVirtioBlk) {
            // The shim names the device by its PCI path (in id, older shims in vm_path).
            if (looksLikePciPath(device.id())) {
                update.guestPath = waitForPciBlockDevice(device.id(), env);
            } else if (looksLikePciPath(device.vm_path())) {
                update.guestPath = waitForPciBlockDevice(device.vm_path(), env);
            } else if (!device.vm_path().empty() && device.vm_path().front() == '/') {
                update.guestPath = waitForDeviceNode(device.vm_path(), env);
            } else {
                throw Error(StatusCode::kInvalidArgument, "no PCI path in id or vm_path");
            }
        } else if (type == kDeviceMmioBlk) {
            if (device.vm_path().empty() || device.vm_path().front() != '/') {
                throw Error(StatusCode::kInvalidArgument, "vm_path is not a device path");
            }
            update.guestPath = waitForDeviceNode(device.vm_path(), env);
        } else if (type == kDeviceScsi) {
            update.guestPath =
                waitForScsiBlockDevice(device.id().empty() ? device.vm_path() : device.id(), env);
        } else if (type == kDeviceVfio || type == kDeviceVfioPci || type == kDeviceVfioGk ||
                   type == kDeviceVfioPciGk) {
            handleVfio(device, env, &update);
            if (update.guestPath.empty()) {  // guest-kernel mode: only the env changes
                update.containerPath.clear();
                return update;
            }
        } else {
            throw Error(StatusCode::kInvalidArgument, "unknown device type");
        }
        update.node =
            env.statDevice ? env.statDevice(update.guestPath) : statDeviceNode(update.guestPath);
    } catch (const Error& e) {
        throw Error(e.code(), describe(device) + ": " + e.what());
    }
    logger()
        .with("device", device.id())
        .with("guest-path", update.guestPath)
        .with("container-path", update.containerPath)
        .info("device ready");
    return update;
}

void applyDeviceUpdates(const DeviceUpdates& updates, grpc::Spec* spec) {
    struct Rewrite {
        grpc::LinuxDevice* dev;
        const DeviceUpdate* update;
        std::string oldType;
        int64_t oldMajor, oldMinor;
    };
    std::vector<Rewrite> rewrites;
    // Validate and record every old number first: nothing is edited if one update is wrong,
    // and rules are matched against the original numbers even when devices swap numbers.
    for (const auto& [key, u] : updates) {
        if (u.containerPath.empty()) continue;
        grpc::LinuxDevice* found = nullptr;
        if (spec->has_linux()) {
            for (auto& d : *spec->mutable_linux()->mutable_devices()) {
                if (d.path() == u.containerPath) {
                    found = &d;
                    break;
                }
            }
        }
        if (!found) {
            throw Error(StatusCode::kInvalidArgument, "device " + u.guestPath +
                                                          ": container path " + u.containerPath +
                                                          " is not in the spec's linux.devices");
        }
        if (u.node.type != 'b' && u.node.type != 'c') {
            throw Error(StatusCode::kInvalidArgument, "device " + u.guestPath + " for " +
                                                          u.containerPath + ": not a device node");
        }
        rewrites.push_back({found, &u, found->type(), found->major(), found->minor()});
    }

    for (const auto& r : rewrites) {
        r.dev->set_type(std::string(1, r.update->node.type));
        r.dev->set_major(r.update->node.major);
        r.dev->set_minor(r.update->node.minor);
    }
    if (!rewrites.empty() && spec->linux().has_resources()) {
        for (auto& rule : *spec->mutable_linux()->mutable_resources()->mutable_devices()) {
            for (const auto& r : rewrites) {
                if (rule.type() == r.oldType && rule.major() == r.oldMajor &&
                    rule.minor() == r.oldMinor) {
                    rule.set_type(std::string(1, r.update->node.type));
                    rule.set_major(r.update->node.major);
                    rule.set_minor(r.update->node.minor);
                    break;
                }
            }
        }
    }

    std::map<std::string, std::string> pciMap;
    for (const auto& [key, u] : updates)
        pciMap.insert(u.pciAddresses.begin(), u.pciAddresses.end());
    if (!pciMap.empty() && spec->has_process()) {
        for (auto& entry : *spec->mutable_process()->mutable_env()) {
            auto eq = entry.find('=');
            if (entry.rfind("PCIDEVICE_", 0) != 0 || eq == std::string::npos) continue;
            std::string value = entry.substr(eq + 1), mapped;
            size_t i = 0;
            while (i <= value.size()) {
                size_t j = value.find(',', i);
                if (j == std::string::npos) j = value.size();
                std::string addr = value.substr(i, j - i);
                auto it = pciMap.find(addr);
                mapped += (i ? "," : "") + (it == pciMap.end() ? addr : it->second);
                i = j + 1;
            }
            entry = entry.substr(0, eq + 1) + mapped;
        }
    }

    for (const auto& [key, u] : updates) {
        for (const auto& entry : u.env) {
            auto* env = spec->mutable_process()->mutable_env();
            std::string name = entry.substr(0, entry.find('='));
            bool replaced = false;
            for (auto& existing : *env) {
                if (existing.substr(0, existing.find('=')) == name) {
                    existing = entry;
                    replaced = true;
                    break;
                }
            }
            if (!replaced) env->Add(std::string(entry));
        }
    }
}

void applyDevices(const google::protobuf::RepeatedPtrField<grpc::Device>& devices, grpc::Spec* spec,
                  const DeviceEnvironment& env) {
    DeviceUpdates updates;
    for (const auto& device : devices) {
        DeviceUpdate u = handleDevice(device, env);
        std::string key = u.containerPath.empty() ? "device:" + device.id() : u.containerPath;
        if (!updates.emplace(key, std::move(u)).second) {
            throw Error(StatusCode::kInvalidArgument,
                        describe(device) + ": another device already maps to " + key);
        }
    }
    applyDeviceUpdates(updates, spec);
}

void applyDevices(const google::protobuf::RepeatedPtrField<grpc::Device>& devices,
                  grpc::Spec* spec) {
    applyDevices(devices, spec, DeviceEnvironment{});
}

}  // namespace kata::agent
