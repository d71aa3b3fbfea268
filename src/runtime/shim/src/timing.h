// Per-step timings in the shim's log ("step" and "duration_ms" fields), so where a container
// start spends its time can be read from containerd's log (bench/ctr prints the breakdown).
#pragma once

#include <chrono>
#include <string>

#include "kata/common/log.h"

namespace kata::shim {

class StepTimer {
  public:
    StepTimer() : t0_(std::chrono::steady_clock::now()) {}
    long long elapsedMs() const {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - t0_)
            .count();
    }
    // One info line: msg, step=<step>, duration_ms=<ms since construction or restart()>.
    void done(const log::Logger& log, const std::string& step, const std::string& msg) const {
        log.with("step", step).with("duration_ms", std::to_string(elapsedMs())).info(msg);
    }
    void restart() { t0_ = std::chrono::steady_clock::now(); }

  private:
    std::chrono::steady_clock::time_point t0_;
};

}  // namespace kata::shim
