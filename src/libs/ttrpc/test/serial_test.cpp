// The guest side of the agent channel: a port that reports hangup while no host is connected
// and comes back when a (restarted) shim connects. Stood in for by ptys behind a symlink (what
// serveSerial opens by path) and by socketpairs handed out by serveReopening's opener.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <termios.h>

#include <atomic>
#include <deque>
#include <mutex>

#include "test_util.h"

namespace kata::ttrpc {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

std::chrono::microseconds cpuTime() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return std::chrono::seconds(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           std::chrono::microseconds(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

// The host end of a pty pair; the slave's path is what the server opens.
struct Pty {
    UniqueFd master;
    std::string slavePath;
};

Pty openPty() {
    Pty p;
    p.master = UniqueFd(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!p.master) throwErrno("posix_openpt");
    if (::grantpt(p.master.get()) < 0 || ::unlockpt(p.master.get()) < 0) throwErrno("unlockpt");
    p.slavePath = ::ptsname(p.master.get());
    // Raw before any byte moves: echo would bounce our own frames back at us.
    termios t{};
    ::tcgetattr(p.master.get(), &t);
    ::cfmakeraw(&t);
    ::tcsetattr(p.master.get(), TCSANOW, &t);
    return p;
}

// Points `link` at `target` atomically, as udev would for /dev/virtio-ports/<name>.
void pointLink(const std::string& link, const std::string& target) {
    std::string tmp = link + ".new";
    ::unlink(tmp.c_str());
    if (::symlink(target.c_str(), tmp.c_str()) < 0) throwErrno("symlink", tmp);
    if (::rename(tmp.c_str(), link.c_str()) < 0) throwErrno("rename", tmp);
}

// serveReopening with an opener that hands out socketpair ends: a dead end (peer already closed)
// behaves like a port with no host, a live one like a connected host.
class Opener {
  public:
    UniqueFd operator()() {
        std::lock_guard<std::mutex> lock(mu_);
        ++opens_;
        if (!live_.empty()) {
            UniqueFd fd = std::move(live_.front());
            live_.pop_front();
            return fd;
        }
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) throwErrno("socketpair");
        ::close(sv[1]);
        return UniqueFd(sv[0]);
    }
    // Returns the host end of a new connection the server will get on its next open.
    UniqueFd connectHost() {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) throwErrno("socketpair");
        std::lock_guard<std::mutex> lock(mu_);
        live_.emplace_back(sv[0]);
        return UniqueFd(sv[1]);
    }
    int opens() {
        std::lock_guard<std::mutex> lock(mu_);
        return opens_;
    }

  private:
    std::mutex mu_;
    std::deque<UniqueFd> live_;
    int opens_ = 0;
};

class SerialTest : public ::testing::Test {
  protected:
    void SetUp() override {
        server_.registerRaw("test.Svc", "Echo",
                            [](const CallContext&, const std::string& p) { return p; });
        server_.registerRaw("test.Svc", "Block", [this](const CallContext&, const std::string& p) {
            std::unique_lock<std::mutex> lock(mu_);
            ++blocked_;
            cv_.notify_all();
            cv_.wait(lock, [&] { return released_; });
            return p;
        });
    }
    void TearDown() override {
        release();
        server_.shutdown();
        if (thread_.joinable()) thread_.join();
    }
    void release() {
        std::lock_guard<std::mutex> lock(mu_);
        released_ = true;
        cv_.notify_all();
    }
    bool waitBlocked(int n) {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, 5s, [&] { return blocked_ >= n; });
    }

    // Everything the serving thread uses lives in the fixture, so it outlives that thread even
    // when a test body returns early.
    TempDir dir_;
    Opener opener_;
    Server server_;
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    int blocked_ = 0;
    bool released_ = false;
};

TEST_F(SerialTest, ServesAgainWhenTheHostReconnects) {
    std::string port = dir_.file("agent.channel.0");
    Pty first = openPty();
    pointLink(port, first.slavePath);
    thread_ = std::thread([this, port] { server_.serveSerial(port); });

    {
        Client c(std::move(first.master));
        EXPECT_EQ(c.callRaw("test.Svc", "Echo", "first shim", 5s), "first shim");
        // A call still running when the host goes away (a WaitProcess of the old shim).
        std::thread blocked([&] {
            try {
                c.callRaw("test.Svc", "Block", "old", 0ms);
            } catch (const Error&) {
            }
        });
        ASSERT_TRUE(waitBlocked(1));
        c.close();  // the shim dies: the host end closes
        blocked.join();
    }

    // Nobody there for a while: the path names a vanished pty.
    std::this_thread::sleep_for(300ms);

    Pty second = openPty();
    pointLink(port, second.slavePath);
    UniqueFd host = std::move(second.master);

    // The old session's late answer must not leak into the new host's stream.
    release();
    std::string stray = testing::readSome(host.get(), 1, 300);
    EXPECT_EQ(stray, "") << "a response of the previous session reached the new host";

    Client c2(std::move(host));
    EXPECT_EQ(c2.callRaw("test.Svc", "Echo", "restarted shim", 5s), "restarted shim");
    EXPECT_EQ(c2.callRaw("test.Svc", "Echo", "again", 5s), "again");
}

TEST_F(SerialTest, MissingPortDoesNotBurnCpuAndShutdownReturnsPromptly) {
    std::string port = dir_.file("not-there-yet");
    thread_ = std::thread([this, port] { server_.serveSerial(port); });
    auto before = cpuTime();
    std::this_thread::sleep_for(1s);
    auto used = cpuTime() - before;
    EXPECT_LT(used, 100ms) << "serveSerial spun while the port was missing";

    // The device shows up (hot-plugged port): served without a restart.
    Pty p = openPty();
    pointLink(port, p.slavePath);
    Client c(std::move(p.master));
    EXPECT_EQ(c.callRaw("test.Svc", "Echo", "hotplug", 5s), "hotplug");

    auto start = std::chrono::steady_clock::now();
    server_.shutdown();
    thread_.join();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(SerialTest, ReopeningBacksOffWhileNoHostAndServesEachNewHost) {
    Opener opener;
    thread_ =
        std::thread([&] { server_.serveReopening([&] { return opener(); }, "stand-in port"); });

    auto before = cpuTime();
    int opensBefore = opener.opens();
    std::this_thread::sleep_for(1s);
    int idleOpens = opener.opens() - opensBefore;
    EXPECT_LT(idleOpens, 40) << "reopened too often while no host was connected";
    EXPECT_GT(idleOpens, 2) << "stopped retrying";
    EXPECT_LT(cpuTime() - before, 100ms);

    for (int round = 0; round < 3; ++round) {
        Client c(opener.connectHost());
        EXPECT_EQ(c.callRaw("test.Svc", "Echo", "round " + std::to_string(round), 5s),
                  "round " + std::to_string(round));
    }
}

}  // namespace
}  // namespace kata::ttrpc
