#pragma once
// Logging setup (spdlog) shared by both programs.
//
// `configure_logging` sets up the process-wide default logger: text ("2026-01-01 12:00:00.000
// info message") or JSON lines ({"time":..,"level":..,"msg":..}), to stderr or a file, at a given
// level. Call it once at start and again on reload. Messages must never contain secrets: code
// logs names and references, never values.
//
// spdlog's default logger is installed once and then changed in place (destination, format,
// level): `spdlog::info` and friends reach it through a raw pointer, so replacing it with
// `spdlog::set_default_logger` while another thread logs frees the logger under that thread.

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "shared/json_escape.h"

namespace dingbridge {

struct LogSettings {
    std::string level = "info";   // trace, debug, info, warn, error, critical, off
    std::string format = "text";  // text or json
    std::string file;             // empty = stderr
};

// Throws std::runtime_error for an unknown level/format or a file that cannot be opened,
// including one whose directory does not exist (never created); the running logger stays then.
// Safe while other threads log.
void configure_logging(const LogSettings& settings);
// What configure_logging applies, made but not applied (throws like it): a reload opens the new
// log first and applies it with install_logger only once nothing else can fail.
std::shared_ptr<spdlog::logger> make_logger(const LogSettings& settings);
// Gives the process-wide logger `prepared`'s destination, format and level. Never throws; safe
// while other threads log (not while another thread calls it).
void install_logger(const std::shared_ptr<spdlog::logger>& prepared);

// Log rotation where the configuration stays as it is (the agent's run and web on SIGHUP, a
// proxy reload that failed): the log file opened again by name (logrotate moved it), then
// "<who>: log reopened (FILE)" in it, or an error in the old one. Never throws.
void reopen_log(const LogSettings& settings, const std::string& who);

// Why a log file cannot be created where it is named ("directory /x does not exist", "/x is not
// a directory"), or empty. Log files are opened in existing directories only.
std::string log_directory_problem(const std::string& file);

// A logger that prints the message as is (one line per call), e.g. an access log ("access":
// errors say "cannot open access log file ..."), to stdout when `file` is empty, whose
// destination can be switched while other threads log through it (log rotation: SIGHUP reopens
// the file, or opens a new one). Thread-safe.
class ReopenableLineLog {
public:
    ReopenableLineLog(const std::string& name, const std::string& file);  // throws like configure_logging
    const std::shared_ptr<spdlog::logger>& logger() const { return logger_; }
    // Opens `file` (empty = stdout) and switches to it; on failure throws and keeps logging to
    // the previous destination.
    void reopen(const std::string& file);
    const std::string& file() const { return file_; }

private:
    std::string name_;
    std::string file_;
    std::shared_ptr<spdlog::sinks::sink> switch_;  // a dist_sink holding the current file sink
    std::shared_ptr<spdlog::logger> logger_;
};

bool valid_log_level(const std::string& level);

// A warning that can repeat as fast as an attacker makes it (an accept failing for want of
// descriptors) logged at most once per `every`, then with the count of those left out. Not
// thread-safe: one per thread or per event loop.
class ThrottledWarning {
public:
    explicit ThrottledWarning(std::chrono::steady_clock::duration every = std::chrono::minutes(1)) : every_(every) {}
    template <class... Args>
    void warn(spdlog::format_string_t<Args...> fmt, Args&&... args) {
        const auto now = std::chrono::steady_clock::now();
        if (logged_ && now - last_ < every_) {
            ++left_out_;
            return;
        }
        // Through spdlog alone: formatting here with fmt::format made UBSan's vptr check see a
        // buffer type new to it just when descriptors ran out, and its check needs one (a false
        // "invalid vptr" under the sanitizers).
        spdlog::warn(fmt, std::forward<Args>(args)...);
        if (left_out_ > 0) spdlog::warn("(the warning above came {} more times since it was last logged)", left_out_);
        logged_ = true;
        last_ = now;
        left_out_ = 0;
    }

private:
    std::chrono::steady_clock::duration every_;
    std::chrono::steady_clock::time_point last_{};
    bool logged_ = false;
    std::size_t left_out_ = 0;
};

}  // namespace dingbridge
