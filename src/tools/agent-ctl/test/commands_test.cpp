#include "commands.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <csignal>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "agent/agent.pb.h"
#include "agent/health.pb.h"
#include "agent/image.pb.h"
#include "kata/common/error.h"

namespace fs = std::filesystem;
using namespace kata::agentctl;

namespace {

std::string errorOf(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const kata::Error& e) {
        EXPECT_EQ(e.code(), kata::StatusCode::kInvalidArgument) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "no error";
    return "";
}

template <class T>
const T& as(const BuiltRequest& b) {
    const T* t = dynamic_cast<const T*>(b.request.get());
    if (t == nullptr) throw std::runtime_error("request has the wrong type");
    return *t;
}

BuiltRequest build(const std::string& text, const Context& ctx = {}) {
    return buildRequest(parseCommand(text), ctx);
}

// A copy of the built request, so that it outlives the BuiltRequest.
template <class T>
T req(const std::string& text, const Context& ctx = {}) {
    return as<T>(build(text, ctx));
}

class TempDir {
  public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "agent-ctl-test.XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }

  private:
    fs::path path_;
};

// Records calls and answers from a queue of canned payloads or errors.
class FakeCaller : public RpcCaller {
  public:
    struct Call {
        std::string service, method, payload;
        std::chrono::milliseconds timeout;
    };
    std::vector<Call> calls;
    std::deque<std::function<std::string()>> answers;

    std::string call(const std::string& service, const std::string& method,
                     const std::string& payload, std::chrono::milliseconds timeout) override {
        calls.push_back({service, method, payload, timeout});
        if (answers.empty()) return "";
        auto a = std::move(answers.front());
        answers.pop_front();
        return a();
    }
};

TEST(SplitWords, QuotingLikeAShell) {
    EXPECT_EQ(splitWords("  a  b\tc "), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(splitWords("cmd='sh -c \"echo hi\"'"),
              (std::vector<std::string>{"cmd=sh -c \"echo hi\""}));
    EXPECT_EQ(splitWords("k=\"a \\\"b\\\" \\\\ \\n\""),
              (std::vector<std::string>{"k=a \"b\" \\ \\n"}));
    EXPECT_EQ(splitWords("a\\ b 'x'\"y\"z"), (std::vector<std::string>{"a b", "xyz"}));
    EXPECT_EQ(splitWords("exec_id='' x"), (std::vector<std::string>{"exec_id=", "x"}));
    EXPECT_TRUE(splitWords("   ").empty());
    EXPECT_NE(errorOf([] { splitWords("a 'b"); }).find("unterminated ' quote"), std::string::npos);
    EXPECT_NE(errorOf([] { splitWords("a \"b"); }).find("unterminated \" quote"),
              std::string::npos);
    EXPECT_NE(errorOf([] { splitWords("a\\"); }).find("trailing backslash"), std::string::npos);
}

TEST(ParseCommand, KeyValuePairs) {
    Invocation inv = parseCommand("ExecProcess cid=c1 exec_id=e1 cmd='sh -c \"echo a=b\"' arg=x");
    EXPECT_EQ(inv.command, "ExecProcess");
    ASSERT_EQ(inv.args.size(), 4u);
    EXPECT_EQ(inv.args[2].first, "cmd");
    EXPECT_EQ(inv.args[2].second, "sh -c \"echo a=b\"");
    EXPECT_EQ(errorOf([] { parseCommand("StartContainer c1"); }),
              "command StartContainer: argument \"c1\" is not of the form key=value");
    EXPECT_EQ(errorOf([] { parseCommand("StartContainer =c1"); }),
              "command StartContainer: argument \"=c1\" is not of the form key=value");
    EXPECT_EQ(errorOf([] { parseCommand(""); }), "empty command");
}

TEST(BuildRequest, BadCommandsAndKeysAreNamed) {
    EXPECT_EQ(errorOf([] { build("StartContainr cid=a"); }),
              "unknown command \"StartContainr\" (kata-agent-ctl list shows the commands)");
    EXPECT_EQ(errorOf([] { build("StartContainer id=a"); }),
              "command StartContainer: unknown key \"id\" (keys: cid, timeout)");
    EXPECT_EQ(errorOf([] { build("StartContainer"); }), "command StartContainer: missing key cid=");
    EXPECT_EQ(errorOf([] { build("StartContainer cid=a cid=b"); }),
              "command StartContainer: key cid given more than once");
    EXPECT_EQ(errorOf([] { build("ExecProcess cid=a exec_id=e cmd=ls terminal=maybe"); }),
              "command ExecProcess: key terminal: expected true or false, got \"maybe\"");
    EXPECT_EQ(errorOf([] { build("TtyWinResize cid=a row=x"); }),
              "command TtyWinResize: key row: expected a number, got \"x\"");
    EXPECT_EQ(errorOf([] { build("TtyWinResize cid=a row=99999999999"); }),
              "command TtyWinResize: key row: \"99999999999\" is out of range");
    EXPECT_EQ(errorOf([] { build("ExecProcess cid=a exec_id=e"); }),
              "command ExecProcess: key cmd: no command given (cmd= or arg=)");
    EXPECT_EQ(errorOf([] { build("SignalProcess cid=a signal=SIGFOO"); }),
              "command SignalProcess: key signal: unknown signal \"SIGFOO\"");
}

TEST(BuildRequest, ExecProcessSplitsCmdOrTakesArgs) {
    auto b = build("ExecProcess cid=c1 exec_id=e1 cmd='sh -c \"echo hi\"' terminal=true env=A=1");
    EXPECT_EQ(b.info->service, "grpc.AgentService");
    EXPECT_EQ(b.info->method, "ExecProcess");
    const auto& r = as<grpc::ExecProcessRequest>(b);
    EXPECT_EQ(r.container_id(), "c1");
    EXPECT_EQ(r.exec_id(), "e1");
    ASSERT_EQ(r.process().args_size(), 3);
    EXPECT_EQ(r.process().args(0), "sh");
    EXPECT_EQ(r.process().args(2), "echo hi");
    EXPECT_TRUE(r.process().terminal());
    ASSERT_EQ(r.process().env_size(), 1);
    EXPECT_EQ(r.process().env(0), "A=1");
    EXPECT_EQ(r.process().cwd(), "/");

    auto b2 = build("ExecProcess cid=c1 exec_id=e2 arg=/bin/echo 'arg=two words' uid=1000");
    const auto& r2 = as<grpc::ExecProcessRequest>(b2);
    ASSERT_EQ(r2.process().args_size(), 2);
    EXPECT_EQ(r2.process().args(1), "two words");
    EXPECT_EQ(r2.process().user().uid(), 1000u);
    EXPECT_FALSE(r2.process().terminal());
    EXPECT_EQ(r2.process().env(0).rfind("PATH=", 0), 0u);
}

TEST(BuildRequest, ExecIdDefaultsToContainerId) {
    EXPECT_EQ(as<grpc::WaitProcessRequest>(build("WaitProcess cid=c9")).exec_id(), "c9");
    EXPECT_EQ(as<grpc::SignalProcessRequest>(build("SignalProcess cid=c9 exec_id=''")).exec_id(),
              "");
}

TEST(BuildRequest, Signals) {
    EXPECT_EQ(as<grpc::SignalProcessRequest>(build("SignalProcess cid=c")).signal(),
              static_cast<uint32_t>(SIGKILL));
    EXPECT_EQ(as<grpc::SignalProcessRequest>(build("SignalProcess cid=c signal=15")).signal(), 15u);
    EXPECT_EQ(as<grpc::SignalProcessRequest>(build("SignalProcess cid=c signal=term")).signal(),
              static_cast<uint32_t>(SIGTERM));
    EXPECT_EQ(as<grpc::SignalProcessRequest>(build("SignalProcess cid=c signal=SIGUSR1")).signal(),
              static_cast<uint32_t>(SIGUSR1));
    EXPECT_EQ(parseSignal("WINCH"), SIGWINCH);
    EXPECT_NE(errorOf([] { parseSignal("0"); }).find("out of range"), std::string::npos);
}

TEST(BuildRequest, CreateContainerReadsTheBundle) {
    TempDir dir;
    std::ofstream(dir.path() / "config.json")
        << R"({"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}})";
    Context ctx;
    ctx.bundleDir = dir.path().string();
    auto b = build("CreateContainer cid=c1", ctx);
    const auto& r = as<grpc::CreateContainerRequest>(b);
    EXPECT_EQ(r.container_id(), "c1");
    EXPECT_EQ(r.exec_id(), "c1");
    EXPECT_EQ(r.oci().process().args(0), "sh");
    EXPECT_EQ(r.oci().root().path(), (dir.path() / "rootfs").string());
    EXPECT_EQ(r.storages_size(), 0);

    auto b2 = build("CreateContainer cid=c1 exec_id=x rootfs=/run/kata-containers/c1/rootfs", ctx);
    EXPECT_EQ(as<grpc::CreateContainerRequest>(b2).oci().root().path(),
              "/run/kata-containers/c1/rootfs");
    EXPECT_EQ(as<grpc::CreateContainerRequest>(b2).exec_id(), "x");

    EXPECT_EQ(errorOf([] { build("CreateContainer cid=c1"); }),
              "command CreateContainer: no OCI spec: give --bundle-dir, bundle= or "
              "spec=<config.json>");
    std::ofstream(dir.path() / "config.json") << R"({"process": 1})";
    EXPECT_NE(
        errorOf([&] { build("CreateContainer cid=c1", ctx); }).find("invalid config.json: process"),
        std::string::npos);
    EXPECT_THROW(build("CreateContainer cid=c1 bundle=/nonexistent/bundle"), kata::SystemError);
}

TEST(BuildRequest, OtherRequests) {
    const auto sb = req<grpc::CreateSandboxRequest>(
        "CreateSandbox hostname=h sandbox_id=s dns='nameserver 1.1.1.1' dns='search x'");
    EXPECT_EQ(sb.hostname(), "h");
    EXPECT_EQ(sb.sandbox_id(), "s");
    ASSERT_EQ(sb.dns_size(), 2);
    EXPECT_EQ(sb.dns(0), "nameserver 1.1.1.1");

    auto pull = build("PullImage image=127.0.0.1:5000/busybox:latest cid=c1 source_creds=u:p");
    EXPECT_EQ(pull.info->service, "grpc.Image");
    EXPECT_EQ(as<grpc::PullImageRequest>(pull).source_creds(), "u:p");
    EXPECT_EQ(pull.timeout.count(), 0);  // pulls may be slow: no timeout unless asked

    auto chk = build("Check");
    EXPECT_EQ(chk.info->service, "grpc.Health");
    EXPECT_EQ(chk.timeout, std::chrono::milliseconds(std::chrono::seconds(30)));
    EXPECT_EQ(build("Check timeout=5").timeout, std::chrono::milliseconds(5000));

    const auto w = req<grpc::WriteStreamRequest>("WriteStdin cid=c data='hi\\n\\x41'");
    EXPECT_EQ(w.data(), "hi\nA");
    const auto rd = req<grpc::ReadStreamRequest>("ReadStdout cid=c exec_id=e len=10");
    EXPECT_EQ(rd.len(), 10u);
    EXPECT_EQ(rd.exec_id(), "e");
    const auto tty = req<grpc::TtyWinResizeRequest>("TtyWinResize cid=c row=40 column=120");
    EXPECT_EQ(tty.row(), 40u);
    EXPECT_EQ(tty.column(), 120u);
    const auto dt = req<grpc::SetGuestDateTimeRequest>("SetGuestDateTime sec=100");
    EXPECT_EQ(dt.sec(), 100);
    EXPECT_EQ(dt.usec(), 0);
    EXPECT_GT(as<grpc::SetGuestDateTimeRequest>(build("SetGuestDateTime")).sec(), 1600000000);
    EXPECT_EQ(as<grpc::RemoveContainerRequest>(build("RemoveContainer cid=c wait=3")).timeout(),
              3u);
}

TEST(Commands, EveryListedCommandBuildsWithItsRequiredKeys) {
    TempDir dir;
    std::ofstream(dir.path() / "config.json") << R"({"ociVersion":"1.0.2"})";
    Context ctx;
    ctx.bundleDir = dir.path().string();
    for (const auto& c : commands()) {
        std::string text = c.name;
        for (const auto& k : c.keys) {
            if (k.required) text += " " + k.name + "=" + (k.name == "cmd" ? "ls" : "x");
        }
        if (c.name == "ExecProcess") text += " cmd=ls";
        SCOPED_TRACE(text);
        auto b = build(text, ctx);
        if (c.service.empty()) continue;
        ASSERT_NE(b.request, nullptr);
        ASSERT_NE(b.response, nullptr);
        // The method exists in the service the descriptor pool knows.
        const auto* svc =
            google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(c.service);
        ASSERT_NE(svc, nullptr);
        const auto* m = svc->FindMethodByName(c.method);
        ASSERT_NE(m, nullptr);
        EXPECT_EQ(m->input_type(), b.request->GetDescriptor());
        EXPECT_EQ(m->output_type(), b.response->GetDescriptor());
    }
    std::ostringstream list;
    printCommandList(list);
    EXPECT_NE(list.str().find("PullImage  (grpc.Image/PullImage)"), std::string::npos);
    EXPECT_NE(list.str().find("source_creds="), std::string::npos);
}

TEST(RunCommand, CallsAndPrintsJson) {
    FakeCaller caller;
    caller.answers.push_back([] {
        grpc::WaitProcessResponse r;
        r.set_status(3);
        return r.SerializeAsString();
    });
    std::ostringstream out;
    runCommand(parseCommand("WaitProcess cid=c1"), {}, caller, out);
    ASSERT_EQ(caller.calls.size(), 1u);
    EXPECT_EQ(caller.calls[0].service, "grpc.AgentService");
    EXPECT_EQ(caller.calls[0].method, "WaitProcess");
    EXPECT_EQ(caller.calls[0].timeout.count(), 0);
    grpc::WaitProcessRequest sent;
    ASSERT_TRUE(sent.ParseFromString(caller.calls[0].payload));
    EXPECT_EQ(sent.container_id(), "c1");
    EXPECT_EQ(out.str(), "{\"status\":3}\n");

    std::ostringstream out2;
    runCommand(parseCommand("StartContainer cid=c1"), {}, caller, out2);
    EXPECT_EQ(out2.str(), "{}\n");
}

TEST(RunCommand, RemoteErrorsPropagateWithTheirCode) {
    FakeCaller caller;
    caller.answers.push_back([]() -> std::string {
        throw kata::Error(kata::StatusCode::kNotFound, "container c1 not found");
    });
    std::ostringstream out;
    try {
        runCommand(parseCommand("StartContainer cid=c1"), {}, caller, out);
        FAIL();
    } catch (const kata::Error& e) {
        EXPECT_EQ(e.code(), kata::StatusCode::kNotFound);
    }
    EXPECT_EQ(out.str(), "");
}

std::function<std::string()> chunk(const std::string& data) {
    return [data] {
        grpc::ReadStreamResponse r;
        r.set_data(data);
        return r.SerializeAsString();
    };
}

TEST(RunCommand, ReadAllLoopsUntilEof) {
    FakeCaller caller;
    caller.answers.push_back(chunk("hel"));
    caller.answers.push_back(chunk("lo\n"));
    caller.answers.push_back(
        []() -> std::string { throw kata::Error(kata::StatusCode::kUnknown, "read stdout: EOF"); });
    std::ostringstream out;
    runCommand(parseCommand("ReadStdout cid=c1 all=true raw=true"), {}, caller, out);
    EXPECT_EQ(out.str(), "hello\n");
    EXPECT_EQ(caller.calls.size(), 3u);

    FakeCaller once;
    once.answers.push_back(chunk("hi"));
    std::ostringstream out2;
    runCommand(parseCommand("ReadStderr cid=c1"), {}, once, out2);
    EXPECT_EQ(out2.str(), "{\"data\":\"aGk=\"}\n");
    EXPECT_EQ(once.calls.size(), 1u);
    EXPECT_EQ(once.calls[0].method, "ReadStderr");

    // Without all=true an EOF error is a failure.
    FakeCaller eof;
    eof.answers.push_back(
        []() -> std::string { throw kata::Error(kata::StatusCode::kUnknown, "eof"); });
    std::ostringstream out3;
    EXPECT_THROW(runCommand(parseCommand("ReadStdout cid=c1"), {}, eof, out3), kata::Error);
}

TEST(RunCommand, LocalCommands) {
    FakeCaller caller;
    std::ostringstream out;
    runCommand(parseCommand("echo msg='hello there'"), {}, caller, out);
    runCommand(parseCommand("sleep ms=1"), {}, caller, out);
    EXPECT_EQ(out.str(), "hello there\n");
    EXPECT_TRUE(caller.calls.empty());
}

}  // namespace
