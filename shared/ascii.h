#pragma once
// ASCII case folding for protocol text (host names, DNs, attribute names, search terms): the same
// result in every locale, unlike std::tolower, and one definition instead of a copy per file.
#include <string>

namespace dingbridge {

inline std::string ascii_lower(std::string s) {
    for (auto& ch : s)
        if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    return s;
}

}  // namespace dingbridge
