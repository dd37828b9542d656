#pragma once
// One UTF-8 sequence, as RFC 3629 allows it: no overlong forms, no surrogates, nothing above
// U+10FFFF. Header-only, so that the dependency-free json_escape library and the shared library
// read UTF-8 the same way. Pure; any thread.

#include <cstddef>
#include <string_view>

namespace dingbridge {

// The length of the well-formed UTF-8 sequence at s[i] (1 for ASCII) and its code point in `cp`;
// 0 when the bytes there are not one.
inline std::size_t utf8_sequence(std::string_view s, std::size_t i, char32_t& cp) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
        cp = c;
        return 1;
    }
    std::size_t n = 0;
    char32_t min = 0;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (s.size() - i < n) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        const auto x = static_cast<unsigned char>(s[i + k]);
        if ((x & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (x & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

}  // namespace dingbridge
