#pragma once
// ASCII case folding for protocol text (host names, DNs, attribute names, search terms): the same
// result in every locale, unlike std::tolower, and one definition instead of a copy per file.
#include <string>
#include <string_view>

namespace dingbridge {

inline std::string ascii_lower(std::string s) {
    for (auto& ch : s)
        if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    return s;
}

// `s` as a directory compares it when it ignores case and insignificant spaces (LDAP's
// caseIgnoreMatch, SCIM's caseExact false): ASCII letters lowered, leading and trailing spaces
// dropped, each run of spaces inside made one. Non-ASCII text is kept as it is (its case folding
// would need Unicode tables).
inline std::string ascii_match_key(std::string_view s) {
    std::string k;
    k.reserve(s.size());
    bool space = false;
    for (char ch : s) {
        if (ch == ' ') {
            space = !k.empty();
            continue;
        }
        if (space) k.push_back(' ');
        space = false;
        k.push_back(ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch);
    }
    return k;
}

}  // namespace dingbridge
