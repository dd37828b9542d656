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
    std::string out;
    out.reserve(text.size());
    const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
    for (std::size_t i = 0; i < text.size();) {
        utf8proc_int32_t c = 0;
        const auto n = utf8proc_iterate(bytes + i, static_cast<utf8proc_ssize_t>(text.size() - i), &c);
        if (n <= 0) {  // not UTF-8: the byte as it is, an ASCII letter in the case asked
            char b = text[i++];
            if (upper ? (b >= 'a' && b <= 'z') : (b >= 'A' && b <= 'Z')) b = static_cast<char>(b ^ 0x20);
            out.push_back(b);
            continue;
        }
        utf8proc_uint8_t encoded[4];
        const auto length = utf8proc_encode_char(upper ? utf8proc_toupper(c) : utf8proc_tolower(c), encoded);
        out.append(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(length));
        i += static_cast<std::size_t>(n);
    }
    text = std::move(out);
}

}  // namespace dingbridge
