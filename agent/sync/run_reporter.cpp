#include "agent/sync/run_reporter.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>

#include "agent/config.h"
#include "shared/enum_table.h"

namespace dingbridge::agent {

constexpr auto kRunStatusNames =
    enum_table<RunStatus::deferred>({"running", "succeeded", "partial", "failed", "aborted", "deferred"});

const char* run_status_name(RunStatus status) { return kRunStatusNames.get(status, "failed"); }

int run_status_exit_code(RunStatus status) {
    switch (status) {
        case RunStatus::succeeded:
            return 0;
        case RunStatus::partial:
            return 3;
        case RunStatus::aborted:
            return 4;
        case RunStatus::deferred:
            return 5;
        default:
            return 1;
    }
}

RunReporter::RunReporter(HistoryStore& history, std::vector<std::string> secrets,
                         std::chrono::milliseconds log_interval)
    : history_(history),
      secrets_(std::move(secrets)),
      log_interval_(log_interval),
      tty_(isatty(STDERR_FILENO) != 0),
      last_log_(Clock::now()),
      last_db_(Clock::now() - std::chrono::seconds(1)) {}

Status RunReporter::start(const std::string& kind, const std::string& trigger, bool dry_run) {
    auto id = history_.start_run(kind, trigger, dry_run);
    if (!id) return fail(id.error());
    run_id_ = *id;
    return {};
}

void RunReporter::record(const RunItem& item) {
    if (!history_.add_item(run_id_, item)) history_ok_ = false;
}

std::string clip_error(std::string text) {
    if (text.size() <= kErrorTextMax) return text;
    // The head says what failed; the tail keeps "(request id ...)". Cut between UTF-8 characters.
    auto boundary = [&](std::size_t i) {
        while (i > 0 && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) --i;
        return i;
    };
    const std::size_t head = boundary(kErrorTextMax - 600), tail = boundary(text.size() - 400);
    return text.substr(0, head) + " [... " + std::to_string(tail - head) + " bytes left out ...] " + text.substr(tail);
}

void RunReporter::item_failed(RunItem item) {
    ++counters_.items_failed;
    // An error text is the far side's (DingTalk's errmsg, a directory server's answer) and may be
    // of any size: one item must not write megabytes into the log and the history.
    item.error = clip_error(redact(item.error, secrets_));
    spdlog::error("run {}: {} {} {} failed: {}", run_id_, item.phase, item.object_type, item.external_id, item.error);
    record(item);
}

Status RunReporter::checkpoint() {
    if (!history_ok_) return fail("an earlier history write of this run failed");
    return history_.update_progress(run_id_, counters_);
}

void RunReporter::progress(const std::string& tty_line, const std::string& log_line) {
    auto now = Clock::now();
    if (tty_) {
        std::fprintf(stderr, "\r\033[K%s", tty_line.c_str());
    } else if (!log_line.empty() && now - last_log_ >= log_interval_) {
        last_log_ = now;
        spdlog::info("run {}: progress: {}", run_id_, log_line);
    }
    const bool new_calls = counters_.requests != requests_written_;
    if (now - last_db_ >= std::chrono::seconds(1) || (new_calls && now - last_db_ >= std::chrono::milliseconds(200))) {
        last_db_ = now;
        // Progress only (the end is checked); a failed write is tried again with the next calls.
        if (history_.update_progress(run_id_, counters_)) requests_written_ = counters_.requests;
    }
}

void RunReporter::clear_line() {
    if (tty_) std::fprintf(stderr, "\r\033[K");
}

RunReporter::Outcome RunReporter::finish(RunStatus status, const std::string& message) {
    Outcome o{status, clip_error(redact(message, secrets_))};
    if (auto r = history_.finish_run(run_id_, run_status_name(status), o.message, counters_); !r) {
        spdlog::error("run {}: the outcome could not be recorded in the state database: {}", run_id_, r.error());
        o.message += " (not recorded in the history: " + r.error() + ")";
        if (o.status == RunStatus::succeeded) o.status = RunStatus::partial;
    }
    if (status == RunStatus::succeeded)
        spdlog::info("run {}: {}: {}", run_id_, run_status_name(status), o.message);
    else
        spdlog::error("run {}: {}: {}", run_id_, run_status_name(status), o.message);
    return o;
}

}  // namespace dingbridge::agent
