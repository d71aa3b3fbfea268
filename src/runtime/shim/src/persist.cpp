#include "persist.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kata/common/error.h"
#include "kata/common/fd.h"

namespace kata::shim {

namespace fs = std::filesystem;

std::string encodeState(const SandboxState& s) {
    nlohmann::json j;
    j["sandboxId"] = s.sandboxId;
    j["namespace"] = s.ns;
    j["vmRunDir"] = s.vmRunDir;
    j["shareRoot"] = s.shareRoot;
    j["hypervisorPid"] = s.hypervisorPid;
    if (!s.netnsPath.empty()) j["netnsPath"] = s.netnsPath;
    if (!s.hostCgroupPath.empty()) j["hostCgroupPath"] = s.hostCgroupPath;
    j["containers"] = nlohmann::json::object();
    for (const auto& [id, c] : s.containers) {
        j["containers"][id] = {{"id", c.id}, {"bundle", c.bundle}, {"mounts", c.mounts}};
    }
    return j.dump(2);
}

SandboxState decodeState(const std::string& text, const std::string& what) {
    try {
        auto j = nlohmann::json::parse(text);
        SandboxState s;
        s.sandboxId = j.at("sandboxId").get<std::string>();
        s.ns = j.value("namespace", "");
        s.vmRunDir = j.value("vmRunDir", "");
        s.shareRoot = j.value("shareRoot", "");
        s.hypervisorPid = j.value("hypervisorPid", 0);
        s.netnsPath = j.value("netnsPath", "");
        s.hostCgroupPath = j.value("hostCgroupPath", "");
        const nlohmann::json containers = j.value("containers", nlohmann::json::object());
        for (const auto& [id, c] : containers.items()) {
            ContainerState cs;
            cs.id = c.value("id", id);
            cs.bundle = c.value("bundle", "");
            cs.mounts = c.value("mounts", std::vector<std::string>{});
            s.containers[id] = cs;
        }
        return s;
    } catch (const nlohmann::json::exception& e) {
        throw Error(StatusCode::kDataLoss, "decode sandbox state " + what + ": " + e.what());
    }
}

void saveState(const Paths& paths, const SandboxState& s) {
    const std::string dir = paths.sandboxStateDir(s.sandboxId);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw SystemError("create state dir", dir, ec.value());
    const std::string file = paths.sandboxStateFile(s.sandboxId);
    const std::string tmp = file + ".tmp";
    const std::string text = encodeState(s);
    {
        UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        if (!fd) throwErrno("open", tmp);
        size_t off = 0;
        while (off < text.size()) {
            ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
            if (n < 0) {
                if (errno == EINTR) continue;
                throwErrno("write", tmp);
            }
            off += static_cast<size_t>(n);
        }
        if (::fsync(fd.get()) != 0) throwErrno("fsync", tmp);
    }
    if (::rename(tmp.c_str(), file.c_str()) != 0) throwErrno("rename " + tmp + " to", file);
}

std::optional<SandboxState> loadState(const Paths& paths, const std::string& sandboxId) {
    const std::string file = paths.sandboxStateFile(sandboxId);
    std::ifstream in(file);
    if (!in) {
        if (errno == ENOENT) return std::nullopt;
        throwErrno("open", file);
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return decodeState(ss.str(), file);
}

void removeState(const Paths& paths, const std::string& sandboxId) {
    const std::string dir = paths.sandboxStateDir(sandboxId);
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (ec && ec != std::errc::no_such_file_or_directory)
        throw SystemError("remove state dir", dir, ec.value());
}

}  // namespace kata::shim
