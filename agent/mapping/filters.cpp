#include "agent/mapping/filters.h"

#include <simdjson.h>

#include <cctype>
#include <cstdlib>

#include "shared/match_key.h"

namespace dingbridge::agent {

namespace {

std::string join(const std::vector<std::string>& items, const std::string& sep) {
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
    return out;
}

bool is_empty(const Value& v) {
    if (auto s = std::get_if<std::string>(&v)) return s->empty();
    if (auto i = std::get_if<std::int64_t>(&v)) return *i == 0;
    if (auto l = std::get_if<std::vector<std::string>>(&v)) return l->empty();
    return false;
}

// One key of a JSON-object string (DingTalk's `extension`, `ext`); "" when absent or not JSON.
std::string json_member(const std::string& text, const std::string& key) {
    if (text.empty()) return {};
    simdjson::dom::parser parser;
    simdjson::dom::object o;
    if (parser.parse(text).get(o) != simdjson::SUCCESS) return {};
    simdjson::dom::element e;
    if (o.at_key(key).get(e) != simdjson::SUCCESS) return {};
    std::string_view sv;
    if (e.get(sv) == simdjson::SUCCESS) return std::string(sv);
    if (e.is_null()) return {};
    return simdjson::minify(e);
}

std::string trim_copy(std::string s) {
    auto ws = [](unsigned char c) { return std::isspace(c) != 0; };
    while (!s.empty() && ws(s.back())) s.pop_back();
    size_t i = 0;
    while (i < s.size() && ws(s[i])) ++i;
    return s.substr(i);
}

// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
void civil_from_days(std::int64_t z, int& y, unsigned& m, unsigned& d) {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t yy = static_cast<std::int64_t>(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y = static_cast<int>(yy + (m <= 2));
}

Value eval_expr(const Expr& e, const std::function<Value(int)>& get, const std::string& state_code,
                const std::string& default_cc, int tz) {
    Value v = get(e.field);
    for (const auto& f : e.filters) {
        switch (f.op) {
            case Filter::Op::lower:  // in place: this runs per user per field
            case Filter::Op::upper:
                change_case(std::get<std::string>(v), f.op == Filter::Op::upper);
                break;
            case Filter::Op::trim:
                v = trim_copy(std::get<std::string>(v));
                break;
            case Filter::Op::email_local: {
                auto s = std::get<std::string>(v);
                auto at = s.find('@');
                v = at == std::string::npos ? s : s.substr(0, at);
                break;
            }
            case Filter::Op::e164: {
                std::string cc = !f.literal.empty() ? f.literal : (!state_code.empty() ? state_code : default_cc);
                v = phone_to_e164(std::get<std::string>(v), cc);
                break;
            }
            case Filter::Op::date:
                v = format_ms_date(std::get<std::int64_t>(v), tz, f.literal);
                break;
            case Filter::Op::default_field:
                if (is_empty(v)) v = get(f.field);
                break;
            case Filter::Op::default_literal:
                if (is_empty(v)) v = f.literal;
                break;
            case Filter::Op::json_key:
                v = json_member(std::get<std::string>(v), f.literal);
                break;
            case Filter::Op::join:
                v = join(std::get<std::vector<std::string>>(v), f.literal);
                break;
            case Filter::Op::first: {
                const auto& l = std::get<std::vector<std::string>>(v);
                v = l.empty() ? std::string() : l.front();
                break;
            }
            case Filter::Op::count:
                v = static_cast<std::int64_t>(std::get<std::vector<std::string>>(v).size());
                break;
        }
    }
    return v;
}

}  // namespace

std::string to_text(Value&& v) {
    if (auto s = std::get_if<std::string>(&v)) return std::move(*s);
    return to_text(static_cast<const Value&>(v));
}

std::string to_text(const Value& v) {
    if (auto s = std::get_if<std::string>(&v)) return *s;
    if (auto i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
    if (auto l = std::get_if<std::vector<std::string>>(&v)) return join(*l, ",");
    return std::get<bool>(v) ? "true" : "false";
}

std::string phone_to_e164(const std::string& number, const std::string& country_code) {
    std::string digits;
    bool plus = false;
    for (char c : number) {
        if (c == '+' && digits.empty()) plus = true;
        if (std::isdigit(static_cast<unsigned char>(c))) digits.push_back(c);
    }
    if (digits.empty()) return {};
    if (plus) return "+" + digits;
    if (digits.rfind("00", 0) == 0) return "+" + digits.substr(2);  // international prefix
    std::string cc;
    for (char c : country_code)
        if (std::isdigit(static_cast<unsigned char>(c))) cc.push_back(c);
    return "+" + cc + digits;
}

std::string format_ms_date(std::int64_t ms, int tz_offset_minutes, const std::string& format) {
    if (ms == 0) return {};
    std::int64_t secs = ms / 1000 + static_cast<std::int64_t>(tz_offset_minutes) * 60;
    std::int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    std::int64_t sod = secs - days * 86400;
    int y = 0;
    unsigned m = 0, d = 0;
    civil_from_days(days, y, m, d);
    auto two = [](unsigned v) { return std::string(v < 10 ? "0" : "") + std::to_string(v); };
    std::string out;
    for (size_t i = 0; i < format.size(); ++i) {
        if (format[i] == '%' && i + 1 < format.size()) {
            char c = format[++i];
            if (c == 'Y')
                out += std::to_string(y);
            else if (c == 'm')
                out += two(m);
            else if (c == 'd')
                out += two(d);
            else if (c == 'H')
                out += two(static_cast<unsigned>(sod / 3600));
            else if (c == 'M')
                out += two(static_cast<unsigned>(sod / 60 % 60));
            else if (c == 'S')
                out += two(static_cast<unsigned>(sod % 60));
            else if (c == '%')
                out += '%';
            else
                out += std::string("%") + c;
        } else {
            out.push_back(format[i]);
        }
    }
    return out;
}

Value evaluate(const Template& t, const std::function<Value(int)>& get, const EvalContext& ctx) {
    if (t.parts.size() == 1 && t.parts[0].expr)
        return eval_expr(*t.parts[0].expr, get, ctx.state_code, ctx.default_country, ctx.tz_offset_minutes);
    std::string out;
    for (const auto& p : t.parts)
        out += p.expr ? to_text(eval_expr(*p.expr, get, ctx.state_code, ctx.default_country, ctx.tz_offset_minutes))
                      : p.text;
    if (t.type == ValueType::boolean) return out == "true";
    if (t.type == ValueType::integer) return static_cast<std::int64_t>(std::strtoll(out.c_str(), nullptr, 10));
    return out;
}

}  // namespace dingbridge::agent
