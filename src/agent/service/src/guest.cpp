#include "kata/agent/service/guest.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "kata/agent/devices.h"
#include "kata/agent/service/sandbox.h"
#include "kata/agent/storage.h"
#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/common/log.h"
#include "kata/common/version.h"

namespace fs = std::filesystem;

namespace kata::agent {
namespace {

const log::Logger kLog("guest");

std::string readFileTrim(const std::string& path) {
    std::ifstream in(path);
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

void writeFile(const std::string& path, const std::string& data) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
    if (!fd) throwErrno("open", path);
    if (::write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
        throwErrno("write \"" + data + "\" to", path);
    }
}

void mkdirs(const fs::path& dir, mode_t mode, int uid, int gid) {
    if (dir.empty() || fs::exists(dir)) return;
    mkdirs(dir.parent_path(), mode, uid, gid);
    if (::mkdir(dir.c_str(), mode ? mode : 0755) != 0 && errno != EEXIST) {
        throwErrno("mkdir", dir.string());
    }
    if (mode) ::chmod(dir.c_str(), mode);
    if (uid >= 0 || gid >= 0) (void)!::chown(dir.c_str(), uid, gid);
}

}  // namespace

std::string kernelRelease() {
    struct utsname u {};
    if (::uname(&u) != 0) throwErrno("uname");
    return u.release;
}

grpc::GuestDetailsResponse guestDetails(const grpc::GuestDetailsRequest& req,
                                        const AgentConfig& cfg) {
    grpc::GuestDetailsResponse resp;
    if (req.mem_block_size()) {
        std::string hex = readFileTrim("/sys/devices/system/memory/block_size_bytes");
        if (!hex.empty()) resp.set_mem_block_size_bytes(std::stoull(hex, nullptr, 16));
    }
    if (req.mem_hotplug_probe()) {
        resp.set_support_mem_hotplug_probe(::access("/sys/devices/system/memory/probe", W_OK) == 0);
    }
    auto* d = resp.mutable_agent_details();
    // The guest kernel release rides along with the version: AgentDetails has no field of its
    // own for it and callers (kata-agent-ctl, tests) want to see which kernel the guest runs.
    d->set_version(std::string(versionString()) + " (kernel " + kernelRelease() + ")");
    d->set_init_daemon(cfg.initMode);
    for (const char* h : {kDeviceBlk, kDeviceVirtioBlk, kDeviceMmioBlk, kDeviceScsi}) {
        d->add_device_handlers(h);
    }
    for (const char* h :
         {kDriver9p, kDriverVirtioFs, kDriverBlk, kDriverVirtioBlk, kDriverMmioBlk, kDriverScsi,
          kDriverLocal, kDriverEphemeral, kDriverBind, kDriverOverlayFs}) {
        d->add_storage_handlers(h);
    }
    d->set_supports_seccomp(true);
    return resp;
}

void setGuestDateTime(int64_t sec, int64_t usec) {
    if (sec < 0 || usec < 0 || usec >= 1000000) {
        throw Error(StatusCode::kInvalidArgument, "set guest time to " + std::to_string(sec) +
                                                      "s " + std::to_string(usec) +
                                                      "us: out of range");
    }
    struct timeval tv {};
    tv.tv_sec = sec;
    tv.tv_usec = usec;
    if (::settimeofday(&tv, nullptr) != 0) throwErrno("settimeofday", std::to_string(sec));
}

void reseedRandomDev(const std::string& data) {
    if (data.empty()) {
        throw Error(StatusCode::kInvalidArgument, "reseed /dev/urandom: no data");
    }
    UniqueFd fd(::open("/dev/urandom", O_RDWR | O_CLOEXEC));
    if (!fd) throwErrno("open", "/dev/urandom");
    if (::write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
        throwErrno("write", "/dev/urandom");
    }
    // Credit the entropy too, so a guest restored from a template does not keep its old state.
    std::vector<char> buf(sizeof(rand_pool_info) + data.size());
    auto* info = reinterpret_cast<rand_pool_info*>(buf.data());
    info->entropy_count = static_cast<int>(data.size() * 8);
    info->buf_size = static_cast<int>(data.size());
    std::copy(data.begin(), data.end(), buf.begin() + sizeof(rand_pool_info));
    if (::ioctl(fd.get(), RNDADDENTROPY, info) != 0)
        throwErrno("ioctl RNDADDENTROPY", "/dev/urandom");
    if (::ioctl(fd.get(), RNDRESEEDCRNG) != 0 && errno != EINVAL && errno != ENOTTY) {
        throwErrno("ioctl RNDRESEEDCRNG", "/dev/urandom");
    }
}

void onlineCpuMem(uint32_t nbCpus, bool cpuOnly, const std::string& sysfsRoot) {
    uint32_t onlined = 0;
    std::error_code ec;
    std::vector<std::string> cpus;
    for (const auto& e : fs::directory_iterator(sysfsRoot + "/devices/system/cpu", ec)) {
        std::string name = e.path().filename().string();
        if (name.size() > 3 && name.rfind("cpu", 0) == 0 &&
            std::all_of(name.begin() + 3, name.end(), ::isdigit)) {
            cpus.push_back(e.path().string() + "/online");
        }
    }
    std::sort(cpus.begin(), cpus.end());
    for (const auto& online : cpus) {
        if (nbCpus && onlined >= nbCpus) break;
        if (::access(online.c_str(), F_OK) != 0 || readFileTrim(online) != "0") continue;
        writeFile(online, "1");
        ++onlined;
    }
    if (nbCpus && onlined < nbCpus) {
        kLog.warn("fewer CPUs onlined than requested",
                  {{"requested", std::to_string(nbCpus)}, {"onlined", std::to_string(onlined)}});
    }
    if (cpuOnly) return;
    for (const auto& e : fs::directory_iterator(sysfsRoot + "/devices/system/memory", ec)) {
        if (e.path().filename().string().rfind("memory", 0) != 0) continue;
        std::string state = e.path().string() + "/state";
        if (::access(state.c_str(), F_OK) == 0 && readFileTrim(state) == "offline") {
            writeFile(state, "online");
        }
    }
}

void memHotplugByProbe(const google::protobuf::RepeatedField<uint64_t>& addrs) {
    for (uint64_t addr : addrs) {
        std::ostringstream hex;
        hex << "0x" << std::hex << addr;
        writeFile("/sys/devices/system/memory/probe", hex.str());
    }
}

void copyFile(const grpc::CopyFileRequest& req, const AgentConfig& cfg) {
    const std::string& raw = req.path();
    fs::path path = fs::path(raw).lexically_normal();
    fs::path base = fs::path(cfg.runDir).lexically_normal();
    auto rel = path.lexically_relative(base);
    if (raw.empty() || raw[0] != '/' || raw.find("/../") != std::string::npos ||
        (raw.size() >= 3 && raw.compare(raw.size() - 3, 3, "/..") == 0) || rel.empty() ||
        *rel.begin() == ".." || rel == ".") {
        throw Error(StatusCode::kInvalidArgument,
                    "copy file: path \"" + raw + "\" does not start with " + cfg.runDir);
    }
    mode_t dirMode = req.dir_mode() & 07777;
    mkdirs(path.parent_path(), dirMode, req.uid(), req.gid());

    const mode_t type = req.file_mode() & S_IFMT;
    if (type == S_IFDIR) {
        if (::mkdir(path.c_str(), req.file_mode() & 07777) != 0 && errno != EEXIST) {
            throwErrno("mkdir", path.string());
        }
        ::chmod(path.c_str(), req.file_mode() & 07777);
        if (::chown(path.c_str(), req.uid(), req.gid()) != 0) throwErrno("chown", path.string());
        return;
    }
    if (type == S_IFLNK) {
        // The data is the link target.
        std::string tmp = path.string() + ".tmp";
        ::unlink(tmp.c_str());
        if (::symlink(req.data().c_str(), tmp.c_str()) != 0) throwErrno("symlink", tmp);
        if (::rename(tmp.c_str(), path.c_str()) != 0) throwErrno("rename", tmp);
        return;
    }
    if (req.offset() < 0) {
        throw Error(StatusCode::kInvalidArgument, "copy file " + raw + ": negative offset");
    }
    std::string tmp = path.string() + ".tmp";
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (req.offset() == 0 ? O_TRUNC : 0);
    UniqueFd fd(::open(tmp.c_str(), flags, 0600));
    if (!fd) throwErrno("open", tmp);
    if (::pwrite(fd.get(), req.data().data(), req.data().size(), req.offset()) !=
        static_cast<ssize_t>(req.data().size())) {
        throwErrno("write", tmp);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throwErrno("stat", tmp);
    if (st.st_size != req.file_size()) return;  // more chunks to come
    if (::fchmod(fd.get(), req.file_mode() & 07777) != 0) throwErrno("chmod", tmp);
    if (::fchown(fd.get(), req.uid(), req.gid()) != 0) throwErrno("chown", tmp);
    if (::rename(tmp.c_str(), path.c_str()) != 0)
        throwErrno("rename", tmp + " to " + path.string());
}

std::string agentMetrics(Sandbox& sandbox) {
    uint64_t rssBytes = 0, threads = 0;
    {
        std::ifstream in("/proc/self/status");
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind("VmRSS:", 0) == 0) rssBytes = std::stoull(line.substr(6)) * 1024;
            if (line.rfind("Threads:", 0) == 0) threads = std::stoull(line.substr(8));
        }
    }
    uint64_t fds = 0;
    std::error_code ec;
    for (auto it = fs::directory_iterator("/proc/self/fd", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
        ++fds;
    }
    std::ostringstream out;
    auto gauge = [&](const char* name, const char* help, uint64_t v) {
        out << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n"
            << name << " " << v << "\n";
    };
    gauge("kata_agent_process_resident_memory_bytes", "Resident memory of the agent in bytes.",
          rssBytes);
    gauge("kata_agent_threads", "Threads of the agent.", threads);
    gauge("kata_agent_open_fds", "Open file descriptors of the agent.", fds);
    gauge("kata_agent_containers", "Containers managed by the agent.", sandbox.containerCount());
    gauge("kata_agent_processes", "Container processes still running.", sandbox.processCount());
    return out.str();
}

}  // namespace kata::agent
