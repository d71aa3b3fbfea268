// Pins the containerd shim, event and runtime-option messages to containerd's field numbers.
#include <gtest/gtest.h>

#include <string>

#include "containerd/cgroups/stats/v1/metrics.pb.h"
#include "containerd/events/task.pb.h"
#include "containerd/runtime/task/v2/shim.pb.h"
#include "containerd/runtimeoptions/v1/api.pb.h"
#include "containerd/services/ttrpc/events/v1/events.pb.h"
#include "kata/protocols/typeurl.h"

namespace {

std::string bytes(std::initializer_list<unsigned char> b) {
    return std::string(b.begin(), b.end());
}

TEST(ContainerdWire, CreateTaskRequestFieldNumbers) {
    containerd::task::v2::CreateTaskRequest req;
    req.set_id("a");                           // 1 -> 0x0a
    req.add_rootfs()->set_type("overlay");     // 3 -> 0x1a; Mount.type 1 -> 0x0a
    req.set_terminal(true);                    // 4 -> 0x20
    req.set_stdout("o");                       // 6 -> 0x32
    req.mutable_options()->set_type_url("t");  // 10 -> 0x52; Any.type_url 1 -> 0x0a
    std::string out;
    ASSERT_TRUE(req.SerializeToString(&out));
    EXPECT_EQ(out, bytes({0x0a, 1,   'a',  0x1a, 9,    0x0a, 7,   'o',  'v', 'e',  'r', 'l',
                          'a',  'y', 0x20, 1,    0x32, 1,    'o', 0x52, 3,   0x0a, 1,   't'}));
}

TEST(ContainerdWire, StateResponseStatusAndExecId) {
    containerd::task::v2::StateResponse resp;
    resp.set_status(containerd::v1::types::STOPPED);  // 4 -> 0x20, value 3
    resp.set_exec_id("e");                            // 11 -> 0x5a
    std::string out;
    ASSERT_TRUE(resp.SerializeToString(&out));
    EXPECT_EQ(out, bytes({0x20, 3, 0x5a, 1, 'e'}));
}

TEST(ContainerdWire, EnvelopeAndTaskExit) {
    containerd::services::events::ttrpc::v1::ForwardRequest fwd;
    auto* env = fwd.mutable_envelope();  // 1 -> 0x0a
    env->set_namespace_("n");            // 2 -> 0x12
    env->set_topic("/t");                // 3 -> 0x1a
    std::string out;
    ASSERT_TRUE(fwd.SerializeToString(&out));
    EXPECT_EQ(out, bytes({0x0a, 7, 0x12, 1, 'n', 0x1a, 2, '/', 't'}));

    containerd::events::TaskExit exit;
    exit.set_exit_status(137);  // 4 -> 0x20, varint 137 = 0x89 0x01
    ASSERT_TRUE(exit.SerializeToString(&out));
    EXPECT_EQ(out, bytes({0x20, 0x89, 0x01}));
    EXPECT_EQ(containerd::events::TaskExit::descriptor()->full_name(),
              "containerd.events.TaskExit");
}

TEST(ContainerdWire, RuntimeOptionsConfigPath) {
    runtimeoptions::v1::Options opts;
    ASSERT_TRUE(opts.ParseFromString(bytes({0x12, 2, '/', 'c'})));
    EXPECT_EQ(opts.config_path(), "/c");
    EXPECT_EQ(runtimeoptions::v1::Options::descriptor()->full_name(), "runtimeoptions.v1.Options");
}

TEST(ContainerdWire, ServiceNames) {
    const auto* file = containerd::task::v2::CreateTaskRequest::descriptor()->file();
    ASSERT_EQ(file->service_count(), 1);
    EXPECT_EQ(file->service(0)->full_name(), "containerd.task.v2.Task");
    EXPECT_EQ(file->service(0)->method_count(), 17);
    EXPECT_EQ(containerd::services::events::ttrpc::v1::ForwardRequest::descriptor()
                  ->file()
                  ->service(0)
                  ->full_name(),
              "containerd.services.events.ttrpc.v1.Events");
}

TEST(ContainerdWire, CgroupMetrics) {
    io::containerd::cgroups::v1::Metrics m;
    m.mutable_memory()->mutable_usage()->set_usage(5);  // memory 4 -> 0x22; usage 33 -> 0x8a 0x02
    std::string out;
    ASSERT_TRUE(m.SerializeToString(&out));
    EXPECT_EQ(out, bytes({0x22, 5, 0x8a, 0x02, 2, 0x10, 5}));
    EXPECT_EQ(io::containerd::cgroups::v1::Metrics::descriptor()->full_name(),
              "io.containerd.cgroups.v1.Metrics");
}

TEST(ContainerdWire, AnyUsesBareMessageNames) {
    containerd::events::TaskExit exit;
    exit.set_container_id("c1");
    google::protobuf::Any any = kata::protocols::packAny(exit);
    EXPECT_EQ(any.type_url(), "containerd.events.TaskExit");

    containerd::events::TaskExit back;
    ASSERT_TRUE(kata::protocols::unpackAny(any, &back));
    EXPECT_EQ(back.container_id(), "c1");
    containerd::events::TaskOOM other;
    EXPECT_FALSE(kata::protocols::unpackAny(any, &other));

    // containerd 1.6's CRI plugin names the options message differently from our package; the
    // message name check is the caller's, the payload parses either way.
    any.set_type_url(std::string(kata::protocols::kCriRuntimeOptionsTypeUrl));
    EXPECT_EQ(kata::protocols::anyMessageName(any), "cri.runtimeoptions.v1.Options");
    any.set_type_url("type.googleapis.com/containerd.events.TaskExit");
    EXPECT_TRUE(kata::protocols::unpackAny(any, &back));
}

}  // namespace
