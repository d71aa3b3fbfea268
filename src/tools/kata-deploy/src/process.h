// Running the host tools kata-deploy drives (skopeo, umoci, ctr, containerd, crictl, kubectl,
// the containerd restart command), with their output captured for error messages.
#pragma once

#include <string>
#include <vector>

namespace kata::deploy {

struct RunResult {
    int exitCode = -1;  // -1 when killed by a signal or by the timeout
    bool timedOut = false;
    std::string out;
    std::string err;
    bool ok() const { return exitCode == 0; }
    // "exit 1: <last lines of stderr>" for error messages.
    std::string summary() const;
};

// Runs argv[0] (looked up on PATH) with stdin from /dev/null; kills it after timeoutSeconds.
// Throws only when it cannot be started at all.
RunResult run(const std::vector<std::string>& argv, int timeoutSeconds = 300);

// "" when name is not an executable on PATH (or, with a '/', not executable at all).
std::string findExecutable(const std::string& name);

}  // namespace kata::deploy
