#include "agent/mapping/mapping.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <simdjson.h>
#include <functional>

namespace dingbridge::agent {

namespace {

struct FieldDef {
    const char* name;
    ValueType type;
};

// Source fields (dingtalk-api.md §2 department/get, §3 user/list). Index = field id.
const FieldDef kUserFields[] = {
    {"userid", ValueType::string},       {"unionid", ValueType::string},
    {"name", ValueType::string},         {"avatar", ValueType::string},
    {"state_code", ValueType::string},   {"mobile", ValueType::string},
    {"telephone", ValueType::string},    {"job_number", ValueType::string},
    {"title", ValueType::string},        {"email", ValueType::string},
    {"org_email", ValueType::string},    {"work_place", ValueType::string},
    {"remark", ValueType::string},       {"extension", ValueType::string},
    {"exclusive_account_type", ValueType::string}, {"login_id", ValueType::string},
    {"hired_date", ValueType::integer},  {"active", ValueType::boolean},
    {"admin", ValueType::boolean},       {"boss", ValueType::boolean},
    {"hide_mobile", ValueType::boolean}, {"exclusive_account", ValueType::boolean},
    {"dept_id_list", ValueType::list},
};

const FieldDef kDeptFields[] = {
    {"dept_id", ValueType::integer},      {"name", ValueType::string},
    {"parent_id", ValueType::integer},    {"order", ValueType::integer},
    {"source_identifier", ValueType::string}, {"brief", ValueType::string},
    {"telephone", ValueType::string},     {"tags", ValueType::string},
    {"extention", ValueType::string},     {"org_dept_owner", ValueType::string},
    {"hide_dept", ValueType::boolean},    {"outer_dept", ValueType::boolean},
    {"from_union_org", ValueType::boolean},
    {"dept_manager_userid_list", ValueType::list},
};

Value user_field(const dingtalk::UserItem& u, int id) {
    switch (id) {
        case 0: return u.userid;
        case 1: return u.unionid;
        case 2: return u.name;
        case 3: return u.avatar;
        case 4: return u.state_code;
        case 5: return u.mobile;
        case 6: return u.telephone;
        case 7: return u.job_number;
        case 8: return u.title;
        case 9: return u.email;
        case 10: return u.org_email;
        case 11: return u.work_place;
        case 12: return u.remark;
        case 13: return u.extension;
        case 14: return u.exclusive_account_type;
        case 15: return u.login_id;
        case 16: return u.hired_date;
        case 17: return u.active;
        case 18: return u.admin;
        case 19: return u.boss;
        case 20: return u.hide_mobile;
        case 21: return u.exclusive_account;
        case 22: {
            std::vector<std::string> ids;
            for (auto id : u.dept_id_list) ids.push_back(std::to_string(id));
            return ids;
        }
    }
    return std::string();
}

Value dept_field(const dingtalk::DeptDetail& d, int id) {
    switch (id) {
        case 0: return d.dept_id;
        case 1: return d.name;
        case 2: return d.parent_id;
        case 3: return d.order;
        case 4: return d.source_identifier;
        case 5: return d.brief;
        case 6: return d.telephone;
        case 7: return d.tags;
        case 8: return d.extention;
        case 9: return d.org_dept_owner;
        case 10: return d.hide_dept;
        case 11: return d.outer_dept;
        case 12: return d.from_union_org;
        case 13: return d.manager_userids;
    }
    return std::string();
}

const char* type_name(ValueType t) {
    switch (t) {
        case ValueType::string: return "string";
        case ValueType::integer: return "integer";
        case ValueType::boolean: return "boolean";
        case ValueType::list: return "list";
    }
    return "?";
}

std::string a_type(ValueType t) { return std::string(t == ValueType::integer ? "an " : "a ") + type_name(t); }

std::string join(const std::vector<std::string>& items, const std::string& sep) {
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
    return out;
}

std::string to_text(const Value& v);

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

}  // namespace

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
            if (c == 'Y') out += std::to_string(y);
            else if (c == 'm') out += two(m);
            else if (c == 'd') out += two(d);
            else if (c == 'H') out += two(static_cast<unsigned>(sod / 3600));
            else if (c == 'M') out += two(static_cast<unsigned>(sod / 60 % 60));
            else if (c == 'S') out += two(static_cast<unsigned>(sod % 60));
            else if (c == '%') out += '%';
            else out += std::string("%") + c;
        } else {
            out.push_back(format[i]);
        }
    }
    return out;
}

// ---- compiler ----

struct MappingCompiler {
    const FieldDef* fields;
    size_t nfields;
    bool user_record;
    const std::string* source = nullptr;  // the file's text, to place columns inside quoted scalars

    int field_id(std::string_view name) const {
        for (size_t i = 0; i < nfields; ++i)
            if (name == fields[i].name) return static_cast<int>(i);
        return -1;
    }
    std::string field_list() const {
        std::string s;
        for (size_t i = 0; i < nfields; ++i) s += (i ? ", " : "") + std::string(fields[i].name);
        return s;
    }

    // Column of offset `off` inside the scalar of `node` (accounts for an opening quote).
    [[noreturn]] void fail_at(const ConfigNode& node, size_t off, const std::string& reason) const {
        int col = node.column();
        if (source) {
            std::istringstream in(*source);
            std::string line;
            for (int i = 0; i < node.line() && std::getline(in, line);) ++i;
            if (col >= 1 && static_cast<size_t>(col) <= line.size() && (line[col - 1] == '"' || line[col - 1] == '\''))
                ++col;
        }
        throw ConfigError(node.file(), node.line(), col + static_cast<int>(off), node.path(), reason);
    }

    Expr compile_expr(const ConfigNode& node, const std::string& text, size_t base) const {
        // text: "field | filter | filter(arg)"; base = offset of text within the scalar.
        Expr e;
        size_t pos = 0;
        auto skip_ws = [&] {
            while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos]))) ++pos;
        };
        auto ident = [&]() -> std::string {
            skip_ws();
            size_t s = pos;
            while (pos < text.size() && (std::isalnum(static_cast<unsigned char>(text[pos])) || text[pos] == '_')) ++pos;
            return text.substr(s, pos - s);
        };
        skip_ws();
        size_t fpos = pos;
        std::string fname = ident();
        if (fname.empty()) fail_at(node, base + fpos, "expected a DingTalk field name inside {{ }}");
        e.field = field_id(fname);
        if (e.field < 0)
            fail_at(node, base + fpos, "unknown source field '" + fname + "' (known: " + field_list() + ")");
        e.type = fields[e.field].type;
        skip_ws();
        while (pos < text.size()) {
            if (text[pos] != '|') fail_at(node, base + pos, "expected '|' between filters");
            ++pos;
            skip_ws();
            size_t npos = pos;
            std::string name = ident();
            Filter f;
            std::optional<std::string> arg;
            bool arg_quoted = false;
            size_t apos = 0;
            skip_ws();
            if (pos < text.size() && text[pos] == '(') {
                ++pos;
                skip_ws();
                apos = pos;
                if (pos < text.size() && (text[pos] == '"' || text[pos] == '\'')) {
                    char q = text[pos++];
                    size_t s = pos;
                    while (pos < text.size() && text[pos] != q) ++pos;
                    if (pos >= text.size()) fail_at(node, base + apos, "unterminated string in filter argument");
                    arg = text.substr(s, pos - s);
                    arg_quoted = true;
                    ++pos;
                } else {
                    arg = ident();
                }
                skip_ws();
                if (pos >= text.size() || text[pos] != ')') fail_at(node, base + pos, "expected ')'");
                ++pos;
                skip_ws();
            }
            auto need = [&](ValueType t) {
                if (e.type != t)
                    fail_at(node, base + npos, "filter '" + name + "' needs " + a_type(t) + " value, got " + a_type(e.type));
            };
            auto no_arg = [&] {
                if (arg) fail_at(node, base + apos, "filter '" + name + "' takes no argument");
            };
            if (name == "lower" || name == "upper" || name == "trim" || name == "email_local") {
                no_arg();
                need(ValueType::string);
                f.op = name == "lower" ? Filter::Op::lower
                       : name == "upper" ? Filter::Op::upper
                       : name == "trim"  ? Filter::Op::trim
                                         : Filter::Op::email_local;
            } else if (name == "e164") {
                need(ValueType::string);
                if (!user_record && !arg) fail_at(node, base + npos, "filter 'e164' on a department needs a country code argument");
                f.op = Filter::Op::e164;
                if (arg) f.literal = *arg;
            } else if (name == "date") {
                need(ValueType::integer);
                f.op = Filter::Op::date;
                f.literal = arg ? *arg : "%Y-%m-%d";
                if (arg && !arg_quoted) fail_at(node, base + apos, "date format must be quoted, e.g. date(\"%Y-%m-%d\")");
                e.type = ValueType::string;
            } else if (name == "json") {
                need(ValueType::string);
                if (!arg || !arg_quoted) fail_at(node, base + npos, "filter 'json' needs a quoted key, e.g. json(\"工位\")");
                f.op = Filter::Op::json_key;
                f.literal = *arg;
            } else if (name == "join") {
                need(ValueType::list);
                if (arg && !arg_quoted) fail_at(node, base + apos, "join's separator must be quoted, e.g. join(\",\")");
                f.op = Filter::Op::join;
                f.literal = arg ? *arg : ",";
                e.type = ValueType::string;
            } else if (name == "first") {
                no_arg();
                need(ValueType::list);
                f.op = Filter::Op::first;
                e.type = ValueType::string;
            } else if (name == "count") {
                no_arg();
                need(ValueType::list);
                f.op = Filter::Op::count;
                e.type = ValueType::integer;
            } else if (name == "default") {
                if (!arg) fail_at(node, base + npos, "filter 'default' needs an argument: a field name or a quoted string");
                if (arg_quoted) {
                    need(ValueType::string);
                    f.op = Filter::Op::default_literal;
                    f.literal = *arg;
                } else {
                    f.op = Filter::Op::default_field;
                    f.field = field_id(*arg);
                    if (f.field < 0)
                        fail_at(node, base + apos, "unknown source field '" + *arg + "' (known: " + field_list() + ")");
                    if (fields[f.field].type != e.type)
                        fail_at(node, base + apos, "default(" + *arg + ") is " + a_type(fields[f.field].type) +
                                                       " but the value is " + a_type(e.type));
                }
            } else if (name.empty()) {
                fail_at(node, base + npos, "expected a filter name after '|'");
            } else {
                fail_at(node, base + npos,
                        "unknown filter '" + name +
                            "' (known: lower, upper, trim, email_local, e164, date, json, join, first, count, default)");
            }
            e.filters.push_back(std::move(f));
        }
        return e;
    }

    Template compile(const ConfigNode& node, ValueType want) const {
        if (!node.is_scalar()) node.fail("must be a string template or a constant");
        const std::string text = node.as_string();
        Template t;
        size_t pos = 0;
        while (pos < text.size()) {
            size_t open = text.find("{{", pos);
            if (open == std::string::npos) {
                t.parts.push_back({text.substr(pos), std::nullopt});
                break;
            }
            if (open > pos) t.parts.push_back({text.substr(pos, open - pos), std::nullopt});
            size_t close = text.find("}}", open + 2);
            if (close == std::string::npos) fail_at(node, open, "'{{' without a closing '}}'");
            t.parts.push_back({"", compile_expr(node, text.substr(open + 2, close - open - 2), open + 2)});
            pos = close + 2;
        }
        if (text.find("}}") != std::string::npos && t.parts.empty()) fail_at(node, 0, "stray '}}'");
        bool single = t.parts.size() == 1 && t.parts[0].expr;
        bool constant = std::all_of(t.parts.begin(), t.parts.end(), [](const auto& p) { return !p.expr; });
        t.type = single ? t.parts[0].expr->type : ValueType::string;
        for (const auto& p : t.parts)
            if (p.expr && p.expr->type == ValueType::list)
                fail_at(node, 0, "a list field needs join(\",\"), first or count to become a value");
        if (want == ValueType::string) return t;
        if (constant) {
            std::string c = t.parts.empty() ? "" : t.parts[0].text;
            if (want == ValueType::boolean && c != "true" && c != "false")
                fail_at(node, 0, "must be a boolean: true, false or a template of a boolean field");
            if (want == ValueType::integer) {
                char* end = nullptr;
                (void)std::strtoll(c.c_str(), &end, 10);
                if (c.empty() || *end != 0) fail_at(node, 0, "must be an integer or a template of an integer field");
            }
            t.type = want;
            return t;
        }
        if (!single || t.type != want)
            fail_at(node, 0, "must be " + a_type(want) + " (a single {{ }} of " + a_type(want) +
                                 " field), but this template gives " + a_type(t.type));
        return t;
    }
};

namespace {

Value eval_expr(const Expr& e, const std::function<Value(int)>& get, const std::string& state_code,
                const std::string& default_cc, int tz) {
    Value v = get(e.field);
    for (const auto& f : e.filters) {
        switch (f.op) {
            case Filter::Op::lower: {
                auto& s = std::get<std::string>(v);  // in place: this runs per user per field
                for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                break;
            }
            case Filter::Op::upper: {
                auto& s = std::get<std::string>(v);
                for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
                break;
            }
            case Filter::Op::trim: v = trim_copy(std::get<std::string>(v)); break;
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
            case Filter::Op::date: v = format_ms_date(std::get<std::int64_t>(v), tz, f.literal); break;
            case Filter::Op::default_field:
                if (is_empty(v)) v = get(f.field);
                break;
            case Filter::Op::default_literal:
                if (is_empty(v)) v = f.literal;
                break;
            case Filter::Op::json_key: v = json_member(std::get<std::string>(v), f.literal); break;
            case Filter::Op::join: v = join(std::get<std::vector<std::string>>(v), f.literal); break;
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

Value eval(const Template& t, const std::function<Value(int)>& get, const std::string& state_code,
           const std::string& default_cc, int tz) {
    if (t.parts.size() == 1 && t.parts[0].expr) return eval_expr(*t.parts[0].expr, get, state_code, default_cc, tz);
    std::string out;
    for (const auto& p : t.parts) out += p.expr ? to_text(eval_expr(*p.expr, get, state_code, default_cc, tz)) : p.text;
    if (t.type == ValueType::boolean) return out == "true";
    if (t.type == ValueType::integer) return static_cast<std::int64_t>(std::strtoll(out.c_str(), nullptr, 10));
    return out;
}

const std::map<std::string, std::pair<ValueType, const char*>>& dept_schema() {
    static const std::map<std::string, std::pair<ValueType, const char*>> m = {
        {"name", {ValueType::string, "{{ name }}"}},
        {"description", {ValueType::string, "{{ brief }}"}},
        {"order", {ValueType::integer, "{{ order }}"}},
    };
    return m;
}

const std::map<std::string, std::pair<ValueType, const char*>>& user_schema() {
    static const std::map<std::string, std::pair<ValueType, const char*>> m = {
        {"union_id", {ValueType::string, "{{ unionid }}"}},
        {"username", {ValueType::string, "{{ email | email_local | default(job_number) | default(userid) | lower | trim }}"}},
        {"display_name", {ValueType::string, "{{ name | trim }}"}},
        {"email", {ValueType::string, "{{ org_email | default(email) | lower | trim }}"}},
        {"phone", {ValueType::string, "{{ mobile | e164 }}"}},
        {"employee_number", {ValueType::string, "{{ job_number }}"}},
        {"title", {ValueType::string, "{{ title }}"}},
        {"active", {ValueType::boolean, "{{ active }}"}},
        {"avatar_url", {ValueType::string, "{{ avatar }}"}},
        {"hired_at", {ValueType::string, "{{ hired_date | date }}"}},
    };
    return m;
}

void compile_section(const std::optional<ConfigNode>& section, const YAML::Node& raw, const MappingCompiler& c,
                     const std::map<std::string, std::pair<ValueType, const char*>>& schema,
                     std::map<std::string, Template>& out) {
    for (const auto& [field, spec] : schema) {
        std::optional<ConfigNode> n = section ? section->find(field) : std::nullopt;
        if (n) {
            out[field] = c.compile(*n, spec.first);
        } else {
            auto def = ConfigNode::load_string(std::string("v: \"") + spec.second + "\"", "(built-in mapping)");
            out[field] = c.compile(def.get("v"), spec.first);
        }
    }
    if (!section) return;
    if (auto custom = section->find("custom")) {
        if (!custom->is_null()) {
            if (!custom->is_map()) custom->fail("must be a map of attribute name to template");
            // ConfigNode has no key iteration; the raw node gives the names, ConfigNode the positions.
            YAML::Node rc = raw["custom"];
            for (auto it = rc.begin(); it != rc.end(); ++it) {
                if (!it->first.IsScalar()) custom->fail("attribute names must be plain strings");
                std::string key = it->first.Scalar();
                if (key.empty()) custom->fail("attribute names must not be empty");
                out["custom." + key] = c.compile(custom->get(key), ValueType::string);
            }
        }
    }
    section->reject_unknown();
}

}  // namespace

Mapping Mapping::load_file(const std::string& path) {
    auto node = ConfigNode::load_file(path);  // throws with the position on syntax errors
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return from_node(node, YAML::LoadFile(path), text.str());
}

Mapping Mapping::load_string(const std::string& text, const std::string& name) {
    auto node = ConfigNode::load_string(text, name);
    return from_node(node, YAML::Load(text), text);
}

Mapping Mapping::from_node(const ConfigNode& root, const YAML::Node& raw, const std::string& source) {
    Mapping m;
    if (root.is_null()) return from_node(ConfigNode::load_string("{}", root.file()), YAML::Load("{}"), "{}");
    if (!root.is_map()) root.fail("a mapping file is a YAML map (department, user, phone, dates, sync, removed_users)");
    if (auto phone = root.find("phone")) {
        m.default_country_ = phone->get_string("default_country_code", "86");
        if (m.default_country_.empty() || !std::all_of(m.default_country_.begin(), m.default_country_.end(),
                                                        [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
            phone->get("default_country_code").fail("must be digits, e.g. \"86\"");
        phone->reject_unknown();
    }
    if (auto dates = root.find("dates")) {
        if (auto off = dates->find("utc_offset")) {
            std::string t = off->as_string();
            int h = 0, mi = 0;
            char sign = 0;
            if (std::sscanf(t.c_str(), "%c%d:%d", &sign, &h, &mi) != 3 || (sign != '+' && sign != '-') || h > 14 || mi > 59)
                off->fail("must look like +08:00 or -05:30");
            m.tz_offset_minutes_ = (sign == '-' ? -1 : 1) * (h * 60 + mi);
        }
        dates->reject_unknown();
    }
    MappingCompiler users{kUserFields, std::size(kUserFields), true, &source};
    MappingCompiler depts{kDeptFields, std::size(kDeptFields), false, &source};
    compile_section(root.find("department"), raw["department"], depts, dept_schema(), m.dept_);
    compile_section(root.find("user"), raw["user"], users, user_schema(), m.user_);
    if (auto sync = root.find("sync")) {
        auto ids = [](const ConfigNode& list, std::vector<std::int64_t>& out) {
            if (!list.is_sequence()) list.fail("must be a list of DingTalk department ids");
            for (const auto& item : list.items()) out.push_back(item.as_int(1, INT64_MAX));
        };
        if (auto inc = sync->find("include_departments")) ids(*inc, m.include_);
        if (auto exc = sync->find("exclude_departments")) {
            std::vector<std::int64_t> v;
            ids(*exc, v);
            m.exclude_.insert(v.begin(), v.end());
        }
        if (auto skip = sync->find("skip_users")) {
            if (!skip->is_sequence()) skip->fail("must be a list of {field, equals} rules");
            for (const auto& rule : skip->items()) {
                SkipRule r;
                auto f = rule.get("field");
                r.field = users.field_id(f.as_string());
                if (r.field < 0) f.fail("unknown source field '" + f.as_string() + "' (known: " + users.field_list() + ")");
                r.equals = rule.get("equals").as_string();
                rule.reject_unknown();
                m.skip_.push_back(r);
            }
        }
        if (auto policy = sync->find("conflict_policy")) {
            std::string v = policy->as_string();
            if (v == "clear_field")
                m.conflict_policy_ = ConflictPolicy::clear_field;
            else if (v == "skip_user")
                m.conflict_policy_ = ConflictPolicy::skip_user;
            else
                policy->fail("must be clear_field or skip_user");
        }
        if (auto source = sync->find("manager_source")) {
            std::string v = source->as_string();
            if (v == "leaders")
                m.manager_source_ = ManagerSource::leaders;
            else if (v == "dingtalk")
                m.manager_source_ = ManagerSource::dingtalk;
            else
                source->fail("must be leaders or dingtalk");
        }
        sync->reject_unknown();
    }
    if (auto removed = root.find("removed_users")) {
        if (auto action = removed->find("action")) {
            std::string a = action->as_string();
            if (a == "disable") m.removed_action_ = RemovedUserAction::disable;
            else if (a == "delete") m.removed_action_ = RemovedUserAction::del;
            else action->fail("must be disable or delete");
        }
        if (auto after = removed->find("delete_after")) {
            if (m.removed_action_ != RemovedUserAction::disable) after->fail("delete_after applies to action: disable");
            m.delete_after_ = std::chrono::duration_cast<std::chrono::seconds>(after->as_duration());
        }
        removed->reject_unknown();
    }
    root.reject_unknown();
    return m;
}

bool Mapping::needs_department_get() const {
    // kDeptFields: 0 dept_id, 1 name, 2 parent_id are in every department listing.
    for (const auto& [field, t] : dept_)
        for (const auto& part : t.parts) {
            if (!part.expr) continue;
            if (part.expr->field > 2) return true;
            for (const auto& f : part.expr->filters)
                if (f.op == Filter::Op::default_field && f.field > 2) return true;
        }
    return false;
}

OrgDepartment Mapping::map_department(const dingtalk::DeptDetail& d) const {
    auto get = [&](int id) { return dept_field(d, id); };
    OrgDepartment o;
    o.external_id = std::to_string(d.dept_id);
    for (const auto& [field, t] : dept_) {
        Value v = eval(t, get, "", default_country_, tz_offset_minutes_);
        if (field == "name") o.name = to_text(std::move(v));
        else if (field == "description") o.description = to_text(std::move(v));
        else if (field == "order") o.order = std::get_if<std::int64_t>(&v) ? std::get<std::int64_t>(v) : 0;
        else if (field.rfind("custom.", 0) == 0) {
            std::string s = to_text(std::move(v));
            if (!s.empty()) o.custom[field.substr(7)] = std::move(s);
        }
    }
    return o;
}

OrgUser Mapping::map_user(const dingtalk::UserItem& u) const {
    auto get = [&](int id) { return user_field(u, id); };
    OrgUser o;
    o.external_id = u.userid;
    for (const auto& [field, t] : user_) {
        Value v = eval(t, get, u.state_code, default_country_, tz_offset_minutes_);
        if (field == "active") {
            o.active = std::get_if<bool>(&v) ? std::get<bool>(v) : true;
            continue;
        }
        std::string s = to_text(std::move(v));
        if (field == "union_id") o.union_id = std::move(s);
        else if (field == "username") o.username = std::move(s);
        else if (field == "display_name") o.display_name = std::move(s);
        else if (field == "email") o.email = std::move(s);
        else if (field == "phone") o.phone = std::move(s);
        else if (field == "employee_number") o.employee_number = std::move(s);
        else if (field == "title") o.title = std::move(s);
        else if (field == "avatar_url") o.avatar_url = std::move(s);
        else if (field == "hired_at") o.hired_at = std::move(s);
        else if (field.rfind("custom.", 0) == 0) {
            if (!s.empty()) o.custom[field.substr(7)] = std::move(s);
        }
    }
    return o;
}

bool Mapping::skip_user(const dingtalk::UserItem& u) const {
    for (const auto& r : skip_)
        if (to_text(user_field(u, r.field)) == r.equals) return true;
    return false;
}

}  // namespace dingbridge::agent
