#include "kata/hypervisor/qmp.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <thread>

#include "kata/common/error.h"
#include "kata/common/log.h"

namespace kata::hypervisor {

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMaxQueuedEvents = 256;

int remainingMs(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

}  // namespace

QmpClient QmpClient::connect(const std::string& socketPath, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socketPath.size() >= sizeof addr.sun_path)
        throw Error(StatusCode::kInvalidArgument, "QMP socket path too long: " + socketPath);
    std::memcpy(addr.sun_path, socketPath.c_str(), socketPath.size() + 1);

    int lastErr = 0;
    for (;;) {
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd) throwErrno("socket for QMP", socketPath);
        if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
            QmpClient client(std::move(fd), socketPath);
            nlohmann::json greeting = client.readMessage(deadline);
            if (!greeting.contains("QMP"))
                throw Error(StatusCode::kInternal,
                            "QMP greeting on " + socketPath + " unexpected: " + greeting.dump());
            client.execute("qmp_capabilities", nlohmann::json::object(),
                           std::chrono::milliseconds(std::max(remainingMs(deadline), 1000)));
            return client;
        }
        lastErr = errno;
        if (Clock::now() >= deadline)
            throw SystemError(
                "connect to QMP",
                socketPath + " (gave up after " + std::to_string(timeout.count()) + " ms)",
                lastErr);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

nlohmann::json QmpClient::readMessage(Clock::time_point deadline) {
    for (;;) {
        size_t nl = buffer_.find('\n');
        if (nl != std::string::npos) {
            std::string line = buffer_.substr(0, nl);
            buffer_.erase(0, nl + 1);
            if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
            try {
                return nlohmann::json::parse(line);
            } catch (const nlohmann::json::exception& e) {
                throw Error(StatusCode::kInternal,
                            "QMP on " + path_ + " sent invalid JSON: " + e.what());
            }
        }
        pollfd pfd{fd_.get(), POLLIN, 0};
        int ready = ::poll(&pfd, 1, remainingMs(deadline));
        if (ready < 0) {
            if (errno == EINTR) continue;
            throwErrno("poll QMP", path_);
        }
        if (ready == 0)
            throw Error(StatusCode::kDeadlineExceeded,
                        "QMP on " + path_ + " did not answer in time");
        char buf[4096];
        ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            throwErrno("read QMP", path_);
        }
        if (n == 0)
            throw Error(StatusCode::kUnavailable, "QMP on " + path_ + " closed the connection");
        buffer_.append(buf, static_cast<size_t>(n));
    }
}

nlohmann::json QmpClient::execute(const std::string& command, const nlohmann::json& arguments,
                                  std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    const uint64_t id = nextId_++;
    nlohmann::json request = {{"execute", command}, {"id", id}};
    if (!arguments.empty()) request["arguments"] = arguments;
    std::string wire = request.dump() + "\n";
    size_t off = 0;
    while (off < wire.size()) {
        ssize_t n = ::send(fd_.get(), wire.data() + off, wire.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            throwErrno("send QMP " + command, path_);
        }
        off += static_cast<size_t>(n);
    }
    for (;;) {
        nlohmann::json msg;
        try {
            msg = readMessage(deadline);
        } catch (const Error& e) {
            throw Error(e.code(), "QMP " + command + ": " + e.what());
        }
        if (msg.contains("event")) {
            if (events_.size() >= kMaxQueuedEvents) events_.pop_front();
            events_.push_back(msg);
            log::Logger("qmp").with("event", msg.value("event", "")).debug("QMP event");
            continue;
        }
        if (msg.contains("id") && msg["id"] != id) continue;  // answer to an abandoned call
        if (msg.contains("error")) {
            const auto& err = msg["error"];
            throw Error(StatusCode::kInternal, "QMP " + command + " on " + path_ +
                                                   " failed: " + err.value("class", "?") + ": " +
                                                   err.value("desc", "?"));
        }
        return msg.value("return", nlohmann::json::object());
    }
}

std::string QmpClient::status() {
    return execute("query-status").value("status", std::string("unknown"));
}

nlohmann::json QmpClient::waitEvent(const std::string& event,
                                    const std::function<bool(const nlohmann::json&)>& match,
                                    std::chrono::milliseconds timeout) {
    auto matches = [&](const nlohmann::json& e) {
        return e.value("event", "") == event &&
               (!match || match(e.value("data", nlohmann::json::object())));
    };
    for (auto it = events_.begin(); it != events_.end(); ++it) {
        if (matches(*it)) {
            nlohmann::json found = *it;
            events_.erase(it);
            return found;
        }
    }
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        nlohmann::json msg;
        try {
            msg = readMessage(deadline);
        } catch (const Error& e) {
            throw Error(e.code(), "waiting for QMP event " + event + ": " + e.what());
        }
        if (!msg.contains("event")) continue;
        if (matches(msg)) return msg;
        if (events_.size() >= kMaxQueuedEvents) events_.pop_front();
        events_.push_back(msg);
    }
}

}  // namespace kata::hypervisor
