#include "kata/agent/image/bundle.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <sstream>

#include "kata/agent/image/unpack.h"
#include "kata/common/error.h"

namespace kata::agent::image {

namespace {

constexpr size_t kMaxAccountFile = 4 << 20;
constexpr const char* kDefaultPath =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

bool parseId(const std::string& s, uint32_t* out) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
    return ec == std::errc() && p == s.data() + s.size();
}

// The lines of /etc/passwd or /etc/group inside the rootfs split at ':'; empty when absent.
std::vector<std::vector<std::string>> accountFile(int rootfsFd, const char* rel,
                                                  const std::string& what, bool* present) {
    std::vector<std::vector<std::string>> rows;
    UniqueFd fd = openInRoot(rootfsFd, rel, O_RDONLY);
    *present = fd.valid();
    if (!fd) {
        if (errno == ENOENT || errno == ENOTDIR) return rows;
        throwErrno("open", what + ": /" + rel);
    }
    std::string text;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            throwErrno("read", what + ": /" + rel);
        }
        if (n == 0) break;
        text.append(buf, static_cast<size_t>(n));
        if (text.size() > kMaxAccountFile)
            throw Error(StatusCode::kInvalidArgument, what + ": /" + rel + " is over 4 MiB");
    }
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::vector<std::string> fields;
        size_t i = 0;
        for (;;) {
            size_t j = line.find(':', i);
            fields.push_back(line.substr(i, j == std::string::npos ? std::string::npos : j - i));
            if (j == std::string::npos) break;
            i = j + 1;
        }
        rows.push_back(std::move(fields));
    }
    return rows;
}

void addMount(grpc::Spec* spec, const char* destination, const char* type, const char* source,
              std::initializer_list<const char*> options) {
    auto* m = spec->add_mounts();
    m->set_destination(destination);
    m->set_type(type);
    m->set_source(source);
    for (const char* o : options) m->add_options(o);
}

}  // namespace

ResolvedUser resolveUser(const std::string& user, int rootfsFd, const std::string& what) {
    ResolvedUser r;
    std::string userPart = user.substr(0, user.find(':'));
    std::string groupPart =
        user.find(':') == std::string::npos ? "" : user.substr(user.find(':') + 1);
    std::string where = what + ": user \"" + user + "\"";
    if (user.find(':') != std::string::npos && (userPart.empty() || groupPart.empty()))
        throw Error(StatusCode::kInvalidArgument, where + ": expected user[:group]");
    bool havePasswd = false;
    bool haveGroup = false;
    auto passwd = accountFile(rootfsFd, "etc/passwd", what, &havePasswd);
    bool known = false;
    if (userPart.empty()) {
        userPart = "0";
    }
    if (parseId(userPart, &r.uid)) {
        for (const auto& row : passwd) {
            uint32_t uid = 0;
            if (row.size() >= 4 && parseId(row[2], &uid) && uid == r.uid) {
                r.name = row[0];
                parseId(row[3], &r.gid);
                known = true;
                break;
            }
        }
    } else {
        for (const auto& row : passwd) {
            if (row.size() >= 4 && row[0] == userPart) {
                if (!parseId(row[2], &r.uid) || !parseId(row[3], &r.gid))
                    throw Error(StatusCode::kInvalidArgument,
                                where + ": malformed /etc/passwd entry for " + userPart);
                r.name = userPart;
                known = true;
                break;
            }
        }
        if (!known)
            throw Error(StatusCode::kNotFound,
                        where + ": no such user in the image's /etc/passwd" +
                            (havePasswd ? "" : " (the image has no /etc/passwd)"));
    }
    if (!known && userPart != "0") r.gid = 0;
    auto groups = accountFile(rootfsFd, "etc/group", what, &haveGroup);
    if (!groupPart.empty()) {
        if (!parseId(groupPart, &r.gid)) {
            bool found = false;
            for (const auto& row : groups) {
                if (row.size() >= 3 && row[0] == groupPart && parseId(row[2], &r.gid)) {
                    found = true;
                    break;
                }
            }
            if (!found)
                throw Error(StatusCode::kNotFound,
                            where + ": no such group in the image's /etc/group" +
                                (haveGroup ? "" : " (the image has no /etc/group)"));
        }
    }
    if (!r.name.empty()) {
        for (const auto& row : groups) {
            if (row.size() < 4) continue;
            uint32_t gid = 0;
            if (!parseId(row[2], &gid) || gid == r.gid) continue;
            std::istringstream members(row[3]);
            std::string m;
            while (std::getline(members, m, ',')) {
                if (m == r.name) {
                    r.additionalGids.push_back(gid);
                    break;
                }
            }
        }
    }
    return r;
}

grpc::Spec specFromImageConfig(const ImageConfig& config, int rootfsFd, const std::string& what) {
    grpc::Spec spec;
    spec.set_version("1.0.2");
    auto* process = spec.mutable_process();
    for (const auto& a : config.entrypoint) process->add_args(a);
    for (const auto& a : config.cmd) process->add_args(a);
    if (process->args_size() == 0)
        throw Error(StatusCode::kInvalidArgument,
                    what + ": the image config has neither Entrypoint nor Cmd");
    bool hasPath = false;
    for (const auto& e : config.env) {
        if (e.rfind("PATH=", 0) == 0) hasPath = true;
    }
    if (!hasPath) process->add_env(kDefaultPath);
    for (const auto& e : config.env) process->add_env(e);
    process->set_cwd(config.workingDir.empty() ? "/" : config.workingDir);
    if (process->cwd().front() != '/')
        throw Error(StatusCode::kInvalidArgument,
                    what + ": WorkingDir \"" + config.workingDir + "\" is not absolute");
    ResolvedUser u = resolveUser(config.user, rootfsFd, what);
    auto* user = process->mutable_user();
    user->set_uid(u.uid);
    user->set_gid(u.gid);
    for (uint32_t g : u.additionalGids) user->add_additionalgids(g);
    auto* caps = process->mutable_capabilities();
    for (const char* c :
         {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
          "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
          "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}) {
        caps->add_bounding(c);
        caps->add_effective(c);
        caps->add_permitted(c);
    }
    auto* nofile = process->add_rlimits();
    nofile->set_type("RLIMIT_NOFILE");
    nofile->set_hard(1024);
    nofile->set_soft(1024);
    process->set_nonewprivileges(true);

    spec.mutable_root()->set_path("rootfs");
    addMount(&spec, "/proc", "proc", "proc", {"nosuid", "noexec", "nodev"});
    addMount(&spec, "/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"});
    addMount(&spec, "/dev/pts", "devpts", "devpts",
             {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"});
    addMount(&spec, "/dev/shm", "tmpfs", "shm",
             {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"});
    addMount(&spec, "/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"});
    addMount(&spec, "/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"});

    auto* lx = spec.mutable_linux();
    for (const char* ns : {"pid", "ipc", "uts", "mount"}) lx->add_namespaces()->set_type(ns);
    for (const char* p : {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                          "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                          "/proc/sched_debug", "/sys/firmware", "/proc/scsi"})
        lx->add_maskedpaths(p);
    for (const char* p : {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"})
        lx->add_readonlypaths(p);
    if (!config.stopSignal.empty())
        (*spec.mutable_annotations())["org.opencontainers.image.stopSignal"] = config.stopSignal;
    return spec;
}

}  // namespace kata::agent::image
