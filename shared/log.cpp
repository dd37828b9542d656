#include "shared/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>

namespace dingbridge {

namespace {

// JSON formatting for spdlog: the message is escaped by a custom flag so that the pattern
// produces valid JSON whatever the message holds.
class JsonMessageFlag : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
        const std::string escaped = json_escape(std::string(msg.payload.data(), msg.payload.size()));
        dest.append(escaped.data(), escaped.data() + escaped.size());
    }
    std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonMessageFlag>(); }
};

// spdlog's file sink creates every missing directory on the way to its file: a mistyped
// directory would be created (as whoever runs the program, root at install time) and the lines
// would go where nobody looks. Refused here, the way opening the file itself is.
spdlog::sink_ptr open_file_sink(const std::string& what, const std::string& file) {
    if (const std::string problem = log_directory_problem(file); !problem.empty())
        throw std::runtime_error("cannot open " + what + " " + file + ": " + problem);
    try {
        return std::make_shared<spdlog::sinks::basic_file_sink_mt>(file);
    } catch (const spdlog::spdlog_ex& e) {
        throw std::runtime_error("cannot open " + what + " " + file + ": " + e.what());
    }
}

}  // namespace

std::string log_directory_problem(const std::string& file) {
    const std::filesystem::path dir = std::filesystem::path(file).parent_path();
    if (dir.empty()) return {};  // in the working directory
    std::error_code ec;
    const auto type = std::filesystem::status(dir, ec).type();
    if (type == std::filesystem::file_type::not_found) return "directory " + dir.string() + " does not exist";
    // Unreadable parents (ec set, type unknown) are left to the open, which names the error.
    if (!ec && type != std::filesystem::file_type::directory) return dir.string() + " is not a directory";
    return {};
}

bool valid_log_level(const std::string& level) {
    static const char* levels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
    for (const char* l : levels)
        if (level == l) return true;
    return false;
}

std::shared_ptr<spdlog::logger> make_logger(const LogSettings& settings) {
    if (!valid_log_level(settings.level)) {
        throw std::runtime_error("unknown log level '" + settings.level +
                                 "' (trace, debug, info, warn, error, critical, off)");
    }
    if (settings.format != "text" && settings.format != "json") {
        throw std::runtime_error("unknown log format '" + settings.format + "' (text or json)");
    }
    spdlog::sink_ptr sink = settings.file.empty() ? std::make_shared<spdlog::sinks::stderr_sink_mt>()
                                                  : open_file_sink("log file", settings.file);
    auto logger = std::make_shared<spdlog::logger>("dingbridge", sink);
    if (settings.format == "json") {
        auto formatter = std::make_unique<spdlog::pattern_formatter>();
        formatter->add_flag<JsonMessageFlag>('*').set_pattern(
            R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","msg":"%*"})");
        logger->set_formatter(std::move(formatter));
    } else {
        logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %l %v");
    }
    logger->set_level(spdlog::level::from_str(settings.level));
    logger->flush_on(spdlog::level::info);
    return logger;
}

void install_logger(const std::shared_ptr<spdlog::logger>& prepared) {
    // The default logger's one sink: it holds the current destination (a sink that formats on
    // its own, see make_logger), and dist_sink_mt swaps it under the lock every line takes.
    static std::shared_ptr<spdlog::sinks::dist_sink_mt> destination;
    if (!destination) {
        destination = std::make_shared<spdlog::sinks::dist_sink_mt>(prepared->sinks());
        auto logger = std::make_shared<spdlog::logger>(prepared->name(), destination);
        logger->set_level(prepared->level());
        logger->flush_on(prepared->flush_level());
        spdlog::set_default_logger(std::move(logger));  // once, before any other thread logs
        return;
    }
    spdlog::logger* logger = spdlog::default_logger_raw();
    destination->set_sinks(prepared->sinks());
    logger->set_level(prepared->level());  // atomics
    logger->flush_on(prepared->flush_level());
}

void configure_logging(const LogSettings& settings) { install_logger(make_logger(settings)); }

void reopen_log(const LogSettings& settings, const std::string& who) {
    try {
        configure_logging(settings);
        spdlog::info("{}: log reopened ({})", who, settings.file.empty() ? "standard error" : settings.file);
    } catch (const std::exception& e) {
        spdlog::error("{}: cannot reopen the log, still writing to the old file: {}", who, e.what());
    }
}

namespace {

spdlog::sink_ptr make_line_sink(const std::string& name, const std::string& file) {
    if (file.empty()) return std::make_shared<spdlog::sinks::stdout_sink_mt>();
    return open_file_sink(name + " log file", file);
}

}  // namespace

ReopenableLineLog::ReopenableLineLog(const std::string& name, const std::string& file) : name_(name), file_(file) {
    auto dist = std::make_shared<spdlog::sinks::dist_sink_mt>();
    dist->add_sink(make_line_sink(name, file));
    switch_ = dist;
    logger_ = std::make_shared<spdlog::logger>(name, switch_);
    logger_->set_pattern("%v");
    logger_->set_level(spdlog::level::info);
    logger_->flush_on(spdlog::level::info);
}

void ReopenableLineLog::reopen(const std::string& file) {
    auto fresh = make_line_sink(name_, file);  // throws: the old destination stays
    fresh->set_pattern("%v");
    std::static_pointer_cast<spdlog::sinks::dist_sink_mt>(switch_)->set_sinks({fresh});
    file_ = file;
}

}  // namespace dingbridge
