#include <condition_variable>
#include <deque>
#include <map>
#include <thread>

#include "channel.h"
#include "kata/common/log.h"
#include "kata/ttrpc/ttrpc.h"

namespace kata::ttrpc {

namespace {

// One call (unary or streaming) waiting for its answer.
struct PendingCall {
    std::condition_variable cv;
    bool done = false;  // a response (or end of data) arrived, or the connection died
    wire::Response response;
    std::deque<std::string> messages;  // stream data not yet received by the caller
};

StatusCode toStatusCode(int32_t code) {
    if (code < 0 || code > int32_t(StatusCode::kUnauthenticated)) return StatusCode::kUnknown;
    return StatusCode(code);
}

}  // namespace

struct Client::Impl {
    Impl(UniqueFd fd, const std::string& peer) : ch(std::move(fd), peer) {}

    Channel ch;
    std::thread reader;
    std::mutex sendMu;  // held while a request is numbered and written
    std::mutex mu;
    uint32_t nextId = 1;
    std::map<uint32_t, std::shared_ptr<PendingCall>> calls;
    bool dead = false;
    std::string deadReason;

    void readLoop();
    void fail(const std::string& reason);

    std::pair<uint32_t, std::shared_ptr<PendingCall>> start(const std::string& service,
                                                            const std::string& method,
                                                            const std::string& payload,
                                                            std::chrono::milliseconds timeout,
                                                            const Metadata& md, uint8_t flags);
    void forget(uint32_t id) {
        std::lock_guard<std::mutex> lock(mu);
        calls.erase(id);
    }
    // Waits until call->done or the deadline; false on timeout. Caller holds `lock`.
    bool waitDone(std::unique_lock<std::mutex>& lock, PendingCall& call,
                  std::chrono::milliseconds timeout, const std::function<bool()>& extra = {}) {
        auto ready = [&] { return call.done || (extra && extra()); };
        if (timeout.count() <= 0) {
            call.cv.wait(lock, ready);
            return true;
        }
        return call.cv.wait_for(lock, timeout, ready);
    }
    // Turns a finished call into its payload or the matching kata::Error.
    std::string result(const PendingCall& call, const std::string& name);
};

void Client::Impl::fail(const std::string& reason) {
    std::lock_guard<std::mutex> lock(mu);
    if (dead) return;
    dead = true;
    deadReason = reason;
    for (auto& [id, call] : calls) {
        if (call->done) continue;
        call->done = true;
        call->response.hasStatus = true;
        call->response.status.code = int32_t(StatusCode::kUnavailable);
        call->response.status.message = reason;
        call->cv.notify_all();
    }
}

void Client::Impl::readLoop() {
    std::string reason;
    for (;;) {
        wire::Frame frame;
        Channel::ReadResult r;
        try {
            r = ch.readFrame(&frame);
        } catch (const std::exception& e) {
            reason = e.what();
            break;
        }
        if (r == Channel::ReadResult::kEof) {
            reason = "ttrpc connection to " + ch.what() + " closed by the peer";
            break;
        }
        if (r == Channel::ReadResult::kClosed) {
            reason = "ttrpc client closed";
            break;
        }
        if (r == Channel::ReadResult::kOversized) {
            reason = "ttrpc server sent a frame of " + std::to_string(ch.oversizedLength()) +
                     " bytes, more than the maximum of " + std::to_string(kMaxMessageSize);
            break;
        }
        const auto& h = frame.header;
        if (h.type != wire::kTypeResponse && h.type != wire::kTypeData) {
            reason = "ttrpc server sent unexpected frame type " + std::to_string(h.type);
            break;
        }
        wire::Response resp;
        if (h.type == wire::kTypeResponse && !wire::decodeResponse(frame.payload, &resp)) {
            reason = "ttrpc server sent an undecodable ttrpc.Response on stream " +
                     std::to_string(h.streamId);
            break;
        }
        std::lock_guard<std::mutex> lock(mu);
        auto it = calls.find(h.streamId);
        if (it == calls.end() || it->second->done) continue;  // the caller gave up (timeout)
        auto& call = *it->second;
        if (h.type == wire::kTypeResponse) {
            call.response = std::move(resp);
            call.done = true;
        } else {
            if (!(h.flags & wire::kFlagNoData)) call.messages.push_back(std::move(frame.payload));
            // The server may end a stream with data marked "remote closed" instead of a
            // response: that is a successful end.
            if (h.flags & wire::kFlagRemoteClosed) call.done = true;
        }
        call.cv.notify_all();
    }
    ch.close();
    fail(reason);
}

Client::Client(UniqueFd fd) : Client(std::move(fd), "ttrpc server") {}

Client::Client(UniqueFd fd, const std::string& peer)
    : impl_(std::make_shared<Impl>(std::move(fd), peer)) {
    impl_->reader = std::thread([impl = impl_.get()] { impl->readLoop(); });
}

std::unique_ptr<Client> Client::connect(const std::string& address,
                                        std::chrono::milliseconds timeout) {
    return std::make_unique<Client>(dial(address, timeout), address);
}

Client::~Client() { close(); }

Client::Client(Client&& other) noexcept : impl_(std::move(other.impl_)) {}

Client& Client::operator=(Client&& other) noexcept {
    if (this != &other) {
        close();
        impl_ = std::move(other.impl_);
    }
    return *this;
}

void Client::close() {
    if (!impl_) return;
    impl_->ch.close();
    if (impl_->reader.joinable() && impl_->reader.get_id() != std::this_thread::get_id()) {
        impl_->reader.join();
    }
}

bool Client::connected() const {
    if (!impl_) return false;
    std::lock_guard<std::mutex> lock(impl_->mu);
    return !impl_->dead;
}

std::pair<uint32_t, std::shared_ptr<PendingCall>> Client::Impl::start(
    const std::string& service, const std::string& method, const std::string& payload,
    std::chrono::milliseconds timeout, const Metadata& md, uint8_t flags) {
    wire::Request req;
    req.service = service;
    req.method = method;
    req.payload = payload;
    req.timeoutNano = timeout.count() > 0
                          ? std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count()
                          : 0;
    req.metadata = md;
    std::string encoded = wire::encodeRequest(req);
    if (encoded.size() > kMaxMessageSize) {
        throw Error(StatusCode::kResourceExhausted,
                    "call " + service + "/" + method + ": request of " +
                        std::to_string(encoded.size()) + " bytes exceeds the maximum of " +
                        std::to_string(kMaxMessageSize));
    }
    auto call = std::make_shared<PendingCall>();
    uint32_t id;
    // Servers require stream ids to increase, so ids are taken and sent in one order.
    std::lock_guard<std::mutex> sendLock(sendMu);
    {
        std::lock_guard<std::mutex> lock(mu);
        if (dead)
            throw Error(StatusCode::kUnavailable,
                        "call " + service + "/" + method + ": " + deadReason);
        id = nextId;
        nextId += 2;
        calls[id] = call;
    }
    try {
        ch.writeFrame(id, wire::kTypeRequest, flags, encoded);
    } catch (const Error& e) {
        forget(id);
        throw Error(e.code(), "call " + service + "/" + method + ": " + e.what());
    }
    return {id, call};
}

std::string Client::Impl::result(const PendingCall& call, const std::string& name) {
    const auto& r = call.response;
    if (r.hasStatus && r.status.code != 0) {
        StatusCode code = toStatusCode(r.status.code);
        if (code == StatusCode::kUnavailable && dead && r.status.message == deadReason) {
            throw Error(code, "call " + name + ": " + r.status.message);
        }
        // The remote message is passed on as it is: it already names what failed.
        throw Error(code, r.status.message);
    }
    return r.payload;
}

std::string Client::callRaw(const std::string& service, const std::string& method,
                            const std::string& payload, std::chrono::milliseconds timeout,
                            const Metadata& md) {
    if (!impl_)
        throw Error(StatusCode::kUnavailable,
                    "call " + service + "/" + method + ": client was moved from");
    auto [id, call] = impl_->start(service, method, payload, timeout, md, 0);
    std::unique_lock<std::mutex> lock(impl_->mu);
    if (!impl_->waitDone(lock, *call, timeout)) {
        impl_->calls.erase(id);
        throw Error(StatusCode::kDeadlineExceeded, "call " + service + "/" + method +
                                                       ": no answer within " +
                                                       std::to_string(timeout.count()) + " ms");
    }
    impl_->calls.erase(id);
    return impl_->result(*call, service + "/" + method);
}

namespace {

class ClientStreamImpl : public ClientStream {
  public:
    ClientStreamImpl(std::shared_ptr<Client::Impl> impl, uint32_t id,
                     std::shared_ptr<PendingCall> call, std::string name, bool clientStreams)
        : impl_(std::move(impl)),
          id_(id),
          call_(std::move(call)),
          name_(std::move(name)),
          sendClosed_(!clientStreams) {}

    ~ClientStreamImpl() override {
        try {
            if (!sendClosed_) closeSend();
        } catch (const std::exception&) {
        }
        impl_->forget(id_);
    }

    void send(const std::string& msg) override {
        if (sendClosed_) {
            throw Error(StatusCode::kFailedPrecondition,
                        "send on stream " + name_ + ": sending side already closed");
        }
        impl_->ch.writeFrame(id_, wire::kTypeData, 0, msg);
    }

    void closeSend() override {
        if (sendClosed_) return;
        sendClosed_ = true;
        impl_->ch.writeFrame(id_, wire::kTypeData, wire::kFlagRemoteClosed | wire::kFlagNoData, {});
    }

    bool recv(std::string* msg, std::chrono::milliseconds timeout) override {
        std::unique_lock<std::mutex> lock(impl_->mu);
        if (!impl_->waitDone(lock, *call_, timeout, [&] { return !call_->messages.empty(); })) {
            throw Error(StatusCode::kDeadlineExceeded, "receive on stream " + name_ +
                                                           ": nothing within " +
                                                           std::to_string(timeout.count()) + " ms");
        }
        if (call_->messages.empty()) return false;
        *msg = std::move(call_->messages.front());
        call_->messages.pop_front();
        return true;
    }

    std::string finish(std::chrono::milliseconds timeout) override {
        if (!sendClosed_) closeSend();
        std::unique_lock<std::mutex> lock(impl_->mu);
        if (!impl_->waitDone(lock, *call_, timeout)) {
            throw Error(StatusCode::kDeadlineExceeded, "finish stream " + name_ +
                                                           ": no final response within " +
                                                           std::to_string(timeout.count()) + " ms");
        }
        call_->messages.clear();
        return impl_->result(*call_, name_);
    }

  private:
    std::shared_ptr<Client::Impl> impl_;
    uint32_t id_;
    std::shared_ptr<PendingCall> call_;
    std::string name_;
    bool sendClosed_;
};

}  // namespace

std::unique_ptr<ClientStream> Client::openStream(const std::string& service,
                                                 const std::string& method,
                                                 const std::string& payload, bool clientStreams,
                                                 const Metadata& md,
                                                 std::chrono::milliseconds timeout) {
    if (!impl_)
        throw Error(StatusCode::kUnavailable,
                    "open stream " + service + "/" + method + ": client was moved from");
    uint8_t flags = clientStreams ? wire::kFlagRemoteOpen : wire::kFlagRemoteClosed;
    auto [id, call] = impl_->start(service, method, payload, timeout, md, flags);
    return std::make_unique<ClientStreamImpl>(impl_, id, call, service + "/" + method,
                                              clientStreams);
}

}  // namespace kata::ttrpc
