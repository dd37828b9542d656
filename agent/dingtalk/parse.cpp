#include "agent/dingtalk/parse.h"

#include <simdjson.h>

#include <cctype>
#include <optional>

#include "agent/dingtalk/fields.h"

namespace dingbridge::agent::dingtalk {

namespace od = simdjson::ondemand;
using simdjson::error_code;

namespace {

od::parser& thread_parser() {
    thread_local od::parser parser;
    return parser;
}

// Answers up to this size are parsed by the thread's parser, which keeps its buffers (about five
// times the largest document it saw) for the next one. A larger answer, the legacy department
// list of a large org (5,000 departments: 2.2 MiB of parser buffers), gets a parser of its own,
// freed with it, instead of holding that memory through the rest of the sync. Pages of users
// (100 a page) stay well below it.
constexpr std::size_t kThreadParserMaxDocument = 256 * 1024;

#define DB_TRY(expr)                                                    \
    do {                                                                \
        if (error_code e_ = (expr); e_ != simdjson::SUCCESS) return e_; \
    } while (0)

// Calls on_field(key, value) for every field of `o`, in document order.
template <class F>
error_code for_each_field_of(od::object o, F&& on_field) {
    for (auto fr : o) {
        od::field f;
        DB_TRY(std::move(fr).get(f));
        std::string_view k;
        DB_TRY(f.unescaped_key().get(k));
        DB_TRY(on_field(k, f.value()));
    }
    return simdjson::SUCCESS;
}

// The same for the object `v`.
template <class F>
error_code for_each_field(od::value v, F&& on_field) {
    od::object o;
    DB_TRY(v.get_object().get(o));
    return for_each_field_of(o, std::forward<F>(on_field));
}

// Calls on_item(value) for every element of the array `v`.
template <class F>
error_code for_each_item(od::value v, F&& on_item) {
    od::array a;
    DB_TRY(v.get_array().get(a));
    for (auto ir : a) {
        od::value iv;
        DB_TRY(std::move(ir).get(iv));
        DB_TRY(on_item(iv));
    }
    return simdjson::SUCCESS;
}

// One value of the member's type; null is handled by read_value.
error_code read_present(od::value v, std::string& out) {
    std::string_view s;
    DB_TRY(v.get_string().get(s));
    out.assign(s);
    return simdjson::SUCCESS;
}
error_code read_present(od::value v, SmallString& out) {
    std::string_view s;
    DB_TRY(v.get_string().get(s));
    out = s;
    return simdjson::SUCCESS;
}
error_code read_present(od::value v, std::int64_t& out) { return v.get_int64().get(out); }
error_code read_present(od::value v, bool& out) { return v.get_bool().get(out); }
template <class T>
error_code read_present(od::value v, std::vector<T>& out) {
    return for_each_item(v, [&out](od::value item) -> error_code {
        T x{};
        DB_TRY(read_present(item, x));
        out.push_back(std::move(x));
        return simdjson::SUCCESS;
    });
}

// Null counts as absent for every optional field (`out` is left as it is).
template <class T>
error_code read_value(od::value v, T& out) {
    bool null = false;
    DB_TRY(v.is_null().get(null));
    if (null) return simdjson::SUCCESS;
    return read_present(v, out);
}

// Reads `v` into the member of `record` that the table entry `field` names.
template <class Record>
error_code read_field(od::value v, const SourceField<Record>& field, Record& record) {
    return std::visit([&](auto member) { return read_value(v, record.*member); }, field.member);
}

struct Envelope {
    std::int64_t errcode = 0;
    bool has_errcode = false;
    std::string errmsg, sub_code, sub_msg, request_id;
    bool has_result = false;
};

// Walks the top-level object once; `on_result` parses the "result" value in place.
template <class F>
error_code walk_envelope(std::string& body, Envelope& env, F&& on_result, std::string& where,
                         std::string_view result_key = "result") {
    body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
    simdjson::padded_string_view view(body.data(), body.size(), body.capacity());
    std::optional<od::parser> own;
    od::parser& parser = body.size() > kThreadParserMaxDocument ? own.emplace() : thread_parser();
    od::document doc;
    DB_TRY(parser.iterate(view).get(doc));
    od::object obj;
    DB_TRY(doc.get_object().get(obj));
    DB_TRY(for_each_field_of(obj, [&](std::string_view key, od::value v) -> error_code {
        where = key;
        if (key == "errcode") {
            DB_TRY(v.get_int64().get(env.errcode));
            env.has_errcode = true;
        } else if (key == "errmsg") {
            DB_TRY(read_value(v, env.errmsg));
        } else if (key == "sub_code") {
            // A string in the probes; tolerate a number.
            od::json_type t;
            DB_TRY(v.type().get(t));
            if (t == od::json_type::number) {
                std::int64_t n = 0;
                DB_TRY(v.get_int64().get(n));
                env.sub_code = std::to_string(n);
            } else {
                DB_TRY(read_value(v, env.sub_code));
            }
        } else if (key == "sub_msg") {
            DB_TRY(read_value(v, env.sub_msg));
        } else if (key == "request_id") {
            DB_TRY(read_value(v, env.request_id));
        } else if (key == result_key) {
            env.has_result = true;
            DB_TRY(on_result(v));
        }
        return simdjson::SUCCESS;
    }));
    where.clear();
    return simdjson::SUCCESS;
}

// The request id of a body that does not parse (DingTalk puts it last; a cut body may still
// carry it when the break is elsewhere): "request_id":"<id>" found textually, else empty.
std::string request_id_in_raw(std::string_view body) {
    constexpr std::string_view key = "\"request_id\"";
    auto p = body.rfind(key);
    if (p == std::string_view::npos) return {};
    p += key.size();
    while (p < body.size() && (body[p] == ' ' || body[p] == ':')) ++p;
    if (p >= body.size() || body[p] != '"') return {};
    auto e = ++p;
    while (e < body.size() && e - p < 64 &&
           (std::isalnum(static_cast<unsigned char>(body[e])) || body[e] == '-' || body[e] == '_'))
        ++e;
    if (e >= body.size() || body[e] != '"' || e == p) return {};
    return std::string(body.substr(p, e - p));
}

// What an answer that parses lacks, said by the checks below as they fail (the error code alone
// gives simdjson's generic text, which names only the part of the answer). One parse at a time
// per thread; parse_with clears it before each.
std::string& lacking() {
    thread_local std::string why;
    return why;
}

error_code reject(error_code code, std::string why) {
    lacking() = std::move(why);
    return code;
}

template <class T, class F>
Outcome<T> parse_with(std::string_view api, std::string& body, bool need_result, F&& on_result,
                      std::string_view result_key = "result") {
    Envelope env;
    std::string where;
    lacking().clear();
    error_code err = walk_envelope(body, env, on_result, where, result_key);
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
        if (f.request_id.empty()) f.request_id = request_id_in_raw(body);
        if (!lacking().empty()) {
            f.detail = std::move(lacking());
            lacking().clear();
        } else {
            f.detail = std::string(simdjson::error_message(err));
            if (!where.empty()) f.detail += " in field '" + where + "'";
        }
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
    DB_TRY(for_each_field(v, [&](std::string_view k, od::value x) -> error_code {
        bool handled = false;
        DB_TRY(extra(k, x, handled));
        if (handled) return simdjson::SUCCESS;
        const auto* field = find_field(kUserFields, k);
        if (!field) field = find_field(kUserPageFields, k);
        return field ? read_field(x, *field, u) : simdjson::SUCCESS;
    }));
    u.has_hired_date = u.hired_date != 0;
    if (u.userid.empty()) return reject(simdjson::INCORRECT_TYPE, "a user without a userid");  // unusable
    // DingTalk names every user; an answer without one would blank the name in the target.
    if (u.name.empty()) return reject(simdjson::NO_SUCH_FIELD, "user " + u.userid + " has no name");
    if (u.hired_date < 0)  // ms since 1970; no hire before it
        return reject(simdjson::NUMBER_OUT_OF_RANGE,
                      "user " + u.userid + " has a negative hired_date (" + std::to_string(u.hired_date) + ")");
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
    return for_each_item(v, [&](od::value iv) -> error_code {
        std::int64_t dept_id = 0;
        std::int64_t order = 0;
        bool leader = false, seen = false;
        DB_TRY(for_each_field(iv, [&](std::string_view k, od::value x) -> error_code {
            if (k == "dept_id") return read_value(x, dept_id);
            if (k != key) return simdjson::SUCCESS;
            seen = true;
            return key == "order" ? read_value(x, order) : read_value(x, leader);
        }));
        if (dept_id <= 0)
            return reject(simdjson::INCORRECT_TYPE, std::string("an entry of its ") +
                                                        (key == "order" ? "dept_order_list" : "leader_in_dept") +
                                                        " without a dept_id");
        if (seen) on_item(dept_id, order, leader);
        return simdjson::SUCCESS;
    });
}

// A department listing item: keys for id, name, parent (listsub and the legacy list differ).
error_code read_dept_summary(od::value v, DeptSummary& d, std::string_view id_key, std::string_view parent_key) {
    return for_each_field(v, [&](std::string_view k, od::value x) -> error_code {
        if (k == id_key) return read_value(x, d.dept_id);
        if (k == "name") return read_value(x, d.name);
        if (k == parent_key) return read_value(x, d.parent_id);
        return simdjson::SUCCESS;
    });
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
                err = read_value(fd.value(), reply.access_token);
            else if (k == "expires_in")
                err = read_value(fd.value(), reply.expires_in);
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

namespace {

// A department listing: an array of {id, name, parent} under `result_key`; with `need_parent`
// an item without a parent is malformed (the legacy list never omits it).
Outcome<std::vector<DeptSummary>> parse_dept_listing(std::string_view api, std::string& body, std::string_view id_key,
                                                     std::string_view parent_key, bool need_parent,
                                                     std::string_view result_key) {
    std::vector<DeptSummary> out;
    auto on_result = [&](od::value v) -> error_code {
        return for_each_item(v, [&](od::value iv) -> error_code {
            DeptSummary d;
            DB_TRY(read_dept_summary(iv, d, id_key, parent_key));
            if (d.dept_id <= 0)
                return reject(simdjson::INCORRECT_TYPE, "a department without its " + std::string(id_key));
            if (need_parent && d.parent_id <= 0)
                return reject(simdjson::INCORRECT_TYPE,
                              "department " + std::to_string(d.dept_id) + " without its " + std::string(parent_key));
            out.push_back(std::move(d));
            return simdjson::SUCCESS;
        });
    };
    auto r = parse_with<std::vector<DeptSummary>>(api, body, true, on_result, result_key);
    if (!r.ok()) return r.failure();
    return out;
}

}  // namespace

Outcome<std::vector<DeptSummary>> parse_listsub(std::string_view api, std::string& body) {
    return parse_dept_listing(api, body, "dept_id", "parent_id", false, "result");
}

Outcome<std::vector<DeptSummary>> parse_legacy_department_list(std::string_view api, std::string& body) {
    return parse_dept_listing(api, body, "id", "parentid", true, "department");
}

Outcome<std::int64_t> parse_user_count(std::string_view api, std::string& body) {
    std::int64_t count = -1;
    auto on_result = [&](od::value v) -> error_code {
        DB_TRY(for_each_field(v, [&](std::string_view k, od::value x) -> error_code {
            return k == "count" ? read_value(x, count) : simdjson::SUCCESS;
        }));
        return count < 0 ? reject(simdjson::NO_SUCH_FIELD, "the result has no count") : simdjson::SUCCESS;
    };
    auto r = parse_with<std::int64_t>(api, body, true, on_result);
    if (!r.ok()) return r.failure();
    return count;
}

Outcome<DeptDetail> parse_dept_get(std::string_view api, std::string& body) {
    DeptDetail d;
    auto on_result = [&](od::value v) -> error_code {
        DB_TRY(for_each_field(v, [&](std::string_view k, od::value x) -> error_code {
            const auto* field = find_field(kDeptFields, k);
            return field ? read_field(x, *field, d) : simdjson::SUCCESS;
        }));
        if (d.dept_id <= 0) return reject(simdjson::INCORRECT_TYPE, "the department has no dept_id");
        if (d.name.empty())  // every department has one
            return reject(simdjson::NO_SUCH_FIELD, "department " + std::to_string(d.dept_id) + " has no name");
        return simdjson::SUCCESS;
    };
    auto r = parse_with<DeptDetail>(api, body, true, on_result);
    if (!r.ok()) return r.failure();
    return d;
}

Outcome<UserPage> parse_user_list(std::string_view api, std::string& body) {
    UserPage page;
    auto on_result = [&](od::value v) -> error_code {
        bool has_list = false, has_more = false;
        DB_TRY(for_each_field(v, [&](std::string_view k, od::value x) -> error_code {
            if (k == "has_more") {
                bool null = false;
                DB_TRY(x.is_null().get(null));
                has_more = !null;
                return read_value(x, page.has_more);
            }
            if (k == "next_cursor") return read_value(x, page.next_cursor);
            if (k != "list") return simdjson::SUCCESS;
            has_list = true;
            return for_each_item(x, [&](od::value iv) -> error_code {
                UserItem u;
                DB_TRY(parse_user_item(iv, u));
                page.users.push_back(std::move(u));
                return simdjson::SUCCESS;
            });
        }));
        // Both are always there (dingtalk-api.md §3): a page without them would read as the last
        // one, or as an empty department, and its members would be disabled.
        if (!has_list) return reject(simdjson::NO_SUCH_FIELD, "the page has no list (an empty department answers [])");
        if (!has_more) return reject(simdjson::NO_SUCH_FIELD, "the page has no has_more");
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
            return read_value(x, d.manager_userid);
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

#undef DB_TRY  // a unity build compiles the next file in the same unit
