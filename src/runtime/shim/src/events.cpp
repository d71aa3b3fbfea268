#include "events.h"

#include <google/protobuf/empty.pb.h>
#include <google/protobuf/util/time_util.h>

#include "kata/common/log.h"
#include "kata/ttrpc/ttrpc.h"

namespace kata::shim {

namespace evpb = containerd::services::events::ttrpc::v1;

google::protobuf::Timestamp nowTimestamp() {
    return google::protobuf::util::TimeUtil::GetCurrentTime();
}

evpb::ForwardRequest buildForwardRequest(const std::string& ns, const std::string& topic,
                                         const google::protobuf::Message& event,
                                         const google::protobuf::Timestamp& when) {
    evpb::ForwardRequest req;
    evpb::Envelope* env = req.mutable_envelope();
    *env->mutable_timestamp() = when;
    env->set_namespace_(ns);
    env->set_topic(topic);
    env->mutable_event()->set_type_url(event.GetDescriptor()->full_name());
    env->mutable_event()->set_value(event.SerializeAsString());
    return req;
}

TtrpcEventPublisher::TtrpcEventPublisher(std::string ttrpcAddress, std::string ns)
    : address_(std::move(ttrpcAddress)), ns_(std::move(ns)) {
    thread_ = std::thread([this] { run(); });
}

TtrpcEventPublisher::~TtrpcEventPublisher() {
    flush(std::chrono::seconds(2));
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

void TtrpcEventPublisher::publish(const std::string& topic,
                                  const google::protobuf::Message& event) {
    auto req = buildForwardRequest(ns_, topic, event, nowTimestamp());
    log::Logger("events").with("topic", topic).debug("publish event");
    {
        std::lock_guard<std::mutex> lk(mu_);
        queue_.push_back(std::move(req));
    }
    cv_.notify_all();
}

void TtrpcEventPublisher::flush(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, timeout, [&] { return queue_.empty() && !busy_; });
}

void TtrpcEventPublisher::run() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty() && stop_) return;
        auto req = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
        lk.unlock();
        send(req);
        lk.lock();
        busy_ = false;
        cv_.notify_all();
    }
}

void TtrpcEventPublisher::send(const evpb::ForwardRequest& req) {
    log::Logger log =
        log::Logger("events").with("topic", req.envelope().topic()).with("address", address_);
    if (address_.empty()) {
        log.debug("no TTRPC_ADDRESS: event not forwarded");
        return;
    }
    const ttrpc::Metadata md = {{"containerd-namespace-ttrpc", ns_}};
    for (int attempt = 0; attempt < 2; ++attempt) {
        try {
            if (!client_ || !client_->connected()) {
                client_ =
                    std::make_unique<ttrpc::Client>(ttrpc::dial(address_, std::chrono::seconds(2)));
            }
            client_->call<evpb::ForwardRequest, google::protobuf::Empty>(
                "containerd.services.events.ttrpc.v1.Events", "Forward", req,
                std::chrono::seconds(5), md);
            return;
        } catch (const std::exception& e) {
            client_.reset();
            if (attempt == 1) log.warn(std::string("forward event to containerd: ") + e.what());
        }
    }
}

}  // namespace kata::shim
