// Pins the wire encoding of the agent protocol to the field numbers of Kata's agent API.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <string>

#include "agent/agent.pb.h"
#include "agent/health.pb.h"
#include "agent/image.pb.h"
#include "agent/oci.pb.h"

namespace {

std::string bytes(std::initializer_list<unsigned char> b) {
    return std::string(b.begin(), b.end());
}

TEST(AgentWire, CreateContainerRequestUsesKataFieldNumbers) {
    grpc::CreateContainerRequest req;
    req.set_container_id("c1");           // field 1, LEN -> tag 0x0a
    req.set_exec_id("e1");                // field 2, LEN -> tag 0x12
    req.mutable_oci()->set_version("1");  // OCI field 6 -> tag 0x32; Spec.Version field 1 -> 0x0a
    req.set_sandbox_pidns(true);          // field 7, VARINT -> tag 0x38
    std::string out;
    ASSERT_TRUE(req.SerializeToString(&out));
    EXPECT_EQ(out, bytes({0x0a, 2, 'c', '1', 0x12, 2, 'e', '1', 0x32, 3, 0x0a, 1, '1', 0x38, 1}));
}

TEST(AgentWire, StorageAndDeviceFieldNumbers) {
    grpc::CreateContainerRequest req;
    auto* st = req.add_storages();  // field 5 -> 0x2a
    st->set_mount_point("/m");      // field 6 -> 0x32
    auto* dev = req.add_devices();  // field 4 -> 0x22
    dev->set_container_path("/d");  // field 4 -> 0x22
    std::string out;
    ASSERT_TRUE(req.SerializeToString(&out));
    EXPECT_EQ(out, bytes({0x22, 4, 0x22, 2, '/', 'd', 0x2a, 4, 0x32, 2, '/', 'm'}));
}

TEST(AgentWire, SignalAndWaitFieldNumbers) {
    grpc::SignalProcessRequest sig;
    sig.set_signal(9);  // field 3 VARINT -> 0x18
    std::string out;
    ASSERT_TRUE(sig.SerializeToString(&out));
    EXPECT_EQ(out, bytes({0x18, 9}));

    grpc::WaitProcessResponse resp;
    ASSERT_TRUE(resp.ParseFromString(bytes({0x08, 0x2a})));
    EXPECT_EQ(resp.status(), 42);
}

TEST(AgentWire, SeccompErrnoRetKeepsExplicitZero) {
    grpc::LinuxSyscall sc;
    sc.set_errnoret(0);  // oneof member: presence is encoded even for 0
    std::string out;
    ASSERT_TRUE(sc.SerializeToString(&out));
    EXPECT_EQ(out, bytes({0x18, 0}));
    EXPECT_EQ(sc.ErrnoRet_case(), grpc::LinuxSyscall::kErrnoret);
}

TEST(AgentWire, ImageAndHealthFieldNumbers) {
    grpc::PullImageRequest pull;
    pull.set_source_creds("u:p");  // field 3 -> 0x1a
    std::string out;
    ASSERT_TRUE(pull.SerializeToString(&out));
    EXPECT_EQ(out, bytes({0x1a, 3, 'u', ':', 'p'}));

    grpc::VersionCheckResponse ver;
    ASSERT_TRUE(ver.ParseFromString(bytes({0x12, 1, 'x'})));
    EXPECT_EQ(ver.agent_version(), "x");
}

TEST(AgentWire, ServiceDescriptorsHaveKataNames) {
    const auto* svc =
        grpc::CreateContainerRequest::descriptor()->file()->FindServiceByName("AgentService");
    ASSERT_NE(svc, nullptr);
    EXPECT_EQ(svc->full_name(), "grpc.AgentService");
    EXPECT_NE(svc->FindMethodByName("CreateContainer"), nullptr);
    EXPECT_NE(svc->FindMethodByName("GetOOMEvent"), nullptr);
    EXPECT_EQ(grpc::PullImageRequest::descriptor()->file()->service(0)->full_name(), "grpc.Image");
    EXPECT_EQ(grpc::CheckRequest::descriptor()->file()->service(0)->full_name(), "grpc.Health");
}

TEST(AgentWire, OciJsonNamesMatchRuntimeSpec) {
    grpc::Spec spec;
    google::protobuf::util::JsonParseOptions opts;
    opts.ignore_unknown_fields = true;
    auto st = google::protobuf::util::JsonStringToMessage(
        R"({"ociVersion":"1.0.2","process":{"user":{"uid":1,"additionalGids":[5]},"noNewPrivileges":true,
          "oomScoreAdj":-10},"linux":{"uidMappings":[{"containerID":0,"hostID":1000,"size":1}],
          "resources":{"memory":{"limit":1024,"disableOOMKiller":true},"blockIO":{"weight":10}},
          "seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["a"],"errnoRet":1}]}}})",
        &spec, opts);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(spec.version(), "1.0.2");
    EXPECT_EQ(spec.process().user().uid(), 1u);
    EXPECT_EQ(spec.process().user().additionalgids(0), 5u);
    EXPECT_TRUE(spec.process().nonewprivileges());
    EXPECT_EQ(spec.process().oomscoreadj(), -10);
    EXPECT_EQ(spec.linux().uidmappings(0).hostid(), 1000u);
    EXPECT_EQ(spec.linux().resources().memory().limit(), 1024);
    EXPECT_TRUE(spec.linux().resources().memory().disableoomkiller());
    EXPECT_EQ(spec.linux().resources().blockio().weight(), 10u);
    EXPECT_EQ(spec.linux().seccomp().syscalls(0).errnoret(), 1u);
}

}  // namespace
