#include <gtest/gtest.h>

#include "stats.h"

using namespace kata::shim;

TEST(Stats, AgentCgroupStatsBecomeContainerdMetrics) {
    grpc::StatsContainerResponse s;
    auto* c = s.mutable_cgroup_stats();
    c->mutable_cpu_stats()->mutable_cpu_usage()->set_total_usage(1000);
    c->mutable_cpu_stats()->mutable_cpu_usage()->set_usage_in_kernelmode(300);
    c->mutable_cpu_stats()->mutable_cpu_usage()->set_usage_in_usermode(700);
    c->mutable_cpu_stats()->mutable_cpu_usage()->add_percpu_usage(1000);
    c->mutable_cpu_stats()->mutable_throttling_data()->set_throttled_periods(2);
    c->mutable_memory_stats()->set_cache(4096);
    c->mutable_memory_stats()->mutable_usage()->set_usage(1 << 20);
    c->mutable_memory_stats()->mutable_usage()->set_limit(256 << 20);
    (*c->mutable_memory_stats()->mutable_stats())["rss"] = 8192;
    (*c->mutable_memory_stats()->mutable_stats())["pgmajfault"] = 3;
    c->mutable_pids_stats()->set_current(4);
    c->mutable_pids_stats()->set_limit(100);
    auto* e = c->mutable_blkio_stats()->add_io_service_bytes_recursive();
    e->set_major(254);
    e->set_op("Read");
    e->set_value(512);
    (*c->mutable_hugetlb_stats())["2MB"].set_usage(7);
    auto* n = s.add_network_stats();
    n->set_name("eth0");
    n->set_rx_bytes(99);

    auto m = metricsFromAgentStats(s);
    EXPECT_EQ(m.cpu().usage().total(), 1000u);
    EXPECT_EQ(m.cpu().usage().kernel(), 300u);
    EXPECT_EQ(m.cpu().usage().user(), 700u);
    EXPECT_EQ(m.cpu().usage().per_cpu_size(), 1);
    EXPECT_EQ(m.cpu().throttling().throttled_periods(), 2u);
    EXPECT_EQ(m.memory().cache(), 4096u);
    EXPECT_EQ(m.memory().rss(), 8192u);
    EXPECT_EQ(m.memory().pg_maj_fault(), 3u);
    EXPECT_EQ(m.memory().usage().usage(), 1u << 20);
    EXPECT_EQ(m.memory().usage().limit(), 256u << 20);
    EXPECT_EQ(m.pids().current(), 4u);
    EXPECT_EQ(m.pids().limit(), 100u);
    ASSERT_EQ(m.blkio().io_service_bytes_recursive_size(), 1);
    EXPECT_EQ(m.blkio().io_service_bytes_recursive(0).op(), "Read");
    EXPECT_EQ(m.blkio().io_service_bytes_recursive(0).major(), 254u);
    ASSERT_EQ(m.hugetlb_size(), 1);
    EXPECT_EQ(m.hugetlb(0).pagesize(), "2MB");
    EXPECT_EQ(m.hugetlb(0).usage(), 7u);
    ASSERT_EQ(m.network_size(), 1);
    EXPECT_EQ(m.network(0).name(), "eth0");
    EXPECT_EQ(m.network(0).rx_bytes(), 99u);

    auto any = packMetrics(m);
    EXPECT_EQ(any.type_url(), "io.containerd.cgroups.v1.Metrics");
    io::containerd::cgroups::v1::Metrics back;
    ASSERT_TRUE(back.ParseFromString(any.value()));
    EXPECT_EQ(back.pids().current(), 4u);
}
