#include "agent/targets/scim_target.h"

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <functional>
#include <utility>

#include "agent/targets/utc_time.h"
#include "shared/log.h"

namespace dingbridge::agent {

namespace {

namespace dom = simdjson::dom;

std::string quote(const std::string& v) { return "\"" + json_escape(v) + "\""; }

std::string str(dom::element e, const char* key) {
    std::string_view v;
    if (e[key].get(v)) return {};
    return std::string(v);
}

bool flag(dom::element e, const char* key, bool fallback) {
    bool v = fallback;
    return e[key].get(v) == simdjson::SUCCESS ? v : fallback;
}

// The primary value of a multi-valued attribute (emails, phoneNumbers), else the first.
std::string primary_value(dom::element e, const char* key) {
    dom::array list;
    if (e[key].get(list)) return {};
    std::string first;
    for (dom::element item : list) {
        bool primary = flag(item, "primary", false);
        std::string v = str(item, "value");
        if (primary) return v;
        if (first.empty()) first = v;
    }
    return first;
}

// One PATCH operation: replace (or remove when `value` is empty) of `path`.
std::string patch_op(const std::string& path, const std::string& json_value) {
    if (json_value.empty()) return R"({"op":"remove","path":)" + quote(path) + "}";
    return R"({"op":"replace","path":)" + quote(path) + R"(,"value":)" + json_value + "}";
}

std::string patch_body(const std::vector<std::string>& ops) {
    std::string out = R"({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[)";
    for (std::size_t i = 0; i < ops.size(); ++i) out += (i ? "," : "") + ops[i];
    return out + "]}";
}

// Both sides of the diff: the stored primary department (the enterprise extension's) first.
void sort_memberships(OrgUser& u) { sort_primary_first(u.departments, u.primary_department); }

std::string leaders_json(const std::vector<std::string>& leaders) {
    std::string out;
    for (const auto& l : leaders) out += (out.empty() ? "[" : ",") + quote(l);
    return out.empty() ? out : out + "]";
}

std::string id_of(const ScimResponse& r) {
    dom::parser p;
    dom::element doc;
    if (p.parse(r.body).get(doc)) return {};
    return str(doc, "id");
}

}  // namespace

std::unique_ptr<Target> make_scim_target(const ScimSettings& settings, ConflictPolicy conflict_policy) {
    return std::make_unique<ScimTarget>(settings, conflict_policy);
}

ScimTarget::ScimTarget(ScimSettings settings, ConflictPolicy conflict_policy)
    : s_(std::move(settings)), conflict_policy_(conflict_policy), client_(s_) {}

// ---- desired org: keep only what SCIM holds ----

void ScimTarget::fill_required(OrgUser& u) const {
    if (u.username.empty()) u.username = u.external_id;  // userName is required (RFC 7643 §4.1.1)
}

void ScimTarget::normalize(OrgSnapshot& desired) {
    for (auto& [id, d] : desired.departments) {
        OrgDepartment n;
        n.external_id = d.external_id;
        n.name = d.name;
        if (desired.departments.count(d.parent_external_id)) n.parent_external_id = d.parent_external_id;
        // Leaders in DingTalk's order (the first one is the manager), synced users only.
        for (const auto& l : d.leaders)
            if (desired.users.count(l) && std::find(n.leaders.begin(), n.leaders.end(), l) == n.leaders.end())
                n.leaders.push_back(l);
        d = std::move(n);
    }
    for (auto& [id, u] : desired.users) {
        OrgUser n;
        n.external_id = u.external_id;
        n.username = u.username;
        fill_required(n);
        n.display_name = u.display_name;
        n.email = u.email;
        n.phone = u.phone;
        n.title = u.title;
        n.employee_number = u.employee_number;
        n.primary_department = u.primary_department;
        // SCIM's active is "not removed from DingTalk" (false = disabled by the sync, read back as
        // removed); DingTalk's own activation flag has no SCIM attribute and is not written.
        n.active = true;
        if (desired.users.count(u.manager) && u.manager != id) n.manager = u.manager;
        // The leader flag as read() gives it back: the user is among the department's leaders.
        for (const auto& m : u.departments)
            if (auto d = desired.departments.find(m.department); d != desired.departments.end()) {
                const auto& leaders = d->second.leaders;
                bool leader = std::find(leaders.begin(), leaders.end(), id) != leaders.end();
                n.departments.push_back(Membership{m.department, 0, leader});
            }
        sort_memberships(n);
        n.departments.erase(std::unique(n.departments.begin(), n.departments.end()), n.departments.end());
        u = std::move(n);
    }
}

// ---- discovery and read ----

std::optional<std::string> ScimTarget::discover() {
    if (discovered_) return std::nullopt;
    auto r = client_.send({"GET", "/ServiceProviderConfig", ""});
    if (!r.ok()) return r.error("SCIM " + s_.base_url + "/ServiceProviderConfig");
    bool supported = false;
    dom::parser p;
    dom::element doc;
    dom::element patch;
    if (p.parse(r.body).get(doc) == simdjson::SUCCESS && doc["patch"].get(patch) == simdjson::SUCCESS)
        supported = flag(patch, "supported", false);
    patch_ = s_.update_method == "patch" || (s_.update_method == "auto" && supported);
    discovered_ = true;
    spdlog::info("scim target: {} (updates by {})", s_.base_url, patch_ ? "PATCH" : "PUT");
    return std::nullopt;
}

namespace {

// Reads every resource of an endpoint page by page (startIndex/count): the first page tells the
// total, the other pages are fetched `concurrency` at a time; a server that returns fewer items
// than asked is followed page by page from where it stopped.
std::optional<std::string> read_all(ScimClient& client, const std::string& endpoint, int page_size,
                                    const std::function<void(dom::element)>& each) {
    dom::parser parser;
    std::int64_t total = 0, seen = 0;
    auto page = [&](const ScimResponse& r, std::int64_t start) -> std::optional<std::string> {
        std::string where = "SCIM GET " + endpoint + " (startIndex " + std::to_string(start) + ")";
        if (!r.ok()) return r.error(where);
        dom::element doc;
        dom::array list;
        if (parser.parse(r.body).get(doc)) return where + ": the answer is not JSON";
        if (doc["totalResults"].get(total)) return where + ": the answer has no totalResults";
        if (doc["Resources"].get(list)) return std::nullopt;  // RFC 7644: may be absent when empty
        for (dom::element e : list) {
            each(e);
            ++seen;
        }
        return std::nullopt;
    };
    auto url = [&](std::int64_t start) {
        return endpoint + "?startIndex=" + std::to_string(start) + "&count=" + std::to_string(page_size);
    };
    if (auto e = page(client.send({"GET", url(1), ""}), 1)) return e;
    const std::int64_t per_page = std::max<std::int64_t>(seen, 1);
    std::vector<ScimRequest> rest;
    std::vector<std::int64_t> starts;
    for (std::int64_t start = 1 + per_page; seen == per_page && start <= total; start += per_page) {
        rest.push_back({"GET", url(start), ""});
        starts.push_back(start);
    }
    auto answers = client.send_all(rest);
    for (std::size_t i = 0; i < answers.size(); ++i)
        if (auto e = page(answers[i], starts[i])) return e;
    while (seen < total) {  // fewer than announced: continue one page at a time
        std::int64_t before = seen;
        if (auto e = page(client.send({"GET", url(seen + 1), ""}), seen + 1)) return e;
        if (seen == before) break;
    }
    return std::nullopt;
}

}  // namespace

std::optional<std::string> ScimTarget::read_groups(OrgSnapshot& snap) {
    const std::string parent_key = s_.parent_attribute;
    return read_all(client_, "/Groups", s_.page_size, [&](dom::element e) {
        std::string ext = ours(str(e, "externalId"));
        if (ext.empty()) return;   // not ours
        if (groups_.count(ext)) {  // the first one wins
            duplicate_groups_[ext].push_back(str(e, "id"));
            return;
        }
        Group& g = groups_[ext];
        g.id = str(e, "id");
        g.row.external_id = ext;
        g.row.name = str(e, "displayName");
        dom::element x;
        dom::array leaders;
        if (!e[s_.department_schema].get(x)) {
            g.row.parent_external_id = str(x, parent_key.c_str());
            if (!x[s_.leaders_attribute].get(leaders))
                for (dom::element l : leaders)
                    if (std::string_view v; !l.get(v)) g.row.leaders.emplace_back(v);
        }
        dom::array members;
        if (!e["members"].get(members))
            for (dom::element m : members) g.members.insert(str(m, "value"));
        snap.departments[ext] = g.row;
    });
}

std::optional<std::string> ScimTarget::read_users(OrgSnapshot& snap) {
    std::unordered_map<std::string, std::string> manager_ids;  // DingTalk id -> manager's SCIM id
    auto e = read_all(client_, "/Users", s_.page_size, [&](dom::element e) {
        std::string ext = ours(str(e, "externalId"));
        if (ext.empty()) return;  // not ours
        if (users_.count(ext)) {
            duplicate_users_[ext].push_back(str(e, "id"));
            return;
        }
        User& u = users_[ext];
        u.id = str(e, "id");
        user_by_id_[u.id] = ext;
        OrgUser& r = u.row;
        r.external_id = ext;
        r.username = str(e, "userName");
        r.display_name = str(e, "displayName");
        r.email = primary_value(e, "emails");
        r.phone = primary_value(e, "phoneNumbers");
        r.title = str(e, "title");
        r.active = flag(e, "active", true);
        dom::element x;
        if (!e[kScimEnterpriseSchema].get(x)) {
            r.employee_number = str(x, "employeeNumber");
            r.primary_department = str(x, "department");
            dom::element m;
            if (!x["manager"].get(m)) manager_ids[ext] = str(m, "value");
        }
        dom::element meta;
        if (!r.active)
            snap.removed_users[ext] =
                e["meta"].get(meta) ? 0 : utc_seconds(str(meta, "lastModified"), "%4d-%2d-%2dT%2d:%2d:%2d", 19);
    });
    if (e) return e;
    for (auto& [ext, id] : manager_ids) {
        if (id.empty()) continue;
        auto it = user_by_id_.find(id);
        users_[ext].row.manager = it != user_by_id_.end() ? it->second : "?" + id;
    }
    return std::nullopt;
}

Result<OrgSnapshot> ScimTarget::read() {
    client_.reset();  // a new run asks the server again, however the last one ended
    groups_.clear();
    users_.clear();
    user_by_id_.clear();
    waiting_for_manager_.clear();
    duplicate_groups_.clear();
    duplicate_users_.clear();
    OrgSnapshot snap;
    std::optional<std::string> e = discover();
    if (!e) e = read_groups(snap);
    if (!e) e = read_users(snap);
    if (e) return fail(*e);
    for (auto& [dept, g] : groups_)
        for (const auto& member : g.members)
            if (auto it = user_by_id_.find(member); it != user_by_id_.end())
                users_[it->second].row.departments.push_back(
                    Membership{dept, 0, std::count(g.row.leaders.begin(), g.row.leaders.end(), it->second) > 0});
    for (auto& [ext, u] : users_) {
        sort_memberships(u.row);
        if (u.row.active)
            snap.users[ext] = u.row;
        else
            snap.removed_user_rows[ext] = u.row;
    }
    // A custom key no mapping produces (normalize() drops custom fields): the plan updates them.
    for (const auto& [ext, ids] : duplicate_groups_) snap.departments[ext].custom["\x01scim"] = "duplicate";
    for (const auto& [ext, ids] : duplicate_users_)
        if (auto it = snap.users.find(ext); it != snap.users.end()) it->second.custom["\x01scim"] = "duplicate";
    spdlog::info("scim target: read {} groups, {} users ({} disabled) from {}", snap.departments.size(),
                 snap.users.size(), snap.removed_users.size(), s_.base_url);
    return snap;
}

// ---- run ----

Status ScimTarget::begin() {
    rollback();  // nothing left over from an earlier run
    client_.reset();
    if (auto e = discover()) return fail(*e);
    return {};
}

Status ScimTarget::commit() {
    return {};  // every change is already on the server
}

Status ScimTarget::apply(const Change& c) {
    if (auto e = apply_change(c)) return fail(*e);
    return {};
}

std::optional<std::string> ScimTarget::apply_change(const Change& c) {
    switch (c.kind) {
        case ChangeKind::create_department:
        case ChangeKind::update_department:
            if (!c.department) return std::string("no department in the change");
            return put_department(*c.department);
        case ChangeKind::create_user:
        case ChangeKind::update_user:
        case ChangeKind::disable_user:
            if (c.user) return put_user(*c.user);
            if (c.kind != ChangeKind::disable_user) return std::string("no user in the change");
            if (auto it = users_.find(c.external_id); it != users_.end()) {
                OrgUser row = it->second.row;
                row.active = false;
                row.departments.clear();
                return put_user(row);
            }
            return std::nullopt;
        case ChangeKind::delete_user:
            return delete_user(c.external_id);
        case ChangeKind::delete_department:
            return delete_department(c.external_id);
    }
    return std::string("unknown change");
}

std::string ScimTarget::ours(std::string external_id) const {
    const std::string& prefix = s_.external_id_prefix;
    if (external_id.size() <= prefix.size() || external_id.compare(0, prefix.size(), prefix) != 0) return {};
    return external_id.substr(prefix.size());
}

std::string ScimTarget::find_by_external_id(const std::string& endpoint, const std::string& external_id,
                                            std::string& error) {
    const std::string wire = s_.external_id_prefix + external_id;
    std::string filter = "externalId eq " + quote(wire);
    auto r = client_.send({"GET", endpoint + "?filter=" + scim_url_encode(filter), ""});
    if (r.status == 404) return {};  // some servers answer an empty result so (RFC 7644 says 200)
    if (!r.ok()) {
        error = r.error("SCIM GET " + endpoint + " by externalId " + external_id);
        return {};
    }
    dom::parser p;
    dom::element doc;
    dom::array list;
    if (p.parse(r.body).get(doc) || doc["Resources"].get(list)) {
        error = "SCIM GET " + endpoint + " by externalId " + external_id + ": the answer is not a list response";
        return {};
    }
    for (dom::element e : list)
        if (str(e, "externalId") == wire) return str(e, "id");
    return {};
}

std::optional<std::string> ScimTarget::delete_duplicates(const std::string& endpoint, const std::string& external_id) {
    auto& all = endpoint == "/Groups" ? duplicate_groups_ : duplicate_users_;
    auto it = all.find(external_id);
    if (it == all.end()) return std::nullopt;
    for (const auto& id : it->second) {
        if (auto e = delete_resource(endpoint, id)) return "deleting a duplicate: " + *e;
        spdlog::info("scim target: deleted {}/{}, a second resource with externalId {}", endpoint, id, external_id);
        for (auto& [dept, g] : groups_) g.members.erase(id);
    }
    all.erase(it);
    return std::nullopt;
}

std::optional<std::string> ScimTarget::delete_resource(const std::string& endpoint, const std::string& id) {
    auto r = client_.send({"DELETE", endpoint + "/" + scim_path_segment(id), ""});
    if (r.ok() || r.status == 404) return std::nullopt;  // already gone: idempotent
    return r.error("SCIM DELETE " + endpoint + "/" + id);
}

std::optional<std::string> ScimTarget::delete_user(const std::string& external_id) {
    auto it = users_.find(external_id);
    if (it == users_.end()) return std::nullopt;
    if (auto e = delete_resource("/Users", it->second.id)) return e;
    for (auto& [dept, g] : groups_) g.members.erase(it->second.id);  // the server drops them with the user
    user_by_id_.erase(it->second.id);
    users_.erase(it);
    return std::nullopt;
}

std::optional<std::string> ScimTarget::delete_department(const std::string& external_id) {
    auto it = groups_.find(external_id);
    if (it == groups_.end()) return std::nullopt;
    if (auto e = delete_resource("/Groups", it->second.id)) return e;
    for (auto& [ext, u] : users_)
        std::erase_if(u.row.departments, [&](const Membership& m) { return m.department == external_id; });
    groups_.erase(it);
    return std::nullopt;
}

// ---- writes ----

std::string ScimTarget::manager_id(const OrgUser& u) const {
    if (u.manager.empty()) return {};
    auto it = users_.find(u.manager);
    return it != users_.end() ? it->second.id : std::string();
}

namespace {

std::string emails_json(const std::string& v) {
    return v.empty() ? std::string() : R"([{"value":)" + quote(v) + R"(,"type":"work","primary":true}])";
}
std::string phones_json(const std::string& v) {
    return v.empty() ? std::string() : R"([{"value":)" + quote(v) + R"(,"type":"work"}])";
}
std::string manager_json(const std::string& id) {
    return id.empty() ? std::string() : R"({"value":)" + quote(id) + "}";
}

}  // namespace

std::string ScimTarget::user_json(const OrgUser& u) const {
    std::string ent;
    auto add = [](std::string& out, const char* key, const std::string& json) {
        if (json.empty()) return;
        out += (out.empty() ? "" : ",") + std::string("\"") + key + "\":" + json;
    };
    auto text = [](const std::string& v) { return v.empty() ? std::string() : quote(v); };
    add(ent, "employeeNumber", text(u.employee_number));
    add(ent, "department", text(u.primary_department));
    add(ent, "manager", manager_json(manager_id(u)));
    std::string out;
    add(out, "schemas", "[" + quote(kScimUserSchema) + (ent.empty() ? "" : "," + quote(kScimEnterpriseSchema)) + "]");
    add(out, "externalId", quote(s_.external_id_prefix + u.external_id.str()));
    add(out, "userName", quote(u.username));
    add(out, "active", u.active ? "true" : "false");
    add(out, "displayName", text(u.display_name));
    add(out, "title", text(u.title));
    add(out, "emails", emails_json(u.email));
    add(out, "phoneNumbers", phones_json(u.phone));
    if (!ent.empty()) out += "," + quote(kScimEnterpriseSchema) + ":{" + ent + "}";
    return "{" + out + "}";
}

std::string ScimTarget::group_json(const Group& g, const OrgDepartment& d) const {
    std::string out = R"({"schemas":[)" + quote(kScimGroupSchema) + "," + quote(s_.department_schema) +
                      R"(],"externalId":)" + quote(s_.external_id_prefix + d.external_id) + R"(,"displayName":)" +
                      quote(d.name) + "," + quote(s_.department_schema) + ":{";
    if (!d.parent_external_id.empty()) out += quote(s_.parent_attribute) + ":" + quote(d.parent_external_id);
    if (!d.leaders.empty())
        out += std::string(d.parent_external_id.empty() ? "" : ",") + quote(s_.leaders_attribute) + ":" +
               leaders_json(d.leaders);
    out += R"(},"members":[)";
    bool first = true;
    for (const auto& m : g.members) {
        out += (first ? "" : ",") + std::string(R"({"value":)") + quote(m) + "}";
        first = false;
    }
    return out + "]}";
}

std::optional<std::string> ScimTarget::put_department(const OrgDepartment& d) {
    if (auto e = delete_duplicates("/Groups", d.external_id)) return e;
    auto it = groups_.find(d.external_id);
    if (it == groups_.end()) {
        Group g;
        std::string found, lookup_error;
        auto lookup = [&] { return !(found = find_by_external_id("/Groups", d.external_id, lookup_error)).empty(); };
        auto r = client_.send({"POST", "/Groups", group_json(g, d)}, lookup);
        if (found.empty() && r.status == 409) lookup();
        if (found.empty() && !r.ok()) return r.error("SCIM POST /Groups (department " + d.external_id + ")");
        g.id = found.empty() ? id_of(r) : found;
        if (g.id.empty()) return "SCIM POST /Groups (department " + d.external_id + "): the answer has no id";
        g.row = d;
        if (!found.empty()) g.row.name = "\x01";  // adopted: write every field below
        it = groups_.emplace(d.external_id, std::move(g)).first;
        if (found.empty()) return std::nullopt;
    }
    Group& g = it->second;
    const std::string parent_path = s_.department_schema + ":" + s_.parent_attribute;
    ScimResponse r;
    if (patch_) {
        std::vector<std::string> ops;
        if (g.row.name != d.name) ops.push_back(patch_op("displayName", quote(d.name)));
        if (g.row.parent_external_id != d.parent_external_id || g.row.name == "\x01")
            ops.push_back(patch_op(parent_path, d.parent_external_id.empty() ? "" : quote(d.parent_external_id)));
        if (g.row.leaders != d.leaders || g.row.name == "\x01")
            ops.push_back(patch_op(s_.department_schema + ":" + s_.leaders_attribute, leaders_json(d.leaders)));
        if (ops.empty()) return std::nullopt;
        r = client_.send({"PATCH", "/Groups/" + scim_path_segment(g.id), patch_body(ops)});
    } else {
        r = client_.send({"PUT", "/Groups/" + scim_path_segment(g.id), group_json(g, d)});
    }
    if (!r.ok()) return r.error("SCIM " + std::string(patch_ ? "PATCH" : "PUT") + " /Groups/" + g.id);
    g.row = d;
    return std::nullopt;
}

void ScimTarget::adopt_user(const std::string& external_id, const std::string& id) {
    User& u = users_[external_id];
    u.id = id;
    u.row = OrgUser{};
    u.row.external_id = external_id;
    u.row.username = "\x01";  // unknown: every field is written
    u.row.display_name = u.row.email = u.row.phone = u.row.title = "\x01";
    u.row.employee_number = u.row.primary_department = u.row.manager = "\x01";
    user_by_id_[id] = external_id;
}

std::optional<std::string> ScimTarget::create_user(const OrgUser& u, const std::string& username, bool& conflict) {
    OrgUser w = u;
    w.username = username;
    std::string found, lookup_error;
    auto lookup = [&] { return !(found = find_by_external_id("/Users", u.external_id, lookup_error)).empty(); };
    auto r = client_.send({"POST", "/Users", user_json(w)}, lookup);
    if (found.empty() && r.status == 409) {  // ours already (an earlier attempt's lost answer)?
        lookup_error.clear();
        // Unanswered, the 409 cannot be told from another user's: taken as a conflict, the user
        // would be written again under another userName, beside its own resource.
        if (!lookup() && !lookup_error.empty())
            return "SCIM POST /Users (user " + u.external_id +
                   ") answered 409, and whether the resource holding its userName is this user's own (an "
                   "earlier attempt's lost answer) could not be checked: " +
                   lookup_error;
    }
    if (!found.empty()) {
        adopt_user(u.external_id, found);
        return update_user(users_[u.external_id], u, username, conflict);
    }
    if (!r.ok()) {
        conflict = r.status == 409;
        return r.error("SCIM POST /Users (user " + u.external_id + ")");
    }
    std::string id = id_of(r);
    if (id.empty()) return "SCIM POST /Users (user " + u.external_id + "): the answer has no id";
    User& cur = users_[u.external_id];
    cur.id = id;
    cur.row = w;
    cur.row.departments.clear();
    if (manager_id(u).empty()) cur.row.manager.clear();
    user_by_id_[id] = u.external_id;
    return std::nullopt;
}

std::vector<std::string> ScimTarget::user_patch(const OrgUser& cur, const OrgUser& w) const {
    std::vector<std::string> ops;
    auto text = [](const std::string& v) { return v.empty() ? std::string() : quote(v); };
    const std::string ent = std::string(kScimEnterpriseSchema) + ":";
    if (cur.username != w.username) ops.push_back(patch_op("userName", quote(w.username)));
    if (cur.active != w.active || cur.username == "\x01")
        ops.push_back(patch_op("active", w.active ? "true" : "false"));
    if (cur.display_name != w.display_name) ops.push_back(patch_op("displayName", text(w.display_name)));
    if (cur.title != w.title) ops.push_back(patch_op("title", text(w.title)));
    if (cur.email != w.email) ops.push_back(patch_op("emails", emails_json(w.email)));
    if (cur.phone != w.phone) ops.push_back(patch_op("phoneNumbers", phones_json(w.phone)));
    if (cur.employee_number != w.employee_number)
        ops.push_back(patch_op(ent + "employeeNumber", text(w.employee_number)));
    if (cur.primary_department != w.primary_department)
        ops.push_back(patch_op(ent + "department", text(w.primary_department)));
    if (cur.manager != w.manager) ops.push_back(patch_op(ent + "manager", manager_json(manager_id(w))));
    return ops;
}

std::optional<std::string> ScimTarget::update_user(User& cur, const OrgUser& u, const std::string& username,
                                                   bool& conflict) {
    OrgUser w = u;
    w.username = username;
    if (!w.manager.empty() && manager_id(w).empty()) w.manager.clear();  // linked when the manager exists
    ScimResponse r;
    std::string what;
    if (patch_) {
        auto ops = user_patch(cur.row, w);
        if (ops.empty()) return std::nullopt;
        what = "SCIM PATCH /Users/" + cur.id;
        r = client_.send({"PATCH", "/Users/" + scim_path_segment(cur.id), patch_body(ops)});
    } else {
        what = "SCIM PUT /Users/" + cur.id;
        r = client_.send({"PUT", "/Users/" + scim_path_segment(cur.id), user_json(w)});
    }
    if (!r.ok()) {
        conflict = r.status == 409;
        return r.error(what + " (user " + u.external_id + ")");
    }
    auto departments = std::move(cur.row.departments);
    cur.row = std::move(w);
    cur.row.departments = std::move(departments);
    return std::nullopt;
}

std::optional<std::string> ScimTarget::write_user(const OrgUser& u, const std::string& username, bool& conflict) {
    auto it = users_.find(u.external_id);
    if (it == users_.end()) return create_user(u, username, conflict);
    return update_user(it->second, u, username, conflict);
}

std::optional<std::string> ScimTarget::put_user(const OrgUser& u) {
    if (auto e = delete_duplicates("/Users", u.external_id)) return e;
    bool conflict = false;
    std::optional<std::string> outcome = write_user(u, u.username, conflict);
    if (outcome && conflict) {
        // userName is held by a resource that is not ours (other users' values are staged by the plan).
        if (conflict_policy_ == ConflictPolicy::skip_user)
            return *outcome + "; the user is left out (sync.conflict_policy: skip_user)";
        bool again = false;
        if (auto e = write_user(u, u.external_id, again)) return *outcome + "; and with its DingTalk id: " + *e;
        settled_.emplace_back(u.external_id, *outcome + "; written with its DingTalk id " + u.external_id +
                                                 " as userName (sync.conflict_policy: clear_field)");
        outcome.reset();  // applied, as the policy says: a conflict, not a failure
    } else if (outcome) {
        return outcome;
    }
    User& cur = users_[u.external_id];
    if (!u.manager.empty() && cur.row.manager.empty()) waiting_for_manager_[u.manager].push_back(u.external_id);
    if (auto e = set_memberships(cur, u)) return outcome ? *outcome + "; " + *e : *e;
    if (auto e = link_waiting_reports(u.external_id)) return outcome ? *outcome + "; " + *e : *e;
    return outcome;
}

std::optional<std::string> ScimTarget::link_waiting_reports(const std::string& manager_external_id) {
    auto it = waiting_for_manager_.find(manager_external_id);
    if (it == waiting_for_manager_.end()) return std::nullopt;
    auto waiting = std::move(it->second);
    waiting_for_manager_.erase(it);
    std::optional<std::string> first_error;
    for (const auto& ext : waiting) {
        auto u = users_.find(ext);
        if (u == users_.end() || !u->second.row.manager.empty()) continue;
        OrgUser want = u->second.row;
        want.manager = manager_external_id;
        bool conflict = false;
        if (auto e = update_user(u->second, want, want.username, conflict); e && !first_error)
            first_error = "setting the manager of " + ext + ": " + *e;
    }
    return first_error;
}

std::optional<std::string> ScimTarget::set_memberships(User& cur, const OrgUser& u) {
    std::set<std::string> want, have;
    for (const auto& m : u.departments) want.insert(m.department);
    for (const auto& m : cur.row.departments) have.insert(m.department);
    std::optional<std::string> first_error;
    for (const auto& d : have) {
        if (want.count(d)) continue;
        if (auto e = change_member(d, cur.id, false)) {
            if (!first_error) first_error = e;
        } else {
            std::erase_if(cur.row.departments, [&](const Membership& m) { return m.department == d; });
        }
    }
    for (const auto& d : want) {
        if (have.count(d)) continue;
        if (auto e = change_member(d, cur.id, true)) {
            if (!first_error) first_error = e;
        } else {
            cur.row.departments.push_back(Membership{d, 0, false});
        }
    }
    for (auto& m : cur.row.departments)  // the leader flag follows the department's leaders
        for (const auto& w : u.departments)
            if (w.department == m.department) m.leader = w.leader;
    sort_memberships(cur.row);
    return first_error;
}

std::optional<std::string> ScimTarget::change_member(const std::string& dept, const std::string& user_id, bool add) {
    auto it = groups_.find(dept);
    if (it == groups_.end())
        return add ? std::optional<std::string>("department " + dept + " has no group on the SCIM server")
                   : std::nullopt;
    if (auto w = pending_members_.find(dept); batching_ && w != pending_members_.end()) {
        if (auto p = w->second.find(user_id); p != w->second.end()) {
            if (p->second.add != add) w->second.erase(p);  // undone within the run: nothing to send
            return std::nullopt;
        }
    }
    if (it->second.members.count(user_id) == (add ? 1u : 0u)) return std::nullopt;
    MemberChange m{user_id, add, current_};
    if (!batching_) {
        long status = 0;
        return send_member_changes(dept, &m, 1, status);
    }
    auto& waiting = pending_members_[dept];
    waiting.emplace(user_id, std::move(m));
    if (waiting.size() >= static_cast<std::size_t>(std::max(s_.members_per_request, 1))) flush_group(dept);
    return std::nullopt;
}

std::optional<std::string> ScimTarget::send_member_changes(const std::string& dept, const MemberChange* list,
                                                           std::size_t n, long& status) {
    status = 0;
    auto it = groups_.find(dept);
    if (it == groups_.end()) return "department " + dept + " has no group on the SCIM server";
    Group& g = it->second;
    auto apply_to = [list, n](std::set<std::string>& members) {
        for (std::size_t i = 0; i < n; ++i) {
            if (list[i].add)
                members.insert(list[i].user_id);
            else
                members.erase(list[i].user_id);
        }
    };
    ScimResponse r;
    if (patch_) {
        std::string values;
        std::vector<std::string> ops;
        for (std::size_t i = 0; i < n; ++i) {
            const std::string member = quote(list[i].user_id);
            if (list[i].add)
                values += (values.empty() ? "{\"value\":" : ",{\"value\":") + member + "}";
            else
                ops.push_back(R"({"op":"remove","path":)" + quote("members[value eq " + member + "]") + "}");
        }
        if (!values.empty()) ops.insert(ops.begin(), R"({"op":"add","path":"members","value":[)" + values + "]}");
        // A PATCH applies all its operations or none; one whose answer was lost may have been
        // applied, and sent again its adds would be listed twice by a server that keeps repeated
        // values (and then read as one). So the group is read before a retry, as a create looks
        // its resource up: when it already has the change, the retry is not sent.
        auto applied = [&] {
            auto got = client_.send({"GET", "/Groups/" + scim_path_segment(g.id) + "?attributes=members", ""});
            dom::parser p;
            dom::element doc;
            if (!got.ok() || p.parse(got.body).get(doc)) return false;
            std::set<std::string> now;
            dom::array members;
            if (!doc["members"].get(members))
                for (dom::element m : members) now.insert(str(m, "value"));
            for (std::size_t i = 0; i < n; ++i)
                if ((now.count(list[i].user_id) > 0) != list[i].add) return false;
            return true;
        };
        r = client_.send({"PATCH", "/Groups/" + scim_path_segment(g.id), patch_body(ops)}, applied);
    } else {
        Group next = g;
        apply_to(next.members);
        r = client_.send({"PUT", "/Groups/" + scim_path_segment(g.id), group_json(next, g.row)});
    }
    status = r.status;
    if (!r.ok())
        return r.error("SCIM " + std::string(patch_ ? "PATCH" : "PUT") + " /Groups/" + g.id + " (" + std::to_string(n) +
                       " member change" + (n == 1 ? "" : "s") + " in department " + dept + ")");
    apply_to(g.members);
    return std::nullopt;
}

void ScimTarget::send_or_split(const std::string& dept, const MemberChange* list, std::size_t n) {
    long status = 0;
    auto e = send_member_changes(dept, list, n, status);
    if (!e) return;
    // A refusal may concern one member (400 invalidValue, 404, a 500 on bad input): halves until
    // it is found. Not for a server that is unavailable (429, 502-504, network errors): retried
    // by the client already, they fail every change of the request and the next run resends.
    const bool refused = (status >= 400 && status < 500 && status != 429) || status == 500;
    if (refused && n > 1) {
        send_or_split(dept, list, n / 2);
        send_or_split(dept, list + n / 2, n - n / 2);
        return;
    }
    for (std::size_t i = 0; i < n; ++i) {
        const MemberChange& m = list[i];
        // The user's row as the server holds it (set_memberships recorded the change as done).
        if (auto u = user_by_id_.find(m.user_id); u != user_by_id_.end()) {
            auto& departments = users_[u->second].row.departments;
            std::erase_if(departments, [&dept](const Membership& x) { return x.department == dept; });
            if (!m.add) {
                departments.push_back(Membership{dept, 0, false});
                sort_memberships(users_[u->second].row);
            }
        }
        if (m.change) late_failures_.emplace_back(m.change, *e);
    }
}

void ScimTarget::flush_group(const std::string& dept) {
    auto node = pending_members_.extract(dept);
    if (node.empty()) return;
    std::vector<MemberChange> list;
    list.reserve(node.mapped().size());
    for (auto& [id, m] : node.mapped()) list.push_back(std::move(m));
    const std::size_t chunk = static_cast<std::size_t>(std::max(s_.members_per_request, 1));
    for (std::size_t i = 0; i < list.size(); i += chunk)
        send_or_split(node.key(), list.data() + i, std::min(chunk, list.size() - i));
}

void ScimTarget::flush_members() {
    while (!pending_members_.empty()) {
        const std::string dept = pending_members_.begin()->first;
        flush_group(dept);
    }
}

void ScimTarget::apply_batch(const Change* changes, std::size_t n, std::vector<Status>& outcomes) {
    batching_ = true;
    outcomes.clear();
    for (std::size_t i = 0; i < n; ++i) {
        // Only user writes change memberships; any other change sees the memberships sent.
        const ChangeKind kind = changes[i].kind;
        if (kind != ChangeKind::create_user && kind != ChangeKind::update_user && kind != ChangeKind::disable_user)
            flush_members();
        current_ = changes + i;
        auto e = apply_change(changes[i]);
        outcomes.push_back(e ? Status(fail(std::move(*e))) : Status());
    }
    current_ = nullptr;
}

std::vector<std::pair<const Change*, std::string>> ScimTarget::finish_batches() {
    flush_members();
    batching_ = false;
    return std::exchange(late_failures_, {});
}

void ScimTarget::rollback() {
    // Nothing to undo on the server (no transaction); what still waits is dropped.
    pending_members_.clear();
    late_failures_.clear();
    settled_.clear();  // reported by the run that made them, never by the next
    batching_ = false;
}

}  // namespace dingbridge::agent
