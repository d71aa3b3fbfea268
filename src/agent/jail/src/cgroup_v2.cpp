// cgroup v2: one unified directory; controllers enabled down the path through
// cgroup.subtree_control.
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>

#include "cgroup.h"
#include "device_filter.h"
#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/common/log.h"
#include "util.h"

namespace kata::jail {

namespace {
uint64_t eventCount(const std::string& file, const std::string& key) {
    for (const auto& [k, v] : readKeyValues(file))
        if (k == key) return v;
    return 0;
}

class OomWatcherV2 : public OomWatcher {
  public:
    OomWatcherV2(const std::string& dir, std::function<void()> cb)
        : file_(dir + "/memory.events"), cb_(std::move(cb)) {
        ino_.reset(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
        stop_.reset(::eventfd(0, EFD_CLOEXEC));
        if (!ino_ || !stop_) throwErrno("inotify_init1", file_);
        if (::inotify_add_watch(ino_.get(), file_.c_str(), IN_MODIFY) < 0)
            throwErrno("inotify_add_watch", file_);
        kills_ = eventCount(file_, "oom_kill");
        thread_ = std::thread([this] { loop(); });
    }
    ~OomWatcherV2() override {
        uint64_t one = 1;
        (void)!::write(stop_.get(), &one, sizeof one);
        thread_.join();
    }

  private:
    void loop() {
        for (;;) {
            struct pollfd p[2] = {{ino_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
            if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
            if (p[1].revents) return;
            char buf[4096];
            while (::read(ino_.get(), buf, sizeof buf) > 0) {
            }
            uint64_t now;
            try {
                now = eventCount(file_, "oom_kill");
            } catch (...) {
                return;
            }
            for (; kills_ < now; ++kills_) cb_();
        }
    }
    std::string file_;
    std::function<void()> cb_;
    UniqueFd ino_, stop_;
    uint64_t kills_ = 0;
    std::thread thread_;
};

class CgroupV2 : public Cgroup {
  public:
    CgroupV2(const std::string& mountPoint, const std::string& path)
        : mount_(mountPoint), path_(path) {
        std::string rel = path;
        if (rel.empty() || rel[0] != '/') {
            std::string base = "/";
            for (const auto& l : split(readFile("/proc/self/cgroup"), '\n'))
                if (l.rfind("0::", 0) == 0) base = l.substr(3);
            rel = joinPath(base, rel);
        }
        dir_ = joinPath(mount_, rel);
        while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
        try {
            makeDirs();
        } catch (...) {
            removeDirs();
            throw;
        }
    }

    bool isV2() const override { return true; }
    const std::string& path() const override { return path_; }
    std::vector<std::string> procsFiles() const override { return {dir_ + "/cgroup.procs"}; }
    std::vector<std::pair<std::string, std::string>> mountDirs() const override {
        return {{"", dir_}};
    }
    std::vector<pid_t> pids() const override { return readPids(dir_ + "/cgroup.procs"); }

    void apply(const grpc::LinuxResources& r, bool initial) override {
        if (r.has_memory()) {
            const auto& m = r.memory();
            if (m.limit()) set("memory.max", m.limit() < 0 ? "max" : std::to_string(m.limit()));
            if (m.reservation()) set("memory.low", std::to_string(m.reservation()));
            // v1's swap is memory+swap; v2's swap.max is swap alone.
            if (m.swap() < 0) {
                setIfExists("memory.swap.max", "max");
            } else if (m.swap() > 0 && m.limit() > 0 && m.swap() >= m.limit()) {
                setIfExists("memory.swap.max", std::to_string(m.swap() - m.limit()));
            }
        }
        if (r.has_cpu()) {
            const auto& c = r.cpu();
            if (c.shares()) {
                uint64_t weight = 1 + ((std::max<uint64_t>(c.shares(), 2) - 2) * 9999) / 262142;
                set("cpu.weight", std::to_string(std::min<uint64_t>(weight, 10000)));
            }
            if (c.quota() || c.period()) {
                std::string quota = c.quota() > 0 ? std::to_string(c.quota()) : "max";
                set("cpu.max", quota + " " + std::to_string(c.period() ? c.period() : 100000));
            }
            if (!c.cpus().empty()) set("cpuset.cpus", c.cpus());
            if (!c.mems().empty()) set("cpuset.mems", c.mems());
        }
        if (r.has_pids() && r.pids().limit() != 0)
            set("pids.max", r.pids().limit() > 0 ? std::to_string(r.pids().limit()) : "max");
        if (r.has_blockio()) {
            const auto& b = r.blockio();
            if (b.weight())
                set("io.weight", std::to_string(1 + (std::max(b.weight(), 10u) - 10) * 9999 / 990));
            auto throttle = [&](const auto& list, const char* key) {
                for (const auto& d : list)
                    set("io.max", std::to_string(d.major()) + ":" + std::to_string(d.minor()) +
                                      " " + key + "=" + std::to_string(d.rate()));
            };
            throttle(b.throttlereadbpsdevice(), "rbps");
            throttle(b.throttlewritebpsdevice(), "wbps");
            throttle(b.throttlereadiopsdevice(), "riops");
            throttle(b.throttlewriteiopsdevice(), "wiops");
        }
        for (const auto& h : r.hugepagelimits())
            set("hugetlb." + h.pagesize() + ".max", std::to_string(h.limit()));
        if (r.devices_size() > 0) applyDevices(r, initial);
    }

    void freeze() override { setFrozen(true); }
    void thaw() override { setFrozen(false); }

    void stats(grpc::CgroupStats* out) const override {
        auto* usage = out->mutable_cpu_stats()->mutable_cpu_usage();
        auto* t = out->mutable_cpu_stats()->mutable_throttling_data();
        for (const auto& [k, v] : readKeyValues(dir_ + "/cpu.stat")) {
            if (k == "usage_usec") usage->set_total_usage(v * 1000);
            if (k == "user_usec") usage->set_usage_in_usermode(v * 1000);
            if (k == "system_usec") usage->set_usage_in_kernelmode(v * 1000);
            if (k == "nr_periods") t->set_periods(v);
            if (k == "nr_throttled") t->set_throttled_periods(v);
            if (k == "throttled_usec") t->set_throttled_time(v * 1000);
        }
        auto* m = out->mutable_memory_stats();
        m->mutable_usage()->set_usage(readU64(dir_ + "/memory.current"));
        m->mutable_usage()->set_max_usage(readU64(dir_ + "/memory.peak"));
        m->mutable_usage()->set_limit(readU64(dir_ + "/memory.max"));
        m->mutable_usage()->set_failcnt(eventCount(dir_ + "/memory.events", "max"));
        m->mutable_swap_usage()->set_usage(readU64(dir_ + "/memory.swap.current"));
        m->mutable_swap_usage()->set_limit(readU64(dir_ + "/memory.swap.max"));
        m->set_use_hierarchy(true);
        for (const auto& [k, v] : readKeyValues(dir_ + "/memory.stat")) {
            (*m->mutable_stats())[k] = v;
            if (k == "file") m->set_cache(v);
        }
        out->mutable_pids_stats()->set_current(readU64(dir_ + "/pids.current"));
        out->mutable_pids_stats()->set_limit(readU64(dir_ + "/pids.max"));
        if (pathExists(dir_ + "/io.stat")) {
            auto* b = out->mutable_blkio_stats();
            for (const auto& l : split(readFile(dir_ + "/io.stat"), '\n')) {
                auto f = split(l, ' ');
                if (f.size() < 2) continue;
                auto mm = split(f[0], ':');
                if (mm.size() != 2) continue;
                for (size_t i = 1; i < f.size(); ++i) {
                    auto kv = split(f[i], '=');
                    if (kv.size() != 2) continue;
                    grpc::BlkioStatsEntry* e = nullptr;
                    if (kv[0] == "rbytes" || kv[0] == "wbytes")
                        e = b->add_io_service_bytes_recursive();
                    else if (kv[0] == "rios" || kv[0] == "wios")
                        e = b->add_io_serviced_recursive();
                    if (!e) continue;
                    e->set_major(std::stoull(mm[0]));
                    e->set_minor(std::stoull(mm[1]));
                    e->set_op(kv[0][0] == 'r' ? "Read" : "Write");
                    e->set_value(std::stoull(kv[1]));
                }
            }
        }
    }

    std::unique_ptr<OomWatcher> watchOom(std::function<void()> onOom) override {
        if (!pathExists(dir_ + "/memory.events")) return nullptr;
        return std::make_unique<OomWatcherV2>(dir_, std::move(onOom));
    }

    void destroy() override {
        devices_.reset();
        if (created_.empty() && !pathExists(dir_)) return;
        try {
            thaw();
        } catch (...) {
        }
        if (tryWriteFile(dir_ + "/cgroup.kill", "1") != 0) {
            for (pid_t p : pids()) ::kill(p, SIGKILL);
        }
        for (int i = 0; i < 500 && !pids().empty(); ++i) {
            for (pid_t p : pids()) ::kill(p, SIGKILL);
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        removeDirs();
    }

  private:
    // v2 has no devices.allow: the rules become a BPF program on the cgroup, replaced on update.
    void applyDevices(const grpc::LinuxResources& r, bool initial) {
        auto program = deviceFilterProgram(deviceRules(r));
        if (!devices_) devices_ = std::make_unique<DeviceFilter>(dir_);
        try {
            devices_->replace(program);
        } catch (const SystemError& e) {
            if (!isBpfUnsupported(e.err())) throw;
            if (initial)
                log::Logger("jail")
                    .with("cgroup", dir_)
                    .with("error", e.what())
                    .warn(
                        "device cgroup rules are not enforced on cgroup v2: the kernel has no "
                        "BPF_PROG_TYPE_CGROUP_DEVICE (CONFIG_CGROUP_BPF, CONFIG_BPF_SYSCALL)");
        }
    }

    void makeDirs() {
        std::string cur = mount_;
        std::string rel = dir_.substr(mount_.size());
        auto parts = split(rel, '/');
        parts.erase(std::remove(parts.begin(), parts.end(), std::string()), parts.end());
        for (const auto& part : parts) {
            enableControllers(cur);
            cur += "/" + part;
            if (::mkdir(cur.c_str(), 0755) != 0) {
                if (errno == EEXIST) continue;
                throwErrno("mkdir cgroup", cur);
            }
            created_.push_back(cur);
        }
    }

    // Best effort: a controller the parent lacks is simply not available below it.
    void enableControllers(const std::string& dir) {
        if (!pathExists(dir + "/cgroup.controllers")) return;
        for (const auto& c : split(trim(readFile(dir + "/cgroup.controllers")), ' '))
            if (!c.empty()) tryWriteFile(dir + "/cgroup.subtree_control", "+" + c);
    }

    void removeDirs() {
        for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
            if (*it == dir_)
                removeCgroupDir(*it);
            else
                ::rmdir(it->c_str());
        }
        created_.clear();
    }

    void set(const std::string& file, const std::string& value) {
        writeFile(dir_ + "/" + file, value);
    }
    void setIfExists(const std::string& file, const std::string& value) {
        if (pathExists(dir_ + "/" + file)) set(file, value);
    }

    void setFrozen(bool frozen) {
        set("cgroup.freeze", frozen ? "1" : "0");
        for (int i = 0; i < 1000; ++i) {
            if (eventCount(dir_ + "/cgroup.events", "frozen") == (frozen ? 1u : 0u)) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        throw Error(StatusCode::kDeadlineExceeded,
                    "cgroup " + dir_ + " did not become " + (frozen ? "frozen" : "thawed"));
    }

    std::string mount_, path_, dir_;
    std::vector<std::string> created_;
    std::unique_ptr<DeviceFilter> devices_;
};
}  // namespace

std::unique_ptr<Cgroup> makeCgroupV2(const std::string& mountPoint, const std::string& path) {
    return std::make_unique<CgroupV2>(mountPoint, path);
}

}  // namespace kata::jail
