#include "commands.h"

#include <google/protobuf/empty.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/time.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>
#include <ostream>
#include <thread>

#include "agent/agent.pb.h"
#include "agent/health.pb.h"
#include "agent/image.pb.h"
#include "kata/common/error.h"
#include "kata/oci/spec.h"

namespace kata::agentctl {

using google::protobuf::Message;

namespace {

constexpr const char* kAgentService = "grpc.AgentService";
constexpr const char* kHealthService = "grpc.Health";
constexpr const char* kImageService = "grpc.Image";

[[noreturn]] void invalid(const std::string& msg) {
    throw Error(StatusCode::kInvalidArgument, msg);
}

}  // namespace

// The validated key=value arguments of one command.
class Args {
  public:
    Args(const CommandInfo& info, const Invocation& inv) : info_(info), inv_(inv) {
        for (const auto& arg : inv.args) {
            const std::string& key = arg.first;
            const KeyInfo* k = find(key);
            if (k == nullptr) {
                std::string known;
                for (const auto& ki : info.keys) known += (known.empty() ? "" : ", ") + ki.name;
                invalid("command " + info.name + ": unknown key \"" + key +
                        "\" (keys: " + (known.empty() ? "none" : known) + ")");
            }
            if (!k->repeated && std::count_if(inv.args.begin(), inv.args.end(),
                                              [&](auto& a) { return a.first == key; }) > 1) {
                invalid("command " + info.name + ": key " + key + " given more than once");
            }
        }
        for (const auto& k : info.keys) {
            if (k.required && !has(k.name)) {
                invalid("command " + info.name + ": missing key " + k.name + "=");
            }
        }
    }

    bool has(const std::string& key) const {
        return std::any_of(inv_.args.begin(), inv_.args.end(),
                           [&](auto& a) { return a.first == key; });
    }

    // The value given, else the key's default, else "".
    std::string str(const std::string& key) const {
        for (const auto& [k, v] : inv_.args) {
            if (k == key) return v;
        }
        const KeyInfo* ki = find(key);
        return ki != nullptr ? ki->defaultValue : "";
    }

    std::vector<std::string> all(const std::string& key) const {
        std::vector<std::string> out;
        for (const auto& [k, v] : inv_.args) {
            if (k == key) out.push_back(v);
        }
        return out;
    }

    bool boolean(const std::string& key) const {
        std::string v = str(key);
        if (v == "true" || v == "1" || v == "yes") return true;
        if (v.empty() || v == "false" || v == "0" || v == "no") return false;
        fail(key, "expected true or false, got \"" + v + "\"");
    }

    template <class T>
    T number(const std::string& key) const {
        std::string v = str(key);
        if (v.empty()) return T{};
        T out{};
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
        if (ec == std::errc::result_out_of_range) fail(key, "\"" + v + "\" is out of range");
        if (ec != std::errc() || end != v.data() + v.size()) {
            fail(key, "expected a number, got \"" + v + "\"");
        }
        return out;
    }

    [[noreturn]] void fail(const std::string& key, const std::string& why) const {
        invalid("command " + info_.name + ": key " + key + ": " + why);
    }

    const std::string& command() const { return info_.name; }

  private:
    const KeyInfo* find(const std::string& key) const {
        for (const auto& k : info_.keys) {
            if (k.name == key) return &k;
        }
        return nullptr;
    }

    const CommandInfo& info_;
    const Invocation& inv_;
};

std::vector<std::string> splitWords(const std::string& text) {
    std::vector<std::string> words;
    std::string cur;
    bool inWord = false;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == ' ' || c == '\t' || c == '\n') {
            if (inWord) words.push_back(std::move(cur));
            cur.clear();
            inWord = false;
            continue;
        }
        inWord = true;
        if (c == '\'') {
            size_t end = text.find('\'', i + 1);
            if (end == std::string::npos) invalid("unterminated ' quote in: " + text);
            cur.append(text, i + 1, end - i - 1);
            i = end;
        } else if (c == '"') {
            size_t j = i + 1;
            for (;; ++j) {
                if (j >= text.size()) invalid("unterminated \" quote in: " + text);
                if (text[j] == '"') break;
                if (text[j] == '\\' && j + 1 < text.size() &&
                    std::string_view("\"\\$`").find(text[j + 1]) != std::string_view::npos) {
                    cur += text[++j];
                } else {
                    cur += text[j];
                }
            }
            i = j;
        } else if (c == '\\') {
            if (i + 1 >= text.size()) invalid("trailing backslash in: " + text);
            cur += text[++i];
        } else {
            cur += c;
        }
    }
    if (inWord) words.push_back(std::move(cur));
    return words;
}

Invocation parseCommand(const std::string& text) {
    std::vector<std::string> words = splitWords(text);
    if (words.empty()) invalid("empty command");
    Invocation inv;
    inv.command = words[0];
    for (size_t i = 1; i < words.size(); ++i) {
        auto eq = words[i].find('=');
        if (eq == std::string::npos || eq == 0) {
            invalid("command " + inv.command + ": argument \"" + words[i] +
                    "\" is not of the form key=value");
        }
        inv.args.emplace_back(words[i].substr(0, eq), words[i].substr(eq + 1));
    }
    return inv;
}

int parseSignal(const std::string& text) {
    static const std::pair<const char*, int> kSignals[] = {
        {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"ILL", SIGILL},
        {"TRAP", SIGTRAP},     {"ABRT", SIGABRT}, {"BUS", SIGBUS},     {"FPE", SIGFPE},
        {"KILL", SIGKILL},     {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},   {"USR2", SIGUSR2},
        {"PIPE", SIGPIPE},     {"ALRM", SIGALRM}, {"TERM", SIGTERM},   {"CHLD", SIGCHLD},
        {"CONT", SIGCONT},     {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},
        {"TTOU", SIGTTOU},     {"URG", SIGURG},   {"XCPU", SIGXCPU},   {"XFSZ", SIGXFSZ},
        {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
        {"PWR", SIGPWR},       {"SYS", SIGSYS},
    };
    int num = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), num);
    if (!text.empty() && ec == std::errc() && end == text.data() + text.size()) {
        if (num <= 0 || num > 64) invalid("signal " + text + " is out of range 1-64");
        return num;
    }
    std::string name = text;
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return std::toupper(c); });
    if (name.rfind("SIG", 0) == 0) name = name.substr(3);
    for (const auto& [n, v] : kSignals) {
        if (name == n) return v;
    }
    invalid("unknown signal \"" + text + "\"");
}

std::string unescapeData(const std::string& text) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\\' || i + 1 >= text.size()) {
            out += text[i];
            continue;
        }
        char c = text[++i];
        switch (c) {
            case 'n':
                out += '\n';
                break;
            case 't':
                out += '\t';
                break;
            case 'r':
                out += '\r';
                break;
            case '0':
                out += '\0';
                break;
            case '\\':
                out += '\\';
                break;
            case 'x': {
                unsigned v = 0;
                if (i + 2 >= text.size()) invalid("bad \\x escape in data: " + text);
                auto [end, ec] = std::from_chars(text.data() + i + 1, text.data() + i + 3, v, 16);
                if (ec != std::errc() || end != text.data() + i + 3) {
                    invalid("bad \\x escape in data: " + text);
                }
                out += static_cast<char>(v);
                i += 2;
                break;
            }
            default:
                out += '\\';
                out += c;
        }
    }
    return out;
}

namespace {

using Builder = std::function<std::unique_ptr<Message>(const Args&, const Context&)>;
using ResponseFactory = std::function<std::unique_ptr<Message>()>;

struct CommandDef {
    CommandInfo info;
    Builder build;
    ResponseFactory response;
};

template <class T>
ResponseFactory respond() {
    return [] { return std::make_unique<T>(); };
}

KeyInfo cidKey() { return {"cid", "container id", "", true}; }
KeyInfo execKey() { return {"exec_id", "process id (defaults to cid: the container's init)"}; }
KeyInfo timeoutKey() { return {"timeout", "call timeout in seconds (0: none)"}; }

std::string execIdOf(const Args& a) { return a.has("exec_id") ? a.str("exec_id") : a.str("cid"); }

grpc::Spec bundleSpec(const Args& a, const Context& ctx) {
    namespace fs = std::filesystem;
    std::string bundle = a.has("bundle") ? a.str("bundle") : ctx.bundleDir;
    std::string specPath = a.str("spec");
    if (specPath.empty()) {
        if (bundle.empty()) {
            invalid("command " + a.command() +
                    ": no OCI spec: give --bundle-dir, bundle= or spec=<config.json>");
        }
        specPath = (fs::path(bundle) / "config.json").string();
    }
    grpc::Spec spec = oci::loadSpecFile(specPath);
    if (a.has("rootfs")) {
        spec.mutable_root()->set_path(a.str("rootfs"));
    } else if (!bundle.empty()) {
        // root.path is relative to the bundle in OCI; the agent wants an absolute path.
        fs::path root =
            spec.root().path().empty() ? fs::path("rootfs") : fs::path(spec.root().path());
        if (root.is_relative()) root = fs::absolute(fs::path(bundle) / root).lexically_normal();
        spec.mutable_root()->set_path(root.string());
    }
    return spec;
}

std::vector<CommandDef> makeCommands() {
    std::vector<CommandDef> defs;
    auto add = [&](CommandInfo info, Builder b, ResponseFactory r) {
        if (!info.service.empty()) info.keys.push_back(timeoutKey());
        defs.push_back({std::move(info), std::move(b), std::move(r)});
    };

    add(
        {"Check",
         "health check of the agent",
         kHealthService,
         "Check",
         {{"service", "service name to check"}}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::CheckRequest>();
            r->set_service(a.str("service"));
            return r;
        },
        respond<grpc::HealthCheckResponse>());

    add(
        {"Version",
         "agent and protocol version",
         kHealthService,
         "Version",
         {{"service", "service name"}}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::CheckRequest>();
            r->set_service(a.str("service"));
            return r;
        },
        respond<grpc::VersionCheckResponse>());

    add(
        {"GetGuestDetails",
         "agent details, memory block size",
         kAgentService,
         "GetGuestDetails",
         {{"mem_block_size", "ask for the memory block size", "true"},
          {"mem_hotplug_probe", "ask whether memory probe hotplug works", "false"}}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::GuestDetailsRequest>();
            r->set_mem_block_size(a.boolean("mem_block_size"));
            r->set_mem_hotplug_probe(a.boolean("mem_hotplug_probe"));
            return r;
        },
        respond<grpc::GuestDetailsResponse>());

    add(
        {"CreateSandbox",
         "create the sandbox",
         kAgentService,
         "CreateSandbox",
         {{"hostname", "guest hostname"},
          {"sandbox_id", "sandbox id"},
          {"dns", "resolv.conf line, e.g. dns='nameserver 10.0.0.1'", "", false, true},
          {"sandbox_pidns", "containers share one pid namespace", "false"},
          {"guest_hook_path", "guest directory with OCI hooks"}}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::CreateSandboxRequest>();
            r->set_hostname(a.str("hostname"));
            r->set_sandbox_id(a.str("sandbox_id"));
            for (const auto& d : a.all("dns")) r->add_dns(d);
            r->set_sandbox_pidns(a.boolean("sandbox_pidns"));
            r->set_guest_hook_path(a.str("guest_hook_path"));
            return r;
        },
        respond<google::protobuf::Empty>());

    add(
        {"DestroySandbox", "destroy the sandbox", kAgentService, "DestroySandbox", {}},
        [](const Args&, const Context&) { return std::make_unique<grpc::DestroySandboxRequest>(); },
        respond<google::protobuf::Empty>());

    add(
        {"CreateContainer",
         "create a container from a bundle's config.json (root.path made absolute)",
         kAgentService,
         "CreateContainer",
         {cidKey(),
          execKey(),
          {"bundle", "bundle directory (default: --bundle-dir)"},
          {"spec", "config.json path (default: <bundle>/config.json)"},
          {"rootfs", "root.path to send, as the guest sees it"},
          {"sandbox_pidns", "join the sandbox pid namespace", "false"}}},
        [](const Args& a, const Context& ctx) {
            auto r = std::make_unique<grpc::CreateContainerRequest>();
            r->set_container_id(a.str("cid"));
            r->set_exec_id(execIdOf(a));
            *r->mutable_oci() = bundleSpec(a, ctx);
            r->set_sandbox_pidns(a.boolean("sandbox_pidns"));
            return r;
        },
        respond<google::protobuf::Empty>());

    add(
        {"StartContainer",
         "start a created container",
         kAgentService,
         "StartContainer",
         {cidKey()}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::StartContainerRequest>();
            r->set_container_id(a.str("cid"));
            return r;
        },
        respond<google::protobuf::Empty>());

    add(
        {"RemoveContainer",
         "kill, wait for and remove a container",
         kAgentService,
         "RemoveContainer",
         {cidKey(), {"wait", "seconds the agent waits for the processes (0: forever)", "0"}}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::RemoveContainerRequest>();
            r->set_container_id(a.str("cid"));
            r->set_timeout(a.number<uint32_t>("wait"));
            return r;
        },
        respond<google::protobuf::Empty>());

    add(
        {"ExecProcess",
         "run a new process in a container",
         kAgentService,
         "ExecProcess",
         {cidKey(),
          {"exec_id", "id of the new process", "", true},
          {"cmd", "command line, split like a shell: cmd='sh -c \"echo hi\"'"},
          {"arg", "one argument, repeatable (instead of cmd=)", "", false, true},
          {"env", "NAME=value, repeatable", "", false, true},
          {"cwd", "working directory", "/"},
          {"uid", "user id", "0"},
          {"gid", "group id", "0"},
          {"terminal", "allocate a terminal", "false"}}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::ExecProcessRequest>();
            r->set_container_id(a.str("cid"));
            r->set_exec_id(a.str("exec_id"));
            auto* p = r->mutable_process();
            if (a.has("cmd") && a.has("arg")) a.fail("cmd", "give either cmd= or arg=, not both");
            std::vector<std::string> argv = a.has("cmd") ? splitWords(a.str("cmd")) : a.all("arg");
            if (argv.empty()) a.fail("cmd", "no command given (cmd= or arg=)");
            for (auto& s : argv) p->add_args(s);
            std::vector<std::string> env = a.all("env");
            if (env.empty())
                env.push_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
            for (auto& e : env) p->add_env(e);
            p->set_cwd(a.str("cwd"));
            p->mutable_user()->set_uid(a.number<uint32_t>("uid"));
            p->mutable_user()->set_gid(a.number<uint32_t>("gid"));
            p->set_terminal(a.boolean("terminal"));
            return r;
        },
        respond<google::protobuf::Empty>());

    add(
        {"SignalProcess",
         "send a signal to a process (exec_id=\"\" : every process of the container)",
         kAgentService,
         "SignalProcess",
         {cidKey(), execKey(), {"signal", "number or name (9, KILL, SIGTERM)", "SIGKILL"}}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::SignalProcessRequest>();
            r->set_container_id(a.str("cid"));
            r->set_exec_id(execIdOf(a));
            try {
                r->set_signal(static_cast<uint32_t>(parseSignal(a.str("signal"))));
            } catch (const Error& e) {
                a.fail("signal", e.what());
            }
            return r;
        },
        respond<google::protobuf::Empty>());

    add(
        {"WaitProcess",
         "wait for a process to exit; prints its status",
         kAgentService,
         "WaitProcess",
         {cidKey(), execKey()},
         true},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::WaitProcessRequest>();
            r->set_container_id(a.str("cid"));
            r->set_exec_id(execIdOf(a));
            return r;
        },
        respond<grpc::WaitProcessResponse>());

    add(
        {"WriteStdin",
         "write to a process's stdin",
         kAgentService,
         "WriteStdin",
         {cidKey(),
          execKey(),
          {"data", "text; \\n \\t \\r \\0 \\\\ \\xHH are interpreted", "", true}}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::WriteStreamRequest>();
            r->set_container_id(a.str("cid"));
            r->set_exec_id(execIdOf(a));
            r->set_data(unescapeData(a.str("data")));
            return r;
        },
        respond<grpc::WriteStreamResponse>());

    add(
        {"CloseStdin",
         "close a process's stdin",
         kAgentService,
         "CloseStdin",
         {cidKey(), execKey()}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::CloseStdinRequest>();
            r->set_container_id(a.str("cid"));
            r->set_exec_id(execIdOf(a));
            return r;
        },
        respond<google::protobuf::Empty>());

    for (const char* name : {"ReadStdout", "ReadStderr"}) {
        add(
            {name,
             std::string("read from a process's ") +
                 (std::string(name) == "ReadStdout" ? "stdout" : "stderr"),
             kAgentService,
             name,
             {cidKey(),
              execKey(),
              {"len", "bytes to read at most per call", "1024"},
              {"all", "read until end of file", "false"},
              {"raw", "write the bytes to stdout instead of JSON", "false"}},
             true},
            [](const Args& a, const Context&) {
                auto r = std::make_unique<grpc::ReadStreamRequest>();
                r->set_container_id(a.str("cid"));
                r->set_exec_id(execIdOf(a));
                r->set_len(a.number<uint32_t>("len"));
                if (r->len() == 0) a.fail("len", "must be at least 1");
                return r;
            },
            respond<grpc::ReadStreamResponse>());
    }

    add(
        {"TtyWinResize",
         "resize a process's terminal",
         kAgentService,
         "TtyWinResize",
         {cidKey(), execKey(), {"row", "rows", "24"}, {"column", "columns", "80"}}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::TtyWinResizeRequest>();
            r->set_container_id(a.str("cid"));
            r->set_exec_id(execIdOf(a));
            r->set_row(a.number<uint32_t>("row"));
            r->set_column(a.number<uint32_t>("column"));
            return r;
        },
        respond<google::protobuf::Empty>());

    add(
        {"StatsContainer",
         "cgroup and network statistics of a container",
         kAgentService,
         "StatsContainer",
         {cidKey()}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::StatsContainerRequest>();
            r->set_container_id(a.str("cid"));
            return r;
        },
        respond<grpc::StatsContainerResponse>());

    add(
        {"PauseContainer", "freeze a container", kAgentService, "PauseContainer", {cidKey()}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::PauseContainerRequest>();
            r->set_container_id(a.str("cid"));
            return r;
        },
        respond<google::protobuf::Empty>());

    add(
        {"ResumeContainer", "thaw a container", kAgentService, "ResumeContainer", {cidKey()}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::ResumeContainerRequest>();
            r->set_container_id(a.str("cid"));
            return r;
        },
        respond<google::protobuf::Empty>());

    add(
        {"ListInterfaces", "guest network interfaces", kAgentService, "ListInterfaces", {}},
        [](const Args&, const Context&) { return std::make_unique<grpc::ListInterfacesRequest>(); },
        respond<grpc::Interfaces>());

    add(
        {"ListRoutes", "guest routes", kAgentService, "ListRoutes", {}},
        [](const Args&, const Context&) { return std::make_unique<grpc::ListRoutesRequest>(); },
        respond<grpc::Routes>());

    add(
        {"SetGuestDateTime",
         "set the guest clock (default: this host's time)",
         kAgentService,
         "SetGuestDateTime",
         {{"sec", "seconds since the epoch"}, {"usec", "microseconds"}}},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::SetGuestDateTimeRequest>();
            struct timeval tv {};
            ::gettimeofday(&tv, nullptr);
            r->set_sec(a.has("sec") ? a.number<int64_t>("sec") : tv.tv_sec);
            r->set_usec(a.has("usec") ? a.number<int64_t>("usec")
                                      : (a.has("sec") ? 0 : tv.tv_usec));
            return r;
        },
        respond<google::protobuf::Empty>());

    add(
        {"GetOOMEvent",
         "wait for the next out-of-memory event",
         kAgentService,
         "GetOOMEvent",
         {},
         true},
        [](const Args&, const Context&) { return std::make_unique<grpc::GetOOMEventRequest>(); },
        respond<grpc::OOMEvent>());

    add(
        {"GetMetrics", "agent metrics (Prometheus text)", kAgentService, "GetMetrics", {}},
        [](const Args&, const Context&) { return std::make_unique<grpc::GetMetricsRequest>(); },
        respond<grpc::Metrics>());

    add(
        {"PullImage",
         "pull an image in the guest and unpack it for a container",
         kImageService,
         "PullImage",
         {{"image", "image reference, e.g. 127.0.0.1:5000/busybox:latest", "", true},
          {"cid", "container id the bundle is unpacked for"},
          {"source_creds", "registry credentials user:password"}},
         true},
        [](const Args& a, const Context&) {
            auto r = std::make_unique<grpc::PullImageRequest>();
            r->set_image(a.str("image"));
            r->set_container_id(a.str("cid"));
            r->set_source_creds(a.str("source_creds"));
            return r;
        },
        respond<grpc::PullImageResponse>());

    add({"sleep", "pause between commands (local)", "", "", {{"ms", "milliseconds", "1000"}}},
        nullptr, nullptr);
    add({"echo", "print a message (local)", "", "", {{"msg", "text to print"}}}, nullptr, nullptr);
    return defs;
}

const std::vector<CommandDef>& commandDefs() {
    static const std::vector<CommandDef> defs = makeCommands();
    return defs;
}

const CommandDef& findDef(const std::string& name) {
    for (const auto& d : commandDefs()) {
        if (d.info.name == name) return d;
    }
    invalid("unknown command \"" + name + "\" (kata-agent-ctl list shows the commands)");
}

std::string toJson(const Message& m) {
    google::protobuf::util::JsonPrintOptions opts;
    opts.preserve_proto_field_names = true;
    opts.always_print_primitive_fields = true;
    std::string out;
    auto st = google::protobuf::util::MessageToJsonString(m, &out, opts);
    if (!st.ok()) throw Error(StatusCode::kInternal, "print response: " + st.ToString());
    return out;
}

}  // namespace

const std::vector<CommandInfo>& commands() {
    static const std::vector<CommandInfo> infos = [] {
        std::vector<CommandInfo> out;
        for (const auto& d : commandDefs()) out.push_back(d.info);
        return out;
    }();
    return infos;
}

const CommandInfo* findCommand(const std::string& name) {
    for (const auto& c : commands()) {
        if (c.name == name) return &c;
    }
    return nullptr;
}

void printCommandList(std::ostream& out) {
    for (const auto& c : commands()) {
        out << c.name;
        if (!c.service.empty()) out << "  (" << c.service << "/" << c.method << ")";
        out << "\n    " << c.help << "\n";
        for (const auto& k : c.keys) {
            out << "    " << k.name << "=";
            out << "  " << k.help;
            if (k.required) out << " [required]";
            if (k.repeated) out << " [repeatable]";
            if (!k.defaultValue.empty()) out << " [default " << k.defaultValue << "]";
            out << "\n";
        }
    }
}

BuiltRequest buildRequest(const Invocation& inv, const Context& ctx) {
    const CommandDef& def = findDef(inv.command);
    Args args(def.info, inv);
    BuiltRequest out;
    out.info = &def.info;
    if (def.build) out.request = def.build(args, ctx);
    if (def.response) out.response = def.response();
    if (args.has("timeout")) {
        out.timeout = std::chrono::seconds(args.number<uint32_t>("timeout"));
    } else {
        out.timeout = def.info.blocking ? std::chrono::milliseconds(0) : ctx.timeout;
    }
    return out;
}

void runCommand(const Invocation& inv, const Context& ctx, RpcCaller& caller, std::ostream& out) {
    BuiltRequest req = buildRequest(inv, ctx);
    const CommandInfo& info = *req.info;
    Args args(info, inv);
    if (info.name == "sleep") {
        std::this_thread::sleep_for(std::chrono::milliseconds(args.number<uint32_t>("ms")));
        return;
    }
    if (info.name == "echo") {
        out << args.str("msg") << "\n";
        return;
    }
    auto callOnce = [&](Message* resp) {
        std::string payload =
            caller.call(info.service, info.method, req.request->SerializeAsString(), req.timeout);
        if (!resp->ParseFromString(payload)) {
            throw Error(StatusCode::kInternal, "parse response of " + info.service + "/" +
                                                   info.method + ": invalid protobuf payload");
        }
    };
    const bool isRead = info.name == "ReadStdout" || info.name == "ReadStderr";
    if (!isRead) {
        callOnce(req.response.get());
        out << toJson(*req.response) << "\n";
        return;
    }
    const bool all = args.boolean("all");
    const bool raw = args.boolean("raw");
    grpc::ReadStreamResponse total;
    for (;;) {
        grpc::ReadStreamResponse chunk;
        try {
            callOnce(&chunk);
        } catch (const Error& e) {
            // The agent reports the end of a stream as an error once the data is drained.
            std::string msg = e.what();
            std::transform(msg.begin(), msg.end(), msg.begin(),
                           [](unsigned char c) { return std::tolower(c); });
            if (all && msg.find("eof") != std::string::npos) break;
            throw;
        }
        if (chunk.data().empty()) break;
        total.mutable_data()->append(chunk.data());
        if (!all) break;
    }
    if (raw) {
        out << total.data();
        out.flush();
    } else {
        out << toJson(total) << "\n";
    }
}

}  // namespace kata::agentctl
