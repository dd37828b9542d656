#include "shared/match_key.h"

#include <utf8proc.h>

#include <vector>

#include "shared/ascii.h"

namespace dingbridge {

namespace {

// The spaces slapd folds into one: the space separators (Zs) but the Ogham space mark. Tabs, other
// ASCII white space, NEL and the line and paragraph separators it keeps apart (probed).
bool is_space(utf8proc_int32_t c) { return c == ' ' || (c != 0x1680 && utf8proc_category(c) == UTF8PROC_CATEGORY_ZS); }

// Each code point before normalization: a space separator a space, capital letters (Lu, Lt) in lower case
// by the simple one-to-one mapping. As slapd: ß stays ß; Roman numerals (Nl) and circled letters
// (So) keep their case, so Ⅳ is IV after NFKC, not iv.
utf8proc_int32_t lower_and_space(utf8proc_int32_t c, void*) {
    if (is_space(c)) return ' ';
    const auto category = utf8proc_category(c);
    return category == UTF8PROC_CATEGORY_LU || category == UTF8PROC_CATEGORY_LT ? utf8proc_tolower(c) : c;
}

// Spaces insignificant as RFC 4518 makes them: none at either end, runs inside made one.
void append_collapsing_spaces(std::string& key, std::string_view part, bool& space) {
    for (const char c : part) {
        if (c == ' ') {
            space = !key.empty();
            continue;
        }
        if (space) key.push_back(' ');
        space = false;
        key.push_back(c);
    }
}

// SCIM: any white space a space; case is folded by utf8proc (UTF8PROC_CASEFOLD).
utf8proc_int32_t white_space_as_space(utf8proc_int32_t c, void*) {
    if (c == ' ' || (c >= '\t' && c <= '\r') || c == 0x85 || c == 0x2028 || c == 0x2029) return ' ';
    return utf8proc_category(c) == UTF8PROC_CATEGORY_ZS ? ' ' : c;
}

// `custom` on each code point, then NFKC (with `extra` options), spaces collapsed and trimmed;
// the bytes as they are, ASCII letters in lower case, when `name` is not UTF-8.
std::string normalized_key(std::string_view name, utf8proc_custom_func custom, int extra) {
    std::string key;
    key.reserve(name.size());
    bool space = false;
    const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(name.data());
    const auto size = static_cast<utf8proc_ssize_t>(name.size());
    const auto options = static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT | extra);
    std::vector<utf8proc_int32_t> points(name.size() + 4);
    utf8proc_ssize_t n = 0;
    for (;;) {
        n = utf8proc_decompose_custom(bytes, size, points.data(), static_cast<utf8proc_ssize_t>(points.size()), options,
                                      custom, nullptr);
        if (n < 0 || static_cast<std::size_t>(n) <= points.size()) break;
        points.resize(static_cast<std::size_t>(n));  // the size it needs
    }
    if (n >= 0) n = utf8proc_normalize_utf32(points.data(), n, options);
    if (n < 0) return ascii_lower(std::string(name));  // not UTF-8: the bytes, ASCII letters folded
    for (utf8proc_ssize_t i = 0; i < n; ++i) {
        utf8proc_uint8_t encoded[4];
        const auto length = utf8proc_encode_char(points[static_cast<std::size_t>(i)], encoded);
        append_collapsing_spaces(key, std::string_view(reinterpret_cast<const char*>(encoded), length), space);
    }
    return key;
}

bool is_ascii(std::string_view name) {
    for (const char c : name)
        if (static_cast<unsigned char>(c) >= 0x80) return false;
    return true;
}

// ASCII letters in lower case; `white_space` too (\t to \r) a space, else only ' '.
std::string ascii_key(std::string_view name, bool white_space) {
    std::string key;
    key.reserve(name.size());
    bool space = false;
    for (char c : name) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 0x20);
        if (white_space && c >= '\t' && c <= '\r') c = ' ';
        append_collapsing_spaces(key, std::string_view(&c, 1), space);
    }
    return key;
}

}  // namespace

std::string scim_match_key(std::string_view name) {
    if (is_ascii(name)) return ascii_key(name, true);  // most names: no table needed
    return normalized_key(name, white_space_as_space, UTF8PROC_CASEFOLD);
}

std::string directory_match_key(std::string_view name) {
    if (is_ascii(name)) return ascii_key(name, false);  // most names: no table needed
    return normalized_key(name, lower_and_space, 0);
}

void change_case(std::string& text, bool upper) {
    if (is_ascii(text)) {  // most values: no table needed
        for (auto& c : text)
            if (upper ? (c >= 'a' && c <= 'z') : (c >= 'A' && c <= 'Z')) c = static_cast<char>(c ^ 0x20);
        return;
    }
    // Decoded first (a byte that is not UTF-8 as -1 - byte), as the final sigma looks both ways.
    std::vector<utf8proc_int32_t> points;
    points.reserve(text.size());
    const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
    const auto size = static_cast<utf8proc_ssize_t>(text.size());
    for (utf8proc_ssize_t i = 0; i < size;) {
        utf8proc_int32_t c = 0;
        const auto n = utf8proc_iterate(bytes + i, size - i, &c);
        points.push_back(n > 0 ? c : -1 - static_cast<utf8proc_int32_t>(bytes[i]));
        i += n > 0 ? n : 1;
    }
    std::string out;
    out.reserve(text.size() + 4);
    auto append = [&out](utf8proc_int32_t c) {
        utf8proc_uint8_t encoded[4];
        const auto length = utf8proc_encode_char(c, encoded);
        out.append(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(length));
    };
    // Unicode's Cased and Case_Ignorable (SpecialCasing's Final_Sigma condition), near enough: the
    // letters with case, and the marks, format characters, modifiers and in-word punctuation.
    auto cased = [](utf8proc_int32_t c) {
        const auto k = c < 0 ? UTF8PROC_CATEGORY_CN : utf8proc_category(c);
        return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
    };
    auto ignorable = [](utf8proc_int32_t c) {
        if (c < 0) return false;
        switch (utf8proc_category(c)) {
            case UTF8PROC_CATEGORY_MN:
            case UTF8PROC_CATEGORY_ME:
            case UTF8PROC_CATEGORY_CF:
            case UTF8PROC_CATEGORY_LM:
            case UTF8PROC_CATEGORY_SK:
                return true;
            default:
                return c == '\'' || c == '.' || c == ':' || c == 0xB7 || c == 0x387 || c == 0x2018 || c == 0x2019 ||
                       c == 0x2024 || c == 0x2027 || c == 0xFE52 || c == 0xFF07 || c == 0xFF0E || c == 0xFF1A;
        }
    };
    auto final_sigma = [&](std::size_t at) {
        std::size_t j = at;
        while (j > 0 && ignorable(points[j - 1])) --j;
        if (j == 0 || !cased(points[j - 1])) return false;
        j = at + 1;
        while (j < points.size() && ignorable(points[j])) ++j;
        return j == points.size() || !cased(points[j]);
    };
    for (std::size_t i = 0; i < points.size(); ++i) {
        const utf8proc_int32_t c = points[i];
        if (c < 0) {  // not UTF-8: the byte as it is
            out.push_back(static_cast<char>(-1 - c));
            continue;
        }
        // Where Python's and JavaScript's lower() and upper() differ from the one-to-one mappings
        // in ways a username shows: İ is i + combining dot, a final Σ is ς, ß is SS.
        if (!upper && c == 0x130) {
            append('i');
            append(0x307);
        } else if (!upper && c == 0x3A3) {
            append(final_sigma(i) ? 0x3C2 : 0x3C3);
        } else if (upper && c == 0xDF) {
            out += "SS";
        } else {
            append(upper ? utf8proc_toupper(c) : utf8proc_tolower(c));
        }
    }
    text = std::move(out);
}

}  // namespace dingbridge
