#pragma once
// The mapping's template language: a template such as
//   "{{ email | email_local | default(job_number) | lower }}"
// compiled once into parts of literal text and expressions (a source field read and a chain of
// filters), with every type checked at compile time, so that an unknown field or filter or a type
// mistake is a ConfigError at file:line:column. The source fields are those of the one table in
// agent/dingtalk/fields.h (a field's id is its position there). Pure; the compiled Template is
// immutable and evaluated by filters.h.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "agent/dingtalk/model.h"
#include "shared/config.h"

namespace dingbridge::agent {

enum class ValueType { string, integer, boolean, list };
using Value = std::variant<std::string, std::int64_t, bool, std::vector<std::string>>;

struct Filter {
    enum class Op {
        lower,
        upper,
        trim,
        email_local,
        e164,
        date,
        default_field,
        default_literal,
        json_key,
        join,
        first,
        count
    };
    Op op = Op::lower;
    int field = -1;       // default_field
    std::string literal;  // default_literal, date format, e164 country code, json key, join separator
};

struct Expr {
    int field = -1;
    std::vector<Filter> filters;
    ValueType type = ValueType::string;
};

// Literal text and {{ }} expressions, or one constant.
struct Template {
    struct Part {
        std::string text;
        std::optional<Expr> expr;
    };
    std::vector<Part> parts;
    ValueType type = ValueType::string;
};

// A source field offered to the templates.
struct FieldDef {
    std::string_view name;
    ValueType type;
};
const std::vector<FieldDef>& user_field_defs();
const std::vector<FieldDef>& dept_field_defs();
// The value of source field `id` (a position in user_field_defs()/dept_field_defs()).
Value user_field(const dingtalk::UserItem& u, int id);
Value dept_field(const dingtalk::DeptDetail& d, int id);

std::string a_type(ValueType t);  // "a string", "an integer", ...

// Compiles the templates of one record type (users or departments). `source` is the file's
// text, to place columns inside quoted scalars. Throws ConfigError.
class TemplateCompiler {
public:
    TemplateCompiler(const std::vector<FieldDef>& fields, bool user_record, const std::string* source)
        : fields_(fields), user_record_(user_record), source_(source) {}

    // `want`: the schema field's type; a template of another type is an error.
    Template compile(const ConfigNode& node, ValueType want) const;
    int field_id(std::string_view name) const;  // -1 when unknown
    std::string field_list() const;

private:
    struct FilterCall;
    [[noreturn]] void fail_at(const ConfigNode& node, size_t off, const std::string& reason) const;
    Expr compile_expr(const ConfigNode& node, const std::string& text, size_t base) const;
    FilterCall read_filter_call(const ConfigNode& node, const std::string& text, size_t& pos, size_t base) const;
    Filter compile_filter(const ConfigNode& node, const FilterCall& call, Expr& e, size_t base) const;
    Filter compile_default(const ConfigNode& node, const FilterCall& call, const Expr& e, size_t base) const;
    void check_type(const ConfigNode& node, const Template& t, ValueType want) const;

    const std::vector<FieldDef>& fields_;
    bool user_record_;
    const std::string* source_;
};

}  // namespace dingbridge::agent
