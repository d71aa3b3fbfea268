#include "stats.h"

namespace kata::shim {

namespace cg = io::containerd::cgroups::v1;

namespace {

uint64_t statOf(const grpc::MemoryStats& m, const char* key) {
    auto it = m.stats().find(key);
    return it == m.stats().end() ? 0 : it->second;
}

void memoryEntry(const grpc::MemoryData& in, cg::MemoryEntry* out) {
    out->set_usage(in.usage());
    out->set_max(in.max_usage());
    out->set_failcnt(in.failcnt());
    out->set_limit(in.limit());
}

void blkioEntries(const google::protobuf::RepeatedPtrField<grpc::BlkioStatsEntry>& in,
                  google::protobuf::RepeatedPtrField<cg::BlkIOEntry>* out) {
    for (const auto& e : in) {
        cg::BlkIOEntry* o = out->Add();
        o->set_op(e.op());
        o->set_major(e.major());
        o->set_minor(e.minor());
        o->set_value(e.value());
    }
}

}  // namespace

cg::Metrics metricsFromAgentStats(const grpc::StatsContainerResponse& s) {
    cg::Metrics m;
    const grpc::CgroupStats& c = s.cgroup_stats();
    if (c.has_cpu_stats()) {
        const auto& u = c.cpu_stats().cpu_usage();
        cg::CPUStat* cpu = m.mutable_cpu();
        cpu->mutable_usage()->set_total(u.total_usage());
        cpu->mutable_usage()->set_kernel(u.usage_in_kernelmode());
        cpu->mutable_usage()->set_user(u.usage_in_usermode());
        for (uint64_t v : u.percpu_usage()) cpu->mutable_usage()->add_per_cpu(v);
        const auto& t = c.cpu_stats().throttling_data();
        cpu->mutable_throttling()->set_periods(t.periods());
        cpu->mutable_throttling()->set_throttled_periods(t.throttled_periods());
        cpu->mutable_throttling()->set_throttled_time(t.throttled_time());
    }
    if (c.has_memory_stats()) {
        const grpc::MemoryStats& in = c.memory_stats();
        cg::MemoryStat* mem = m.mutable_memory();
        mem->set_cache(in.cache());
        mem->set_rss(statOf(in, "rss"));
        mem->set_rss_huge(statOf(in, "rss_huge"));
        mem->set_mapped_file(statOf(in, "mapped_file"));
        mem->set_dirty(statOf(in, "dirty"));
        mem->set_writeback(statOf(in, "writeback"));
        mem->set_pg_pg_in(statOf(in, "pgpgin"));
        mem->set_pg_pg_out(statOf(in, "pgpgout"));
        mem->set_pg_fault(statOf(in, "pgfault"));
        mem->set_pg_maj_fault(statOf(in, "pgmajfault"));
        mem->set_inactive_anon(statOf(in, "inactive_anon"));
        mem->set_active_anon(statOf(in, "active_anon"));
        mem->set_inactive_file(statOf(in, "inactive_file"));
        mem->set_active_file(statOf(in, "active_file"));
        mem->set_unevictable(statOf(in, "unevictable"));
        mem->set_hierarchical_memory_limit(statOf(in, "hierarchical_memory_limit"));
        mem->set_hierarchical_swap_limit(statOf(in, "hierarchical_memsw_limit"));
        mem->set_total_cache(statOf(in, "total_cache"));
        mem->set_total_rss(statOf(in, "total_rss"));
        mem->set_total_mapped_file(statOf(in, "total_mapped_file"));
        mem->set_total_pg_fault(statOf(in, "total_pgfault"));
        mem->set_total_pg_maj_fault(statOf(in, "total_pgmajfault"));
        mem->set_total_inactive_file(statOf(in, "total_inactive_file"));
        mem->set_total_active_file(statOf(in, "total_active_file"));
        mem->set_total_inactive_anon(statOf(in, "total_inactive_anon"));
        mem->set_total_active_anon(statOf(in, "total_active_anon"));
        mem->set_total_unevictable(statOf(in, "total_unevictable"));
        memoryEntry(in.usage(), mem->mutable_usage());
        memoryEntry(in.swap_usage(), mem->mutable_swap());
        memoryEntry(in.kernel_usage(), mem->mutable_kernel());
    }
    if (c.has_pids_stats()) {
        m.mutable_pids()->set_current(c.pids_stats().current());
        m.mutable_pids()->set_limit(c.pids_stats().limit());
    }
    if (c.has_blkio_stats()) {
        const auto& b = c.blkio_stats();
        cg::BlkIOStat* o = m.mutable_blkio();
        blkioEntries(b.io_service_bytes_recursive(), o->mutable_io_service_bytes_recursive());
        blkioEntries(b.io_serviced_recursive(), o->mutable_io_serviced_recursive());
        blkioEntries(b.io_queued_recursive(), o->mutable_io_queued_recursive());
        blkioEntries(b.io_service_time_recursive(), o->mutable_io_service_time_recursive());
        blkioEntries(b.io_wait_time_recursive(), o->mutable_io_wait_time_recursive());
        blkioEntries(b.io_merged_recursive(), o->mutable_io_merged_recursive());
        blkioEntries(b.io_time_recursive(), o->mutable_io_time_recursive());
        blkioEntries(b.sectors_recursive(), o->mutable_sectors_recursive());
    }
    for (const auto& [size, h] : c.hugetlb_stats()) {
        cg::HugetlbStat* o = m.add_hugetlb();
        o->set_pagesize(size);
        o->set_usage(h.usage());
        o->set_max(h.max_usage());
        o->set_failcnt(h.failcnt());
    }
    for (const auto& n : s.network_stats()) {
        cg::NetworkStat* o = m.add_network();
        o->set_name(n.name());
        o->set_rx_bytes(n.rx_bytes());
        o->set_rx_packets(n.rx_packets());
        o->set_rx_errors(n.rx_errors());
        o->set_rx_dropped(n.rx_dropped());
        o->set_tx_bytes(n.tx_bytes());
        o->set_tx_packets(n.tx_packets());
        o->set_tx_errors(n.tx_errors());
        o->set_tx_dropped(n.tx_dropped());
    }
    return m;
}

google::protobuf::Any packMetrics(const cg::Metrics& m) {
    google::protobuf::Any any;
    any.set_type_url(m.GetDescriptor()->full_name());
    any.set_value(m.SerializeAsString());
    return any;
}

}  // namespace kata::shim
