#include "shared/json_escape.h"

#include <cstdio>

namespace dingbridge {

namespace {

// The two-character escape of `c`, or nullptr when it has none.
const char* short_escape(unsigned char c) {
    switch (c) {
        case '"':
            return "\\\"";
        case '\\':
            return "\\\\";
        case '\n':
            return "\\n";
        case '\r':
            return "\\r";
        case '\t':
            return "\\t";
        case '\b':
            return "\\b";
        case '\f':
            return "\\f";
        default:
            return nullptr;
    }
}

// The length of the well-formed UTF-8 sequence at `p` (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF) and its code point; 0 when it is not one.
std::size_t utf8_sequence(const unsigned char* p, std::size_t left, char32_t& cp) {
    const unsigned char c = p[0];
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
    if (left < n) return 0;
    for (std::size_t i = 1; i < n; ++i) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

void append_unicode_escape(std::string& out, unsigned code) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\u%04x", code);
    out += buf;
}

}  // namespace

void append_json_escaped(std::string& out, std::string_view text) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t size = text.size();
    for (std::size_t i = 0; i < size;) {
        const unsigned char c = p[i];
        if (c < 0x80) {
            if (const char* e = short_escape(c)) {
                out += e;
            } else if (c < 0x20 || c == 0x7f) {
                append_unicode_escape(out, c);
            } else {
                out.push_back(static_cast<char>(c));
            }
            ++i;
            continue;
        }
        char32_t cp = 0;
        const std::size_t n = utf8_sequence(p + i, size - i, cp);
        if (n == 0) {
            append_unicode_escape(out, 0xfffd);  // not UTF-8: JSON text must be
            ++i;
        } else if (cp == 0x85 || cp == 0x2028 || cp == 0x2029) {
            append_unicode_escape(out, static_cast<unsigned>(cp));  // line breaks to some readers
            i += n;
        } else {
            out.append(text.data() + i, n);
            i += n;
        }
    }
}

std::string json_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 8);
    append_json_escaped(out, text);
    return out;
}

}  // namespace dingbridge
