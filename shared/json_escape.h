#pragma once
// JSON string escaping (RFC 8259 §7), the one implementation for the programs' JSON logs and
// outputs and the DingTalk simulator's responses. Quote, backslash and every control character
// are escaped (the short form where JSON has one, else \u00XX), DEL too so that a log line stays
// printable, and so are U+0085, U+2028 and U+2029, which readers that split on Unicode line
// breaks take for the end of a record. Other well-formed UTF-8 passes through unchanged; a byte
// that is not part of any becomes \ufffd, so the output is always valid JSON text. Pure; any thread.

#include <string>
#include <string_view>

namespace dingbridge {

// Appends `text` escaped to `out`, without quotes.
void append_json_escaped(std::string& out, std::string_view text);

// `text` escaped for inclusion inside a JSON string literal (quotes not added).
std::string json_escape(std::string_view text);

}  // namespace dingbridge
