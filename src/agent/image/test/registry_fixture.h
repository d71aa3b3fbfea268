// A real OCI registry for the pull tests: Debian's docker-registry run on 127.0.0.1 with its
// storage in a temp dir (optionally htpasswd basic auth or TLS), and test images built from
// busybox-static with umoci and pushed with skopeo.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

#include "test_util.h"

namespace kata::agent::image::test {

inline constexpr const char* kRegistryBinary = "/usr/bin/docker-registry";

// "" when every tool is there, else what is missing.
inline std::string missingImageTools() {
    std::string missing;
    for (const char* tool :
         {kRegistryBinary, "/usr/bin/umoci", "/usr/bin/skopeo", "/usr/bin/htpasswd", "/bin/busybox",
          "/usr/bin/openssl", "/usr/bin/curl"}) {
        if (::access(tool, X_OK) != 0) missing += std::string(missing.empty() ? "" : ", ") + tool;
    }
    return missing;
}

struct ScriptResult {
    int exitCode = -1;
    std::string output;  // stdout and stderr
};

// Runs a bash script, whatever its exit status.
inline ScriptResult runScript(const std::string& script) {
    std::string cmd = "bash -c " + std::string("'") + [&] {
        std::string q;
        for (char c : script) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
        return q;
    }() + "' 2>&1";
    ScriptResult r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    int status = ::pclose(p);
    r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

// Runs a bash script; throws with its output when it fails.
inline std::string sh(const std::string& script) {
    ScriptResult r = runScript(script);
    if (r.exitCode != 0)
        throw std::runtime_error("script failed (" + std::to_string(r.exitCode) + "):\n" + script +
                                 "\n--- output:\n" + r.output);
    return r.output;
}

inline int freeLoopbackPort() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

inline bool canConnect(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

class LocalRegistry {
  public:
    struct Options {
        std::string htpasswdUser;  // with htpasswdPassword: basic auth (bcrypt htpasswd)
        std::string htpasswdPassword;
        bool tls = false;        // certificate for 127.0.0.1 from a CA the registry makes; caFile()
        std::string tokenRealm;  // with tokenCertFile: bearer-token auth (see token_server.h)
        std::string tokenCertFile;
        std::string tokenService;
        std::string tokenIssuer;
    };

    LocalRegistry(const std::string& dir, const Options& options) : dir_(dir) {
        std::filesystem::create_directories(dir_ + "/storage");
        port_ = freeLoopbackPort();
        std::string config =
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: false\n"
            "storage:\n  filesystem:\n    rootdirectory: " +
            dir_ +
            "/storage\n"
            "  delete:\n    enabled: true\n"
            "http:\n  addr: 127.0.0.1:" +
            std::to_string(port_) +
            "\n"
            "  secret: kata-test-secret\n";
        if (options.tls) {
            sh("set -e; cd " + dir_ +
               "\n"
               "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=kata-test-ca "
               "  -keyout ca.key -out ca.crt\n"
               "openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out "
               "server.csr\n"
               "printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext\n"
               "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
               "  -extfile san.ext -out server.crt");
            config += "  tls:\n    certificate: " + dir_ + "/server.crt\n    key: " + dir_ +
                      "/server.key\n";
        }
        if (!options.htpasswdUser.empty()) {
            sh("htpasswd -Bbc " + dir_ + "/htpasswd " + options.htpasswdUser + " " +
               options.htpasswdPassword);
            config += "auth:\n  htpasswd:\n    realm: kata-test\n    path: " + dir_ + "/htpasswd\n";
        }
        if (!options.tokenRealm.empty()) {
            config += "auth:\n  token:\n    realm: " + options.tokenRealm +
                      "\n    service: " + options.tokenService +
                      "\n    issuer: " + options.tokenIssuer +
                      "\n    rootcertbundle: " + options.tokenCertFile + "\n";
        }
        spit(dir_ + "/config.yml", config);
        start();
    }

    ~LocalRegistry() { stop(); }
    LocalRegistry(const LocalRegistry&) = delete;
    LocalRegistry& operator=(const LocalRegistry&) = delete;

    std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
    std::string caFile() const { return dir_ + "/ca.crt"; }
    std::string log() const { return slurp(dir_ + "/registry.log"); }
    const std::string& storage() const { return dir_; }

    // How many times the blob was requested (GET) from the repository.
    int blobGets(const std::string& repo, const std::string& digest) const {
        std::string needle = "\"GET /v2/" + repo + "/blobs/" + digest + " HTTP";
        std::string text = log();
        int n = 0;
        for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
            ++n;
        return n;
    }

    // The registry's own copy of a blob (content-addressed, shared by its repositories).
    std::string blobDataPath(const std::string& digest) const {
        std::string hex = digest.substr(7);
        return dir_ + "/storage/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex +
               "/data";
    }

  private:
    void start() {
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
            int fd = ::open((dir_ + "/registry.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::execl(kRegistryBinary, kRegistryBinary, "serve", (dir_ + "/config.yml").c_str(),
                    static_cast<char*>(nullptr));
            ::_exit(127);
        }
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (!canConnect(port_)) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("docker-registry exited at start:\n" + log());
            }
            if (std::chrono::steady_clock::now() > deadline) {
                stop();
                throw std::runtime_error("docker-registry did not listen on " + host() + ":\n" +
                                         log());
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }

    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        for (int i = 0; i < 100; ++i) {
            if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

    std::string dir_;
    int port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace kata::agent::image::test
