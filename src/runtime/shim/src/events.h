// Task events for containerd (/tasks/create, /tasks/exit ...), forwarded over ttrpc to
// containerd.services.events.ttrpc.v1.Events/Forward at $TTRPC_ADDRESS.
#pragma once

#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "containerd/services/ttrpc/events/v1/events.pb.h"

namespace kata::ttrpc {
class Client;
}

namespace kata::shim {

namespace topics {
constexpr const char* kTaskCreate = "/tasks/create";
constexpr const char* kTaskStart = "/tasks/start";
constexpr const char* kTaskExit = "/tasks/exit";
constexpr const char* kTaskDelete = "/tasks/delete";
constexpr const char* kTaskExecAdded = "/tasks/exec-added";
constexpr const char* kTaskExecStarted = "/tasks/exec-started";
constexpr const char* kTaskPaused = "/tasks/paused";
constexpr const char* kTaskResumed = "/tasks/resumed";
constexpr const char* kTaskOOM = "/tasks/oom";
}  // namespace topics

class EventPublisher {
  public:
    virtual ~EventPublisher() = default;
    // Never blocks on containerd and never throws: events are best effort.
    virtual void publish(const std::string& topic, const google::protobuf::Message& event) = 0;
};

google::protobuf::Timestamp nowTimestamp();

// The Forward request for one event: the Any's type_url is the event's full protobuf name
// ("containerd.events.TaskExit"), which is how containerd's typeurl registry knows them.
containerd::services::events::ttrpc::v1::ForwardRequest buildForwardRequest(
    const std::string& ns, const std::string& topic, const google::protobuf::Message& event,
    const google::protobuf::Timestamp& when);

// Queues events and sends them in order from one thread; reconnects once per event when the
// connection broke; drops (and logs) what cannot be delivered.
class TtrpcEventPublisher : public EventPublisher {
  public:
    TtrpcEventPublisher(std::string ttrpcAddress, std::string ns);
    ~TtrpcEventPublisher() override;  // flushes for up to 2 s
    void publish(const std::string& topic, const google::protobuf::Message& event) override;
    // Waits until the queue is empty or timeout passed.
    void flush(std::chrono::milliseconds timeout);

  private:
    void run();
    void send(const containerd::services::events::ttrpc::v1::ForwardRequest& req);

    std::string address_, ns_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<containerd::services::events::ttrpc::v1::ForwardRequest> queue_;
    bool stop_ = false;
    bool busy_ = false;
    std::unique_ptr<ttrpc::Client> client_;
    std::thread thread_;
};

}  // namespace kata::shim
