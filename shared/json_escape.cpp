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

}  // namespace

void append_json_escaped(std::string& out, std::string_view text) {
    for (unsigned char c : text) {
        if (const char* e = short_escape(c)) {
            out += e;
        } else if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out.push_back(static_cast<char>(c));
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
