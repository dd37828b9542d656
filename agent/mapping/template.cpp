#include "agent/mapping/template.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>

#include "agent/dingtalk/fields.h"
#include "shared/enum_table.h"

namespace dingbridge::agent {

namespace {

template <class Record>
ValueType value_type(const dingtalk::FieldMember<Record>& member) {
    switch (member.index()) {  // the order of dingtalk::FieldMember's alternatives
        case 0:
        case 1:
            return ValueType::string;
        case 2:
            return ValueType::integer;
        case 3:
            return ValueType::boolean;
        default:
            return ValueType::list;  // ids or strings: a list of strings to the templates
    }
}

template <class Record, std::size_t N>
std::vector<FieldDef> field_defs(const dingtalk::SourceField<Record> (&table)[N]) {
    std::vector<FieldDef> defs;
    for (const auto& f : table) defs.push_back(FieldDef{f.key, value_type(f.member)});
    return defs;
}

Value to_value(const std::string& v) { return v; }
Value to_value(std::int64_t v) { return v; }
Value to_value(bool v) { return v; }
Value to_value(const std::vector<std::string>& v) { return v; }
Value to_value(const std::vector<std::int64_t>& v) {
    std::vector<std::string> ids;
    for (auto id : v) ids.push_back(std::to_string(id));
    return ids;
}

template <class Record, std::size_t N>
Value source_field(const dingtalk::SourceField<Record> (&table)[N], const Record& r, int id) {
    if (id < 0 || static_cast<std::size_t>(id) >= N) return std::string();
    return std::visit([&](auto member) { return to_value(r.*member); }, table[id].member);
}

constexpr auto kValueTypeNames = enum_table<ValueType::list>({"string", "integer", "boolean", "list"});

const char* type_name(ValueType t) { return kValueTypeNames.get(t, "?"); }

}  // namespace

const std::vector<FieldDef>& user_field_defs() {
    static const std::vector<FieldDef> defs = field_defs(dingtalk::kUserFields);
    return defs;
}

const std::vector<FieldDef>& dept_field_defs() {
    static const std::vector<FieldDef> defs = field_defs(dingtalk::kDeptFields);
    return defs;
}

Value user_field(const dingtalk::UserItem& u, int id) { return source_field(dingtalk::kUserFields, u, id); }
Value dept_field(const dingtalk::DeptDetail& d, int id) { return source_field(dingtalk::kDeptFields, d, id); }

std::string a_type(ValueType t) { return std::string(t == ValueType::integer ? "an " : "a ") + type_name(t); }

int TemplateCompiler::field_id(std::string_view name) const {
    for (size_t i = 0; i < fields_.size(); ++i)
        if (name == fields_[i].name) return static_cast<int>(i);
    return -1;
}

std::string TemplateCompiler::field_list() const {
    std::string s;
    for (size_t i = 0; i < fields_.size(); ++i) s += (i ? ", " : "") + std::string(fields_[i].name);
    return s;
}

// Column of offset `off` inside the scalar of `node` (accounts for an opening quote).
void TemplateCompiler::fail_at(const ConfigNode& node, size_t off, const std::string& reason) const {
    int col = node.column();
    if (source_) {
        std::istringstream in(*source_);
        std::string line;
        for (int i = 0; i < node.line() && std::getline(in, line);) ++i;
        if (col >= 1 && static_cast<size_t>(col) <= line.size() && (line[col - 1] == '"' || line[col - 1] == '\''))
            ++col;
    }
    throw ConfigError(node.file(), node.line(), col + static_cast<int>(off), node.path(), reason);
}

// One "| name" or "| name(arg)" of an expression, as written.
struct TemplateCompiler::FilterCall {
    std::string name;
    std::optional<std::string> arg;
    bool arg_quoted = false;
    size_t name_pos = 0, arg_pos = 0;  // offsets within the expression text
};

namespace {

void skip_ws(const std::string& text, size_t& pos) {
    while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos]))) ++pos;
}

std::string ident(const std::string& text, size_t& pos) {
    skip_ws(text, pos);
    size_t s = pos;
    while (pos < text.size() && (std::isalnum(static_cast<unsigned char>(text[pos])) || text[pos] == '_')) ++pos;
    return text.substr(s, pos - s);
}

}  // namespace

TemplateCompiler::FilterCall TemplateCompiler::read_filter_call(const ConfigNode& node, const std::string& text,
                                                                size_t& pos, size_t base) const {
    FilterCall call;
    skip_ws(text, pos);
    call.name_pos = pos;
    call.name = ident(text, pos);
    skip_ws(text, pos);
    if (pos >= text.size() || text[pos] != '(') return call;
    ++pos;
    skip_ws(text, pos);
    call.arg_pos = pos;
    if (pos < text.size() && (text[pos] == '"' || text[pos] == '\'')) {
        char q = text[pos++];
        size_t s = pos;
        while (pos < text.size() && text[pos] != q) ++pos;
        if (pos >= text.size()) fail_at(node, base + call.arg_pos, "unterminated string in filter argument");
        call.arg = text.substr(s, pos - s);
        call.arg_quoted = true;
        ++pos;
    } else {
        call.arg = ident(text, pos);
    }
    skip_ws(text, pos);
    if (pos >= text.size() || text[pos] != ')') fail_at(node, base + pos, "expected ')'");
    ++pos;
    skip_ws(text, pos);
    return call;
}

Expr TemplateCompiler::compile_expr(const ConfigNode& node, const std::string& text, size_t base) const {
    // text: "field | filter | filter(arg)"; base = offset of text within the scalar.
    Expr e;
    size_t pos = 0;
    skip_ws(text, pos);
    size_t fpos = pos;
    std::string fname = ident(text, pos);
    if (fname.empty()) fail_at(node, base + fpos, "expected a DingTalk field name inside {{ }}");
    e.field = field_id(fname);
    if (e.field < 0) fail_at(node, base + fpos, "unknown source field '" + fname + "' (known: " + field_list() + ")");
    e.type = fields_[e.field].type;
    skip_ws(text, pos);
    while (pos < text.size()) {
        if (text[pos] != '|') fail_at(node, base + pos, "expected '|' between filters");
        ++pos;
        FilterCall call = read_filter_call(node, text, pos, base);
        e.filters.push_back(compile_filter(node, call, e, base));
    }
    return e;
}

// The filter `call` applied to a value of type e.type; sets e.type to the result's type.
Filter TemplateCompiler::compile_filter(const ConfigNode& node, const FilterCall& call, Expr& e, size_t base) const {
    const std::string& name = call.name;
    const auto& arg = call.arg;
    const size_t npos = base + call.name_pos, apos = base + call.arg_pos;
    auto need = [&](ValueType t) {
        if (e.type != t)
            fail_at(node, npos, "filter '" + name + "' needs " + a_type(t) + " value, got " + a_type(e.type));
    };
    auto no_arg = [&] {
        if (arg) fail_at(node, apos, "filter '" + name + "' takes no argument");
    };
    Filter f;
    if (name == "lower" || name == "upper" || name == "trim" || name == "email_local") {
        no_arg();
        need(ValueType::string);
        f.op = name == "lower"   ? Filter::Op::lower
               : name == "upper" ? Filter::Op::upper
               : name == "trim"  ? Filter::Op::trim
                                 : Filter::Op::email_local;
    } else if (name == "e164") {
        need(ValueType::string);
        if (!user_record_ && !arg) fail_at(node, npos, "filter 'e164' on a department needs a country code argument");
        f.op = Filter::Op::e164;
        if (arg) f.literal = *arg;
    } else if (name == "date") {
        need(ValueType::integer);
        f.op = Filter::Op::date;
        f.literal = arg ? *arg : "%Y-%m-%d";
        if (arg && !call.arg_quoted) fail_at(node, apos, "date format must be quoted, e.g. date(\"%Y-%m-%d\")");
        e.type = ValueType::string;
    } else if (name == "json") {
        need(ValueType::string);
        if (!arg || !call.arg_quoted) fail_at(node, npos, "filter 'json' needs a quoted key, e.g. json(\"工位\")");
        f.op = Filter::Op::json_key;
        f.literal = *arg;
    } else if (name == "join") {
        need(ValueType::list);
        if (arg && !call.arg_quoted) fail_at(node, apos, "join's separator must be quoted, e.g. join(\",\")");
        f.op = Filter::Op::join;
        f.literal = arg ? *arg : ",";
        e.type = ValueType::string;
    } else if (name == "first" || name == "count") {
        no_arg();
        need(ValueType::list);
        f.op = name == "first" ? Filter::Op::first : Filter::Op::count;
        e.type = name == "first" ? ValueType::string : ValueType::integer;
    } else if (name == "default") {
        return compile_default(node, call, e, base);
    } else if (name.empty()) {
        fail_at(node, npos, "expected a filter name after '|'");
    } else {
        fail_at(node, npos,
                "unknown filter '" + name +
                    "' (known: lower, upper, trim, email_local, e164, date, json, join, first, count, default)");
    }
    return f;
}

// default("text") or default(other_field) of the same type.
Filter TemplateCompiler::compile_default(const ConfigNode& node, const FilterCall& call, const Expr& e,
                                         size_t base) const {
    const size_t npos = base + call.name_pos, apos = base + call.arg_pos;
    if (!call.arg) fail_at(node, npos, "filter 'default' needs an argument: a field name or a quoted string");
    Filter f;
    if (call.arg_quoted) {
        if (e.type != ValueType::string)
            fail_at(node, npos,
                    "filter 'default' needs " + a_type(ValueType::string) + " value, got " + a_type(e.type));
        f.op = Filter::Op::default_literal;
        f.literal = *call.arg;
        return f;
    }
    f.op = Filter::Op::default_field;
    f.field = field_id(*call.arg);
    if (f.field < 0) fail_at(node, apos, "unknown source field '" + *call.arg + "' (known: " + field_list() + ")");
    if (fields_[f.field].type != e.type)
        fail_at(
            node, apos,
            "default(" + *call.arg + ") is " + a_type(fields_[f.field].type) + " but the value is " + a_type(e.type));
    return f;
}

Template TemplateCompiler::compile(const ConfigNode& node, ValueType want) const {
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
    check_type(node, t, want);
    bool single = t.parts.size() == 1 && t.parts[0].expr;
    t.type = want != ValueType::string ? want : single ? t.parts[0].expr->type : ValueType::string;
    return t;
}

// The template gives the schema field's type: a constant of that type or a single {{ }} of it.
void TemplateCompiler::check_type(const ConfigNode& node, const Template& t, ValueType want) const {
    bool single = t.parts.size() == 1 && t.parts[0].expr;
    bool constant = std::all_of(t.parts.begin(), t.parts.end(), [](const auto& p) { return !p.expr; });
    ValueType type = single ? t.parts[0].expr->type : ValueType::string;
    for (const auto& p : t.parts)
        if (p.expr && p.expr->type == ValueType::list)
            fail_at(node, 0, "a list field needs join(\",\"), first or count to become a value");
    if (want == ValueType::string) return;
    if (constant) {
        std::string c = t.parts.empty() ? "" : t.parts[0].text;
        if (want == ValueType::boolean && c != "true" && c != "false")
            fail_at(node, 0, "must be a boolean: true, false or a template of a boolean field");
        if (want == ValueType::integer) {
            char* end = nullptr;
            (void)std::strtoll(c.c_str(), &end, 10);
            if (c.empty() || *end != 0) fail_at(node, 0, "must be an integer or a template of an integer field");
        }
        return;
    }
    if (!single || type != want)
        fail_at(node, 0,
                "must be " + a_type(want) + " (a single {{ }} of " + a_type(want) +
                    " field), but this template gives " + a_type(type));
}

}  // namespace dingbridge::agent
