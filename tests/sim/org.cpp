#include "tests/sim/org.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <set>

namespace sim {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

namespace {

// ---- JSON field readers: absent keys leave the target untouched; wrong types are errors. ----

bool find(object o, std::string_view key, element& out) { return o.at_key(key).get(out) == simdjson::SUCCESS; }

Status read_int(element e, std::string_view key, int64_t& out) {
    switch (e.type()) {
        case element_type::INT64:
            out = int64_t(e);
            return {};
        case element_type::UINT64:
            out = static_cast<int64_t>(uint64_t(e));
            return {};
        case element_type::STRING: {
            // DingTalk SDKs sometimes send ids as strings; accept decimal text.
            std::string_view s = std::string_view(e);
            int64_t v = 0;
            auto r = std::from_chars(s.data(), s.data() + s.size(), v);
            if (r.ec != std::errc() || r.ptr != s.data() + s.size())
                return Status::fail(std::string(key) + " must be an integer");
            out = v;
            return {};
        }
        default:
            return Status::fail(std::string(key) + " must be an integer");
    }
}

Status get_int(object o, std::string_view key, int64_t& out) {
    element e;
    if (!find(o, key, e)) return {};
    return read_int(e, key, out);
}

Status get_str(object o, std::string_view key, std::string& out) {
    element e;
    if (!find(o, key, e)) return {};
    if (e.type() != element_type::STRING) return Status::fail(std::string(key) + " must be a string");
    out = std::string(std::string_view(e));
    return {};
}

// extension/ext are JSON-object strings in DingTalk; a fixture may also give an object.
Status get_json_str(object o, std::string_view key, std::string& out) {
    element e;
    if (!find(o, key, e)) return {};
    if (e.type() == element_type::STRING) {
        out = std::string(std::string_view(e));
        return {};
    }
    if (e.type() == element_type::OBJECT) {
        out = simdjson::minify(e);
        return {};
    }
    return Status::fail(std::string(key) + " must be a string or an object");
}

Status get_bool(object o, std::string_view key, bool& out) {
    element e;
    if (!find(o, key, e)) return {};
    if (e.type() != element_type::BOOL) return Status::fail(std::string(key) + " must be a boolean");
    out = bool(e);
    return {};
}

Status get_str_list(object o, std::string_view key, std::vector<std::string>& out) {
    element e;
    if (!find(o, key, e)) return {};
    if (e.type() != element_type::ARRAY) return Status::fail(std::string(key) + " must be an array");
    std::vector<std::string> v;
    for (element x : array(e)) {
        if (x.type() != element_type::STRING) return Status::fail(std::string(key) + " must hold strings");
        v.emplace_back(std::string_view(x));
    }
    out = std::move(v);
    return {};
}

Status get_int_list(object o, std::string_view key, std::vector<int64_t>& out) {
    element e;
    if (!find(o, key, e)) return {};
    if (e.type() != element_type::ARRAY) return Status::fail(std::string(key) + " must be an array");
    std::vector<int64_t> v;
    for (element x : array(e)) {
        int64_t i = 0;
        if (auto s = read_int(x, key, i); !s.ok()) return s;
        v.push_back(i);
    }
    out = std::move(v);
    return {};
}

#define TRY(expr)                                  \
    do {                                           \
        if (auto s_ = (expr); !s_.ok()) return s_; \
    } while (0)

// Calls f(object) for each member of `list` (the value of o's `key`), which must be an array of
// objects; stops at the first error.
template <class F>
Status for_each_object(element list, std::string_view key, F f) {
    if (list.type() != element_type::ARRAY) return Status::fail(std::string(key) + " must be an array");
    for (element x : array(list)) {
        if (x.type() != element_type::OBJECT) return Status::fail(std::string(key) + " must hold objects");
        TRY(f(object(x)));
    }
    return {};
}

Status apply_dept_fields(Department& d, object o) {
    TRY(get_int(o, "dept_id", d.dept_id));
    TRY(get_str(o, "name", d.name));
    TRY(get_int(o, "parent_id", d.parent_id));
    TRY(get_int(o, "order", d.order));
    TRY(get_str(o, "source_identifier", d.source_identifier));
    TRY(get_str(o, "brief", d.brief));
    TRY(get_str(o, "telephone", d.telephone));
    TRY(get_str(o, "tags", d.tags));
    TRY(get_str(o, "extention", d.extention));
    TRY(get_json_str(o, "ext", d.ext));
    TRY(get_str(o, "org_dept_owner", d.org_dept_owner));
    TRY(get_bool(o, "hide_dept", d.hide_dept));
    TRY(get_str_list(o, "user_permits", d.user_permits));
    TRY(get_int_list(o, "dept_permits", d.dept_permits));
    TRY(get_bool(o, "outer_dept", d.outer_dept));
    TRY(get_int_list(o, "outer_permit_depts", d.outer_permit_depts));
    TRY(get_str_list(o, "outer_permit_users", d.outer_permit_users));
    TRY(get_bool(o, "create_dept_group", d.create_dept_group));
    TRY(get_bool(o, "auto_add_user", d.auto_add_user));
    TRY(get_bool(o, "auto_approve_apply", d.auto_approve_apply));
    TRY(get_bool(o, "group_contain_sub_dept", d.group_contain_sub_dept));
    TRY(get_str(o, "dept_group_chat_id", d.dept_group_chat_id));
    TRY(get_bool(o, "from_union_org", d.from_union_org));
    return {};
}

Status apply_user_fields(User& u, object o) {
    TRY(get_str(o, "userid", u.userid));
    TRY(get_str(o, "unionid", u.unionid));
    TRY(get_str(o, "name", u.name));
    TRY(get_str(o, "avatar", u.avatar));
    TRY(get_str(o, "state_code", u.state_code));
    TRY(get_str(o, "mobile", u.mobile));
    TRY(get_bool(o, "hide_mobile", u.hide_mobile));
    TRY(get_str(o, "telephone", u.telephone));
    TRY(get_str(o, "job_number", u.job_number));
    TRY(get_str(o, "title", u.title));
    TRY(get_str(o, "email", u.email));
    TRY(get_str(o, "org_email", u.org_email));
    TRY(get_str(o, "work_place", u.work_place));
    TRY(get_str(o, "remark", u.remark));
    TRY(get_json_str(o, "extension", u.extension));
    TRY(get_int(o, "hired_date", u.hired_date));
    TRY(get_bool(o, "active", u.active));
    TRY(get_bool(o, "admin", u.admin));
    TRY(get_bool(o, "boss", u.boss));
    TRY(get_bool(o, "exclusive_account", u.exclusive_account));
    TRY(get_str(o, "exclusive_account_type", u.exclusive_account_type));
    TRY(get_str(o, "login_id", u.login_id));
    TRY(get_str(o, "manager_userid", u.manager_userid));
    TRY(get_bool(o, "senior", u.senior));
    TRY(get_bool(o, "real_authed", u.real_authed));
    TRY(get_str(o, "org_email_type", u.org_email_type));
    TRY(get_bool(o, "access_limited", u.access_limited));

    // Department membership: dept_id_list sets the set (first = main); orders and leader flags
    // come from dept_order_list / leader_in_dept and are kept for departments that stay.
    std::vector<int64_t> ids;
    element e;
    if (find(o, "dept_id_list", e)) {
        TRY(get_int_list(o, "dept_id_list", ids));
        std::vector<UserDept> nd;
        for (auto id : ids) {
            bool dup = false;
            for (auto& x : nd) dup |= x.dept_id == id;
            if (dup) continue;
            UserDept ud{id, 0, false};
            if (auto* old = u.in_dept(id)) ud = *old;
            nd.push_back(ud);
        }
        u.depts = std::move(nd);
    }
    if (find(o, "dept_order_list", e)) {
        TRY(for_each_object(e, "dept_order_list", [&](object x) -> Status {
            int64_t id = 0, order = 0;
            TRY(get_int(x, "dept_id", id));
            TRY(get_int(x, "order", order));
            for (auto& d : u.depts)
                if (d.dept_id == id) d.order = order;
            return {};
        }));
    }
    if (find(o, "leader_in_dept", e)) {
        TRY(for_each_object(e, "leader_in_dept", [&](object x) -> Status {
            int64_t id = 0;
            bool leader = false;
            TRY(get_int(x, "dept_id", id));
            TRY(get_bool(x, "leader", leader));
            for (auto& d : u.depts)
                if (d.dept_id == id) d.leader = leader;
            return {};
        }));
    }
    if (find(o, "role_list", e)) {
        std::vector<Role> roles;
        TRY(for_each_object(e, "role_list", [&](object x) -> Status {
            Role r;
            TRY(get_int(x, "id", r.id));
            TRY(get_str(x, "name", r.name));
            TRY(get_str(x, "group_name", r.group_name));
            roles.push_back(std::move(r));
            return {};
        }));
        u.roles = std::move(roles);
    }
    return {};
}

// Deterministic PRNG (splitmix64): the standard distributions differ between library
// implementations, and a generated org must be identical everywhere.
struct Rng {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
    bool chance(int percent) { return below(100) < static_cast<uint64_t>(percent); }
    template <class T, size_t N>
    const T& pick(const T (&a)[N]) {
        return a[below(N)];
    }
};

std::string digits(Rng& r, int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s.push_back(static_cast<char>('0' + r.below(10)));
    return s;
}

std::string alnum(Rng& r, int n) {
    static const char k[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    std::string s;
    for (int i = 0; i < n; ++i) s.push_back(k[r.below(62)]);
    return s;
}

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace

std::optional<OrderField> parse_order_field(std::string_view s) {
    if (s == "custom") return OrderField::custom;
    if (s == "entry_asc") return OrderField::entry_asc;
    if (s == "entry_desc") return OrderField::entry_desc;
    if (s == "modify_asc") return OrderField::modify_asc;
    if (s == "modify_desc") return OrderField::modify_desc;
    return std::nullopt;
}

Status parse_generate_spec(std::string_view text, GenerateSpec& out) {
    while (!text.empty()) {
        auto comma = text.find(',');
        auto item = text.substr(0, comma);
        text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
        auto eq = item.find('=');
        if (eq == std::string_view::npos) return Status::fail("expected key=value, got '" + std::string(item) + "'");
        auto k = item.substr(0, eq), v = item.substr(eq + 1);
        uint64_t n = 0;
        auto r = std::from_chars(v.data(), v.data() + v.size(), n);
        if (r.ec != std::errc() || r.ptr != v.data() + v.size())
            return Status::fail("'" + std::string(k) + "' needs a non-negative integer");
        if (k == "users")
            out.users = static_cast<int64_t>(n);
        else if (k == "departments")
            out.departments = static_cast<int64_t>(n);
        else if (k == "depth")
            out.depth = static_cast<int>(std::max<uint64_t>(n, 1));
        else if (k == "seed")
            out.seed = n;
        else
            return Status::fail("unknown key '" + std::string(k) + "' (users, departments, depth, seed)");
    }
    if (out.users > 5'000'000 || out.departments > 1'000'000) return Status::fail("org too large");
    return {};
}

std::optional<int64_t> parse_iso8601_ms(std::string_view s) {
    // YYYY-MM-DDTHH:MM[:SS[.fff]](Z|±HH:MM)
    auto num = [&](size_t pos, size_t len, int& v) {
        if (pos + len > s.size()) return false;
        v = 0;
        for (size_t i = pos; i < pos + len; ++i) {
            if (s[i] < '0' || s[i] > '9') return false;
            v = v * 10 + (s[i] - '0');
        }
        return true;
    };
    int y, mo, d, h, mi, sec = 0, ms = 0;
    if (!num(0, 4, y) || s.size() < 16 || s[4] != '-' || !num(5, 2, mo) || s[7] != '-' || !num(8, 2, d) ||
        (s[10] != 'T' && s[10] != ' ') || !num(11, 2, h) || s[13] != ':' || !num(14, 2, mi))
        return std::nullopt;
    size_t p = 16;
    if (p < s.size() && s[p] == ':') {
        if (!num(p + 1, 2, sec)) return std::nullopt;
        p += 3;
        if (p < s.size() && s[p] == '.') {
            ++p;
            int scale = 100;
            while (p < s.size() && s[p] >= '0' && s[p] <= '9') {
                ms += (s[p] - '0') * scale;
                scale /= 10;
                ++p;
            }
        }
    }
    int64_t offset_min = 0;
    if (p < s.size() && s[p] == 'Z') {
        ++p;
    } else if (p < s.size() && (s[p] == '+' || s[p] == '-')) {
        int oh, om;
        if (!num(p + 1, 2, oh)) return std::nullopt;
        size_t q = p + 3;
        if (q < s.size() && s[q] == ':') ++q;
        if (!num(q, 2, om)) return std::nullopt;
        offset_min = (oh * 60 + om) * (s[p] == '+' ? 1 : -1);
        p = q + 2;
    } else {
        return std::nullopt;
    }
    if (p != s.size() || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
    int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
    return ((days * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60) * 1000) + ms;
}

std::string format_iso8601(int64_t ms) {
    int64_t secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    int64_t rem = secs - days * 86400;
    // civil_from_days
    int64_t z = days + 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = static_cast<int64_t>(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02lld:%02lld:%02lldZ", static_cast<long long>(y), m, d,
                  static_cast<long long>(rem / 3600), static_cast<long long>(rem / 60 % 60),
                  static_cast<long long>(rem % 60));
    return buf;
}

// ------------------------------------------------------------------------------------------

Org::Org(OrgOptions opts) : opts_(opts) {}

const Department* Org::dept(int64_t id) const {
    auto it = depts_.find(id);
    return it == depts_.end() ? nullptr : it->second.get();
}

const User* Org::user(std::string_view userid) const {
    auto it = users_.find(std::string(userid));
    return it == users_.end() ? nullptr : it->second.get();
}

size_t Org::user_count(bool only_active) const { return only_active ? users_.size() - inactive_users_ : users_.size(); }

std::vector<int64_t> Org::parent_chain(int64_t dept_id) const {
    std::vector<int64_t> chain;
    const Department* d = dept(dept_id);
    while (d && chain.size() < 1000) {
        chain.push_back(d->dept_id);
        if (d->dept_id == 1) break;
        d = dept(d->parent_id);
    }
    return chain;
}

void Org::resort_children(Department& p) {
    std::sort(p.children_.begin(), p.children_.end(), [this](int64_t a, int64_t b) {
        const auto* da = dept(a);
        const auto* db = dept(b);
        if (da->order != db->order) return da->order < db->order;
        return a < b;
    });
}

void Org::touch_dept(int64_t dept_id) {
    views_.erase(dept_id);
    auto it = depts_.find(dept_id);
    if (it == depts_.end()) return;
    Department& d = *it->second;
    // dept_manager_userid_list follows the members' leader flags, in custom order.
    d.leaders_.clear();
    for (const User* u : members(d, OrderField::custom, true))
        if (auto* ud = u->in_dept(dept_id); ud && ud->leader) d.leaders_.push_back(u->userid);
}

void Org::attach_member(const User& u) {
    for (const auto& ud : u.depts) {
        auto it = depts_.find(ud.dept_id);
        if (it == depts_.end()) continue;
        it->second->members_.push_back(&u);
        if (!bulk_) touch_dept(ud.dept_id);
    }
    if (!u.active) ++inactive_users_;
}

void Org::detach_member(const User& u) {
    for (const auto& ud : u.depts) {
        auto it = depts_.find(ud.dept_id);
        if (it == depts_.end()) continue;
        auto& m = it->second->members_;
        m.erase(std::remove(m.begin(), m.end(), &u), m.end());
        if (!bulk_) touch_dept(ud.dept_id);
    }
    if (!u.active) --inactive_users_;
}

const std::vector<const User*>& Org::members(const Department& d, OrderField f, bool include_access_limited) const {
    auto& cache = views_[d.dept_id];
    size_t slot = static_cast<size_t>(f) * 2 + (include_access_limited ? 1 : 0);
    auto& v = cache.views[slot];
    if (cache.valid[slot]) return v;
    v.clear();
    for (const User* u : d.members_)
        if (include_access_limited || !u->access_limited) v.push_back(u);
    const int64_t id = d.dept_id;
    auto by = [&](auto key, bool desc) {
        std::sort(v.begin(), v.end(), [&](const User* a, const User* b) {
            auto ka = key(a), kb = key(b);
            if (ka != kb) return desc ? kb < ka : ka < kb;
            return a->userid < b->userid;
        });
    };
    switch (f) {
        case OrderField::custom:
            by([id](const User* u) { return u->in_dept(id)->order; }, false);
            break;
        case OrderField::entry_asc:
            by([](const User* u) { return u->hired_date; }, false);
            break;
        case OrderField::entry_desc:
            by([](const User* u) { return u->hired_date; }, true);
            break;
        case OrderField::modify_asc:
            by([](const User* u) { return u->modify_time; }, false);
            break;
        case OrderField::modify_desc:
            by([](const User* u) { return u->modify_time; }, true);
            break;
    }
    cache.valid[slot] = true;
    return v;
}

// ---- serialisers ----

void Org::write_listsub_item(JsonWriter& w, const Department& d) const {
    w.begin_object();
    w.kv("dept_id", d.dept_id).kv("name", d.name);
    if (d.dept_id != 1 || opts_.root_parent_zero) w.kv("parent_id", d.parent_id);
    w.kv("create_dept_group", d.create_dept_group).kv("auto_add_user", d.auto_add_user);
    w.kv("from_union_org", d.from_union_org);
    w.kv_opt("source_identifier", d.source_identifier).kv_opt("tags", d.tags).kv_opt("ext", d.ext);
    w.end_object();
}

void Org::write_dept_get(JsonWriter& w, const Department& d) const {
    w.begin_object();
    w.kv("dept_id", d.dept_id).kv("name", d.name);
    if (d.dept_id != 1 || opts_.root_parent_zero) w.kv("parent_id", d.parent_id);
    w.kv("order", d.order);
    w.kv_opt("source_identifier", d.source_identifier).kv_opt("brief", d.brief);
    w.kv_opt("telephone", d.telephone).kv_opt("tags", d.tags).kv_opt("extention", d.extention);
    w.kv_opt("ext", d.ext);
    w.kv_list("dept_manager_userid_list", d.leaders_);
    w.kv_opt("org_dept_owner", d.org_dept_owner);
    w.kv("hide_dept", d.hide_dept);
    w.kv_list("user_permits", d.user_permits).kv_list("dept_permits", d.dept_permits);
    w.kv("outer_dept", d.outer_dept);
    w.kv_list("outer_permit_depts", d.outer_permit_depts);
    w.kv_list("outer_permit_users", d.outer_permit_users);
    w.kv("create_dept_group", d.create_dept_group).kv("auto_add_user", d.auto_add_user);
    w.kv("auto_approve_apply", d.auto_approve_apply);
    w.kv("group_contain_sub_dept", d.group_contain_sub_dept);
    w.kv_opt("dept_group_chat_id", d.dept_group_chat_id);
    w.kv("from_union_org", d.from_union_org);
    w.end_object();
}

namespace {
void write_user_common(JsonWriter& w, const User& u) {
    w.kv("userid", u.userid).kv_opt("unionid", u.unionid).kv("name", u.name);
    w.kv_opt("avatar", u.avatar).kv_opt("state_code", u.state_code).kv_opt("mobile", u.mobile);
    w.kv("hide_mobile", u.hide_mobile);
    w.kv_opt("telephone", u.telephone).kv_opt("job_number", u.job_number).kv_opt("title", u.title);
    w.kv_opt("email", u.email).kv_opt("org_email", u.org_email).kv_opt("work_place", u.work_place);
    w.kv_opt("remark", u.remark);
    w.key("dept_id_list").begin_array();
    for (const auto& d : u.depts) w.value(d.dept_id);
    w.end_array();
    w.kv_opt("extension", u.extension);
    if (u.hired_date != 0) w.kv("hired_date", u.hired_date);
    w.kv("active", u.active).kv("admin", u.admin).kv("boss", u.boss);
    w.kv("exclusive_account", u.exclusive_account);
    w.kv_opt("exclusive_account_type", u.exclusive_account_type).kv_opt("login_id", u.login_id);
}
}  // namespace

void Org::write_user_list_item(JsonWriter& w, const User& u, int64_t queried_dept) const {
    w.begin_object();
    write_user_common(w, u);
    const UserDept* ud = u.in_dept(queried_dept);
    w.kv("dept_order", ud ? ud->order : 0).kv("leader", ud ? ud->leader : false);
    w.end_object();
}

void Org::write_user_get(JsonWriter& w, const User& u, bool sim_fields) const {
    w.begin_object();
    write_user_common(w, u);
    w.key("dept_order_list").begin_array();
    for (const auto& d : u.depts) w.begin_object().kv("dept_id", d.dept_id).kv("order", d.order).end_object();
    w.end_array();
    w.key("leader_in_dept").begin_array();
    for (const auto& d : u.depts) w.begin_object().kv("dept_id", d.dept_id).kv("leader", d.leader).end_object();
    w.end_array();
    w.kv_opt("manager_userid", u.manager_userid);
    w.key("role_list").begin_array();
    for (const auto& r : u.roles)
        w.begin_object().kv("id", r.id).kv("name", r.name).kv("group_name", r.group_name).end_object();
    w.end_array();
    w.kv("senior", u.senior).kv("real_authed", u.real_authed);
    w.kv_opt("org_email_type", u.org_email_type);
    if (!sim_fields) {
        w.key("dept_position_list").begin_array();
        for (size_t i = 0; i < u.depts.size(); ++i) {
            w.begin_object().kv("dept_id", u.depts[i].dept_id).kv("is_main", i == 0);
            w.kv_opt("title", u.title).kv_opt("work_place", u.work_place).end_object();
        }
        w.end_array();
    } else {
        w.kv("access_limited", u.access_limited).kv("modify_time", u.modify_time);
    }
    w.end_object();
}

std::string Org::dump() const {
    JsonWriter w;
    w.begin_object();
    w.key("departments").begin_array();
    for (const auto& [id, d] : depts_) write_dept_get(w, *d);
    w.end_array();
    std::vector<const User*> us;
    us.reserve(users_.size());
    for (const auto& [id, u] : users_) us.push_back(u.get());
    std::sort(us.begin(), us.end(), [](const User* a, const User* b) { return a->userid < b->userid; });
    w.key("users").begin_array();
    for (const User* u : us) write_user_get(w, *u, true);
    w.end_array();
    w.key("leave_records").begin_array();
    for (const auto& r : leave_records_) {
        w.begin_object().kv("userId", r.user_id).kv("name", r.name);
        w.kv_opt("stateCode", r.state_code).kv_opt("mobile", r.mobile);
        w.kv("leaveTime", format_iso8601(r.leave_time_ms)).kv("leaveReason", r.leave_reason);
        w.end_object();
    }
    w.end_array();
    w.end_object();
    std::string out = w.take();
    out.push_back('\n');
    return out;
}

// ---- building ----

Status Org::insert_dept(std::unique_ptr<Department> d) {
    if (d->dept_id <= 0) return Status::fail("dept_id must be positive");
    if (d->name.empty()) return Status::fail("department " + std::to_string(d->dept_id) + " needs a name");
    if (depts_.count(d->dept_id)) return Status::fail("duplicate dept_id " + std::to_string(d->dept_id));
    if (d->dept_id == 1) d->parent_id = 0;
    next_dept_id_ = std::max(next_dept_id_, d->dept_id + 1);
    depts_.emplace(d->dept_id, std::move(d));
    return {};
}

Status Org::validate_user(const User& u) const {
    if (u.userid.empty()) return Status::fail("user needs a userid");
    if (u.name.empty()) return Status::fail("user " + u.userid + " needs a name");
    if (u.depts.empty()) return Status::fail("user " + u.userid + " needs a non-empty dept_id_list");
    for (const auto& d : u.depts)
        if (!dept(d.dept_id))
            return Status::fail("user " + u.userid + ": unknown department " + std::to_string(d.dept_id));
    return {};
}

Status Org::insert_user(std::unique_ptr<User> u) {
    TRY(validate_user(*u));
    if (users_.count(u->userid)) return Status::fail("duplicate userid " + u->userid);
    const User& ref = *u;
    users_.emplace(u->userid, std::move(u));
    attach_member(ref);
    return {};
}

std::unique_ptr<Org> Org::load(std::string_view json, std::string& error, OrgOptions opts) {
    auto org = std::make_unique<Org>(opts);
    org->bulk_ = true;
    simdjson::dom::parser parser;
    element doc;
    if (auto err = parser.parse(json.data(), json.size()).get(doc)) {
        error = std::string("invalid JSON: ") + simdjson::error_message(err);
        return nullptr;
    }
    if (doc.type() != element_type::OBJECT) {
        error = "the fixture must be a JSON object";
        return nullptr;
    }
    object root = doc;
    element e;
    if (!find(root, "departments", e) || e.type() != element_type::ARRAY) {
        error = "the fixture needs a \"departments\" array";
        return nullptr;
    }
    size_t i = 0;
    for (element x : array(e)) {
        auto d = std::make_unique<Department>();
        Status s =
            x.type() == element_type::OBJECT ? apply_dept_fields(*d, object(x)) : Status::fail("must be an object");
        if (s.ok()) s = org->insert_dept(std::move(d));
        if (!s.ok()) {
            error = "departments[" + std::to_string(i) + "]: " + s.error;
            return nullptr;
        }
        ++i;
    }
    if (!org->dept(1)) {
        error = "the fixture needs the root department (dept_id 1)";
        return nullptr;
    }
    for (auto& [id, d] : org->depts_) {
        if (id == 1) continue;
        auto* p = org->depts_.count(d->parent_id) ? org->depts_[d->parent_id].get() : nullptr;
        if (!p) {
            error = "department " + std::to_string(id) + ": unknown parent_id " + std::to_string(d->parent_id);
            return nullptr;
        }
        p->children_.push_back(id);
    }
    for (auto& [id, d] : org->depts_) {
        if (org->parent_chain(id).back() != 1) {
            error = "department " + std::to_string(id) + " is in a parent cycle";
            return nullptr;
        }
        org->resort_children(*d);
    }
    if (find(root, "users", e)) {
        if (e.type() != element_type::ARRAY) {
            error = "\"users\" must be an array";
            return nullptr;
        }
        i = 0;
        for (element x : array(e)) {
            auto u = std::make_unique<User>();
            Status s =
                x.type() == element_type::OBJECT ? apply_user_fields(*u, object(x)) : Status::fail("must be an object");
            if (s.ok()) {
                int64_t mt = 0;
                (void)get_int(object(x), "modify_time", mt);
                u->modify_time = mt;
                s = org->insert_user(std::move(u));
            }
            if (!s.ok()) {
                error = "users[" + std::to_string(i) + "]: " + s.error;
                return nullptr;
            }
            ++i;
        }
    }
    org->finish_bulk();
    if (find(root, "leave_records", e)) {
        if (e.type() != element_type::ARRAY) {
            error = "\"leave_records\" must be an array";
            return nullptr;
        }
        i = 0;
        for (element x : array(e)) {
            LeaveRecord r;
            std::string when;
            Status s = x.type() == element_type::OBJECT ? Status{} : Status::fail("must be an object");
            if (s.ok()) s = get_str(object(x), "userId", r.user_id);
            if (s.ok()) s = get_str(object(x), "name", r.name);
            if (s.ok()) s = get_str(object(x), "stateCode", r.state_code);
            if (s.ok()) s = get_str(object(x), "mobile", r.mobile);
            if (s.ok()) s = get_str(object(x), "leaveTime", when);
            if (s.ok()) s = get_str(object(x), "leaveReason", r.leave_reason);
            auto ms = parse_iso8601_ms(when);
            if (s.ok() && !ms) s = Status::fail("leaveTime must be ISO-8601, e.g. 2024-01-02T03:04:05Z");
            if (!s.ok()) {
                error = "leave_records[" + std::to_string(i) + "]: " + s.error;
                return nullptr;
            }
            r.leave_time_ms = *ms;
            if (r.leave_reason.empty()) r.leave_reason = "leave";
            org->leave_records_.push_back(std::move(r));
            ++i;
        }
    }
    return org;
}

std::unique_ptr<Org> Org::generate(const GenerateSpec& spec, OrgOptions opts) {
    auto org = std::make_unique<Org>(opts);
    org->bulk_ = true;
    Rng rng{spec.seed * 0x2545F4914F6CDD1DULL + 12345};
    static const char* kDeptNames[] = {"研发部",     "产品部",         "市场部",         "销售部",   "财务部",
                                       "人力资源部", "法务部",         "客服中心",       "华东大区", "华南大区",
                                       "数据平台组", "R&D / Platform", "Ops 🛠",       "行政部",   "测试组",
                                       "设计中心",   "Équipe Paris",   "\"Quoted\" Team"};
    static const char* kSurnames[] = {"王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴",   "周",
                                      "徐", "孙", "马", "朱", "胡", "郭", "何", "林", "欧阳", "司马"};
    static const char* kGiven[] = {"伟",   "芳", "娜",   "敏",   "静",   "丽",   "强",   "磊",
                                   "军",   "洋", "勇",   "艳",   "杰",   "涛",   "明",   "超",
                                   "秀英", "霞", "子涵", "梓萱", "一诺", "浩然", "宇轩", "思远"};
    static const char* kLatin[] = {"Alice O'Neil",       "José Álvarez",    "Zoë Smith",   "Łukasz Kowalski",
                                   "Renée \"RJ\" Jones", "Back\\slash Bob", "Ngô Bảo Châu"};
    static const char* kEmoji[] = {"🐱", "🚀", "🌸", "😀", "🍀", "✨", "👩‍💻"};
    static const char* kTitles[] = {"工程师",   "高级工程师", "产品经理", "VP, Engineering",
                                    "设计师 🎨", "销售代表",   "财务专员"};
    static const char* kPlaces[] = {"杭州", "北京", "上海 浦东", "深圳", "Remote"};

    auto root = std::make_unique<Department>();
    root->dept_id = 1;
    root->name = "模拟科技有限公司";
    root->create_dept_group = true;
    root->auto_add_user = true;
    (void)org->insert_dept(std::move(root));

    std::vector<int64_t> ids{1};
    std::vector<int> depth_of{0};
    std::vector<int64_t> eligible{1};  // departments that may get children (depth < D)
    std::unordered_map<int64_t, int> depth_by_id{{1, 0}};
    for (int64_t i = 0; i < spec.departments; ++i) {
        auto d = std::make_unique<Department>();
        d->dept_id = 3'000'000'000LL + (i + 1) * 7;  // beyond int32 on purpose (§2: int64)
        d->parent_id = eligible[rng.below(eligible.size())];
        d->name = std::string(rng.pick(kDeptNames)) + "-" + std::to_string(i + 1);
        d->order = static_cast<int64_t>(rng.below(1000)) * 10;
        d->create_dept_group = rng.chance(50);
        d->auto_add_user = d->create_dept_group && rng.chance(80);
        d->group_contain_sub_dept = rng.chance(20);
        if (d->create_dept_group) d->dept_group_chat_id = "chat" + alnum(rng, 24);
        if (rng.chance(30)) d->source_identifier = "src-" + std::to_string(i + 1);
        if (rng.chance(20)) d->brief = "部门简介 " + std::to_string(i + 1);
        if (rng.chance(10)) d->telephone = "0571-" + digits(rng, 8);
        if (rng.chance(5)) {
            d->hide_dept = true;
            d->dept_permits = {d->parent_id};
        }
        if (rng.chance(2)) {
            d->outer_dept = true;
            d->outer_permit_depts = {d->parent_id};
        }
        int depth = depth_by_id[d->parent_id] + 1;
        depth_by_id[d->dept_id] = depth;
        if (depth < spec.depth) eligible.push_back(d->dept_id);
        org->depts_[d->parent_id]->children_.push_back(d->dept_id);
        ids.push_back(d->dept_id);
        (void)org->insert_dept(std::move(d));
    }
    for (auto& [id, d] : org->depts_) org->resort_children(*d);

    // A few big departments make paging matter even in small orgs.
    const size_t big = std::min<size_t>(ids.size(), 3);
    std::vector<User*> made;
    for (int64_t k = 0; k < spec.users; ++k) {
        auto u = std::make_unique<User>();
        switch (k % 10) {
            case 0:
            case 1:
            case 2:
            case 3:
            case 4:
                u->userid = std::to_string(184900000000000000LL + k * 1000 + static_cast<int64_t>(rng.below(1000)));
                break;
            case 5:
                u->userid = "0" + std::to_string(11929600000LL + k * 100 + static_cast<int64_t>(rng.below(100)));
                break;
            case 6:
            case 7:
            case 8:
                u->userid = "user" + std::to_string(k);
                break;
            default:
                u->userid = "manager" + std::to_string(k);
                break;
        }
        int kind = static_cast<int>(rng.below(100));
        if (kind < 78)
            u->name = std::string(rng.pick(kSurnames)) + rng.pick(kGiven);
        else if (kind < 86)
            u->name = rng.pick(kLatin);
        else if (kind < 95)
            u->name = std::string(rng.pick(kSurnames)) + rng.pick(kGiven) + rng.pick(kEmoji);
        else
            u->name = "张伟";  // homonyms exist in every large org
        u->unionid = alnum(rng, 22) + "iE";
        if (rng.chance(60)) u->avatar = "https://static.example.com/avatar/" + alnum(rng, 12) + ".png";
        if (rng.chance(90)) {
            u->state_code = rng.chance(95) ? "86" : "852";
            u->mobile =
                u->state_code == "86" ? "1" + std::to_string(3 + rng.below(7)) + digits(rng, 9) : digits(rng, 8);
            u->hide_mobile = rng.chance(5);
        }
        if (rng.chance(20)) u->telephone = "0571-" + digits(rng, 8);
        if (rng.chance(80)) u->job_number = "E" + std::to_string(100000 + k);
        if (rng.chance(70)) u->title = rng.pick(kTitles);
        if (rng.chance(70)) u->email = "u" + std::to_string(k) + "@example.com";
        if (rng.chance(25)) {
            u->org_email = "staff" + std::to_string(k) + "@corp.example.com";
            u->org_email_type = "profession";
        }
        if (rng.chance(50)) u->work_place = rng.pick(kPlaces);
        if (rng.chance(8)) u->remark = "备注\n第二行 \"quoted\"";
        if (rng.chance(30)) u->extension = "{\"爱好\":\"旅游\",\"工位\":\"" + std::to_string(k) + "\"}";
        if (rng.chance(80)) u->hired_date = 1420070400000LL + static_cast<int64_t>(rng.below(3300)) * 86400000LL;
        u->active = !rng.chance(3);
        u->admin = k == 0 || rng.chance(1);
        u->boss = k == 0;
        if (rng.chance(5)) {
            u->exclusive_account = true;
            u->exclusive_account_type = rng.chance(50) ? "sso" : "dingtalk";
            u->login_id = "login" + std::to_string(k);
        }
        u->senior = rng.chance(2);
        u->real_authed = rng.chance(90);
        if (rng.chance(30)) u->roles.push_back(Role{1000 + static_cast<int64_t>(rng.below(5)), "负责人", "默认"});
        u->access_limited = rng.chance(2);
        u->modify_time = 1700000000000LL + k * 1000;

        int64_t main = rng.chance(30) ? ids[rng.below(big)] : ids[rng.below(ids.size())];
        u->depts.push_back(UserDept{main, static_cast<int64_t>(rng.below(1'000'000)), rng.chance(7)});
        int extra = rng.chance(15) ? (rng.chance(30) ? 2 : 1) : 0;
        for (int j = 0; j < extra && ids.size() > 1; ++j) {
            int64_t x = ids[rng.below(ids.size())];
            if (u->in_dept(x)) continue;
            u->depts.push_back(UserDept{x, static_cast<int64_t>(rng.below(1'000'000)), rng.chance(5)});
        }
        if (org->users_.count(u->userid)) u->userid += "x" + std::to_string(k);
        made.push_back(u.get());
        (void)org->insert_user(std::move(u));
    }
    org->finish_bulk();
    // Managers: a leader of the main department, else sometimes an earlier colleague.
    for (size_t k = 0; k < made.size(); ++k) {
        User* u = made[k];
        if (!rng.chance(70)) continue;
        const auto& leaders = org->depts_[u->depts[0].dept_id]->leaders_;
        for (const auto& l : leaders)
            if (l != u->userid) {
                u->manager_userid = l;
                break;
            }
        if (u->manager_userid.empty() && k > 0 && rng.chance(50)) u->manager_userid = made[rng.below(k)]->userid;
    }
    for (int64_t k = 0; k < spec.users / 100 + 1 && spec.users > 0; ++k) {
        LeaveRecord r;
        r.user_id = "left" + std::to_string(k);
        r.name = std::string(rng.pick(kSurnames)) + rng.pick(kGiven);
        r.state_code = "86";
        r.mobile = "139" + digits(rng, 8);
        r.leave_time_ms = 1704067200000LL + static_cast<int64_t>(rng.below(365 * 24)) * 3600000LL;
        static const char* kReasons[] = {"oapi", "cancel", "leave", "unknown", "delete"};
        r.leave_reason = rng.pick(kReasons);
        org->leave_records_.push_back(std::move(r));
    }
    std::sort(org->leave_records_.begin(), org->leave_records_.end(),
              [](const LeaveRecord& a, const LeaveRecord& b) { return a.leave_time_ms < b.leave_time_ms; });
    return org;
}

void Org::finish_bulk() {
    bulk_ = false;
    for (auto& [id, d] : depts_) touch_dept(id);
}

// ---- mutations ----

Status Org::create_dept(object fields, std::vector<OrgEvent>& events, int64_t* created_id) {
    auto d = std::make_unique<Department>();
    d->dept_id = next_dept_id_;
    d->parent_id = 1;
    TRY(apply_dept_fields(*d, fields));
    if (!dept(d->parent_id)) return Status::fail("unknown parent_id " + std::to_string(d->parent_id));
    if (d->dept_id == 1) return Status::fail("the root department already exists");
    int64_t id = d->dept_id, parent = d->parent_id;
    TRY(insert_dept(std::move(d)));
    auto& p = *depts_[parent];
    p.children_.push_back(id);
    resort_children(p);
    if (created_id) *created_id = id;
    events.push_back(OrgEvent{"org_dept_create", {}, {id}});
    return {};
}

Status Org::update_dept(object fields, std::vector<OrgEvent>& events) {
    int64_t id = 0;
    TRY(get_int(fields, "dept_id", id));
    auto it = depts_.find(id);
    if (it == depts_.end()) return Status::fail("unknown dept_id " + std::to_string(id));
    Department copy = *it->second;
    TRY(apply_dept_fields(copy, fields));
    if (copy.dept_id != id) return Status::fail("dept_id cannot change");
    if (copy.name.empty()) return Status::fail("name cannot be empty");
    if (id == 1) copy.parent_id = 0;
    if (copy.parent_id != it->second->parent_id) {
        if (!dept(copy.parent_id)) return Status::fail("unknown parent_id " + std::to_string(copy.parent_id));
        auto chain = parent_chain(copy.parent_id);
        if (std::find(chain.begin(), chain.end(), id) != chain.end())
            return Status::fail("moving a department under its own subtree");
    }
    int64_t old_parent = it->second->parent_id;
    *it->second = std::move(copy);
    if (old_parent != it->second->parent_id) {
        auto& oc = depts_[old_parent]->children_;
        oc.erase(std::remove(oc.begin(), oc.end(), id), oc.end());
        depts_[it->second->parent_id]->children_.push_back(id);
    }
    if (id != 1) resort_children(*depts_[it->second->parent_id]);
    events.push_back(OrgEvent{"org_dept_modify", {}, {id}});
    events.push_back(OrgEvent{"org_change", {}, {}});  // §5: fires together with org_dept_modify
    return {};
}

Status Org::remove_dept(int64_t id, std::vector<OrgEvent>& events) {
    auto it = depts_.find(id);
    if (it == depts_.end()) return Status::fail("unknown dept_id " + std::to_string(id));
    if (id == 1) return Status::fail("the root department cannot be removed");
    if (!it->second->children_.empty()) return Status::fail("department has sub-departments");
    if (!it->second->members_.empty()) return Status::fail("department has members");
    auto& pc = depts_[it->second->parent_id]->children_;
    pc.erase(std::remove(pc.begin(), pc.end(), id), pc.end());
    depts_.erase(it);
    views_.erase(id);
    events.push_back(OrgEvent{"org_dept_remove", {}, {id}});
    return {};
}

Status Org::create_user(object fields, std::vector<OrgEvent>& events) {
    auto u = std::make_unique<User>();
    TRY(apply_user_fields(*u, fields));
    if (u->unionid.empty()) u->unionid = "union" + u->userid + "iE";
    u->modify_time = 0;
    (void)get_int(fields, "modify_time", u->modify_time);
    std::string id = u->userid;
    TRY(insert_user(std::move(u)));
    events.push_back(OrgEvent{"user_add_org", {id}, {}});
    return {};
}

Status Org::update_user(object fields, std::vector<OrgEvent>& events) {
    std::string id;
    TRY(get_str(fields, "userid", id));
    auto it = users_.find(id);
    if (it == users_.end()) return Status::fail("unknown userid " + id);
    User copy = *it->second;
    TRY(apply_user_fields(copy, fields));
    if (copy.userid != id) return Status::fail("userid cannot change");
    TRY(validate_user(copy));
    (void)get_int(fields, "modify_time", copy.modify_time);
    User& u = *it->second;
    bool was_active = u.active;
    int64_t old_mt = u.modify_time;
    detach_member(u);
    u = std::move(copy);
    if (u.modify_time <= old_mt) u.modify_time = old_mt + 1;  // keeps modify_* order meaningful
    attach_member(u);
    events.push_back(OrgEvent{"user_modify_org", {id}, {}});
    if (!was_active && u.active) events.push_back(OrgEvent{"user_active_org", {id}, {}});
    return {};
}

Status Org::remove_user(std::string_view userid, std::string_view reason, int64_t now_ms,
                        std::vector<OrgEvent>& events) {
    auto it = users_.find(std::string(userid));
    if (it == users_.end()) return Status::fail("unknown userid " + std::string(userid));
    const User& u = *it->second;
    detach_member(u);
    LeaveRecord r{u.userid, u.name, u.state_code,
                  u.mobile, now_ms, reason.empty() ? std::string("leave") : std::string(reason)};
    leave_records_.push_back(std::move(r));
    std::string id = u.userid;
    users_.erase(it);
    events.push_back(OrgEvent{"user_leave_org", {id}, {}});
    return {};
}

}  // namespace sim

#undef TRY  // a unity build compiles the next file in the same unit
