#include "shared/match_key.h"

#include "shared/utf8.h"

namespace dingbridge {

namespace {

constexpr char32_t kNothing = 0xffffffff;  // mapped to nothing

// One code point as the key has it (kNothing: dropped; ' ': a space of any kind).
char32_t fold(char32_t c) {
    if (c < 0x80) {
        if (c >= 'A' && c <= 'Z') return c + 0x20;
        if (c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r') return ' ';
        if (c < 0x20 || c == 0x7f) return kNothing;
        return c;
    }
    // Spaces (Zs, Zl, Zp and NEL) are a space; format and control code points are nothing.
    if (c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
        c == 0x202f || c == 0x205f || c == 0x3000)
        return ' ';
    if (c <= 0x9f || c == 0xad || c == 0x34f || c == 0x6dd || c == 0x70f || c == 0x1806 ||
        (c >= 0x180b && c <= 0x180e) || (c >= 0x200b && c <= 0x200f) || (c >= 0x202a && c <= 0x202e) ||
        (c >= 0x2060 && c <= 0x2063) || (c >= 0x206a && c <= 0x206f) || (c >= 0xfe00 && c <= 0xfe0f) || c == 0xfeff ||
        (c >= 0xfff9 && c <= 0xfffc))
        return kNothing;
    if (c >= 0xff01 && c <= 0xff5e) return fold(c - 0xfee0);  // full-width ASCII (NFKC)
    // Case: Latin-1, Latin Extended-A, Greek, Cyrillic.
    if (c >= 0xc0 && c <= 0xde && c != 0xd7) return c + 0x20;
    if ((c >= 0x100 && c <= 0x12f) || (c >= 0x132 && c <= 0x137) || (c >= 0x14a && c <= 0x177))
        return c | 1;  // pairs: upper case even, lower case odd
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e)) return (c & 1) ? c + 1 : c;
    if (c == 0x178) return 0xff;
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) return c + 0x20;
    if (c == 0x3c2) return 0x3c3;  // final sigma
    if (c >= 0x410 && c <= 0x42f) return c + 0x20;
    if (c >= 0x400 && c <= 0x40f) return c + 0x50;
    return c;
}

void append_utf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
        out.push_back(static_cast<char>(0xc0 | (c >> 6)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    } else if (c < 0x10000) {
        out.push_back(static_cast<char>(0xe0 | (c >> 12)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    } else {
        out.push_back(static_cast<char>(0xf0 | (c >> 18)));
        out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    }
}

}  // namespace

std::string directory_match_key(std::string_view name) {
    std::string key;
    key.reserve(name.size());
    bool space = false;
    for (std::size_t i = 0; i < name.size();) {
        char32_t c = 0;
        const std::size_t n = utf8_sequence(name, i, c);
        if (n == 0) {  // not UTF-8: kept as it is
            if (space) key.push_back(' ');
            space = false;
            key.push_back(name[i++]);
            continue;
        }
        i += n;
        const char32_t f = fold(c);
        if (f == kNothing) continue;
        if (f == ' ') {
            space = !key.empty();
            continue;
        }
        if (space) key.push_back(' ');
        space = false;
        append_utf8(key, f);
    }
    return key;
}

}  // namespace dingbridge
