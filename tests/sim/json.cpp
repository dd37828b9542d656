#include "tests/sim/json.h"

#include <charconv>
#include <cstdio>

#include "shared/json_escape.h"

namespace sim {

void append_json_string(std::string& out, std::string_view s) {
    out.push_back('"');
    dingbridge::append_json_escaped(out, s);
    out.push_back('"');
}

void JsonWriter::sep() {
    if (after_key_) {
        after_key_ = false;
        return;
    }
    if (!first_.empty()) {
        if (!first_.back()) out_.push_back(',');
        first_.back() = false;
    }
}

JsonWriter& JsonWriter::open(char bracket) {
    sep();
    out_.push_back(bracket);
    first_.push_back(true);
    return *this;
}
JsonWriter& JsonWriter::close(char bracket) {
    out_.push_back(bracket);
    first_.pop_back();
    return *this;
}
JsonWriter& JsonWriter::begin_object() { return open('{'); }
JsonWriter& JsonWriter::end_object() { return close('}'); }
JsonWriter& JsonWriter::begin_array() { return open('['); }
JsonWriter& JsonWriter::end_array() { return close(']'); }
JsonWriter& JsonWriter::key(std::string_view k) {
    sep();
    append_json_string(out_, k);
    out_.push_back(':');
    after_key_ = true;
    return *this;
}
JsonWriter& JsonWriter::value(std::string_view s) {
    sep();
    append_json_string(out_, s);
    return *this;
}
template <class Integer>
JsonWriter& JsonWriter::integer(Integer v) {
    sep();
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, r.ptr);
    return *this;
}
JsonWriter& JsonWriter::value(int64_t v) { return integer(v); }
JsonWriter& JsonWriter::value(uint64_t v) { return integer(v); }
JsonWriter& JsonWriter::value(double v) {
    sep();
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", v);
    out_ += buf;
    return *this;
}
JsonWriter& JsonWriter::value(bool v) {
    sep();
    out_ += v ? "true" : "false";
    return *this;
}
JsonWriter& JsonWriter::null() {
    sep();
    out_ += "null";
    return *this;
}
JsonWriter& JsonWriter::raw(std::string_view json) {
    sep();
    out_ += json;
    return *this;
}
template <class T>
JsonWriter& JsonWriter::list(std::string_view k, const std::vector<T>& v) {
    key(k);
    begin_array();
    for (const auto& x : v) value(x);
    return end_array();
}
JsonWriter& JsonWriter::kv_list(std::string_view k, const std::vector<std::string>& v) { return list(k, v); }
JsonWriter& JsonWriter::kv_list(std::string_view k, const std::vector<int64_t>& v) { return list(k, v); }

}  // namespace sim
