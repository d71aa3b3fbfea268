// cgroup v1: one directory per controller hierarchy.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "cgroup.h"
#include "device_filter.h"
#include "kata/common/error.h"
#include "kata/common/fd.h"
#include "kata/common/log.h"
#include "kata/common/mountinfo.h"
#include "util.h"

namespace kata::jail {

namespace {
struct Hierarchy {
    std::string mountPoint, root;
    std::vector<std::string> controllers;
    std::string dir;
    bool has(const std::string& c) const {
        return std::find(controllers.begin(), controllers.end(), c) != controllers.end();
    }
};

const std::set<std::string> kKnownControllers = {
    "cpu",   "cpuacct", "cpuset",  "memory",   "pids",       "devices", "freezer",
    "blkio", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma",    "misc"};

class OomWatcherV1 : public OomWatcher {
  public:
    OomWatcherV1(std::string dir, std::function<void()> cb)
        : dir_(std::move(dir)), cb_(std::move(cb)) {
        efd_.reset(::eventfd(0, EFD_CLOEXEC));
        stop_.reset(::eventfd(0, EFD_CLOEXEC));
        if (!efd_ || !stop_) throwErrno("eventfd", "OOM notification of " + dir_);
        ctl_.reset(::open((dir_ + "/memory.oom_control").c_str(), O_RDONLY | O_CLOEXEC));
        if (!ctl_) throwErrno("open", dir_ + "/memory.oom_control");
        writeFile(dir_ + "/cgroup.event_control",
                  std::to_string(efd_.get()) + " " + std::to_string(ctl_.get()));
        kills_ = oomKills();
        thread_ = std::thread([this] { loop(); });
    }
    ~OomWatcherV1() override {
        uint64_t one = 1;
        (void)!::write(stop_.get(), &one, sizeof one);
        thread_.join();
    }

  private:
    uint64_t oomKills() {
        for (const auto& [k, v] : readKeyValues(dir_ + "/memory.oom_control"))
            if (k == "oom_kill") return v;
        return 0;
    }
    void loop() {
        for (;;) {
            struct pollfd p[2] = {{efd_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
            if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
            if (p[1].revents) return;
            if (!p[0].revents) continue;
            uint64_t n;
            if (::read(efd_.get(), &n, sizeof n) != sizeof n) continue;
            // The eventfd also fires when the cgroup is removed.
            if (!pathExists(dir_)) return;
            uint64_t now = 0;
            try {
                now = oomKills();
            } catch (...) {
                return;
            }
            // The notification can come before the kill is counted; give it a moment.
            for (int i = 0; i < 50 && now <= kills_; ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
                now = oomKills();
            }
            uint64_t events = now > kills_ ? now - kills_ : 1;
            kills_ = std::max(now, kills_);
            for (uint64_t i = 0; i < events; ++i) cb_();
        }
    }
    std::string dir_;
    std::function<void()> cb_;
    UniqueFd efd_, stop_, ctl_;
    uint64_t kills_ = 0;
    std::thread thread_;
};

class CgroupV1 : public Cgroup {
  public:
    explicit CgroupV1(const std::string& path) : path_(path) {
        discover();
        try {
            for (auto& h : hierarchies_) makeDir(h);
        } catch (...) {
            removeDirs();
            throw;
        }
    }

    bool isV2() const override { return false; }
    const std::string& path() const override { return path_; }

    std::vector<std::string> procsFiles() const override {
        std::vector<std::string> out;
        for (const auto& h : hierarchies_) out.push_back(h.dir + "/cgroup.procs");
        return out;
    }

    std::vector<std::pair<std::string, std::string>> mountDirs() const override {
        std::vector<std::pair<std::string, std::string>> out;
        for (const auto& h : hierarchies_)
            out.emplace_back(h.mountPoint.substr(h.mountPoint.rfind('/') + 1), h.dir);
        return out;
    }

    std::vector<pid_t> pids() const override {
        std::set<pid_t> all;
        for (const auto& h : hierarchies_)
            for (pid_t p : readPids(h.dir + "/cgroup.procs")) all.insert(p);
        return {all.begin(), all.end()};
    }

    void apply(const grpc::LinuxResources& r, bool initial) override {
        if (r.has_memory()) applyMemory(r.memory());
        if (r.has_cpu()) {
            const auto& c = r.cpu();
            if (c.shares()) set("cpu", "cpu.shares", std::to_string(c.shares()));
            if (c.period()) set("cpu", "cpu.cfs_period_us", std::to_string(c.period()));
            if (c.quota()) set("cpu", "cpu.cfs_quota_us", std::to_string(c.quota()));
            if (c.realtimeperiod())
                set("cpu", "cpu.rt_period_us", std::to_string(c.realtimeperiod()));
            if (c.realtimeruntime())
                set("cpu", "cpu.rt_runtime_us", std::to_string(c.realtimeruntime()));
            if (!c.cpus().empty()) set("cpuset", "cpuset.cpus", c.cpus());
            if (!c.mems().empty()) set("cpuset", "cpuset.mems", c.mems());
        }
        if (r.has_pids() && r.pids().limit() != 0)
            set("pids", "pids.max",
                r.pids().limit() > 0 ? std::to_string(r.pids().limit()) : "max");
        if (r.has_blockio()) {
            const auto& b = r.blockio();
            if (b.weight()) set("blkio", "blkio.weight", std::to_string(b.weight()));
            if (b.leafweight()) set("blkio", "blkio.leaf_weight", std::to_string(b.leafweight()));
            for (const auto& d : b.weightdevice())
                set("blkio", "blkio.weight_device",
                    std::to_string(d.major()) + ":" + std::to_string(d.minor()) + " " +
                        std::to_string(d.weight()));
            auto throttle = [&](const auto& list, const char* file) {
                for (const auto& d : list)
                    set("blkio", file,
                        std::to_string(d.major()) + ":" + std::to_string(d.minor()) + " " +
                            std::to_string(d.rate()));
            };
            throttle(b.throttlereadbpsdevice(), "blkio.throttle.read_bps_device");
            throttle(b.throttlewritebpsdevice(), "blkio.throttle.write_bps_device");
            throttle(b.throttlereadiopsdevice(), "blkio.throttle.read_iops_device");
            throttle(b.throttlewriteiopsdevice(), "blkio.throttle.write_iops_device");
        }
        for (const auto& h : r.hugepagelimits())
            set("hugetlb", "hugetlb." + h.pagesize() + ".limit_in_bytes",
                std::to_string(h.limit()));
        if (r.has_network()) {
            if (r.network().classid())
                set("net_cls", "net_cls.classid", std::to_string(r.network().classid()));
            for (const auto& p : r.network().priorities())
                set("net_prio", "net_prio.ifpriomap",
                    p.name() + " " + std::to_string(p.priority()));
        }
        if (r.devices_size() > 0 && find("devices")) {
            for (const DeviceRule& d : deviceRules(r))
                set("devices", d.allow ? "devices.allow" : "devices.deny", cgroupV1DeviceRule(d));
        }
    }

    void freeze() override { setFreezer("FROZEN"); }
    void thaw() override { setFreezer("THAWED"); }

    void stats(grpc::CgroupStats* out) const override {
        if (const Hierarchy* h = find("cpuacct")) {
            auto* usage = out->mutable_cpu_stats()->mutable_cpu_usage();
            usage->set_total_usage(readU64(h->dir + "/cpuacct.usage"));
            if (pathExists(h->dir + "/cpuacct.usage_percpu"))
                for (const auto& v : split(trim(readFile(h->dir + "/cpuacct.usage_percpu")), ' '))
                    if (!v.empty()) usage->add_percpu_usage(std::stoull(v));
            uint64_t nsPerTick = 1000000000ULL / static_cast<uint64_t>(::sysconf(_SC_CLK_TCK));
            for (const auto& [k, v] : readKeyValues(h->dir + "/cpuacct.stat")) {
                if (k == "user") usage->set_usage_in_usermode(v * nsPerTick);
                if (k == "system") usage->set_usage_in_kernelmode(v * nsPerTick);
            }
        }
        if (const Hierarchy* h = find("cpu")) {
            auto* t = out->mutable_cpu_stats()->mutable_throttling_data();
            for (const auto& [k, v] : readKeyValues(h->dir + "/cpu.stat")) {
                if (k == "nr_periods") t->set_periods(v);
                if (k == "nr_throttled") t->set_throttled_periods(v);
                if (k == "throttled_time") t->set_throttled_time(v);
            }
        }
        if (const Hierarchy* h = find("memory")) {
            auto* m = out->mutable_memory_stats();
            auto fill = [&](grpc::MemoryData* d, const std::string& prefix) {
                d->set_usage(readU64(h->dir + "/" + prefix + ".usage_in_bytes"));
                d->set_max_usage(readU64(h->dir + "/" + prefix + ".max_usage_in_bytes"));
                d->set_failcnt(readU64(h->dir + "/" + prefix + ".failcnt"));
                d->set_limit(readU64(h->dir + "/" + prefix + ".limit_in_bytes"));
            };
            fill(m->mutable_usage(), "memory");
            fill(m->mutable_swap_usage(), "memory.memsw");
            fill(m->mutable_kernel_usage(), "memory.kmem");
            m->set_use_hierarchy(readU64(h->dir + "/memory.use_hierarchy") == 1);
            for (const auto& [k, v] : readKeyValues(h->dir + "/memory.stat")) {
                (*m->mutable_stats())[k] = v;
                if (k == "cache") m->set_cache(v);
            }
        }
        if (const Hierarchy* h = find("pids")) {
            out->mutable_pids_stats()->set_current(readU64(h->dir + "/pids.current"));
            out->mutable_pids_stats()->set_limit(readU64(h->dir + "/pids.max"));
        }
        if (const Hierarchy* h = find("blkio")) {
            auto* b = out->mutable_blkio_stats();
            auto parse = [&](const std::string& file, auto* list) {
                if (!pathExists(h->dir + "/" + file)) return false;
                for (const auto& l : split(readFile(h->dir + "/" + file), '\n')) {
                    auto f = split(l, ' ');
                    if (f.size() != 3) continue;
                    auto mm = split(f[0], ':');
                    if (mm.size() != 2) continue;
                    auto* e = list->Add();
                    e->set_major(std::stoull(mm[0]));
                    e->set_minor(std::stoull(mm[1]));
                    e->set_op(f[1]);
                    e->set_value(std::stoull(f[2]));
                }
                return true;
            };
            if (!parse("blkio.io_service_bytes_recursive", b->mutable_io_service_bytes_recursive()))
                parse("blkio.throttle.io_service_bytes_recursive",
                      b->mutable_io_service_bytes_recursive());
            if (!parse("blkio.io_serviced_recursive", b->mutable_io_serviced_recursive()))
                parse("blkio.throttle.io_serviced_recursive", b->mutable_io_serviced_recursive());
        }
    }

    std::unique_ptr<OomWatcher> watchOom(std::function<void()> onOom) override {
        const Hierarchy* h = find("memory");
        if (!h) return nullptr;
        return std::make_unique<OomWatcherV1>(h->dir, std::move(onOom));
    }

    void destroy() override {
        if (hierarchies_.empty()) return;
        if (find("freezer")) {
            try {
                thaw();
            } catch (...) {
            }
        }
        for (int i = 0; i < 500; ++i) {
            auto left = pids();
            if (left.empty()) break;
            for (pid_t p : left) ::kill(p, SIGKILL);
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        removeDirs();
    }

  private:
    void discover() {
        // Our own place in each hierarchy, for relative paths.
        std::map<std::string, std::string> self;
        for (const auto& l : split(readFile("/proc/self/cgroup"), '\n')) {
            auto f = split(l, ':');
            if (f.size() >= 3) self[f[1]] = l.substr(f[0].size() + f[1].size() + 2);
        }
        for (const auto& m : readMountinfo()) {
            if (m.fsType != "cgroup") continue;
            Hierarchy h;
            h.root = m.root;
            h.mountPoint = m.mountPoint;
            for (const auto& o : split(m.superOptions, ','))
                if (kKnownControllers.count(o)) h.controllers.push_back(o);
            if (h.controllers.empty()) continue;
            bool dup =
                std::any_of(hierarchies_.begin(), hierarchies_.end(),
                            [&](const Hierarchy& o) { return o.controllers == h.controllers; });
            if (dup) continue;
            std::string key;
            for (size_t i = 0; i < h.controllers.size(); ++i)
                key += (i ? "," : "") + h.controllers[i];
            std::string rel = path_;
            if (rel.empty() || rel[0] != '/') {
                std::string base = "/";
                for (const auto& [k, v] : self) {
                    auto ks = split(k, ',');
                    std::sort(ks.begin(), ks.end());
                    auto hs = h.controllers;
                    std::sort(hs.begin(), hs.end());
                    if (ks == hs) base = v;
                }
                if (h.root != "/" && base.rfind(h.root, 0) == 0) base = base.substr(h.root.size());
                rel = joinPath(base, rel);
            }
            h.dir = joinPath(h.mountPoint, rel);
            while (h.dir.size() > 1 && h.dir.back() == '/') h.dir.pop_back();
            hierarchies_.push_back(h);
        }
        if (hierarchies_.empty())
            throw Error(StatusCode::kFailedPrecondition, "no cgroup v1 controller is mounted");
    }

    void makeDir(const Hierarchy& h) {
        std::string cur = h.mountPoint;
        std::string rel = h.dir.substr(h.mountPoint.size());
        for (const auto& part : split(rel, '/')) {
            if (part.empty()) continue;
            std::string parent = cur;
            cur += "/" + part;
            if (::mkdir(cur.c_str(), 0755) == 0) {
                created_.push_back(cur);
            } else if (errno != EEXIST) {
                throwErrno("mkdir cgroup", cur);
            }
            if (h.has("cpuset")) {
                // A new cpuset starts empty and refuses tasks: inherit the parent's. Existing
                // levels too: another container may have just made one and not filled it yet.
                for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {
                    std::string v = trim(readFile(cur + "/" + f));
                    if (v.empty()) writeFile(cur + "/" + f, trim(readFile(parent + "/" + f)));
                }
            }
        }
    }

    void removeDirs() {
        // Leaves first; a parent shared with another container stays (it is busy).
        for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
            bool leaf = std::any_of(hierarchies_.begin(), hierarchies_.end(),
                                    [&](const Hierarchy& h) { return h.dir == *it; });
            if (leaf)
                removeCgroupDir(*it);
            else
                ::rmdir(it->c_str());
        }
        created_.clear();
    }

    const Hierarchy* find(const std::string& controller) const {
        for (const auto& h : hierarchies_)
            if (h.has(controller)) return &h;
        return nullptr;
    }

    void set(const std::string& controller, const std::string& file, const std::string& value) {
        const Hierarchy* h = find(controller);
        if (!h)
            throw Error(StatusCode::kFailedPrecondition, "set " + file + ": the " + controller +
                                                             " cgroup controller is not mounted");
        writeFile(h->dir + "/" + file, value);
    }

    void applyMemory(const grpc::LinuxMemory& m) {
        const Hierarchy* h = find("memory");
        if (!h)
            throw Error(StatusCode::kFailedPrecondition,
                        "the memory cgroup controller is not mounted");
        std::string limitFile = h->dir + "/memory.limit_in_bytes";
        std::string swapFile = h->dir + "/memory.memsw.limit_in_bytes";
        bool haveSwap = pathExists(swapFile);
        std::string limit = m.limit() ? std::to_string(m.limit() < 0 ? -1 : m.limit()) : "";
        std::string swap = m.swap() && haveSwap ? std::to_string(m.swap() < 0 ? -1 : m.swap()) : "";
        // memsw must stay >= limit at every step, so the order depends on the direction.
        if (!limit.empty() && tryWriteFile(limitFile, limit) != 0) {
            if (!swap.empty()) writeFile(swapFile, swap);
            writeFile(limitFile, limit);
            swap.clear();
        }
        if (!swap.empty()) writeFile(swapFile, swap);
        if (m.reservation())
            writeFile(h->dir + "/memory.soft_limit_in_bytes", std::to_string(m.reservation()));
        if (m.swappiness() > 0 && m.swappiness() <= 100)
            writeFile(h->dir + "/memory.swappiness", std::to_string(m.swappiness()));
        if (m.disableoomkiller()) writeFile(h->dir + "/memory.oom_control", "1");
    }

    void setFreezer(const std::string& state) {
        const Hierarchy* h = find("freezer");
        if (!h)
            throw Error(StatusCode::kFailedPrecondition,
                        "the freezer cgroup controller is not mounted");
        std::string file = h->dir + "/freezer.state";
        for (int i = 0; i < 1000; ++i) {
            writeFile(file, state);
            if (trim(readFile(file)) == state) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        throw Error(StatusCode::kDeadlineExceeded,
                    "freezer of " + h->dir + " did not reach " + state);
    }

    std::string path_;
    std::vector<Hierarchy> hierarchies_;
    std::vector<std::string> created_;
};
}  // namespace

std::unique_ptr<Cgroup> makeCgroupV1(const std::string& path) {
    return std::make_unique<CgroupV1>(path);
}

}  // namespace kata::jail
