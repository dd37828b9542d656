#pragma once
// Pieces shared by the console's pages (console.cpp, console_run.cpp, console_assets.cpp).
#include <cstdint>
#include <map>
#include <string>

#include "agent/web/console.h"
#include "agent/web/labels.h"

namespace dingbridge::agent::web {

std::string console_head(Lang lang, const std::string& lang_q, const std::string& title);
std::string console_badge(Lang lang, const std::string& status);
std::string console_live(Lang lang, const RunRecord& r);  // counters console.js keeps current
std::string fmt_duration(std::int64_t ms);
std::int64_t run_ms(const RunRecord& r);  // start to end (or now while running); -1 unknown

WebReply run_page(const ConsoleContext& ctx, Lang lang, const std::string& lang_q, std::int64_t id,
                  std::map<std::string, std::string> query);
WebReply static_asset(const std::string& path);

}  // namespace dingbridge::agent::web
