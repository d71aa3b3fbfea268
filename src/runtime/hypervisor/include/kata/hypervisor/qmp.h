// A small client for QEMU's machine protocol (QMP) over its unix socket: one command at a time,
// asynchronous events logged and skipped.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "kata/common/fd.h"

namespace kata::hypervisor {

class QmpClient {
  public:
    // Connects to socketPath, reads the greeting and negotiates capabilities
    // (qmp_capabilities). Retries the connect until deadline (QEMU may still be starting).
    static QmpClient connect(const std::string& socketPath, std::chrono::milliseconds timeout);

    QmpClient(QmpClient&&) = default;
    QmpClient& operator=(QmpClient&&) = default;

    // Runs one command and returns its "return" member; an "error" answer throws kata::Error
    // naming the command, QEMU's error class and description.
    nlohmann::json execute(const std::string& command,
                           const nlohmann::json& arguments = nlohmann::json::object(),
                           std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // query-status's "status" ("running", "paused", ...).
    std::string status();

    // Waits for an asynchronous event named `event` whose "data" satisfies `match` (events that
    // arrived during earlier commands count). Returns the event, or throws on timeout.
    nlohmann::json waitEvent(const std::string& event,
                             const std::function<bool(const nlohmann::json&)>& match,
                             std::chrono::milliseconds timeout);

    const std::string& socketPath() const { return path_; }

  private:
    QmpClient(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
    nlohmann::json readMessage(std::chrono::steady_clock::time_point deadline);

    UniqueFd fd_;
    std::string path_;
    std::string buffer_;
    std::deque<nlohmann::json> events_;
    uint64_t nextId_ = 1;
};

}  // namespace kata::hypervisor
