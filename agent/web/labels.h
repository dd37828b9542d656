#pragma once
// The console's words in English and Chinese (?lang=en|zh, else Accept-Language).
#include <string>

namespace dingbridge::agent::web {

enum class Lang { en, zh };
Lang pick_lang(const std::string& query_lang, const std::string& accept_language);
// The label for `key` (the key itself when unknown, so a missing word shows, never crashes).
std::string label(Lang lang, const std::string& key);

}  // namespace dingbridge::agent::web
