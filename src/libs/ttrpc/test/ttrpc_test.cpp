#include <google/protobuf/wrappers.pb.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>

#include "test_util.h"

namespace kata::ttrpc {
namespace {

using namespace std::chrono_literals;
using google::protobuf::StringValue;
using testing::RunningServer;
using testing::TempDir;

// Lets a test hold handlers until it says go.
class Gate {
  public:
    void open() {
        std::lock_guard<std::mutex> lock(mu_);
        open_ = true;
        cv_.notify_all();
    }
    void wait() {
        std::unique_lock<std::mutex> lock(mu_);
        ++waiting_;
        cv_.notify_all();
        cv_.wait(lock, [&] { return open_; });
    }
    bool waitForWaiters(int n, std::chrono::milliseconds d) {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, d, [&] { return waiting_ >= n; });
    }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool open_ = false;
    int waiting_ = 0;
};

Error expectError(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e;
    }
    ADD_FAILURE() << "no kata::Error thrown";
    return Error(StatusCode::kOk, "none");
}

class TtrpcTest : public ::testing::Test {
  protected:
    void SetUp() override {
        server_.registerRaw("test.Svc", "Echo",
                            [](const CallContext&, const std::string& p) { return p; });
        server_.registerRaw("test.Svc", "Block", [this](const CallContext&, const std::string& p) {
            gate_.wait();
            return "unblocked:" + p;
        });
        server_.registerRaw("test.Svc", "Fail",
                            [](const CallContext&, const std::string& p) -> std::string {
                                throw Error(StatusCode::kNotFound, "container " + p + " not found");
                            });
        server_.registerRaw("test.Svc", "Crash",
                            [](const CallContext&, const std::string&) -> std::string {
                                throw std::runtime_error("plain exception");
                            });
        server_.registerRaw("test.Svc", "Context", [](const CallContext& ctx, const std::string&) {
            std::string out =
                ctx.service + "/" + ctx.method + " timeout_ms=" +
                std::to_string(
                    std::chrono::duration_cast<std::chrono::milliseconds>(ctx.timeout).count());
            for (const auto& [k, v] : ctx.metadata) out += " " + k + "=" + v;
            const std::string* ns = ctx.metadataValue("containerd-namespace");
            out += ns ? " ns:" + *ns : " ns:-";
            return out;
        });
        server_.registerMethod<StringValue, StringValue>(
            "test.Typed", "Upper", [](const CallContext&, const StringValue& in) {
                StringValue out;
                for (char c : in.value()) out.mutable_value()->push_back(char(toupper(c)));
                return out;
            });
        running_ = std::make_unique<RunningServer>(server_);
    }
    void TearDown() override {
        gate_.open();
        running_.reset();
    }

    Server server_;
    Gate gate_;
    std::unique_ptr<RunningServer> running_;
};

TEST_F(TtrpcTest, UnaryRoundTrip) {
    Client c = running_->client();
    EXPECT_EQ(c.callRaw("test.Svc", "Echo", "hello", 5s), "hello");
    EXPECT_EQ(c.callRaw("test.Svc", "Echo", "", 5s), "");
    EXPECT_TRUE(c.connected());
}

TEST_F(TtrpcTest, TypedRoundTrip) {
    Client c = running_->client();
    StringValue in;
    in.set_value("kata");
    auto out = c.call<StringValue, StringValue>("test.Typed", "Upper", in, 5s);
    EXPECT_EQ(out.value(), "KATA");
}

TEST_F(TtrpcTest, UnparsableTypedRequestIsInvalidArgumentNamingTheMethod) {
    Client c = running_->client();
    auto e = expectError([&] { c.callRaw("test.Typed", "Upper", "\xff\xff", 5s); });
    EXPECT_EQ(e.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("test.Typed/Upper"), std::string::npos) << e.what();
}

TEST_F(TtrpcTest, HandlerErrorsReachTheClientWithTheirCode) {
    Client c = running_->client();
    auto e = expectError([&] { c.callRaw("test.Svc", "Fail", "abc", 5s); });
    EXPECT_EQ(e.code(), StatusCode::kNotFound);
    EXPECT_STREQ(e.what(), "container abc not found");
    auto e2 = expectError([&] { c.callRaw("test.Svc", "Crash", "", 5s); });
    EXPECT_EQ(e2.code(), StatusCode::kUnknown);
    EXPECT_STREQ(e2.what(), "plain exception");
    EXPECT_EQ(c.callRaw("test.Svc", "Echo", "still fine", 5s), "still fine");
}

TEST_F(TtrpcTest, UnknownServiceOrMethodIsUnimplementedAndNamed) {
    Client c = running_->client();
    auto e = expectError([&] { c.callRaw("test.Svc", "Nope", "", 5s); });
    EXPECT_EQ(e.code(), StatusCode::kUnimplemented);
    EXPECT_NE(std::string(e.what()).find("Nope"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test.Svc"), std::string::npos) << e.what();
    auto e2 = expectError([&] { c.callRaw("grpc.Missing", "Check", "", 5s); });
    EXPECT_EQ(e2.code(), StatusCode::kUnimplemented);
    EXPECT_NE(std::string(e2.what()).find("grpc.Missing"), std::string::npos) << e2.what();
}

TEST_F(TtrpcTest, MetadataAndTimeoutReachTheHandler) {
    Client c = running_->client();
    Metadata md = {{"containerd-namespace", "k8s.io"}, {"x", "1"}, {"x", "2"}};
    EXPECT_EQ(c.callRaw("test.Svc", "Context", "", 2500ms, md),
              "test.Svc/Context timeout_ms=2500 containerd-namespace=k8s.io x=1 x=2 ns:k8s.io");
    EXPECT_EQ(c.callRaw("test.Svc", "Context", "", 0ms), "test.Svc/Context timeout_ms=0 ns:-");
}

TEST_F(TtrpcTest, DeadlineFollowsTheClientTimeout) {
    server_.registerRaw("test.Svc", "Deadline", [](const CallContext& ctx, const std::string&) {
        if (ctx.deadline == std::chrono::steady_clock::time_point::max())
            return std::string("none");
        auto left = ctx.deadline - std::chrono::steady_clock::now();
        return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(left).count());
    });
    Client c = running_->client();
    EXPECT_EQ(c.callRaw("test.Svc", "Deadline", "", 0ms), "none");
    long left = std::stol(c.callRaw("test.Svc", "Deadline", "", 3000ms));
    EXPECT_GT(left, 2000);
    EXPECT_LE(left, 3000);
}

TEST_F(TtrpcTest, ConnectNamesTheAddressWhenTheConnectionIsLost) {
    auto c = Client::connect("unix://" + running_->path(), 5s);
    EXPECT_EQ(c->callRaw("test.Svc", "Echo", "x", 5s), "x");
    server_.shutdown();
    auto e = expectError([&] {
        // The close may race with this call: either way it fails as unavailable.
        for (int i = 0; i < 100; ++i) {
            c->callRaw("test.Svc", "Echo", "x", 5s);
            std::this_thread::sleep_for(10ms);
        }
    });
    EXPECT_EQ(e.code(), StatusCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find(running_->path()), std::string::npos) << e.what();
}

TEST_F(TtrpcTest, BlockedCallDoesNotBlockOthersOnTheSameConnection) {
    Client c = running_->client();
    auto blocked =
        std::async(std::launch::async, [&] { return c.callRaw("test.Svc", "Block", "a", 10s); });
    auto blocked2 =
        std::async(std::launch::async, [&] { return c.callRaw("test.Svc", "Block", "b", 10s); });
    ASSERT_TRUE(gate_.waitForWaiters(2, 5s));
    for (int i = 0; i < 20; ++i) {
        EXPECT_EQ(c.callRaw("test.Svc", "Echo", std::to_string(i), 2s), std::to_string(i));
    }
    EXPECT_EQ(blocked.wait_for(0s), std::future_status::timeout);
    gate_.open();
    EXPECT_EQ(blocked.get(), "unblocked:a");
    EXPECT_EQ(blocked2.get(), "unblocked:b");
}

TEST_F(TtrpcTest, ManyThreadsShareOneClientAndGetTheirOwnAnswers) {
    Client c = running_->client();
    std::vector<std::thread> threads;
    std::atomic<int> wrong{0};
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 100; ++i) {
                std::string p =
                    std::to_string(t) + ":" + std::to_string(i) + std::string(size_t(i * 37), 'x');
                if (c.callRaw("test.Svc", "Echo", p, 10s) != p) ++wrong;
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(wrong.load(), 0);
}

TEST_F(TtrpcTest, ManyClientsAtOnce) {
    std::vector<std::future<std::string>> results;
    for (int i = 0; i < 16; ++i) {
        results.push_back(std::async(std::launch::async, [this, i] {
            Client c = running_->client();
            return c.callRaw("test.Svc", "Echo", "client" + std::to_string(i), 10s);
        }));
    }
    for (int i = 0; i < 16; ++i) EXPECT_EQ(results[size_t(i)].get(), "client" + std::to_string(i));
}

TEST_F(TtrpcTest, ClientTimeoutIsDeadlineExceededAndTheConnectionStaysUsable) {
    Client c = running_->client();
    auto start = std::chrono::steady_clock::now();
    auto e = expectError([&] { c.callRaw("test.Svc", "Block", "slow", 200ms); });
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(e.code(), StatusCode::kDeadlineExceeded);
    EXPECT_NE(std::string(e.what()).find("test.Svc/Block"), std::string::npos) << e.what();
    EXPECT_GE(took, 200ms);
    EXPECT_LT(took, 3s);
    gate_.open();  // the late answer arrives and must be ignored
    EXPECT_EQ(c.callRaw("test.Svc", "Echo", "after", 5s), "after");
    EXPECT_TRUE(c.connected());
}

TEST_F(TtrpcTest, LargeMessageBelowTheLimitRoundTrips) {
    Client c = running_->client();
    std::string big(kMaxMessageSize - 1024, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = char(i * 131);
    EXPECT_EQ(c.callRaw("test.Svc", "Echo", big, 20s), big);
}

TEST_F(TtrpcTest, OversizedRequestIsRefusedBeforeSending) {
    Client c = running_->client();
    auto e = expectError(
        [&] { c.callRaw("test.Svc", "Echo", std::string(kMaxMessageSize + 1, 'x'), 5s); });
    EXPECT_EQ(e.code(), StatusCode::kResourceExhausted);
    EXPECT_TRUE(c.connected());
    EXPECT_EQ(c.callRaw("test.Svc", "Echo", "ok", 5s), "ok");
}

TEST_F(TtrpcTest, OversizedFrameDropsOnlyThatConnection) {
    Client other = running_->client();
    EXPECT_EQ(other.callRaw("test.Svc", "Echo", "before", 5s), "before");

    UniqueFd raw = running_->rawConnection();
    testing::writeAllOrThrow(
        raw.get(), testing::rawFrame(1, wire::kTypeRequest, 0, "", uint32_t(kMaxMessageSize + 1)));
    bool eof = false;
    std::string got = testing::readSome(raw.get(), 1, 5000, &eof);
    EXPECT_TRUE(eof) << "server kept the connection open";
    EXPECT_EQ(got, "");

    EXPECT_EQ(other.callRaw("test.Svc", "Echo", "after", 5s), "after");
    Client fresh = running_->client();
    EXPECT_EQ(fresh.callRaw("test.Svc", "Echo", "new", 5s), "new");
}

TEST_F(TtrpcTest, UnknownFrameTypeDropsTheConnection) {
    Client other = running_->client();
    UniqueFd raw = running_->rawConnection();
    testing::writeAllOrThrow(raw.get(), testing::rawFrame(1, 9, 0, "junk"));
    bool eof = false;
    testing::readSome(raw.get(), 1, 5000, &eof);
    EXPECT_TRUE(eof);
    EXPECT_EQ(other.callRaw("test.Svc", "Echo", "x", 5s), "x");
}

TEST_F(TtrpcTest, TruncatedFrameThenHangupIsHarmless) {
    UniqueFd raw = running_->rawConnection();
    std::string f = testing::rawFrame(1, wire::kTypeRequest, 0, "0123456789");
    testing::writeAllOrThrow(raw.get(), f.substr(0, 14));
    raw.reset();
    Client c = running_->client();
    EXPECT_EQ(c.callRaw("test.Svc", "Echo", "x", 5s), "x");
}

TEST_F(TtrpcTest, UndecodableRequestGetsInvalidArgumentAndTheConnectionLives) {
    UniqueFd raw = running_->rawConnection();
    testing::writeAllOrThrow(raw.get(), testing::rawFrame(1, wire::kTypeRequest, 0, "\x0a\x7f"));
    wire::Request ok;
    ok.service = "test.Svc";
    ok.method = "Echo";
    ok.payload = "alive";
    testing::writeAllOrThrow(raw.get(),
                             testing::rawFrame(3, wire::kTypeRequest, 0, wire::encodeRequest(ok)));
    std::map<uint32_t, wire::Response> answers;
    wire::FrameDecoder dec;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (answers.size() < 2 && std::chrono::steady_clock::now() < deadline) {
        std::string chunk = testing::readSome(raw.get(), 1, 1000);
        dec.feed(chunk.data(), chunk.size());
        wire::Frame f;
        while (dec.next(&f) == wire::FrameDecoder::Result::kFrame) {
            ASSERT_EQ(f.header.type, wire::kTypeResponse);
            ASSERT_TRUE(wire::decodeResponse(f.payload, &answers[f.header.streamId]));
        }
    }
    ASSERT_EQ(answers.size(), 2u);
    EXPECT_EQ(answers[1].status.code, int(StatusCode::kInvalidArgument));
    EXPECT_FALSE(answers[3].hasStatus);
    EXPECT_EQ(answers[3].payload, "alive");
}

TEST_F(TtrpcTest, EvenOrReusedStreamIdsAreRejected) {
    UniqueFd raw = running_->rawConnection();
    wire::Request ok;
    ok.service = "test.Svc";
    ok.method = "Echo";
    std::string enc = wire::encodeRequest(ok);
    testing::writeAllOrThrow(raw.get(), testing::rawFrame(2, wire::kTypeRequest, 0, enc));
    testing::writeAllOrThrow(raw.get(), testing::rawFrame(5, wire::kTypeRequest, 0, enc));
    testing::writeAllOrThrow(raw.get(), testing::rawFrame(3, wire::kTypeRequest, 0, enc));
    std::map<uint32_t, wire::Response> answers;
    wire::FrameDecoder dec;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (answers.size() < 3 && std::chrono::steady_clock::now() < deadline) {
        std::string chunk = testing::readSome(raw.get(), 1, 1000);
        dec.feed(chunk.data(), chunk.size());
        wire::Frame f;
        while (dec.next(&f) == wire::FrameDecoder::Result::kFrame) {
            ASSERT_TRUE(wire::decodeResponse(f.payload, &answers[f.header.streamId]));
        }
    }
    ASSERT_EQ(answers.size(), 3u);
    EXPECT_EQ(answers[2].status.code, int(StatusCode::kInvalidArgument));
    EXPECT_EQ(answers[5].status.code, 0);
    EXPECT_EQ(answers[3].status.code, int(StatusCode::kInvalidArgument));
}

TEST_F(TtrpcTest, ShutdownFailsPendingCallsWithUnavailable) {
    Client c = running_->client();
    auto pending = std::async(std::launch::async, [&] {
        return expectError([&] { c.callRaw("test.Svc", "Block", "", 0ms); });
    });
    ASSERT_TRUE(gate_.waitForWaiters(1, 5s));
    server_.shutdown();
    auto e = pending.get();
    EXPECT_EQ(e.code(), StatusCode::kUnavailable);
    EXPECT_FALSE(c.connected());
    auto e2 = expectError([&] { c.callRaw("test.Svc", "Echo", "", 1s); });
    EXPECT_EQ(e2.code(), StatusCode::kUnavailable);
    EXPECT_NE(std::string(e2.what()).find("test.Svc/Echo"), std::string::npos) << e2.what();
}

TEST_F(TtrpcTest, ClientCloseIsIdempotentAndFailsLaterCalls) {
    Client c = running_->client();
    c.close();
    c.close();
    EXPECT_FALSE(c.connected());
    EXPECT_EQ(expectError([&] { c.callRaw("test.Svc", "Echo", "", 1s); }).code(),
              StatusCode::kUnavailable);
}

TEST_F(TtrpcTest, MovedClientKeepsTheConnectionAndTheOldOneIsClosed) {
    Client a = running_->client();
    Client b(std::move(a));
    EXPECT_EQ(b.callRaw("test.Svc", "Echo", "moved", 5s), "moved");
    EXPECT_FALSE(a.connected());
    EXPECT_EQ(expectError([&] { a.callRaw("test.Svc", "Echo", "", 1s); }).code(),
              StatusCode::kUnavailable);
    Client c = running_->client();
    c = std::move(b);
    EXPECT_EQ(c.callRaw("test.Svc", "Echo", "assigned", 5s), "assigned");
}

// ---- streaming ----

class StreamingTest : public ::testing::Test {
  protected:
    void SetUp() override {
        server_.registerStream(
            "test.Stream", "Count",
            [](const CallContext&, const std::string& payload, ServerStream& s) {
                int n = std::stoi(payload);
                for (int i = 0; i < n; ++i) s.send("msg" + std::to_string(i));
                return std::string("sent ") + std::to_string(n);
            },
            false, true);
        server_.registerStream(
            "test.Stream", "Sum",
            [](const CallContext&, const std::string&, ServerStream& s) {
                long total = 0;
                std::string m;
                while (s.recv(&m)) total += std::stol(m);
                return std::to_string(total);
            },
            true, false);
        server_.registerStream("test.Stream", "Echo",
                               [](const CallContext&, const std::string&, ServerStream& s) {
                                   std::string m;
                                   int n = 0;
                                   while (s.recv(&m)) {
                                       s.send("echo:" + m);
                                       ++n;
                                   }
                                   return std::to_string(n);
                               });
        server_.registerStream(
            "test.Stream", "Fail",
            [](const CallContext&, const std::string&, ServerStream& s) -> std::string {
                s.send("one");
                throw Error(StatusCode::kPermissionDenied, "stream refused");
            },
            false, true);
        running_ = std::make_unique<RunningServer>(server_);
    }
    Server server_;
    std::unique_ptr<RunningServer> running_;
};

TEST_F(StreamingTest, ServerStreamsMessagesThenAFinalResponse) {
    Client c = running_->client();
    auto s = c.openStream("test.Stream", "Count", "5", false);
    std::string m;
    for (int i = 0; i < 5; ++i) {
        ASSERT_TRUE(s->recv(&m, 5s));
        EXPECT_EQ(m, "msg" + std::to_string(i));
    }
    EXPECT_FALSE(s->recv(&m, 5s));
    EXPECT_EQ(s->finish(5s), "sent 5");
    EXPECT_EQ(c.callRaw("test.Stream", "Count", "0", 5s),
              "sent 0");  // unary call of a stream method
}

TEST_F(StreamingTest, ClientStreamsMessagesThenGetsTheResult) {
    Client c = running_->client();
    auto s = c.openStream("test.Stream", "Sum", "", true);
    for (int i = 1; i <= 100; ++i) s->send(std::to_string(i));
    EXPECT_EQ(s->finish(5s), "5050");
}

TEST_F(StreamingTest, BidirectionalStreamsInterleaveWithUnaryCalls) {
    Client c = running_->client();
    auto s1 = c.openStream("test.Stream", "Echo", "", true);
    auto s2 = c.openStream("test.Stream", "Echo", "", true);
    std::string m;
    for (int i = 0; i < 10; ++i) {
        s1->send("a" + std::to_string(i));
        s2->send("b" + std::to_string(i));
        ASSERT_TRUE(s2->recv(&m, 5s));
        EXPECT_EQ(m, "echo:b" + std::to_string(i));
        ASSERT_TRUE(s1->recv(&m, 5s));
        EXPECT_EQ(m, "echo:a" + std::to_string(i));
        EXPECT_EQ(c.callRaw("test.Stream", "Count", "1", 5s), "sent 1");
    }
    s1->closeSend();
    EXPECT_FALSE(s1->recv(&m, 5s));
    EXPECT_EQ(s1->finish(5s), "10");
    EXPECT_EQ(s2->finish(5s), "10");
    EXPECT_THROW(s2->send("late"), Error);
}

TEST_F(StreamingTest, HandlerErrorEndsTheStreamWithItsStatus) {
    Client c = running_->client();
    auto s = c.openStream("test.Stream", "Fail", "", false);
    auto e = expectError([&] { s->finish(5s); });
    EXPECT_EQ(e.code(), StatusCode::kPermissionDenied);
    EXPECT_STREQ(e.what(), "stream refused");
}

TEST_F(StreamingTest, RecvTimesOutWhenNothingArrives) {
    Client c = running_->client();
    auto s = c.openStream("test.Stream", "Echo", "", true);
    std::string m;
    EXPECT_EQ(expectError([&] { s->recv(&m, 100ms); }).code(), StatusCode::kDeadlineExceeded);
    s->send("x");
    ASSERT_TRUE(s->recv(&m, 5s));
    EXPECT_EQ(m, "echo:x");
}

TEST_F(StreamingTest, ConnectionLossEndsStreamsWithUnavailable) {
    Client c = running_->client();
    auto s = c.openStream("test.Stream", "Echo", "", true);
    s->send("x");
    std::string m;
    ASSERT_TRUE(s->recv(&m, 5s));
    server_.shutdown();
    EXPECT_FALSE(s->recv(&m, 5s));
    EXPECT_EQ(expectError([&] { s->finish(5s); }).code(), StatusCode::kUnavailable);
}

// ---- transports ----

TEST(Transport, DialUnderstandsTheAddressForms) {
    TempDir dir;
    std::string path = dir.file("s.sock");
    Server server;
    server.registerRaw("t", "m", [](const CallContext&, const std::string& p) { return p; });
    UniqueFd l = listenUnix(path);
    std::thread t([&, fd = std::move(l)]() mutable { server.serveListener(std::move(fd)); });
    for (const std::string& addr : {"unix://" + path, "unix:" + path, path}) {
        Client c(dial(addr, 2s));
        EXPECT_EQ(c.callRaw("t", "m", addr, 2s), addr);
    }
    server.shutdown();
    t.join();
    for (const char* bad : {"tcp://1.2.3.4:5", "vsock://x:1", "vsock://3", "unix://", ""}) {
        EXPECT_EQ(expectError([&] { dial(bad, 100ms); }).code(), StatusCode::kInvalidArgument)
            << bad;
    }
}

TEST(Transport, DialWaitsForAServerThatComesUpLate) {
    TempDir dir;
    std::string path = dir.file("late.sock");
    Server server;
    server.registerRaw("t", "m", [](const CallContext&, const std::string& p) { return p; });
    std::thread starter([&] {
        std::this_thread::sleep_for(300ms);
        server.serveListener(listenUnix(path));
    });
    auto start = std::chrono::steady_clock::now();
    UniqueFd fd = dial("unix://" + path, 10s);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 250ms);
    Client c(std::move(fd));
    EXPECT_EQ(c.callRaw("t", "m", "late", 2s), "late");
    server.shutdown();
    starter.join();
}

TEST(Transport, DialGivesUpAfterTheTimeout) {
    TempDir dir;
    auto start = std::chrono::steady_clock::now();
    auto e = expectError([&] { dial(dir.file("nobody.sock"), 300ms); });
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(e.code(), StatusCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find("nobody.sock"), std::string::npos) << e.what();
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 3s);
}

TEST(Transport, ListenUnixReplacesAStaleSocketButNotALiveOne) {
    TempDir dir;
    std::string path = dir.file("x.sock");
    {
        UniqueFd first = listenUnix(path);  // closed at the end of scope: the file stays, stale
    }
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    UniqueFd second = listenUnix(path);
    EXPECT_TRUE(second.valid());
    EXPECT_EQ(expectError([&] { listenUnix(path); }).code(), StatusCode::kAlreadyExists);
    std::string plain = dir.file("plain");
    std::ofstream(plain) << "x";
    EXPECT_EQ(expectError([&] { listenUnix(plain); }).code(), StatusCode::kAlreadyExists);
}

TEST(Transport, ListenVsock) {
    UniqueFd probe(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe) GTEST_SKIP() << "no AF_VSOCK on this host: " << strerror(errno);
    try {
        UniqueFd l = listenVsock(40000 + uint32_t(::getpid() % 20000));
        EXPECT_TRUE(l.valid());
    } catch (const SystemError& e) {
        if (e.err() == EADDRNOTAVAIL || e.err() == ENODEV)
            GTEST_SKIP() << "vsock without a transport: " << e.what();
        throw;
    }
}

}  // namespace
}  // namespace kata::ttrpc
