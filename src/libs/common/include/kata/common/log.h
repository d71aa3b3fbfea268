// Structured logging in Kata's format: one JSON object a line with msg, level, ts, name, pid,
// source, subsystem and any context fields, so tools written for Kata's logs parse ours.
#pragma once

#include <atomic>
#include <map>
#include <string>
#include <utility>

namespace kata::log {

enum class Level { kTrace = 0, kDebug, kInfo, kWarn, kError, kFatal };

const char* levelName(Level level);
// Parses "trace", "debug", "info", "warn"/"warning", "error", "fatal"/"critical".
bool parseLevel(const std::string& text, Level* out);

using Fields = std::map<std::string, std::string>;

// Process-wide settings: the program name ("kata-agent"), the source ("agent", "runtime"),
// the minimum level and the fd lines go to (stderr by default).
void init(const std::string& name, const std::string& source, Level level = Level::kInfo,
          int fd = 2);
void setLevel(Level level);
Level level();
void setFd(int fd);
// Fields added to every line from now on (e.g. sandbox id).
void setGlobalField(const std::string& key, const std::string& value);

// Writes one line; thread safe; a single write(2) per line so lines never interleave.
void write(Level level, const std::string& subsystem, const std::string& msg,
           const Fields& fields = {});

// A logger bound to a subsystem and context fields.
class Logger {
  public:
    explicit Logger(std::string subsystem, Fields fields = {})
        : subsystem_(std::move(subsystem)), fields_(std::move(fields)) {}
    Logger with(const std::string& key, const std::string& value) const {
        Fields f = fields_;
        f[key] = value;
        return Logger(subsystem_, std::move(f));
    }
    void trace(const std::string& msg, const Fields& extra = {}) const {
        emit(Level::kTrace, msg, extra);
    }
    void debug(const std::string& msg, const Fields& extra = {}) const {
        emit(Level::kDebug, msg, extra);
    }
    void info(const std::string& msg, const Fields& extra = {}) const {
        emit(Level::kInfo, msg, extra);
    }
    void warn(const std::string& msg, const Fields& extra = {}) const {
        emit(Level::kWarn, msg, extra);
    }
    void error(const std::string& msg, const Fields& extra = {}) const {
        emit(Level::kError, msg, extra);
    }
    bool enabled(Level l) const { return l >= level(); }

  private:
    void emit(Level l, const std::string& msg, const Fields& extra) const;
    std::string subsystem_;
    Fields fields_;
};

}  // namespace kata::log
