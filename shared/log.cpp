#include "shared/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <cstdio>
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

}  // namespace

bool valid_log_level(const std::string& level) {
    static const char* levels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
    for (const char* l : levels)
        if (level == l) return true;
    return false;
}

void configure_logging(const LogSettings& settings) {
    if (!valid_log_level(settings.level)) {
        throw std::runtime_error("unknown log level '" + settings.level +
                                 "' (trace, debug, info, warn, error, critical, off)");
    }
    if (settings.format != "text" && settings.format != "json") {
        throw std::runtime_error("unknown log format '" + settings.format + "' (text or json)");
    }
    spdlog::sink_ptr sink;
    if (settings.file.empty()) {
        sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    } else {
        try {
            sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(settings.file);
        } catch (const spdlog::spdlog_ex& e) {
            throw std::runtime_error("cannot open log file " + settings.file + ": " + e.what());
        }
    }
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
    spdlog::set_default_logger(logger);
}

namespace {

spdlog::sink_ptr make_line_sink(const std::string& name, const std::string& file) {
    if (file.empty()) return std::make_shared<spdlog::sinks::stdout_sink_mt>();
    try {
        return std::make_shared<spdlog::sinks::basic_file_sink_mt>(file);
    } catch (const spdlog::spdlog_ex& e) {
        throw std::runtime_error("cannot open " + name + " file " + file + ": " + e.what());
    }
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

std::shared_ptr<spdlog::logger> make_line_logger(const std::string& name, const std::string& file) {
    spdlog::sink_ptr sink;
    if (file.empty()) {
        sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    } else {
        try {
            sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file);
        } catch (const spdlog::spdlog_ex& e) {
            throw std::runtime_error("cannot open " + name + " file " + file + ": " + e.what());
        }
    }
    auto logger = std::make_shared<spdlog::logger>(name, sink);
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::info);
    logger->flush_on(spdlog::level::info);
    return logger;
}

}  // namespace dingbridge
