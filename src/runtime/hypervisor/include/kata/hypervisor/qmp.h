// A small client for QEMU's machine protocol (QMP) over its unix socket: one command at a time,
// asynchronous events logged and skipped.
#pragma once

#include <chrono>
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

    const std::string& socketPath() const { return path_; }

  private:
    QmpClient(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
    nlohmann::json readMessage(std::chrono::steady_clock::time_point deadline);

    UniqueFd fd_;
    std::string path_;
    std::string buffer_;
};

}  // namespace kata::hypervisor
