#include "agent/dingtalk/parse.h"

#include <simdjson.h>

#include <cctype>

namespace dingbridge::agent::dingtalk {

namespace od = simdjson::ondemand;
using simdjson::error_code;

namespace {

od::parser& thread_parser() {
    thread_local od::parser parser;
    return parser;
}

#define DB_TRY(expr)                                                    \
    do {                                                                \
        if (error_code e_ = (expr); e_ != simdjson::SUCCESS) return e_; \
    } while (0)

// Null counts as absent for every optional field.
error_code read_string(od::value v, std::string& out) {
    bool null = false;
    DB_TRY(v.is_null().get(null));
    if (null) return simdjson::SUCCESS;
    std::string_view s;
    DB_TRY(v.get_string().get(s));
    out.assign(s);
    return simdjson::SUCCESS;
}

error_code read_int(od::value v, std::int64_t& out) {
    bool null = false;
    DB_TRY(v.is_null().get(null));
    if (null) return simdjson::SUCCESS;
    return v.get_int64().get(out);
}

error_code read_bool(od::value v, bool& out) {
    bool null = false;
    DB_TRY(v.is_null().get(null));
    if (null) return simdjson::SUCCESS;
    return v.get_bool().get(out);
}

error_code read_int_list(od::value v, std::vector<std::int64_t>& out) {
    bool null = false;
    DB_TRY(v.is_null().get(null));
    if (null) return simdjson::SUCCESS;
    od::array a;
    DB_TRY(v.get_array().get(a));
    for (auto item : a) {
        std::int64_t x = 0;
        od::value iv;
        DB_TRY(item.get(iv));
        DB_TRY(iv.get_int64().get(x));
        out.push_back(x);
    }
    return simdjson::SUCCESS;
}

error_code read_string_list(od::value v, std::vector<std::string>& out) {
    bool null = false;
    DB_TRY(v.is_null().get(null));
    if (null) return simdjson::SUCCESS;
    od::array a;
    DB_TRY(v.get_array().get(a));
    for (auto item : a) {
        std::string_view s;
        od::value iv;
        DB_TRY(item.get(iv));
        DB_TRY(iv.get_string().get(s));
        out.emplace_back(s);
    }
    return simdjson::SUCCESS;
}

struct Envelope {
    std::int64_t errcode = 0;
    bool has_errcode = false;
    std::string errmsg, sub_code, sub_msg, request_id;
    bool has_result = false;
};

// Walks the top-level object once; `on_result` parses the "result" value in place.
template <class F>
error_code walk_envelope(std::string& body, Envelope& env, F&& on_result, std::string& where) {
    body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
    simdjson::padded_string_view view(body.data(), body.size(), body.capacity());
    od::document doc;
    DB_TRY(thread_parser().iterate(view).get(doc));
    od::object obj;
    DB_TRY(doc.get_object().get(obj));
    for (auto field_result : obj) {
        od::field field;
        DB_TRY(std::move(field_result).get(field));
        std::string_view key;
        DB_TRY(field.unescaped_key().get(key));
        where = key;
        od::value v = field.value();
        if (key == "errcode") {
            DB_TRY(v.get_int64().get(env.errcode));
            env.has_errcode = true;
        } else if (key == "errmsg") {
            DB_TRY(read_string(v, env.errmsg));
        } else if (key == "sub_code") {
            // A string in the probes; tolerate a number.
            od::json_type t;
            DB_TRY(v.type().get(t));
            if (t == od::json_type::number) {
                std::int64_t n = 0;
                DB_TRY(v.get_int64().get(n));
                env.sub_code = std::to_string(n);
            } else {
                DB_TRY(read_string(v, env.sub_code));
            }
        } else if (key == "sub_msg") {
            DB_TRY(read_string(v, env.sub_msg));
        } else if (key == "request_id") {
            DB_TRY(read_string(v, env.request_id));
        } else if (key == "result") {
            env.has_result = true;
            DB_TRY(on_result(v));
        }
    }
    where.clear();
    return simdjson::SUCCESS;
}

template <class T, class F>
Outcome<T> parse_with(std::string_view api, std::string& body, bool need_result, F&& on_result) {
    Envelope env;
    std::string where;
    error_code err = walk_envelope(body, env, on_result, where);
    ApiFailure f;
    f.api = std::string(api);
    f.request_id = env.request_id;
    if (err != simdjson::SUCCESS) {
        // The envelope may be fine and only the result broken: still report a DingTalk error.
        if (env.has_errcode && env.errcode != 0) {
            f.kind = classify_errcode(env.errcode, env.sub_code);
            f.errcode = env.errcode;
            f.sub_code = env.sub_code;
            f.errmsg = env.errmsg;
            return f;
        }
        f.kind = FailureKind::malformed;
        f.detail = std::string(simdjson::error_message(err));
        if (!where.empty()) f.detail += " in field '" + where + "'";
        return f;
    }
    if (!env.has_errcode) {
        // The per-source-IP limit answers with a deny page, not the envelope (§4); say so.
        if (body.find("\"punish\"") != std::string::npos) {
            f.kind = FailureKind::api;
            f.errmsg =
                "DingTalk's per-IP limit (10000 calls per 20 s) banned the egress IP for about 5 minutes "
                "(deny page); lower dingtalk.qps and rerun later";
            return f;
        }
        f.kind = FailureKind::malformed;
        f.detail = "no errcode in the response";
        return f;
    }
    if (env.errcode != 0) {
        f.kind = classify_errcode(env.errcode, env.sub_code);
        f.errcode = env.errcode;
        f.sub_code = env.sub_code;
        f.errmsg = env.errmsg;
        return f;
    }
    if (need_result && !env.has_result) {
        f.kind = FailureKind::malformed;
        f.detail = "errcode 0 without a result";
        return f;
    }
    return Outcome<T>(T{});
}

// `extra(key, value, handled)` sees every field first (for user/get's own fields).
template <class Extra>
error_code parse_user_object(od::value v, UserItem& u, Extra&& extra) {
    od::object o;
    DB_TRY(v.get_object().get(o));
    for (auto fr : o) {
        od::field f;
        DB_TRY(std::move(fr).get(f));
        std::string_view k;
        DB_TRY(f.unescaped_key().get(k));
        od::value x = f.value();
        bool handled = false;
        DB_TRY(extra(k, x, handled));
        if (handled) continue;
        if (k == "userid")
            DB_TRY(read_string(x, u.userid));
        else if (k == "unionid")
            DB_TRY(read_string(x, u.unionid));
        else if (k == "name")
            DB_TRY(read_string(x, u.name));
        else if (k == "avatar")
            DB_TRY(read_string(x, u.avatar));
        else if (k == "state_code")
            DB_TRY(read_string(x, u.state_code));
        else if (k == "mobile")
            DB_TRY(read_string(x, u.mobile));
        else if (k == "telephone")
            DB_TRY(read_string(x, u.telephone));
        else if (k == "job_number")
            DB_TRY(read_string(x, u.job_number));
        else if (k == "title")
            DB_TRY(read_string(x, u.title));
        else if (k == "email")
            DB_TRY(read_string(x, u.email));
        else if (k == "org_email")
            DB_TRY(read_string(x, u.org_email));
        else if (k == "work_place")
            DB_TRY(read_string(x, u.work_place));
        else if (k == "remark")
            DB_TRY(read_string(x, u.remark));
        else if (k == "extension")
            DB_TRY(read_string(x, u.extension));
        else if (k == "exclusive_account_type")
            DB_TRY(read_string(x, u.exclusive_account_type));
        else if (k == "login_id")
            DB_TRY(read_string(x, u.login_id));
        else if (k == "dept_id_list")
            DB_TRY(read_int_list(x, u.dept_id_list));
        else if (k == "dept_order")
            DB_TRY(read_int(x, u.dept_order));
        else if (k == "leader")
            DB_TRY(read_bool(x, u.leader));
        else if (k == "hired_date") {
            DB_TRY(read_int(x, u.hired_date));
            u.has_hired_date = u.hired_date != 0;
        } else if (k == "active")
            DB_TRY(read_bool(x, u.active));
        else if (k == "admin")
            DB_TRY(read_bool(x, u.admin));
        else if (k == "boss")
            DB_TRY(read_bool(x, u.boss));
        else if (k == "hide_mobile")
            DB_TRY(read_bool(x, u.hide_mobile));
        else if (k == "exclusive_account")
            DB_TRY(read_bool(x, u.exclusive_account));
    }
    if (u.userid.empty()) return simdjson::INCORRECT_TYPE;  // a user without an id is unusable
    return simdjson::SUCCESS;
}

error_code parse_user_item(od::value v, UserItem& u) {
    return parse_user_object(v, u, [](std::string_view, od::value, bool&) { return simdjson::SUCCESS; });
}

// [{"dept_id":2,"<key>":...}, ...] -> calls on_item(dept_id, value of <key>)
template <class F>
error_code read_dept_pairs(od::value v, std::string_view key, F&& on_item) {
    bool null = false;
    DB_TRY(v.is_null().get(null));
    if (null) return simdjson::SUCCESS;
    od::array a;
    DB_TRY(v.get_array().get(a));
    for (auto ir : a) {
        od::value iv;
        DB_TRY(std::move(ir).get(iv));
        od::object o;
        DB_TRY(iv.get_object().get(o));
        std::int64_t dept_id = 0;
        std::int64_t order = 0;
        bool leader = false, seen = false;
        for (auto fr : o) {
            od::field f;
            DB_TRY(std::move(fr).get(f));
            std::string_view k;
            DB_TRY(f.unescaped_key().get(k));
            if (k == "dept_id") {
                DB_TRY(read_int(f.value(), dept_id));
            } else if (k == key) {
                seen = true;
                if (key == "order")
                    DB_TRY(read_int(f.value(), order));
                else
                    DB_TRY(read_bool(f.value(), leader));
            }
        }
        if (dept_id <= 0) return simdjson::INCORRECT_TYPE;
        if (seen) on_item(dept_id, order, leader);
    }
    return simdjson::SUCCESS;
}

}  // namespace

FailureKind classify_errcode(std::int64_t errcode, std::string_view sub_code) {
    auto by_code = [](std::string_view c) -> std::optional<FailureKind> {
        if (c == "-1") return FailureKind::busy;
        if (c == "90018" || c == "90002" || c == "90006" || c == "90005" || c == "90019") return FailureKind::throttle;
        if (c == "40014" || c == "42001" || c == "40001" || c == "33001") return FailureKind::token;
        if (c == "60020") return FailureKind::ip_denied;
        if (c == "60011") return FailureKind::permission;
        if (c == "40096") return FailureKind::bad_credentials;
        if (c == "60003" || c == "60121") return FailureKind::not_found;
        if (c == "90020") return FailureKind::quota;
        return std::nullopt;
    };
    if (errcode == 88 && !sub_code.empty()) {
        if (auto k = by_code(sub_code)) return *k;
        return FailureKind::api;
    }
    if (auto k = by_code(std::to_string(errcode))) return *k;
    return FailureKind::api;
}

Outcome<TokenReply> parse_gettoken(std::string_view api, std::string& body) {
    TokenReply reply;
    // gettoken has no "result": its fields sit beside errcode, so walk them separately.
    body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
    Envelope env;
    std::string where;
    auto noop = [](od::value) { return simdjson::SUCCESS; };
    {
        std::string copy = body;
        auto head = parse_with<TokenReply>(api, copy, false, noop);
        if (!head.ok()) return head.failure();
    }
    simdjson::padded_string_view view(body.data(), body.size(), body.capacity());
    od::document doc;
    ApiFailure f;
    f.api = std::string(api);
    f.kind = FailureKind::malformed;
    auto err = thread_parser().iterate(view).get(doc);
    od::object obj;
    if (!err) err = doc.get_object().get(obj);
    if (!err) {
        for (auto fr : obj) {
            od::field fd;
            if ((err = std::move(fr).get(fd))) break;
            std::string_view k;
            if ((err = fd.unescaped_key().get(k))) break;
            if (k == "access_token")
                err = read_string(fd.value(), reply.access_token);
            else if (k == "expires_in")
                err = read_int(fd.value(), reply.expires_in);
            if (err) break;
        }
    }
    if (err) {
        f.detail = simdjson::error_message(err);
        return f;
    }
    if (reply.access_token.empty()) {
        f.detail = "no access_token in the response";
        return f;
    }
    if (reply.expires_in <= 0) reply.expires_in = 7200;
    return reply;
}

Outcome<std::vector<DeptSummary>> parse_listsub(std::string_view api, std::string& body) {
    std::vector<DeptSummary> out;
    auto on_result = [&](od::value v) -> error_code {
        od::array a;
        DB_TRY(v.get_array().get(a));
        for (auto ir : a) {
            od::value iv;
            DB_TRY(std::move(ir).get(iv));
            od::object o;
            DB_TRY(iv.get_object().get(o));
            DeptSummary d;
            for (auto fr : o) {
                od::field f;
                DB_TRY(std::move(fr).get(f));
                std::string_view k;
                DB_TRY(f.unescaped_key().get(k));
                if (k == "dept_id")
                    DB_TRY(read_int(f.value(), d.dept_id));
                else if (k == "name")
                    DB_TRY(read_string(f.value(), d.name));
                else if (k == "parent_id")
                    DB_TRY(read_int(f.value(), d.parent_id));
            }
            if (d.dept_id <= 0) return simdjson::INCORRECT_TYPE;
            out.push_back(std::move(d));
        }
        return simdjson::SUCCESS;
    };
    auto r = parse_with<std::vector<DeptSummary>>(api, body, true, on_result);
    if (!r.ok()) return r.failure();
    return out;
}

Outcome<DeptDetail> parse_dept_get(std::string_view api, std::string& body) {
    DeptDetail d;
    auto on_result = [&](od::value v) -> error_code {
        od::object o;
        DB_TRY(v.get_object().get(o));
        for (auto fr : o) {
            od::field f;
            DB_TRY(std::move(fr).get(f));
            std::string_view k;
            DB_TRY(f.unescaped_key().get(k));
            od::value x = f.value();
            if (k == "dept_id")
                DB_TRY(read_int(x, d.dept_id));
            else if (k == "name")
                DB_TRY(read_string(x, d.name));
            else if (k == "parent_id")
                DB_TRY(read_int(x, d.parent_id));
            else if (k == "order")
                DB_TRY(read_int(x, d.order));
            else if (k == "source_identifier")
                DB_TRY(read_string(x, d.source_identifier));
            else if (k == "brief")
                DB_TRY(read_string(x, d.brief));
            else if (k == "telephone")
                DB_TRY(read_string(x, d.telephone));
            else if (k == "tags")
                DB_TRY(read_string(x, d.tags));
            else if (k == "extention")
                DB_TRY(read_string(x, d.extention));
            else if (k == "org_dept_owner")
                DB_TRY(read_string(x, d.org_dept_owner));
            else if (k == "dept_manager_userid_list")
                DB_TRY(read_string_list(x, d.manager_userids));
            else if (k == "hide_dept")
                DB_TRY(read_bool(x, d.hide_dept));
            else if (k == "outer_dept")
                DB_TRY(read_bool(x, d.outer_dept));
            else if (k == "from_union_org")
                DB_TRY(read_bool(x, d.from_union_org));
        }
        if (d.dept_id <= 0) return simdjson::INCORRECT_TYPE;
        return simdjson::SUCCESS;
    };
    auto r = parse_with<DeptDetail>(api, body, true, on_result);
    if (!r.ok()) return r.failure();
    return d;
}

Outcome<UserPage> parse_user_list(std::string_view api, std::string& body) {
    UserPage page;
    auto on_result = [&](od::value v) -> error_code {
        od::object o;
        DB_TRY(v.get_object().get(o));
        bool has_list = false;
        for (auto fr : o) {
            od::field f;
            DB_TRY(std::move(fr).get(f));
            std::string_view k;
            DB_TRY(f.unescaped_key().get(k));
            od::value x = f.value();
            if (k == "has_more")
                DB_TRY(read_bool(x, page.has_more));
            else if (k == "next_cursor")
                DB_TRY(read_int(x, page.next_cursor));
            else if (k == "list") {
                has_list = true;
                od::array a;
                DB_TRY(x.get_array().get(a));
                for (auto ir : a) {
                    od::value iv;
                    DB_TRY(std::move(ir).get(iv));
                    UserItem u;
                    DB_TRY(parse_user_item(iv, u));
                    page.users.push_back(std::move(u));
                }
            }
        }
        if (!has_list && page.has_more) return simdjson::NO_SUCH_FIELD;
        return simdjson::SUCCESS;
    };
    auto r = parse_with<UserPage>(api, body, true, on_result);
    if (!r.ok()) return r.failure();
    return page;
}

Outcome<UserDetail> parse_user_get(std::string_view api, std::string& body) {
    UserDetail d;
    std::vector<std::pair<std::int64_t, std::int64_t>> orders;
    std::vector<std::pair<std::int64_t, bool>> leaders;
    auto extra = [&](std::string_view k, od::value x, bool& handled) -> error_code {
        if (k == "manager_userid") {
            handled = true;
            return read_string(x, d.manager_userid);
        }
        if (k == "dept_order_list") {
            handled = true;
            return read_dept_pairs(x, "order",
                                   [&](std::int64_t id, std::int64_t o, bool) { orders.emplace_back(id, o); });
        }
        if (k == "leader_in_dept") {
            handled = true;
            return read_dept_pairs(x, "leader",
                                   [&](std::int64_t id, std::int64_t, bool l) { leaders.emplace_back(id, l); });
        }
        return simdjson::SUCCESS;
    };
    auto on_result = [&](od::value v) -> error_code { return parse_user_object(v, d.item, extra); };
    auto r = parse_with<UserDetail>(api, body, true, on_result);
    if (!r.ok()) return r.failure();
    // One place per department the user is in, as the list pages of those departments give it.
    auto place_for = [&](std::int64_t id) -> MergedUser::Place& {
        for (auto& p : d.places)
            if (p.dept_id == id) return p;
        d.places.push_back(MergedUser::Place{id, 0, false});
        return d.places.back();
    };
    for (auto id : d.item.dept_id_list) place_for(id);
    for (auto [id, o] : orders) place_for(id).order = o;
    for (auto [id, l] : leaders) place_for(id).leader = l;
    return d;
}

std::string ip_from_allowlist_message(std::string_view errmsg) {
    auto p = errmsg.find("request ip=");
    if (p == std::string_view::npos) return {};
    p += 11;
    auto e = p;
    while (e < errmsg.size() &&
           (std::isxdigit(static_cast<unsigned char>(errmsg[e])) || errmsg[e] == '.' || errmsg[e] == ':'))
        ++e;
    return std::string(errmsg.substr(p, e - p));
}

std::string scopes_from_permission_message(std::string_view errmsg) {
    auto p = errmsg.find("requiredScopes");
    if (p == std::string_view::npos) return {};
    auto b = errmsg.find('[', p);
    auto e = b == std::string_view::npos ? b : errmsg.find(']', b);
    if (e == std::string_view::npos) return {};
    return std::string(errmsg.substr(b + 1, e - b - 1));
}

}  // namespace dingbridge::agent::dingtalk
