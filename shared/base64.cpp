#include "shared/base64.h"

#include <algorithm>

namespace dingbridge {

std::string base64_encode(std::string_view data) {
    static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((data.size() + 2) / 3 * 4);
    for (std::size_t i = 0; i < data.size(); i += 3) {
        const std::size_t n = std::min<std::size_t>(3, data.size() - i);
        unsigned triple = static_cast<unsigned char>(data[i]) << 16;
        if (n > 1) triple |= static_cast<unsigned char>(data[i + 1]) << 8;
        if (n > 2) triple |= static_cast<unsigned char>(data[i + 2]);
        out += kAlphabet[(triple >> 18) & 63];
        out += kAlphabet[(triple >> 12) & 63];
        out += n > 1 ? kAlphabet[(triple >> 6) & 63] : '=';
        out += n > 2 ? kAlphabet[triple & 63] : '=';
    }
    return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    if (text.size() % 4 != 0) return std::nullopt;
    std::string out;
    out.reserve(text.size() / 4 * 3);
    for (std::size_t i = 0; i < text.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; ++j) {
            char c = text[i + j];
            if (c == '=') {
                if (i + 4 != text.size() || j < 2) return std::nullopt;
                v[j] = 0;
                ++pad;
            } else {
                if (pad) return std::nullopt;  // data after padding
                v[j] = value(c);
                if (v[j] < 0) return std::nullopt;
            }
        }
        const unsigned triple =
            (unsigned(v[0]) << 18) | (unsigned(v[1]) << 12) | (unsigned(v[2]) << 6) | unsigned(v[3]);
        out += static_cast<char>((triple >> 16) & 0xff);
        if (pad < 2) out += static_cast<char>((triple >> 8) & 0xff);
        if (pad < 1) out += static_cast<char>(triple & 0xff);
    }
    return out;
}

}  // namespace dingbridge
