// kata-deploy's three operations. install: payload into the prefix, the runtime classes into
// containerd (a drop-in plus one imports entry), shim symlinks, containerd restarted and
// checked, node labelled. cleanup: all of it undone, containerd's config restored byte for
// byte. reset: containerd restarted and checked, label removed. Every check that can fail
// runs before the first change.
#pragma once

#include <string>
#include <vector>

#include "kata/common/log.h"
#include "runtimes.h"

namespace kata::deploy {

inline constexpr const char* kNodeLabel = "katacontainers.io/kata-runtime";

struct DeployOptions {
    std::string prefix = "/opt/kata";
    std::string containerdConfig = "/etc/containerd/config.toml";
    std::string dropIn;  // "" -> <dir of containerdConfig>/conf.d/kata-deploy.toml
    std::string payloadDir = "/opt/kata-artifacts";
    std::string payloadImage;
    std::string payloadUsername;
    std::string payloadPassword;
    bool payloadTlsVerify = true;
    std::string payloadCertDir;
    std::string payloadPathInImage = "/opt/kata-artifacts";
    std::string nodeName;
    std::string restartCommand = "systemctl restart containerd";
    std::string shims = "qemu";
    std::string defaultShim;
    std::string shimDir = "/usr/local/bin";
    std::string containerdSocket = "/run/containerd/containerd.sock";
    std::string kubectl = "kubectl";
    int timeoutSeconds = 60;  // for containerd to answer after a restart
};

class Installer {
  public:
    explicit Installer(DeployOptions opts);
    void install();
    void cleanup();
    void reset();

    std::vector<RuntimeClassSpec> classes() const;
    std::string dropInPath() const;
    std::string stateDir() const;

  private:
    struct State;
    State loadState(bool* found) const;
    void saveState(const State& st) const;
    void restartContainerd() const;
    // Waits for containerd, then checks which of the handlers it serves.
    void verifyHandlers(const std::vector<std::string>& present,
                        const std::vector<std::string>& absent) const;
    void labelNode(bool set, bool mustSucceed) const;
    // restartMustWork: a failed restart is an error (cleanup), else a warning (a rollback).
    void undo(const State& st, bool restart, bool restartMustWork);

    DeployOptions o_;
    log::Logger log_;
};

}  // namespace kata::deploy
