#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include "containerd/events/task.pb.h"
#include "events.h"

using namespace kata::shim;

TEST(Events, EnvelopeCarriesTopicNamespaceAndTypedEvent) {
    containerd::events::TaskExit exit;
    exit.set_container_id("c1");
    exit.set_id("c1");
    exit.set_pid(77);
    exit.set_exit_status(3);
    auto when = google::protobuf::util::TimeUtil::SecondsToTimestamp(1700000000);
    auto req = buildForwardRequest("default", topics::kTaskExit, exit, when);

    const auto& env = req.envelope();
    EXPECT_EQ(env.namespace_(), "default");
    EXPECT_EQ(env.topic(), "/tasks/exit");
    EXPECT_EQ(env.timestamp().seconds(), 1700000000);
    EXPECT_EQ(env.event().type_url(), "containerd.events.TaskExit");
    containerd::events::TaskExit back;
    ASSERT_TRUE(back.ParseFromString(env.event().value()));
    EXPECT_EQ(back.container_id(), "c1");
    EXPECT_EQ(back.exit_status(), 3u);
    EXPECT_EQ(back.pid(), 77u);

    // The bytes on the wire: ForwardRequest.envelope (1) -> Envelope.topic (3).
    std::string wire = req.SerializeAsString();
    containerd::services::events::ttrpc::v1::ForwardRequest parsed;
    ASSERT_TRUE(parsed.ParseFromString(wire));
    EXPECT_EQ(parsed.envelope().topic(), "/tasks/exit");
}

TEST(Events, TypeUrlsOfAllTopics) {
    EXPECT_EQ(buildForwardRequest("n", topics::kTaskCreate, containerd::events::TaskCreate(),
                                  nowTimestamp())
                  .envelope()
                  .event()
                  .type_url(),
              "containerd.events.TaskCreate");
    EXPECT_EQ(
        buildForwardRequest("n", topics::kTaskOOM, containerd::events::TaskOOM(), nowTimestamp())
            .envelope()
            .event()
            .type_url(),
        "containerd.events.TaskOOM");
    EXPECT_EQ(std::string(topics::kTaskExecAdded), "/tasks/exec-added");
    EXPECT_EQ(std::string(topics::kTaskExecStarted), "/tasks/exec-started");
}
