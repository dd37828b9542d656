#pragma once
// JsonWriter: an append-only JSON text builder used for every simulator response and for the
// org dump. It owns one std::string; callers nest objects/arrays and the writer places commas.
// It does not validate nesting (callers are our own code, never peer input). Strings are escaped
// per RFC 8259; UTF-8 is passed through unchanged (DingTalk answers with raw UTF-8, not \u escapes).
// Not thread-safe; one writer per response.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sim {

class JsonWriter {
public:
    JsonWriter() { out_.reserve(256); }

    JsonWriter& begin_object();
    JsonWriter& end_object();
    JsonWriter& begin_array();
    JsonWriter& end_array();
    // Object member name; must be followed by exactly one value or begin_*.
    JsonWriter& key(std::string_view k);

    JsonWriter& value(std::string_view s);
    JsonWriter& value(const char* s) { return value(std::string_view(s)); }
    JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
    JsonWriter& value(int64_t v);
    JsonWriter& value(int v) { return value(static_cast<int64_t>(v)); }
    JsonWriter& value(uint64_t v);
    JsonWriter& value(double v);
    JsonWriter& value(bool v);
    JsonWriter& null();
    // Inserts already-serialized JSON as one value.
    JsonWriter& raw(std::string_view json);

    // Shorthands for "key": value.
    template <class T>
    JsonWriter& kv(std::string_view k, const T& v) {
        key(k);
        return value(v);
    }
    JsonWriter& kv(std::string_view k, const char* v) {
        key(k);
        return value(std::string_view(v));
    }
    // Only when non-empty: DingTalk omits optional fields that are not set.
    JsonWriter& kv_opt(std::string_view k, const std::string& v) {
        if (!v.empty()) kv(k, v);
        return *this;
    }
    JsonWriter& kv_list(std::string_view k, const std::vector<std::string>& v);
    JsonWriter& kv_list(std::string_view k, const std::vector<int64_t>& v);

    const std::string& str() const { return out_; }
    std::string take() { return std::move(out_); }

private:
    void sep();
    JsonWriter& open(char bracket);
    JsonWriter& close(char bracket);
    template <class Integer>
    JsonWriter& integer(Integer v);
    template <class T>
    JsonWriter& list(std::string_view k, const std::vector<T>& v);
    std::string out_;
    std::vector<bool> first_;  // one entry per open container: no member written yet
    bool after_key_ = false;
};

// Appends s to out as a quoted, escaped JSON string.
void append_json_string(std::string& out, std::string_view s);

}  // namespace sim
