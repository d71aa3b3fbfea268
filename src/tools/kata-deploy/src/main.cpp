// kata-deploy: installs kata-cpp on a node (the payload into /opt/kata, the runtime classes
// into containerd) and removes it again. Run by the kata-deploy DaemonSet, which sets the
// environment variables named below; every flag can also be given on the command line.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstring>
#include <iostream>
#include <string>

#include "installer.h"
#include "kata/common/error.h"
#include "kata/common/log.h"
#include "kata/common/version.h"
#include "runtimes.h"

namespace {

using kata::deploy::DeployOptions;

// --wait: stay up (as a DaemonSet's container must) until the pod is stopped.
void waitForSignal() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    int sig = 0;
    sigwait(&set, &sig);
    kata::log::write(kata::log::Level::kInfo, "deploy", "stopping",
                     {{"signal", std::string(::strsignal(sig))}});
}

// A flag given twice (a wrapper's default, then the user's) takes the last value.
void addOptions(CLI::App& app, DeployOptions& o, std::string& logLevel) {
    app.add_option("--prefix", o.prefix, "where the payload is installed")
        ->envname("INSTALLATION_PREFIX")
        ->take_last()
        ->capture_default_str();
    app.add_option("--containerd-config", o.containerdConfig, "containerd's config.toml")
        ->envname("CONTAINERD_CONFIG")
        ->take_last()
        ->capture_default_str();
    app.add_option("--containerd-dropin", o.dropIn,
                   "the drop-in file with the runtime classes (default: conf.d/kata-deploy.toml "
                   "beside the config)")
        ->envname("CONTAINERD_DROPIN")
        ->take_last();
    app.add_option("--containerd-socket", o.containerdSocket,
                   "containerd's socket, to check what it serves after a restart")
        ->envname("CONTAINERD_SOCKET")
        ->take_last()
        ->capture_default_str();
    app.add_option("--restart-command", o.restartCommand,
                   "shell command that restarts containerd (where systemd is absent: anything)")
        ->envname("CONTAINERD_RESTART_COMMAND")
        ->take_last()
        ->capture_default_str();
    app.add_option("--payload-dir", o.payloadDir, "an unpacked payload in the /opt/kata layout")
        ->envname("PAYLOAD_DIR")
        ->take_last()
        ->capture_default_str();
    app.add_option("--payload-image", o.payloadImage,
                   "pull the payload from this image instead: host/repo:tag or oci-archive:FILE "
                   "(taints the installation)")
        ->envname("PAYLOAD_IMAGE")
        ->take_last();
    app.add_option("--payload-username", o.payloadUsername, "registry user for --payload-image")
        ->envname("PAYLOAD_USERNAME")
        ->take_last();
    app.add_option("--payload-password", o.payloadPassword,
                   "registry password for --payload-image (prefer the environment)")
        ->envname("PAYLOAD_PASSWORD")
        ->take_last();
    app.add_option("--payload-tls-verify", o.payloadTlsVerify,
                   "verify the payload registry's TLS certificate (false also allows plain HTTP)")
        ->envname("PAYLOAD_TLS_VERIFY")
        ->take_last()
        ->capture_default_str();
    app.add_option("--payload-cert-dir", o.payloadCertDir,
                   "directory of CA certificates (*.crt) for the payload registry")
        ->envname("PAYLOAD_CERT_DIR")
        ->take_last();
    app.add_option("--payload-path", o.payloadPathInImage,
                   "where the payload sits inside the payload image")
        ->envname("PAYLOAD_PATH")
        ->take_last()
        ->capture_default_str();
    app.add_option("--node-name", o.nodeName, "the Kubernetes node to label")
        ->envname("NODE_NAME")
        ->take_last();
    app.add_option("--kubectl", o.kubectl, "kubectl to label the node with")
        ->envname("KUBECTL")
        ->take_last()
        ->capture_default_str();
    app.add_option("--shims", o.shims, "shims to install, e.g. \"qemu qemu-sev\"")
        ->envname("SHIMS")
        ->take_last()
        ->capture_default_str();
    app.add_option("--default-shim", o.defaultShim,
                   "the shim runtime class kata uses (default: the first of --shims)")
        ->envname("DEFAULT_SHIM")
        ->take_last();
    app.add_option("--shim-dir", o.shimDir,
                   "where containerd looks for shims; symlinks into the prefix go there")
        ->envname("SHIM_DIR")
        ->take_last()
        ->capture_default_str();
    app.add_option("--timeout", o.timeoutSeconds,
                   "seconds to wait for containerd to answer after a restart")
        ->envname("CONTAINERD_TIMEOUT")
        ->take_last()
        ->capture_default_str();
    app.add_option("--log-level", logLevel, "trace, debug, info, warn, error")
        ->envname("KATA_DEPLOY_LOG_LEVEL")
        ->take_last()
        ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"kata-deploy: install kata-cpp on a node and register it with containerd",
                 "kata-deploy"};
    DeployOptions o;
    std::string logLevel = "info";
    addOptions(app, o, logLevel);
    app.set_version_flag("--version", std::string("kata-deploy : ") + kata::versionString());
    app.require_subcommand(1);
    app.fallthrough();
    bool wait = false;
    auto* install = app.add_subcommand(
        "install",
        "copy the payload into the prefix, register the runtime classes, restart "
        "containerd, label the node");
    install->add_flag("--wait", wait, "then stay running until SIGTERM (for a DaemonSet)");
    auto* cleanup = app.add_subcommand(
        "cleanup", "undo an install: files, symlinks, drop-in, imports line, label");
    cleanup->add_flag("--wait", wait, "then stay running until SIGTERM (for a DaemonSet)");
    auto* reset = app.add_subcommand("reset", "restart containerd and remove the node label");
    reset->add_flag("--wait", wait, "then stay running until SIGTERM (for a DaemonSet)");
    auto* runtimes = app.add_subcommand(
        "runtimes", "print the runtime classes --shims gives: handler runtime_type shim config");

    CLI11_PARSE(app, argc, argv);

    kata::log::Level level = kata::log::Level::kInfo;
    if (!kata::log::parseLevel(logLevel, &level)) {
        std::cerr << "kata-deploy: --log-level " << logLevel << ": unknown level\n";
        return 2;
    }
    kata::log::init("kata-deploy", "kata-deploy", level);
    try {
        kata::deploy::Installer installer(o);
        if (*runtimes) {
            for (const auto& c : installer.classes())
                std::cout << c.handler << " " << c.runtimeType << " " << c.shimBinary << " "
                          << c.configFile << "\n";
            return 0;
        }
        if (*install) installer.install();
        if (*cleanup) installer.cleanup();
        if (*reset) installer.reset();
    } catch (const std::exception& e) {
        kata::log::write(kata::log::Level::kError, "deploy", e.what());
        std::cerr << "kata-deploy: error: " << e.what() << "\n";
        return 1;
    }
    if (wait) waitForSignal();
    return 0;
}
