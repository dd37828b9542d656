#pragma once
// The filters of the mapping's templates (lower, trim, email_local, e164, date, json, join,
// first, count, default) and the evaluation of a compiled Template over one DingTalk record.
// Pure and total: a compiled template never fails at evaluation (types were checked when it was
// compiled, template.h).

#include <cstdint>
#include <functional>
#include <string>

#include "agent/mapping/template.h"

namespace dingbridge::agent {

struct EvalContext {
    std::string state_code;              // the user's phone country code, "" for departments
    std::string default_country = "86";  // phone.default_country_code
    int tz_offset_minutes = 8 * 60;      // dates.utc_offset
};

// `get(id)`: the value of source field `id` of the record.
Value evaluate(const Template& t, const std::function<Value(int)>& get, const EvalContext& ctx);

std::string to_text(const Value& v);
std::string to_text(Value&& v);
std::string phone_to_e164(const std::string& number, const std::string& country_code);
std::string format_ms_date(std::int64_t ms, int tz_offset_minutes, const std::string& format);

}  // namespace dingbridge::agent
