#include "shared/json_escape.h"

#include <cstdio>

#include "shared/utf8.h"

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
        const std::size_t n = utf8_sequence(text, i, cp);
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
