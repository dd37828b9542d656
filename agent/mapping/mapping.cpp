#include "agent/mapping/mapping.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "agent/dingtalk/fields.h"

namespace dingbridge::agent {

namespace {

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
        {"username",
         {ValueType::string, "{{ email | email_local | default(job_number) | default(userid) | lower | trim }}"}},
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

void compile_section(const std::optional<ConfigNode>& section, const YAML::Node& raw, const TemplateCompiler& c,
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

// Reads mapping.yaml into a Mapping (a friend: it fills the private members). ConfigNode gives
// positions for every error; the raw YAML node gives the names of `custom` attributes.
struct MappingLoader {
    static Mapping from_node(const ConfigNode& root, const YAML::Node& raw, const std::string& source) {
        Mapping m;
        if (root.is_null()) return from_node(ConfigNode::load_string("{}", root.file()), YAML::Load("{}"), "{}");
        if (!root.is_map())
            root.fail("a mapping file is a YAML map (department, user, phone, dates, sync, removed_users)");
        if (auto phone = root.find("phone")) load_phone(*phone, m);
        if (auto dates = root.find("dates")) load_dates(*dates, m);
        TemplateCompiler users{user_field_defs(), true, &source};
        TemplateCompiler depts{dept_field_defs(), false, &source};
        compile_section(root.find("department"), raw["department"], depts, dept_schema(), m.dept_);
        compile_section(root.find("user"), raw["user"], users, user_schema(), m.user_);
        if (auto sync = root.find("sync")) load_sync(*sync, users, m);
        if (auto removed = root.find("removed_users")) load_removed_users(*removed, m);
        root.reject_unknown();
        return m;
    }

    static void load_phone(const ConfigNode& phone, Mapping& m) {
        std::string& cc = m.eval_.default_country;
        cc = phone.get_string("default_country_code", "86");
        if (cc.empty() ||
            !std::all_of(cc.begin(), cc.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
            phone.get("default_country_code").fail("must be digits, e.g. \"86\"");
        phone.reject_unknown();
    }

    static void load_dates(const ConfigNode& dates, Mapping& m) {
        if (auto off = dates.find("utc_offset")) {
            std::string t = off->as_string();
            int h = 0, mi = 0;
            char sign = 0;
            if (std::sscanf(t.c_str(), "%c%d:%d", &sign, &h, &mi) != 3 || (sign != '+' && sign != '-') || h > 14 ||
                mi > 59)
                off->fail("must look like +08:00 or -05:30");
            m.eval_.tz_offset_minutes = (sign == '-' ? -1 : 1) * (h * 60 + mi);
        }
        dates.reject_unknown();
    }

    static void load_sync(const ConfigNode& sync, const TemplateCompiler& users, Mapping& m) {
        m.scope_.load(sync, users);
        if (auto policy = sync.find("conflict_policy"))
            m.conflict_policy_ = policy->as_choice<ConflictPolicy>(
                {{"clear_field", ConflictPolicy::clear_field}, {"skip_user", ConflictPolicy::skip_user}});
        if (auto source = sync.find("manager_source"))
            m.manager_source_ = source->as_choice<ManagerSource>(
                {{"leaders", ManagerSource::leaders}, {"dingtalk", ManagerSource::dingtalk}});
        sync.reject_unknown();
    }

    static void load_removed_users(const ConfigNode& removed, Mapping& m) {
        if (auto action = removed.find("action"))
            m.removed_action_ = action->as_choice<RemovedUserAction>(
                {{"disable", RemovedUserAction::disable}, {"delete", RemovedUserAction::del}});
        if (auto after = removed.find("delete_after")) {
            if (m.removed_action_ != RemovedUserAction::disable) after->fail("delete_after applies to action: disable");
            m.delete_after_ = std::chrono::duration_cast<std::chrono::seconds>(after->as_duration());
        }
        removed.reject_unknown();
    }
};

Mapping Mapping::load_file(const std::string& path) {
    auto node = ConfigNode::load_file(path);  // throws with the position on syntax errors
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return MappingLoader::from_node(node, YAML::LoadFile(path), text.str());
}

Mapping Mapping::load_string(const std::string& text, const std::string& name) {
    auto node = ConfigNode::load_string(text, name);
    return MappingLoader::from_node(node, YAML::Load(text), text);
}

bool Mapping::needs_department_get() const {
    // The first fields (dept_id, name, parent_id) are in every department listing.
    constexpr int listed = static_cast<int>(dingtalk::kDeptListedFields);
    for (const auto& [field, t] : dept_)
        for (const auto& part : t.parts) {
            if (!part.expr) continue;
            if (part.expr->field >= listed) return true;
            for (const auto& f : part.expr->filters)
                if (f.op == Filter::Op::default_field && f.field >= listed) return true;
        }
    return false;
}

bool Mapping::reads_user_field(std::string_view name) const {
    const auto& defs = user_field_defs();
    int id = -1;
    for (std::size_t i = 0; i < defs.size(); ++i)
        if (defs[i].name == name) id = static_cast<int>(i);
    if (id < 0) return false;
    for (const auto& [field, t] : user_)
        for (const auto& part : t.parts) {
            if (!part.expr) continue;
            if (part.expr->field == id) return true;
            for (const auto& f : part.expr->filters)
                if (f.op == Filter::Op::default_field && f.field == id) return true;
        }
    return scope_.reads_user_field(id);
}

OrgDepartment Mapping::map_department(const dingtalk::DeptDetail& d) const {
    auto get = [&](int id) { return dept_field(d, id); };
    OrgDepartment o;
    o.external_id = std::to_string(d.dept_id);
    for (const auto& [field, t] : dept_) {
        Value v = evaluate(t, get, eval_);
        if (field == "name")
            o.name = to_text(std::move(v));
        else if (field == "description")
            o.description = to_text(std::move(v));
        else if (field == "order")
            o.order = std::get_if<std::int64_t>(&v) ? std::get<std::int64_t>(v) : 0;
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
        EvalContext ctx = eval_;
        ctx.state_code = u.state_code;
        Value v = evaluate(t, get, ctx);
        if (field == "active") {
            o.active = std::get_if<bool>(&v) ? std::get<bool>(v) : true;
            continue;
        }
        std::string s = to_text(std::move(v));
        if (SmallString* member = user_text_field(o, field))
            *member = std::move(s);
        else if (field.rfind("custom.", 0) == 0 && !s.empty())
            o.custom[field.substr(7)] = std::move(s);
    }
    return o;
}

bool Mapping::skip_user(const dingtalk::UserItem& u) const { return scope_.skip_user(u); }

}  // namespace dingbridge::agent
