// Our client against a real peer: containerd's own ttrpc endpoint (<address>.ttrpc), which
// serves containerd.services.events.ttrpc.v1.Events/Forward, the call our shim uses to publish
// task events. A private containerd (own root, state and sockets in a temp dir) is started for
// the test; `ctr events` watches what containerd makes of the forwarded event.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "test_util.h"

namespace kata::ttrpc {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

std::string findProgram(const std::string& name) {
    for (const char* dir : {"/usr/bin", "/usr/local/bin", "/usr/sbin"}) {
        std::string p = std::string(dir) + "/" + name;
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    return "";
}

// A child process killed and reaped when the owner goes away.
class Child {
  public:
    Child(const std::vector<std::string>& argv, const std::string& outFile,
          const std::string& pathPrefix = "") {
        pid_ = ::fork();
        if (pid_ == 0) {
            if (!pathPrefix.empty()) {
                const char* path = ::getenv("PATH");
                std::string p = pathPrefix + ":" + (path ? path : "/usr/sbin:/usr/bin:/sbin:/bin");
                ::setenv("PATH", p.c_str(), 1);
            }
            int fd = ::open(outFile.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd >= 0) {
                ::dup2(fd, 1);
                ::dup2(fd, 2);
            }
            std::vector<char*> args;
            for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
            args.push_back(nullptr);
            ::execv(args[0], args.data());
            ::_exit(127);
        }
    }
    // Waits up to `d` for the process to exit; returns its exit status or -1.
    int wait(std::chrono::milliseconds d) {
        auto end = std::chrono::steady_clock::now() + d;
        while (std::chrono::steady_clock::now() < end) {
            int st = 0;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
            }
            std::this_thread::sleep_for(20ms);
        }
        return -1;
    }
    ~Child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    bool running() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }

  private:
    pid_t pid_ = -1;
};

std::string readFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Minimal protobuf writer for the test's request (length-delimited fields only).
std::string field(int number, const std::string& bytes) {
    std::string out(1, char(number << 3 | 2));
    size_t n = bytes.size();
    while (n >= 0x80) {
        out.push_back(char(n | 0x80));
        n >>= 7;
    }
    out.push_back(char(n));
    return out + bytes;
}

std::string varintField(int number, uint64_t v) {
    std::string out(1, char(number << 3));
    while (v >= 0x80) {
        out.push_back(char(v | 0x80));
        v >>= 7;
    }
    out.push_back(char(v));
    return out;
}

// google.protobuf.Timestamp{seconds=1} for now.
std::string timestampNow() { return varintField(1, uint64_t(::time(nullptr))); }

class ContainerdInterop : public ::testing::Test {
  protected:
    void SetUp() override {
        containerd_ = findProgram("containerd");
        ctr_ = findProgram("ctr");
        if (containerd_.empty() || ctr_.empty()) GTEST_SKIP() << "containerd or ctr not installed";
        if (::geteuid() != 0) GTEST_SKIP() << "a private containerd needs root";
        address_ = dir_.file("containerd.sock");
        std::ofstream(dir_.file("config.toml"))
            << "version = 2\n"
            << "root = \"" << dir_.file("root") << "\"\n"
            << "state = \"" << dir_.file("state") << "\"\n"
            << "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
            << "[grpc]\n  address = \"" << address_ << "\"\n"
            << "[ttrpc]\n  address = \"" << address_ << ".ttrpc\"\n";
        // A stand-in shim for the runtime io.containerd.ttrpctest.v2: its `start` prints the
        // address of the test's own ttrpc server, so containerd becomes our server's client.
        ::mkdir(dir_.file("bin").c_str(), 0755);
        shimSocket_ = dir_.file("shim.sock");
        std::string shim = dir_.file("bin/containerd-shim-ttrpctest-v2");
        std::ofstream(shim) << "#!/bin/sh\n"
                            << "for a in \"$@\"; do [ \"$a\" = start ] && printf '%s' 'unix://"
                            << shimSocket_ << "'; done\nexit 0\n";
        ::chmod(shim.c_str(), 0755);
        daemon_ = std::make_unique<Child>(
            std::vector<std::string>{containerd_, "--config", dir_.file("config.toml")},
            dir_.file("containerd.log"), dir_.file("bin"));
    }
    void TearDown() override {
        watcher_.reset();
        daemon_.reset();
    }

    TempDir dir_;
    std::string containerd_, ctr_, address_, shimSocket_;
    std::unique_ptr<Child> daemon_, watcher_;
};

TEST_F(ContainerdInterop, ForwardedEventReachesContainerdSubscribers) {
    Client c(dial("unix://" + address_ + ".ttrpc", 30s));

    // Subscribe first, then forward until the subscriber saw it (it may take a moment to attach).
    watcher_ = std::make_unique<Child>(
        std::vector<std::string>{ctr_, "--address", address_, "events"}, dir_.file("events.out"));

    // containerd.types.Envelope{timestamp=1, namespace=2, topic=3, event=4 Any{type_url=1,
    // value=2}} with a containerd.events.TaskOOM{container_id=1}.
    std::string oom = field(1, "kata-ttrpc-interop");
    std::string any = field(1, "containerd.events.TaskOOM") + field(2, oom);
    std::string envelope =
        field(1, timestampNow()) + field(2, "default") + field(3, "/tasks/oom") + field(4, any);
    std::string request = field(1, envelope);
    const std::string service = "containerd.services.events.ttrpc.v1.Events";

    bool seen = false;
    for (int i = 0; i < 100 && !seen; ++i) {
        EXPECT_EQ(c.callRaw(service, "Forward", request, 5s, {{"containerd-namespace", "default"}}),
                  "");
        std::this_thread::sleep_for(100ms);
        seen = readFile(dir_.file("events.out")).find("kata-ttrpc-interop") != std::string::npos;
    }
    EXPECT_TRUE(seen) << "ctr events printed: " << readFile(dir_.file("events.out"))
                      << "\ncontainerd log: " << readFile(dir_.file("containerd.log"));

    // containerd's own error answers come back as statuses.
    std::string badNamespace = field(1, field(1, timestampNow()) + field(2, "bad namespace!") +
                                            field(3, "/tasks/oom") + field(4, any));
    try {
        c.callRaw(service, "Forward", badNamespace, 5s);
        ADD_FAILURE() << "containerd accepted an invalid namespace";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), StatusCode::kInvalidArgument) << e.what();
    }
    try {
        c.callRaw(service, "NoSuchMethod", "", 5s);
        ADD_FAILURE() << "containerd answered an unknown method";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), StatusCode::kUnimplemented) << e.what();
    }
    EXPECT_TRUE(c.connected());
}

TEST_F(ContainerdInterop, ContainerdCallsOurServerAsItsShim) {
    struct Seen {
        std::mutex mu;
        std::vector<std::string> methods;
        std::string createPayload;
    } seen;
    Server server;
    server.registerRaw("containerd.task.v2.Task", "Create",
                       [&](const CallContext& ctx, const std::string& payload) -> std::string {
                           std::lock_guard<std::mutex> lock(seen.mu);
                           seen.methods.push_back(ctx.method);
                           seen.createPayload = payload;
                           throw Error(StatusCode::kFailedPrecondition,
                                       "ttrpc interop: create refused by the test server");
                       });
    std::thread serving(
        [&, l = listenUnix(shimSocket_)]() mutable { server.serveListener(std::move(l)); });
    struct Stop {
        Server& s;
        std::thread& t;
        ~Stop() {
            s.shutdown();
            t.join();
        }
    } stop{server, serving};

    Client probe(dial("unix://" + address_ + ".ttrpc", 30s));  // containerd is up
    ::mkdir(dir_.file("rootfs").c_str(), 0755);
    // --rootfs is a switch: the rootfs path is the first argument, then the container id.
    Child run({ctr_, "--address", address_, "run", "--runtime", "io.containerd.ttrpctest.v2",
               "--rootfs", dir_.file("rootfs"), "ttrpc-interop-ctr", "/bin/true"},
              dir_.file("ctr.out"));
    int rc = run.wait(60s);
    std::string out = readFile(dir_.file("ctr.out"));
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("create refused by the test server"), std::string::npos)
        << "ctr printed: " << out << "\ncontainerd log: " << readFile(dir_.file("containerd.log"));
    std::lock_guard<std::mutex> lock(seen.mu);
    ASSERT_EQ(seen.methods.size(), 1u);
    // CreateTaskRequest.id (field 1) is the container id.
    EXPECT_EQ(seen.createPayload.substr(0, 2 + 17), field(1, "ttrpc-interop-ctr"));
    // containerd 1.6 sends no metadata to shims (seen on the wire), so none is checked here.
}

}  // namespace
}  // namespace kata::ttrpc
