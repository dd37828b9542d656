#include "agent/events/event_parse.h"

#include <simdjson.h>

#include <charconv>

#include "shared/log.h"

namespace dingbridge::agent::events {

namespace dom = simdjson::dom;

namespace {

dom::parser& parser() {
    thread_local dom::parser p;
    return p;
}

std::string str_field(dom::object o, std::string_view key) {
    std::string_view s;
    if (o[key].get_string().get(s) == simdjson::SUCCESS) return std::string(s);
    std::int64_t i = 0;
    if (o[key].get_int64().get(i) == simdjson::SUCCESS) return std::to_string(i);
    return {};
}

std::int64_t int_field(dom::object o, std::string_view key) {
    std::int64_t i = 0;
    if (o[key].get_int64().get(i) == simdjson::SUCCESS) return i;
    std::string_view s;
    if (o[key].get_string().get(s) == simdjson::SUCCESS) {
        auto r = std::from_chars(s.data(), s.data() + s.size(), i);
        if (r.ec == std::errc() && r.ptr == s.data() + s.size()) return i;
    }
    return 0;
}

// Appends one id given as a string or a number; false for anything else.
bool append_id(dom::element x, std::vector<std::string>& out) {
    std::string_view s;
    std::int64_t i = 0;
    if (x.get_string().get(s) == simdjson::SUCCESS)
        out.emplace_back(s);
    else if (x.get_int64().get(i) == simdjson::SUCCESS)
        out.push_back(std::to_string(i));
    else
        return false;
    return true;
}

// An id array (strings or integers); false when present with a wrong type.
bool id_list(dom::object o, std::string_view key, std::vector<std::string>& out) {
    dom::element el;
    if (o[key].get(el) != simdjson::SUCCESS) return true;
    if (el.is_null()) return true;
    dom::array a;
    if (el.get_array().get(a) != simdjson::SUCCESS) return append_id(el, out);  // a single id instead of a list
    for (dom::element x : a)
        if (!append_id(x, out)) return false;
    return true;
}

bool valid_id(const std::string& s) {
    if (s.empty() || s.size() > 128) return false;
    for (unsigned char c : s)
        if (c < 0x21 || c == '"' || c == '\\' || c == 0x7f) return false;
    return true;
}

}  // namespace

std::string json_quote(std::string_view s) { return "\"" + json_escape(std::string(s)) + "\""; }

std::optional<StreamFrame> parse_stream_frame(std::string_view text, std::string& error) {
    if (text.empty()) {  // also a view without data: simdjson would copy from a null pointer
        error = "empty frame";
        return std::nullopt;
    }
    dom::element root;
    if (auto e = parser().parse(text.data(), text.size()).get(root); e) {
        error = std::string("not JSON: ") + simdjson::error_message(e);
        return std::nullopt;
    }
    dom::object o;
    if (root.get_object().get(o)) {
        error = "not a JSON object";
        return std::nullopt;
    }
    StreamFrame f;
    f.type = str_field(o, "type");
    f.data = str_field(o, "data");
    dom::object h;
    if (o["headers"].get_object().get(h) == simdjson::SUCCESS) {
        f.topic = str_field(h, "topic");
        f.message_id = str_field(h, "messageId");
        f.event_id = str_field(h, "eventId");
        f.event_type = str_field(h, "eventType");
        f.born_ms = int_field(h, "eventBornTime");
    }
    if (f.type.empty()) {
        error = "frame without a type";
        return std::nullopt;
    }
    if (f.message_id.empty() || f.message_id.size() > 256) {
        error = "frame without a usable messageId";
        return std::nullopt;
    }
    return f;
}

bool parse_event_payload(std::string_view json, JournalEvent& e, std::string& error) {
    if (json.empty()) {  // as in parse_stream_frame
        error = "empty event payload";
        return false;
    }
    dom::element root;
    if (auto err = parser().parse(json.data(), json.size()).get(root); err) {
        error = std::string("event payload is not JSON: ") + simdjson::error_message(err);
        return false;
    }
    dom::object o;
    if (root.get_object().get(o)) {
        error = "event payload is not a JSON object";
        return false;
    }
    if (e.event_type.empty()) {
        e.event_type = str_field(o, "EventType");
        if (e.event_type.empty()) e.event_type = str_field(o, "eventType");
    }
    if (e.dedup_key.empty()) {
        auto id = str_field(o, "eventId");
        if (id.empty()) id = str_field(o, "EventId");
        if (!id.empty()) e.dedup_key = "event:" + id;
    }
    if (e.born_ms == 0) {
        e.born_ms = int_field(o, "TimeStamp");
        if (e.born_ms == 0) e.born_ms = int_field(o, "timeStamp");
    }
    std::vector<std::string> users, depts;
    if (!id_list(o, "userId", users) || !id_list(o, "UserId", users) || !id_list(o, "UserIdList", users) ||
        !id_list(o, "userIdList", users) || !id_list(o, "deptId", depts) || !id_list(o, "DeptId", depts)) {
        error = "event payload has ids of the wrong type";
        return false;
    }
    for (auto* list : {&users, &depts})
        for (const auto& id : *list)
            if (!valid_id(id)) {
                error = "event payload has an invalid id";
                return false;
            }
    if (users.size() + depts.size() > 10000) {
        error = "event payload names too many objects";
        return false;
    }
    e.user_ids = std::move(users);
    e.dept_ids = std::move(depts);
    if (e.event_type.empty()) {
        error = "event without a type";
        return false;
    }
    return true;
}

std::string event_object_kind(const std::string& t) {
    if (t == "user_add_org" || t == "user_modify_org" || t == "user_leave_org" || t == "user_active_org" ||
        t == "org_admin_add" || t == "org_admin_remove" || t == "label_user_change")
        return "user";
    if (t == "org_dept_create" || t == "org_dept_modify" || t == "org_dept_remove") return "department";
    return "";
}

std::string stream_ack(const std::string& message_id, int code, const std::string& data) {
    return "{\"code\":" + std::to_string(code) +
           ",\"headers\":{\"contentType\":\"application/json\",\"messageId\":" + json_quote(message_id) +
           "},\"message\":\"" + (code == 200 ? "OK" : "LATER") + "\",\"data\":" + json_quote(data) + "}";
}

std::string stream_later(const std::string& message_id, const std::string& why) {
    return stream_ack(message_id, 500, "{\"status\":\"LATER\",\"message\":" + json_quote(why) + "}");
}

}  // namespace dingbridge::agent::events
