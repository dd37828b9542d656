#pragma once
// Parsing of what DingTalk pushes (dingtalk-api.md §5, §6): stream frames, the event payload
// (camelCase in stream mode, PascalCase in HTTP push — both spellings are read), and the ACK
// frames the agent sends back. Pure functions; bad input gives an error value, never a throw.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "agent/events/journal.h"

namespace dingbridge::agent::events {

struct StreamFrame {
    std::string type;  // SYSTEM, EVENT, CALLBACK
    std::string topic, message_id, event_id, event_type;
    std::int64_t born_ms = 0;
    std::string data;  // the JSON string carried in "data"
};

[[nodiscard]] std::optional<StreamFrame> parse_stream_frame(std::string_view text, std::string& error);

// Reads the ids, type and event id of one event payload into `e` (event_type/dedup_key/born_ms
// are only filled when the payload has them and `e` does not yet).
[[nodiscard]] bool parse_event_payload(std::string_view json, JournalEvent& e, std::string& error);

// Which objects an event type is about: "user", "department" or "" (nothing to fetch).
std::string event_object_kind(const std::string& event_type);

// ACK frame for a stream message: `data` is sent as a JSON string.
std::string stream_ack(const std::string& message_id, int code, const std::string& data);
// The ACK asking DingTalk to deliver an event again (the journal could not take it): status LATER
// in the data and code 500, as the official Go SDK sends it, so that the server redelivers
// whichever of the two it reads.
std::string stream_later(const std::string& message_id, const std::string& why);
std::string json_quote(std::string_view s);

}  // namespace dingbridge::agent::events
