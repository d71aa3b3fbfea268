#include "kata/common/log.h"

#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>

namespace kata::log {
namespace {

struct State {
    std::mutex mu;
    std::string name = "kata";
    std::string source = "kata";
    std::atomic<int> level{static_cast<int>(Level::kInfo)};
    std::atomic<int> fd{2};
    Fields global;
};

State& state() {
    static State* s = new State();  // never destroyed: logging may run during exit
    return *s;
}

void appendEscaped(std::string& out, const std::string& s) {
    out.push_back('"');
    for (unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out.push_back(static_cast<char>(c));
                }
        }
    }
    out.push_back('"');
}

void appendField(std::string& out, const std::string& key, const std::string& value) {
    out.push_back(',');
    appendEscaped(out, key);
    out.push_back(':');
    appendEscaped(out, value);
}

std::string timestamp() {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char buf[64];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%09ldZ", ts.tv_nsec);
    return buf;
}

}  // namespace

const char* levelName(Level level) {
    switch (level) {
        case Level::kTrace:
            return "trace";
        case Level::kDebug:
            return "debug";
        case Level::kInfo:
            return "info";
        case Level::kWarn:
            return "warning";
        case Level::kError:
            return "error";
        case Level::kFatal:
            return "fatal";
    }
    return "info";
}

bool parseLevel(const std::string& text, Level* out) {
    static const std::pair<const char*, Level> table[] = {
        {"trace", Level::kTrace}, {"debug", Level::kDebug},    {"info", Level::kInfo},
        {"warn", Level::kWarn},   {"warning", Level::kWarn},   {"error", Level::kError},
        {"fatal", Level::kFatal}, {"critical", Level::kFatal}, {"panic", Level::kFatal},
    };
    for (auto& [name, level] : table) {
        if (text == name) {
            *out = level;
            return true;
        }
    }
    return false;
}

void init(const std::string& name, const std::string& source, Level level, int fd) {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    s.name = name;
    s.source = source;
    s.level = static_cast<int>(level);
    s.fd = fd;
}

void setLevel(Level level) { state().level = static_cast<int>(level); }
Level level() { return static_cast<Level>(state().level.load()); }
void setFd(int fd) { state().fd = fd; }

void setGlobalField(const std::string& key, const std::string& value) {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    s.global[key] = value;
}

void write(Level lvl, const std::string& subsystem, const std::string& msg, const Fields& fields) {
    State& s = state();
    if (static_cast<int>(lvl) < s.level.load()) return;
    std::string line;
    line.reserve(256);
    line += "{\"msg\":";
    appendEscaped(line, msg);
    appendField(line, "level", levelName(lvl));
    appendField(line, "ts", timestamp());
    {
        std::lock_guard<std::mutex> lock(s.mu);
        appendField(line, "name", s.name);
        line += ",\"pid\":" + std::to_string(getpid());
        appendField(line, "source", s.source);
        appendField(line, "subsystem", subsystem);
        for (auto& [k, v] : s.global) {
            if (!fields.count(k)) appendField(line, k, v);
        }
    }
    for (auto& [k, v] : fields) appendField(line, k, v);
    line += "}\n";
    int fd = s.fd.load();
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += n;
        left -= static_cast<size_t>(n);
    }
}

void Logger::emit(Level l, const std::string& msg, const Fields& extra) const {
    if (static_cast<int>(l) < state().level.load()) return;
    if (extra.empty()) {
        write(l, subsystem_, msg, fields_);
    } else {
        Fields f = fields_;
        for (auto& [k, v] : extra) f[k] = v;
        write(l, subsystem_, msg, f);
    }
}

}  // namespace kata::log
